import os
import platform
import subprocess
import sys

import pytest

# A compiled function with 128 MiB of temporaries (the matmul's result and its cumsum), called
# repeatedly: prints the median page faults of a call after the first (the heap may still grow
# once after that, when other allocations took its top).
FAULTS_PER_CALL = """
import resource, statistics, sys
import jax, jax.numpy as jnp
from nanojaxgpt.host_memory import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
f = jax.jit(lambda x: jnp.cumsum(x @ x.T, axis=0)[-1].sum())
x = jnp.ones((4096, 64))
f(x).block_until_ready()
faults = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults))
"""


def faults_per_call(mode: str) -> float:
    # XLA:CPU's allocations are what this is about, also where an accelerator is the default
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True,
                         text=True, check=True, env=env)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_kept_host_memory_is_not_faulted_in_again_on_every_call():
    # Without it, all 32,768 pages of the temporaries come back as fresh pages every call.
    assert faults_per_call("default") > 30_000
    assert faults_per_call("keep") < 100
