"""nanoGPT in JAX and Equinox."""

from nanojaxgpt.model import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
