"""Will the training step fit in memory? Compiled ahead of time, before the first step, XLA's
memory analysis of the step says what it needs on each device; a run that cannot fit stops with
one line saying by how much and what to change, instead of failing later (or swapping)."""

import os
import warnings
from dataclasses import dataclass

import jax

from nanojaxgpt.errors import UsageError

FIX = ("lower batch_size and raise gradient_accumulation_steps (the same tokens per iteration), "
       "use --dtype=bfloat16, or --fsdp=True over more devices")


@dataclass(frozen=True)
class StepMemory:
    """Bytes the compiled step needs on each device: its arguments and results that live at
    once (parameters, optimizer state, batch; donated buffers counted once) and its
    temporaries (activations kept for the backward pass, gradients, workspace)."""

    state: int
    temporaries: int

    @property
    def total(self) -> int:
        return self.state + self.temporaries


def step_memory(compiled: jax.stages.Compiled) -> StepMemory:
    stats = compiled.memory_analysis()
    state = stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
    return StepMemory(state, stats.temp_size_in_bytes + stats.generated_code_size_in_bytes)


def device_memory() -> tuple[int, str]:
    """(bytes one device can hold, what that figure is): an accelerator's own limit, or on a
    CPU the host memory available now."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"], f"{device.device_kind} memory"
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        return available, "host memory available"
    except (OSError, StopIteration):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "host memory"


def size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def compile_step(step, *args):
    """`step` (an `eqx.filter_jit` function) compiled for `args`, and a line saying what it
    needs; a UsageError if that is more than a device has."""
    with warnings.catch_warnings():  # as eqx.filter_jit does: the int batches are donated too
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        compiled = step.lower(*args).compile()
    needed = step_memory(compiled.compiled)
    limit, source = device_memory()
    if needed.total > limit:
        raise UsageError(
            f"the training step needs about {size(needed.total)} per device (temporaries "
            f"{size(needed.temporaries)}), more than the {size(limit)} of {source}: {FIX}"
        )
    return compiled, (f"memory: the training step needs {size(needed.total)} per device "
                      f"(parameters, optimizer state and batch {size(needed.state)}, temporaries "
                      f"{size(needed.temporaries)}) of {size(limit)} ({source})")
