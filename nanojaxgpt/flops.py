"""Peak FLOP/s of the device we run on, the denominator of MFU (model FLOPs utilisation).

Accelerators use their datasheet's dense bf16 figure; a CPU has no such figure that means
anything for one process, so we measure a large float32 matmul once and use that.
"""

import functools
import time

import jax
import jax.numpy as jnp

# dense bf16 peak FLOP/s per chip, matched against jax.Device.device_kind
PEAK_BF16_FLOPS = {
    "A100": 312e12,
    "H100": 989e12,
    "H200": 989e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
}


@functools.cache
def measured_matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of an n x n float32 matmul on the default device, best of `repeats`."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def device_peak_flops() -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    device = jax.devices()[0]
    for name, flops in PEAK_BF16_FLOPS.items():
        if name.lower() in device.device_kind.lower():
            return flops, f"{device.device_kind} bf16 datasheet"
    return measured_matmul_flops(), f"measured fp32 matmul on {device.device_kind}"
