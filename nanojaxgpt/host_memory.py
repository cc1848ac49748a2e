"""`keep_freed_host_memory()`: let XLA:CPU reuse host memory from one training step to the next.

Why: every call of a compiled function allocates its temporary buffer afresh and frees it at
the end (baby GPT's training step: 342 MiB). glibc's malloc serves an allocation over 32 MiB with
a new `mmap` and unmaps it on free, so each step faults every page of it back in, zeroed by the
kernel: 93,000 page faults a step of baby GPT (configs/train_shakespeare_char.py, batch 8), whose
step then takes 1.43 s instead of 1.29 s on a 2-core CPU. Two changes keep the memory: malloc
without mmap and without trimming (the heap keeps what is freed), and JAX's CPU computations on
the calling thread, whose heap (glibc's main arena) is the only one that can grow past 64 MiB
without mmap.

`python -m nanojaxgpt.train` and `nanojaxgpt.bench` call it first thing. In a notebook, call it
before the first JAX computation: JAX reads the dispatch setting when it starts its CPU backend.
The cost: the process keeps its peak host memory until it exits, as GPU memory allocators do.
Only glibc (Linux) has these knobs; elsewhere this does nothing.
"""

import ctypes

import jax

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4


def keep_freed_host_memory() -> bool:
    """Set glibc's malloc to keep freed memory and JAX's CPU backend to run computations on the
    calling thread. Returns False where there is no glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True
