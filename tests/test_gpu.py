"""Where a GPU is JAX's default device: its plan (nanojaxgpt.model.LAYER_PLANS: cuDNN's flash
attention, every activation kept) computes what the CPU's plan computes (attention in query
blocks, recomputation), within bf16 rounding, on the same GPU. The tests run with XLA's
deterministic ops (tests/conftest.py), so the layers stay in a scan; `scripts/gpu_check.sh`
times and checks the unrolled plan of `--deterministic=False`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt import model as model_module
from nanojaxgpt.generate import empty_cache, forward_cached
from nanojaxgpt.precision import cast_floats
from nanojaxgpt.train import compute_loss

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "gpu", reason="the GPU's plan (cuDNN attention) needs a GPU"
)

# head size 64 as GPT-2's; 300 positions cross two of the CPU plan's query blocks
CONFIG = GPTConfig(n_layer=2, n_head=2, n_embd=128, block_size=300, vocab_size=100, bias=True)


@pytest.fixture
def cpu_plan_on_gpu(monkeypatch):
    """Within the test, the GPU runs the CPU's plan: the reference."""
    def use():
        monkeypatch.setattr(model_module, "layer_plan", lambda: model_module.LAYER_PLANS["cpu"])
    return use


def relative_error(got, expected) -> float:
    got, expected = (np.asarray(a, np.float32) for a in (got, expected))
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def test_gpu_plan_uses_flash_attention_and_keeps_the_scan_for_deterministic_ops():
    plan = model_module.layer_plan()
    assert plan == model_module.LAYER_PLANS["gpu, deterministic"]  # tests/conftest.py asks for them
    assert plan.flash_attention and plan.scan_unroll == 1
    model = cast_floats(GPT.create_instance(CONFIG, jax.random.key(0)), jnp.bfloat16)
    hlo = eqx.filter_jit(GPT.__call__).lower(model, jnp.arange(64)).as_text()
    assert "fmha" in hlo  # the custom call of cuDNN's fused attention


def test_training_loss_and_gradients_match_the_cpu_plan(cpu_plan_on_gpu):
    model = GPT.create_instance(CONFIG, jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (4, 300), 0, 100)
    y = jnp.roll(x, -1, axis=1)

    def loss_and_grads():  # traced afresh, under the plan in force
        loss = lambda m: compute_loss(m, x, y, None, jnp.bfloat16)
        return eqx.filter_jit(eqx.filter_value_and_grad(loss))(model)

    loss, grads = loss_and_grads()
    cpu_plan_on_gpu()
    ref_loss, ref_grads = loss_and_grads()
    assert abs(float(loss) - float(ref_loss)) < 1e-2 * float(ref_loss)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    ref_leaves = jax.tree.leaves(eqx.filter(ref_grads, eqx.is_inexact_array))
    for got, expected in zip(leaves, ref_leaves):
        assert relative_error(got, expected) < 3e-2


def test_decoding_with_the_cache_matches_a_full_forward_and_the_cpu_plan(cpu_plan_on_gpu):
    model = cast_floats(GPT.create_instance(CONFIG, jax.random.key(0)), jnp.bfloat16)
    tokens = np.random.default_rng(1).integers(0, 100, 40, dtype=np.int32)

    def cached_logits():
        """The logits of a 5-token prompt padded to 16, then of one token at a time."""
        step = eqx.filter_jit(lambda m, idx, cache, pos: forward_cached(m, idx, cache, pos))
        padded = np.zeros(16, np.int32)
        padded[:5] = tokens[:5]
        x, cache = step(model, padded, empty_cache(model.config, jnp.bfloat16), jnp.int32(0))
        rows = [model.lm_head(x)[:5]]
        for pos in range(5, 40):
            x, cache = step(model, tokens[pos : pos + 1], cache, jnp.int32(pos))
            rows.append(model.lm_head(x))
        return jnp.concatenate(rows)

    full = eqx.filter_jit(GPT.__call__)(model, tokens)
    flash = cached_logits()
    assert relative_error(flash, full) < 2e-2
    cpu_plan_on_gpu()
    assert relative_error(flash, cached_logits()) < 2e-2
