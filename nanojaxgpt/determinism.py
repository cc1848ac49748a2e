"""Bit-identical runs on GPUs: XLA's deterministic ops.

On a CPU, XLA computes the same bits on every run. On a GPU it does not by default: the token
embedding's gradient is a scatter-add whose atomic additions land in any order, and so do the
partial sums of cuDNN's attention backward pass; GPT-2 124M's loss after 25 steps differed in
the fifth digit between three runs on an H200. `--xla_gpu_exclude_nondeterministic_ops=true`
swaps those for deterministic kernels, which bit-identical resume needs. XLA reads its flags
once, when JAX starts its GPU backend, so the flag goes into XLA_FLAGS before the first
computation, and the model reads it back to choose its layer plan (nanojaxgpt/model.py).
"""

import os

FLAG = "--xla_gpu_exclude_nondeterministic_ops=true"
# what a run on a GPU without them says once at its start (the price: README, "GPU")
NONDETERMINISTIC_NOTE = (
    "note: deterministic=False: this GPU adds in any order, so resuming continues this run but not bit "
    "for bit; --deterministic=True makes runs and resumes bit-identical, at 0.61x the speed measured "
    "for GPT-2 124M on an H200 (42.0 against 25.8 ms an iteration)"
)
# either of XLA's flags asks for deterministic kernels (the second also turns autotuning off)
DETERMINISM_FLAGS = ("xla_gpu_exclude_nondeterministic_ops", "xla_gpu_deterministic_ops")


def request_deterministic_ops(enabled: bool = True) -> None:
    """Ask XLA for deterministic GPU kernels, unless XLA_FLAGS already says either way. Call it
    before JAX's first computation (later it changes nothing); CPUs and TPUs ignore it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if enabled and not _determinism_settings(flags):
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()


def deterministic_ops_requested() -> bool:
    """Whether XLA_FLAGS asks for deterministic GPU kernels: the last of the determinism flags
    decides, and a flag given without a value is on."""
    settings = _determinism_settings(os.environ.get("XLA_FLAGS", ""))
    return bool(settings) and settings[-1]


def _determinism_settings(flags: str) -> list[bool]:
    """The values XLA_FLAGS gives the determinism flags, in order."""
    settings = []
    for token in flags.split():
        name, _, value = token.removeprefix("--").partition("=")
        if name in DETERMINISM_FLAGS:
            settings.append(value.lower() in ("", "true", "1"))
    return settings
