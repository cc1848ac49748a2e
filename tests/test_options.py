"""The modern recipe's model options (rotary, QK-norm, ReLU^2, untied head, soft-capped logits,
zero-initialised projections): off by default, each doing what it says, and sampling with the
key/value cache still equal to nanoGPT's full recompute with all of them on."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers.eqx import named_parameters
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.generate import generate, generate_by_recompute
from nanojaxgpt.model import MLP, MLPS, relu_squared, rms_norm, rotary, soft_cap

# float32 results are compared to tight tolerances: pin float32 matmuls (TF32 on GPUs otherwise)
pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")

SMALL = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50)
MODERN = dict(pos_emb="rotary", qk_norm=True, mlp="relu2", tied_head=False, logit_softcap=30.0)


def test_every_option_is_off_by_default():
    config = GPTConfig()
    assert (config.pos_emb, config.qk_norm, config.tied_head, config.logit_softcap,
            config.zero_init_proj) == ("learned", False, True, 0.0, False)


def test_rotary_scores_depend_on_the_distance_only():
    q, k = jax.random.normal(jax.random.key(0), (2, 1, 3, 8))
    score = lambda q_pos, k_pos: jnp.sum(rotary(q, jnp.array([q_pos])) * rotary(k, jnp.array([k_pos])), -1)
    np.testing.assert_allclose(score(7, 3), score(4, 0), rtol=1e-5)
    np.testing.assert_allclose(score(12, 12), jnp.sum(q * k, -1), rtol=1e-5)  # same position
    assert not np.allclose(score(7, 3), score(7, 5))
    np.testing.assert_array_equal(rotary(q, jnp.array([0])), q)  # position 0 turns nothing
    np.testing.assert_allclose(jnp.linalg.norm(rotary(q, jnp.array([9])), axis=-1),
                               jnp.linalg.norm(q, axis=-1), rtol=1e-5)


def test_qk_norm_gives_each_head_unit_rms():
    x = 5.0 * jax.random.normal(jax.random.key(1), (6, 4, 8))
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(rms_norm(x) ** 2, axis=-1)), 1.0, rtol=1e-4)


def test_soft_cap_bounds_the_logits_smoothly():
    logits = jnp.array([-1000.0, -3.0, 0.0, 3.0, 1000.0])
    np.testing.assert_allclose(soft_cap(logits, 30.0), 30.0 * np.tanh(np.asarray(logits) / 30.0), rtol=1e-6)
    assert soft_cap(logits, 0.0) is logits
    model = GPT(GPTConfig(**SMALL, logit_softcap=2.0), key=jax.random.key(0))
    logits = model(jnp.arange(16))
    assert 1.0 < float(jnp.abs(logits).max()) <= 2.0  # tanh reaches 2.0 in float32


def test_relu_squared_mlp_has_gpt2s_shape():
    config = GPTConfig(**SMALL, mlp="relu2")
    mlp = MLPS["relu2"](config, key=jax.random.key(0))
    assert isinstance(mlp, MLP) and mlp.activation is relu_squared
    assert mlp.c_fc.weight.shape == (4 * 32, 32)
    np.testing.assert_array_equal(relu_squared(jnp.array([-2.0, 0.5, 3.0])), [0.0, 0.25, 9.0])


def test_an_untied_head_is_a_matrix_of_its_own():
    tied = GPT.create_instance(GPTConfig(**SMALL), jax.random.key(0))
    untied = GPT.create_instance(GPTConfig(**SMALL, tied_head=False), jax.random.key(0))
    assert tied.head is None and untied.head.weight.shape == (50, 32)
    assert untied.get_num_params() == tied.get_num_params() + 50 * 32
    assert "head.weight" in dict(named_parameters(untied))
    x = jnp.arange(16)
    grads = eqx.filter_grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), x).mean())(untied)
    assert float(jnp.abs(grads.head.weight).sum()) > 0
    # the output no longer reads the token embedding matrix: only its 16 input rows get a gradient
    assert int((jnp.abs(grads.transformer.wte.weight).sum(-1) > 0).sum()) == 16


def test_zero_init_projections_start_every_block_as_the_identity():
    config = GPTConfig(**SMALL, tied_head=False, zero_init_proj=True)
    model = GPT.create_instance(config, jax.random.key(0))
    h = model.transformer.h
    for weight in (h.attn.c_proj.weight, h.mlp.c_proj.weight, model.head.weight):
        np.testing.assert_array_equal(weight, 0.0)
    np.testing.assert_array_equal(model(jnp.arange(16)), 0.0)  # uniform predictions to start
    assert 0.015 < float(jnp.std(h.attn.c_attn.weight)) < 0.025  # the rest as GPT-2's


def test_checkpointed_model_args_round_trip_every_option():
    config = GPTConfig(**SMALL, **MODERN, zero_init_proj=True)
    from dataclasses import asdict

    assert GPTConfig(**asdict(config)) == config


@pytest.mark.parametrize("temperature, top_k", [(0.0, None), (5.0, 5)])
def test_cached_generation_equals_full_recompute_with_every_option(temperature, top_k):
    model = eqx.filter_jit(lambda key: GPT(GPTConfig(**SMALL, **MODERN), key=key))(jax.random.key(0))
    prompt = jnp.array([3, 14, 15, 9, 2])
    key = jax.random.key(1)
    out = generate(model, prompt, 30, temperature, top_k, key=key)  # block_size 16: past it
    np.testing.assert_array_equal(out, generate_by_recompute(model, prompt, 30, temperature, top_k, key=key))
    assert len(set(np.asarray(out[5:]).tolist())) > 3
