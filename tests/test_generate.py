import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.generate import (
    empty_cache,
    forward_cached,
    generate,
    generate_by_recompute,
    generate_rows,
    prompt_bucket,
)

# float32 results are compared to tight tolerances: pin float32 matmuls (TF32 on GPUs otherwise)
pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")

TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50)


def random_model(**overrides) -> GPT:
    """Equinox's default initialisation: logits with a std of about 6 (GPT-2's gives 0.1), so
    sampling at temperature 5 is neither stuck nor uniform."""
    config = GPTConfig(**{**TINY, **overrides})
    return eqx.filter_jit(lambda key: GPT(config, key=key))(jax.random.key(0))


@pytest.fixture(scope="module")
def model() -> GPT:
    return random_model()


# a sequence with period 24 over 12 symbols: longer than block_size, and with repeated symbols,
# so predicting it takes the context, not just the last token
PERIOD = np.random.default_rng(0).integers(0, 12, 24)
STREAM = np.tile(PERIOD, 4)


@pytest.fixture(scope="module")
def periodic_model() -> GPT:
    """A model trained to continue STREAM: random models' greedy output soon repeats one token,
    this one's goes through the whole period, before and past block_size."""
    model = random_model(vocab_size=12, mlp="gelu", bias=True)
    x = jnp.asarray(np.stack([STREAM[s : s + 16] for s in range(24)]))
    y = jnp.asarray(np.stack([STREAM[s + 1 : s + 17] for s in range(24)]))
    optimizer = optax.adam(1e-2)

    @eqx.filter_jit
    def train(model):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss(params):
            logits = jax.vmap(eqx.combine(params, static))(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def step(carry, _):
            params, state = carry
            grads = jax.grad(loss)(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=150)
        return eqx.combine(params, static)

    return train(model)


def test_prompt_buckets():
    assert [prompt_bucket(n, 64) for n in (1, 16, 17, 32, 33, 64)] == [16, 16, 32, 32, 64, 64]
    assert prompt_bucket(20, 24) == 24  # never past block_size
    assert prompt_bucket(3, 8) == 8


@pytest.mark.parametrize("mlp, bias", [("swiglu", False), ("gelu", True)])
def test_cached_logits_of_each_step_match_a_full_forward(mlp, bias):
    model = random_model(mlp=mlp, bias=bias)
    tokens = np.random.default_rng(1).integers(0, 50, 16, dtype=np.int32)
    full = eqx.filter_jit(GPT.__call__)(model, tokens)  # row i: the logits after tokens[: i + 1]
    step = eqx.filter_jit(lambda m, idx, cache, pos: forward_cached(m, idx, cache, pos))
    logits = eqx.filter_jit(GPT.lm_head)
    # the prompt's 5 tokens padded to the 16 of its bucket, as the generator does
    padded = np.zeros(16, np.int32)
    padded[:5] = tokens[:5]
    x, cache = step(model, padded, empty_cache(model.config), jnp.int32(0))
    np.testing.assert_allclose(logits(model, x)[:5], full[:5], atol=1e-5, rtol=0)
    for pos in range(5, 16):
        x, cache = step(model, tokens[pos : pos + 1], cache, jnp.int32(pos))
        np.testing.assert_allclose(logits(model, x)[0], full[pos], atol=1e-5, rtol=0)


@pytest.mark.parametrize("prompt_len", [1, 5, 15, 16, 20])
def test_greedy_with_cache_equals_greedy_by_full_recompute(periodic_model, prompt_len):
    prompts = jnp.asarray(np.stack([STREAM[s : s + prompt_len] for s in (0, 7)]))
    out = generate(periodic_model, prompts, 30, temperature=0.0, key=jax.random.key(0))
    assert out.shape == (2, prompt_len + 30)  # block_size is 16: every run goes past it
    np.testing.assert_array_equal(out[:, :prompt_len], prompts)
    for prompt, row in zip(prompts, out):
        reference = generate_by_recompute(
            periodic_model, prompt, 30, temperature=0.0, key=jax.random.key(0)
        )
        np.testing.assert_array_equal(row, reference)
    # the model continues the period, so the comparison covered varied tokens
    np.testing.assert_array_equal(out[0], STREAM[: prompt_len + 30])


def test_short_generation_in_a_long_block():
    # 3 + 5 tokens in a block of 64: the program has no step past block_size at all
    model = random_model(block_size=64)
    prompt = jnp.array([7, 3, 9])
    out = generate(model, prompt[None], 5, temperature=5.0, key=jax.random.key(0))
    expected = generate_by_recompute(
        model, prompt, 5, 5.0, key=jax.random.split(jax.random.key(0), 1)[0]
    )
    np.testing.assert_array_equal(out[0], expected)


@pytest.mark.parametrize("top_k", [None, 5])
def test_sampling_draws_what_full_recompute_draws_with_the_same_keys(model, top_k):
    prompts = jax.random.randint(jax.random.key(2), (3, 6), 0, 50)
    keys = jax.random.split(jax.random.key(3), 3)
    out = generate_rows(model, prompts, 25, 5.0, top_k, keys)
    for prompt, row, key in zip(prompts, out, keys):
        np.testing.assert_array_equal(
            row, generate_by_recompute(model, prompt, 25, 5.0, top_k, key=key)
        )
    assert len(set(np.asarray(out[:, 6:]).ravel().tolist())) > 10  # sampled, not stuck
    # GPT.generate is the same generator for one prompt and its key
    np.testing.assert_array_equal(model.generate(prompts[0], 25, 5.0, top_k, key=keys[0]), out[0])


def test_rows_draw_independently_and_reproducibly(model):
    prompts = jnp.tile(jnp.array([[4, 8, 15]]), (4, 1))
    first = generate(model, prompts, 20, temperature=5.0, key=jax.random.key(0))
    again = generate(model, prompts, 20, temperature=5.0, key=jax.random.key(0))
    np.testing.assert_array_equal(first, again)
    assert len({tuple(row) for row in np.asarray(first).tolist()}) == 4
    greedy = generate(model, prompts, 20, temperature=0.0, key=jax.random.key(0))
    assert len({tuple(row) for row in np.asarray(greedy).tolist()}) == 1
    top_1 = generate(model, prompts, 20, temperature=5.0, top_k=1, key=jax.random.key(9))
    np.testing.assert_array_equal(top_1, greedy)


def test_compiles_once_per_shape_class(model, caplog):
    key = jax.random.key(0)

    def compiles(f) -> int:
        caplog.clear()
        with caplog.at_level(logging.WARNING), jax.log_compiles():
            jax.block_until_ready(f())
        return sum("Compiling jit(_decode)" in record.getMessage() for record in caplog.records)

    prompt = lambda n: jnp.ones((2, n), jnp.int32)
    assert compiles(lambda: generate(model, prompt(3), 12, 0.8, key=key)) == 1
    # other prompt lengths in the same bucket, other temperatures, other keys: no compilation
    assert compiles(lambda: generate(model, prompt(9), 12, 0.5, key=jax.random.key(1))) == 0
    assert compiles(lambda: generate(model, prompt(12), 12, 0.0, key=key)) == 0
    # a new number of new tokens is a new program
    assert compiles(lambda: generate(model, prompt(3), 13, 0.8, key=key)) == 1


def test_zero_new_tokens_and_invalid_arguments(model):
    prompts = jnp.array([[1, 2, 3]])
    key = jax.random.key(0)
    np.testing.assert_array_equal(generate(model, prompts, 0, key=key), prompts)
    with pytest.raises(ValueError, match=r"\(seq,\) or a batch \(batch, seq\), got shape \(1, 1, 3\)"):
        generate(model, prompts[None], 5, key=key)
    with pytest.raises(ValueError, match=r"got \(1, 0\)"):
        generate(model, jnp.zeros((1, 0), jnp.int32), 5, key=key)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0, got -1"):
        generate(model, prompts, -1, key=key)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, prompts, 5, temperature=-0.5, key=key)
    with pytest.raises(ValueError, match="top_k must be None or >= 1, got 0"):
        generate(model, prompts, 5, top_k=0, key=key)
