"""The XLA compile error that keeps deterministic GPU runs in a scan, in one command, so that a new
jax can be re-tested:

    python scripts/xla_determinism_repro.py

With jax 0.11.2 (CUDA 13, an H200, 2026-11-26), asking XLA for deterministic ops
(`--xla_gpu_exclude_nondeterministic_ops=true`, or `--xla_gpu_deterministic_ops=true`) made the
gradient of two unrolled layers of cuDNN's attention fail to compile, inside XLA, with
`IndexError: absl::container_internal::raw_hash_map<>::at`; the same layers in a `lax.scan`
compiled. This script compiles the smallest such program with each flag, unrolled and scanned,
and prints one line for each: `compiles` or the error's first line. Exit 0 when every variant
compiles (then `LAYER_PLANS["gpu, deterministic"]` in nanojaxgpt/model.py can unroll), 1 when
one fails, 2 without a CUDA GPU. Each variant runs in a process of its own, as the flags must
be set before JAX starts.
"""

import os
import subprocess
import sys

FLAGS = ("--xla_gpu_exclude_nondeterministic_ops=true", "--xla_gpu_deterministic_ops=true")

PROGRAM = """
import sys
import jax, jax.numpy as jnp

def layer(x, w):
    q, k, v = (jnp.einsum("bsd,de->bse", x, w[i]).reshape(2, 128, 4, 64) for i in range(3))
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
    return x + y.reshape(2, 128, 256)

def loss(weights, x, unrolled):
    if unrolled:
        for w in weights:
            x = layer(x, w)
    else:
        x, _ = jax.lax.scan(lambda x, w: (layer(x, w), None), x, weights)
    return jnp.mean(x.astype(jnp.float32) ** 2)

weights = jax.random.normal(jax.random.key(0), (2, 3, 256, 256), jnp.bfloat16) * 0.02
x = jax.random.normal(jax.random.key(1), (2, 128, 256), jnp.bfloat16)
jax.jit(jax.grad(loss), static_argnums=2).lower(weights, x, sys.argv[1] == "unrolled").compile()
"""


def main() -> int:
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend(), jax.__version__)"],
                           capture_output=True, text=True)
    backend, _, version = probe.stdout.strip().partition(" ")
    if backend != "gpu":
        print(f"needs a CUDA GPU: JAX's backend here is {backend or probe.stderr.strip()[-200:]}")
        return 2
    failed = False
    for flag in FLAGS:
        for layers in ("unrolled", "scanned"):
            env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()}
            result = subprocess.run([sys.executable, "-c", PROGRAM, layers], env=env, capture_output=True,
                                    text=True)
            errors = [line for line in result.stderr.splitlines() if "Error" in line]
            outcome = "compiles" if result.returncode == 0 else (errors[-1] if errors else result.stderr[-300:])
            failed |= result.returncode != 0
            print(f"jax {version}, {flag}, {layers}: {outcome}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
