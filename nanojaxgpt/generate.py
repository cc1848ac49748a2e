"""Sampling with a key/value cache, compiled once per shape.

- `generate` extends a batch of equal-length prompts by `max_new_tokens` tokens in one compiled
  program per (batch size, max_new_tokens, prompt bucket, top_k): one pass over the prompt fills
  the cache, then `lax.while_loop` decodes one position per step. Temperature is an argument of
  the program, so changing it does not compile again.
- Prompts are padded up to a few lengths (16, 32, 64, ... up to block_size): causality makes the
  padding invisible, and new prompt lengths rarely compile again.
- Past block_size tokens the next token is conditioned on the last block_size tokens, as in
  nanoGPT. The positions of the whole window shift with every token, so no cached key or value
  stays valid: each step re-fills from the cropped window (one forward over block_size tokens,
  still inside the compiled loop).
- `generate_by_recompute` is nanoGPT's loop (the whole context again for every token, one token
  per call from Python): the reference the tests and the benchmark compare against
  (`python -m nanojaxgpt.bench --sampling=True`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.model import GPT

SMALLEST_BUCKET = 16


def prompt_bucket(length: int, block_size: int) -> int:
    """The padded prompt length: the next power of two from 16 up, at most block_size."""
    bucket = SMALLEST_BUCKET
    while bucket < length:
        bucket *= 2
    return min(bucket, block_size)


def empty_cache(config: GPTConfig, dtype=jnp.float32) -> tuple[Array, Array]:
    """Keys and values for every layer and position of one sequence, all zeros (unwritten
    positions are never attended to): (n_layer, n_head, block_size, head_size) each."""
    head_size = config.n_embd // config.n_head
    shape = (config.n_layer, config.n_head, config.block_size, head_size)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def forward_cached(model: GPT, idx: Int[Array, " seq"], cache, pos):
    """Hidden states of `idx`, tokens at positions `pos, pos+1, ...`, attending to the cached
    positions before them; returns `(x, cache)` with idx's keys and values written in."""
    x, (k, v) = model.transformer(idx, cache=cache, pos=pos)
    cache = tuple(jax.lax.dynamic_update_slice_in_dim(c, t, pos, 2) for c, t in zip(cache, (k, v)))
    return x, cache


def sample_next(logits: Float[Array, " vocab"], temperature, top_k: int | None, *, key):
    """A token drawn from `softmax(logits / temperature)`, restricted to the `top_k` most
    likely tokens when given; `temperature=0` takes the most likely token. `temperature` may be
    a traced value, so a new temperature does not compile again."""
    logits = logits.astype(jnp.float32)
    positive = temperature > 0
    scaled = logits / jnp.where(positive, temperature, 1.0)
    if top_k is not None:
        kth_largest = jax.lax.top_k(scaled, min(top_k, scaled.shape[-1]))[0][..., -1]
        scaled = jnp.where(scaled < kth_largest, -jnp.inf, scaled)
    return jnp.where(positive, jax.random.categorical(key, scaled), jnp.argmax(logits))


@eqx.filter_jit
def _decode(model: GPT, padded, length, temperature, step_keys, top_k):
    """The new tokens, (batch, new), after the first `length` tokens of each row of `padded`.
    `step_keys` (batch, new) gives each row's key for each step, and the program's shape."""
    batch, bucket = padded.shape
    n_new = step_keys.shape[1]
    block_size = model.config.block_size
    dtype = model.transformer.wte.weight.dtype
    rows = lambda f, *args: jax.vmap(f, in_axes=(None, *[0] * len(args)))(model, *args)
    # the caches keep the layer axis first, (n_layer, batch, ...): the layers' scan then slices
    # them in place, where a leading batch axis would have them transposed at every step
    cached_rows = lambda idx, cache, pos: jax.vmap(
        lambda idx, cache: forward_cached(model, idx, cache, pos), in_axes=(0, 1), out_axes=(0, 1)
    )(idx, cache)

    def sample(x, n):
        """Each row's token number `n` (counting the prompt) from its hidden state `x`."""
        logits = rows(lambda m, x: m.lm_head(x[None])[0], x)
        keys = step_keys[:, n - length]
        return jax.vmap(sample_next, in_axes=(0, None, None))(logits, temperature, top_k, key=keys)

    def put(tokens, token, n):
        return jax.lax.dynamic_update_slice_in_dim(
            tokens, token[:, None].astype(tokens.dtype), n, 1
        )

    # one pass over the prompt fills the cache and gives the first new token
    tokens = jnp.zeros((batch, bucket + n_new), jnp.int32).at[:, :bucket].set(padded)
    cache = jax.tree.map(
        lambda c: jnp.broadcast_to(c[:, None], (c.shape[0], batch, *c.shape[1:])),
        empty_cache(model.config, dtype),
    )
    x, cache = cached_rows(padded, cache, 0)
    tokens = put(tokens, sample(x[:, length - 1], length), length)

    # while the context fits in block_size: one position per step, its keys and values cached
    def cached_step(n, carry):
        tokens, cache = carry
        last = jax.lax.dynamic_slice_in_dim(tokens, n - 1, 1, axis=1)
        x, cache = cached_rows(last, cache, n - 1)
        return put(tokens, sample(x[:, 0], n), n), cache

    end = length + n_new
    tokens, _ = jax.lax.fori_loop(
        length + 1, jnp.minimum(block_size + 1, end), cached_step, (tokens, cache)
    )

    # past it: the last block_size tokens, re-filled at positions 0..block_size-1 every step
    def window_step(n, tokens):
        window = jax.lax.dynamic_slice_in_dim(tokens, n - block_size, block_size, axis=1)
        x = rows(lambda m, idx: m.transformer(idx)[0][-1], window)
        return put(tokens, sample(x, n), n)

    if bucket + n_new > block_size:  # else no prompt of this bucket gets past block_size
        start = jnp.maximum(block_size + 1, length + 1)
        tokens = jax.lax.fori_loop(start, end, window_step, tokens)
    return jax.lax.dynamic_slice_in_dim(tokens, length, n_new, axis=1)


def generate_rows(
    model: GPT,
    idx: Int[Array, "batch seq"],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    row_keys: PRNGKeyArray,
) -> Int[Array, "batch seq+new"]:
    """`generate` with one key per row: row `b` draws what `generate_by_recompute` draws for
    its prompt with key `row_keys[b]`."""
    idx = jnp.asarray(idx)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must have shape (batch, seq) with seq >= 1, got {idx.shape}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k!r}")
    if max_new_tokens == 0:
        return idx
    block_size = model.config.block_size
    context = idx[:, -block_size:]  # only the last block_size tokens are ever looked at
    length = context.shape[1]
    padded = jnp.zeros((idx.shape[0], prompt_bucket(length, block_size)), jnp.int32)
    padded = padded.at[:, :length].set(context)
    step_keys = jax.vmap(lambda k: jax.random.split(k, max_new_tokens))(row_keys)
    new = _decode(
        eqx.nn.inference_mode(model),
        padded,
        jnp.int32(length),
        jnp.float32(temperature),
        step_keys,
        top_k,
    )
    return jnp.concatenate([idx.astype(jnp.int32), new], axis=1)


def generate(
    model: GPT,
    idx: Int[Array, "*batch seq"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    *,
    key: PRNGKeyArray,
) -> Int[Array, "*batch seq+new"]:
    """Extend `idx` by `max_new_tokens` tokens drawn from `softmax(logits / temperature)`,
    restricted to the `top_k` most likely when given; `temperature=0` is greedy. Past
    block_size tokens each new token is conditioned on the last block_size, as in nanoGPT.

    `idx` is one sequence, as in nanoGPT's `model.generate(idx, ...)` (this function, attached
    to GPT), or a batch of equal-length prompts (for example `num_samples` copies of one), whose
    rows draw independently with `jax.random.split(key, batch)`."""
    one_sequence = jnp.ndim(idx) == 1
    if one_sequence:
        rows, row_keys = jnp.asarray(idx)[None], key[None]
    elif jnp.ndim(idx) == 2:
        rows, row_keys = idx, jax.random.split(key, jnp.shape(idx)[0])
    else:
        raise ValueError(
            f"idx must be one sequence (seq,) or a batch (batch, seq), got shape {jnp.shape(idx)}"
        )
    new = generate_rows(model, rows, max_new_tokens, temperature, top_k, row_keys)
    return new[0] if one_sequence else new


def generate_by_recompute(
    model: GPT,
    idx: Int[Array, " seq"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    *,
    key: PRNGKeyArray,
) -> Int[Array, " seq"]:
    """nanoGPT's loop: for each new token, the whole context (its last block_size tokens) is
    forwarded again and the token comes back to Python."""
    model = eqx.nn.inference_mode(model)
    block_size = model.config.block_size
    tokens = [int(t) for t in idx]
    for step_key in jax.random.split(key, max_new_tokens):
        context = tokens[-block_size:]
        padded = np.zeros(block_size, np.int32)
        padded[: len(context)] = context
        length = np.asarray(len(context), np.int32)
        tokens.append(int(_next_token(model, padded, length, temperature, top_k, step_key)))
    return jnp.array(tokens, dtype=jnp.int32)


@eqx.filter_jit
def _next_token(model: GPT, padded: Int[Array, " block"], length, temperature, top_k, key):
    """A token drawn after the first `length` tokens of a padded context: causality makes the
    padding invisible, and one fixed shape means one compilation for every length."""
    return sample_next(model(padded)[length - 1], temperature, top_k, key=key)
