"""XLA's deterministic GPU ops are asked for through XLA_FLAGS, before JAX starts its backend,
and read back from there to choose the GPU's layer plan."""

import os

import pytest

from nanojaxgpt.determinism import deterministic_ops_requested, request_deterministic_ops


@pytest.mark.parametrize("flags, requested", [
    ("", False),
    ("--xla_gpu_exclude_nondeterministic_ops=true", True),
    ("--xla_gpu_exclude_nondeterministic_ops", True),
    ("--xla_gpu_deterministic_ops=TRUE --xla_force_host_platform_device_count=4", True),
    ("--xla_gpu_deterministic_ops=false", False),
    ("--xla_gpu_deterministic_ops=true --xla_gpu_exclude_nondeterministic_ops=false", False),
    ("--xla_gpu_exclude_nondeterministic_ops_extra=true", False),
])
def test_deterministic_ops_are_read_from_xla_flags(monkeypatch, flags, requested):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert deterministic_ops_requested() is requested


def test_the_request_is_added_once_after_other_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    request_deterministic_ops()
    request_deterministic_ops()
    assert os.environ["XLA_FLAGS"] == (
        "--xla_force_host_platform_device_count=4 --xla_gpu_exclude_nondeterministic_ops=true"
    )


def test_the_users_own_choice_and_false_are_left_alone(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    request_deterministic_ops()
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
    monkeypatch.delenv("XLA_FLAGS")
    request_deterministic_ops(enabled=False)
    assert "XLA_FLAGS" not in os.environ
