"""Torch-style initialisers and pytree helpers for Equinox models."""
