"""The GPT language model, in Equinox.

Notable choices:
- Every module acts on one sequence (`idx: Int[Array, "seq"]`); batches come from `jax.vmap`.
- The `n_layer` blocks are one `Block` whose arrays carry a leading layer axis, run under
  `lax.scan`: compile time stays flat in depth. So `transformer.h.attn.c_proj.weight` has shape
  (n_layer, n_embd, n_embd).
- Linear layers run through `dense` (nanojaxgpt/dense.py): under `jax.vmap` each is one flat
  (batch*seq, in) matmul, forward and backward, instead of a batched one XLA:CPU runs slowly.
- How the blocks run depends on the device, not on the model (`LAYER_PLANS`, measured on each):
  on a CPU the layers are a `lax.scan`, causal attention runs in blocks of QUERY_BLOCK queries
  that skip the fully masked blocks, and the backward pass keeps each block's Linear and
  attention outputs and recomputes the rest (no (seq, seq) attention matrix is stored); on a
  CUDA GPU bf16/fp16 attention is cuDNN's fused (flash) attention, the backward pass keeps
  everything, and the scan is unrolled unless XLA's deterministic ops are on.
- The MLP is SwiGLU by default, sized to the parameter count of GPT-2's 4*n_embd GELU MLP;
  `mlp="gelu"` is GPT-2's own MLP (tanh GELU), needed to load its weights, and
  `mlp="gelu_exact"` nanoGPT's (erf GELU), needed to continue a network nanoGPT trained.
- The output projection is the token embedding matrix itself (weight tying): one array, one
  gradient that sums both uses.
- The modern recipe's options (rotary embeddings, QK-norm, ReLU^2, an untied head, soft-capped
  logits, zero-initialised projections) are off by default; each is chosen once, at
  construction, from a table (`MLPS`, `QK_NORMS`, `ROTATIONS`, `gpt2_initialisation`) or by one
  field (`TransformerLayer.wpe`, `GPT.head`).
"""

import math
from dataclasses import dataclass
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Float, Int, PRNGKeyArray

from helpers.eqx import named_parameters
from helpers.init import normal_, zeros_
from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.dense import dense
from nanojaxgpt.determinism import deterministic_ops_requested
from nanojaxgpt.optim import adamw


def _split(key: PRNGKeyArray | None, n: int) -> list:
    """`n` keys from `key`, or `n` Nones when there is no key (inference, or no dropout)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def _sequence(layer, x: Array) -> Array:
    """Apply a per-position layer (LayerNorm) to every position of a sequence."""
    return jax.vmap(layer)(x)


def _linear(linear: eqx.nn.Linear, x: Float[Array, "seq in"]) -> Float[Array, "seq out"]:
    """Apply `linear` to every position of a sequence, as one matmul (see nanojaxgpt/dense.py).
    The backward pass keeps the result (see `SAVED_FOR_BACKWARD`)."""
    y = dense(x, linear.weight)
    y = y if linear.bias is None else y + linear.bias
    return checkpoint_name(y, "linear")


class SwiGLU(eqx.Module):
    """Swish(xW) * xV followed by a down projection (Shazeer 2020, "GLU Variants Improve
    Transformer"). W and V are fused into `c_fc`; the hidden size 8*n_embd/3 gives the
    parameter count of the 4*n_embd GELU MLP."""

    c_fc: eqx.nn.Linear
    c_proj: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: "GPTConfig", *, key: PRNGKeyArray):
        fc_key, proj_key = jax.random.split(key)
        hidden = swiglu_hidden_size(config.n_embd)
        self.c_fc = eqx.nn.Linear(config.n_embd, 2 * hidden, use_bias=config.bias, key=fc_key)
        self.c_proj = eqx.nn.Linear(hidden, config.n_embd, use_bias=config.bias, key=proj_key)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def __call__(self, x: Float[Array, "seq embd"], *, key=None) -> Float[Array, "seq embd"]:
        gate, value = jnp.split(_linear(self.c_fc, x), 2, axis=-1)
        return self.dropout(_linear(self.c_proj, jax.nn.silu(gate) * value), key=key)


def gelu(x: Array) -> Array:
    """GPT-2's activation: the tanh approximation of GELU."""
    return jax.nn.gelu(x, approximate=True)


def exact_gelu(x: Array) -> Array:
    """GELU with the Gaussian CDF computed exactly (erf): nanoGPT's `nn.GELU()`, so that a network
    nanoGPT trained computes here what it computed there (the tanh form differs by up to ~1e-3)."""
    return jax.nn.gelu(x, approximate=False)


def relu_squared(x: Array) -> Array:
    """ReLU(x)^2 (So et al. 2021, "Primer"), the modded-nanogpt speedrun's activation."""
    return jnp.square(jax.nn.relu(x))


class MLP(eqx.Module):
    """GPT-2's MLP: 4*n_embd hidden units, by default with GPT-2's GELU."""

    c_fc: eqx.nn.Linear
    c_proj: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    activation: Callable = eqx.field(static=True)

    def __init__(self, config: "GPTConfig", activation: Callable = gelu, *, key: PRNGKeyArray):
        fc_key, proj_key = jax.random.split(key)
        hidden = 4 * config.n_embd
        self.c_fc = eqx.nn.Linear(config.n_embd, hidden, use_bias=config.bias, key=fc_key)
        self.c_proj = eqx.nn.Linear(hidden, config.n_embd, use_bias=config.bias, key=proj_key)
        self.dropout = eqx.nn.Dropout(config.dropout)
        self.activation = activation

    def __call__(self, x: Float[Array, "seq embd"], *, key=None) -> Float[Array, "seq embd"]:
        hidden = self.activation(_linear(self.c_fc, x))
        return self.dropout(_linear(self.c_proj, hidden), key=key)


# the MLP of each `GPTConfig.mlp` (its names: architecture.MLP_CHOICES)
MLPS = {
    "swiglu": SwiGLU,
    "gelu": MLP,
    "gelu_exact": lambda config, *, key: MLP(config, exact_gelu, key=key),
    "relu2": lambda config, *, key: MLP(config, relu_squared, key=key),
}


def no_norm(x: Float[Array, "seq head dim"]) -> Float[Array, "seq head dim"]:
    return x


def rms_norm(x: Float[Array, "seq head dim"]) -> Float[Array, "seq head dim"]:
    """Each head's vector divided by its root mean square (no gain): QK-norm keeps the
    attention logits bounded, so higher learning rates stay stable."""
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)).astype(x.dtype)


def no_rotation(x: Float[Array, "seq head dim"], positions: Int[Array, " seq"]) -> Float[Array, "seq head dim"]:
    return x


def rotary(x: Float[Array, "seq head dim"], positions: Int[Array, " seq"]) -> Float[Array, "seq head dim"]:
    """Rotary position embedding (Su et al. 2021, "RoFormer"): each pair (x_i, x_{i+dim/2})
    turned by the angle position * 10000^(-2i/dim), so that a query-key product depends on
    their distance. Applied to queries and keys before the cache stores them."""
    half = x.shape[-1] // 2
    frequencies = 10000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[:, None].astype(jnp.float32) * frequencies  # (seq, half)
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


# how queries and keys are treated before attention, per `GPTConfig.qk_norm` and `pos_emb`
QK_NORMS = {False: no_norm, True: rms_norm}
ROTATIONS = {"learned": no_rotation, "rotary": rotary}


# What the backward pass keeps of each block's forward on a CPU: the outputs of its Linear layers
# and of attention. The rest (LayerNorms, activation functions, attention's scores and softmax)
# it recomputes from them, so the (seq, seq) attention matrices are never stored, as with
# PyTorch's flash attention. Baby GPT (configs/train_shakespeare_char.py, batch 8): 1.30 s a
# training step and 342 MiB of temporary memory, against 1.26 s and 767 MiB keeping everything
# and 1.53 s and 178 MiB recomputing the whole block (2-core CPU, nanojaxgpt/host_memory.py on).
SAVED_FOR_BACKWARD = jax.checkpoint_policies.save_only_these_names("linear", "attention")

QUERY_BLOCK = 128  # queries per block of causal attention in training (see CausalSelfAttention)


@dataclass(frozen=True)
class LayerPlan:
    """How the blocks run on one kind of device. It changes speed and memory, never the
    function computed, so checkpoints do not record it."""

    scan_unroll: int | bool  # layers per iteration of the layers' lax.scan; True: all of them
    saved_for_backward: Callable  # jax.checkpoint policy: what the backward pass keeps
    flash_attention: bool  # cuDNN's fused attention for bf16/fp16 (CUDA GPUs only)


# Measured per device (README, "Speed" and "GPU"): on XLA:CPU the scan keeps compile time flat
# in depth and the recomputation pays for itself; on an H200 unrolling the layers, cuDNN's flash
# attention and keeping every activation make a GPT-2 124M step 28.2 ms against 61.8 ms with
# the CPU's plan. With XLA's deterministic ops (nanojaxgpt/determinism.py), jax 0.11 fails to
# compile cuDNN's attention backward in unrolled layers (IndexError inside XLA, whichever of
# its determinism flags), so deterministic GPU runs keep the scan: 45.8 ms.
LAYER_PLANS = {
    "cpu": LayerPlan(scan_unroll=1, saved_for_backward=SAVED_FOR_BACKWARD, flash_attention=False),
    "gpu": LayerPlan(scan_unroll=True, saved_for_backward=jax.checkpoint_policies.everything_saveable,
                     flash_attention=True),
    "gpu, deterministic": LayerPlan(scan_unroll=1,
                                    saved_for_backward=jax.checkpoint_policies.everything_saveable,
                                    flash_attention=True),
}


def layer_plan() -> LayerPlan:
    """The plan of the device that computations are placed on: `jax.default_device` if set
    (sampling with --device=cpu on a GPU machine), else JAX's default backend."""
    device = jax.config.jax_default_device
    platform = jax.default_backend() if device is None else getattr(device, "platform", device)
    if platform == "gpu" and deterministic_ops_requested():
        platform = "gpu, deterministic"
    return LAYER_PLANS.get(platform, LAYER_PLANS["cpu"])


def flash_attention(q, k, v, mask=None) -> Float[Array, "q head dim"]:
    """cuDNN's fused attention of queries q (q, head, dim) over keys and values k, v
    (keys, head, dim): causal when `mask` is None, else where `mask` (q, keys) is True. The mask
    is given for every head: under `jax.vmap`, jax 0.11's batching rule for cuDNN attention
    reshapes it to (batch, head, q, keys) and fails on one shared by the heads."""
    if mask is None:
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
    mask = jnp.broadcast_to(mask, (q.shape[1], *mask.shape))[None]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")


class CausalSelfAttention(eqx.Module):
    c_attn: eqx.nn.Linear
    c_proj: eqx.nn.Linear
    attn_dropout: eqx.nn.Dropout
    resid_dropout: eqx.nn.Dropout
    n_head: int = eqx.field(static=True)
    qk_norm: Callable = eqx.field(static=True)  # no_norm or rms_norm, per head
    rotate: Callable = eqx.field(static=True)  # no_rotation or rotary, by position

    def __init__(self, config: "GPTConfig", *, key: PRNGKeyArray):
        attn_key, proj_key = jax.random.split(key)
        n_embd = config.n_embd
        self.c_attn = eqx.nn.Linear(n_embd, 3 * n_embd, use_bias=config.bias, key=attn_key)
        self.c_proj = eqx.nn.Linear(n_embd, n_embd, use_bias=config.bias, key=proj_key)
        self.attn_dropout = eqx.nn.Dropout(config.dropout)
        self.resid_dropout = eqx.nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.qk_norm = QK_NORMS[config.qk_norm]
        self.rotate = ROTATIONS[config.pos_emb]

    def __call__(self, x: Float[Array, "seq embd"], positions: Int[Array, " seq"], *, key=None,
                 cache=None):
        """Causal self-attention over `x`, whose rows sit at `positions` (consecutive), and x's
        keys and values, each (n_head, seq, head_size), for the caller to store: `(y, (k, v))`.
        Without `cache`, x is a whole sequence from position 0. For decoding with a key/value
        cache (nanojaxgpt/generate.py), `cache` holds the keys and values of every position,
        each (n_head, block_size, head_size), and x attends to it up to its own positions, its
        own keys and values written in."""
        seq, n_embd = x.shape
        head_size = n_embd // self.n_head
        attn_key, resid_key = _split(key, 2)
        q, k, v = jnp.split(_linear(self.c_attn, x), 3, axis=-1)
        q, k, v = (t.reshape(seq, self.n_head, head_size) for t in (q, k, v))
        q, k = (self.rotate(self.qk_norm(t), positions) for t in (q, k))
        new_kv = (k.swapaxes(0, 1), v.swapaxes(0, 1))
        flash = self.takes_flash_attention(q, attn_key)
        if cache is not None:
            k, v = (jax.lax.dynamic_update_slice_in_dim(c, t, positions[0], 1) for c, t in zip(cache, new_kv))
            if flash:
                causal = jnp.arange(k.shape[1]) <= positions[:, None]
                y = flash_attention(q, k.swapaxes(0, 1), v.swapaxes(0, 1), causal)
            else:
                y = self.attend(q.swapaxes(0, 1), k, v, positions, key=attn_key)
        elif flash:
            y = flash_attention(q, k, v)
        else:
            # Queries in blocks of QUERY_BLOCK, each block against the keys up to its last
            # position, so the score blocks above the diagonal, all masked, are never computed:
            # forward and backward twice as fast at block_size 256 on XLA:CPU.
            q, k, v = (t.swapaxes(0, 1) for t in (q, k, v))
            starts = range(0, seq, QUERY_BLOCK)
            block_keys = _split(attn_key, len(starts))
            y = jnp.concatenate([
                self.attend(q[:, s : s + QUERY_BLOCK], k[:, : s + QUERY_BLOCK],
                            v[:, : s + QUERY_BLOCK], jnp.arange(s, min(s + QUERY_BLOCK, seq)),
                            key=block_key)
                for s, block_key in zip(starts, block_keys)
            ])
        y = checkpoint_name(y.reshape(seq, n_embd), "attention")
        return self.resid_dropout(_linear(self.c_proj, y), key=resid_key), new_kv

    def takes_flash_attention(self, q: Float[Array, "seq head dim"], key) -> bool:
        """Whether cuDNN's flash attention runs: where the layer plan has it, in bf16 or fp16,
        for head sizes cuDNN takes, and without attention dropout (it has none)."""
        dropout_off = self.attn_dropout.inference or self.attn_dropout.p == 0 or key is None
        head_size = q.shape[-1]
        return (layer_plan().flash_attention and dropout_off and head_size % 8 == 0
                and head_size <= 128 and q.dtype in (jnp.bfloat16, jnp.float16))

    def attend(self, q, k, v, q_pos: Int[Array, " q"], *, key=None) -> Float[Array, "q head dim"]:
        """Softmax attention of queries q (head, q, dim) at positions `q_pos` over keys and
        values k, v (head, keys, dim) at positions 0, 1, ...: each query sees the keys at or
        before its own position."""
        scores = jnp.einsum("hqd,hkd->hqk", q, k) / math.sqrt(q.shape[-1])
        causal = jnp.arange(k.shape[1]) <= q_pos[:, None]
        scores = jnp.where(causal, scores, -jnp.inf)
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
        weights = self.attn_dropout(weights, key=key)
        return jnp.einsum("hqk,hkd->qhd", weights, v)


class Block(eqx.Module):
    ln_1: eqx.nn.LayerNorm
    attn: CausalSelfAttention
    ln_2: eqx.nn.LayerNorm
    mlp: MLP | SwiGLU

    def __init__(self, config: "GPTConfig", *, key: PRNGKeyArray):
        attn_key, mlp_key = jax.random.split(key)
        self.ln_1 = eqx.nn.LayerNorm(config.n_embd, use_bias=config.bias)
        self.attn = CausalSelfAttention(config, key=attn_key)
        self.ln_2 = eqx.nn.LayerNorm(config.n_embd, use_bias=config.bias)
        self.mlp = MLPS[config.mlp](config, key=mlp_key)

    def __call__(self, x: Float[Array, "seq embd"], positions: Int[Array, " seq"], *, key=None,
                 cache=None):
        """`(x, (k, v))`, with `positions`, `cache` and the keys and values as in
        `CausalSelfAttention`."""
        attn_key, mlp_key = _split(key, 2)
        y, new_kv = self.attn(_sequence(self.ln_1, x), positions, key=attn_key, cache=cache)
        x = x + y
        x = x + self.mlp(_sequence(self.ln_2, x), key=mlp_key)
        return x, new_kv


def swiglu_hidden_size(n_embd: int) -> int:
    """Hidden width of the SwiGLU MLP: its three matrices then hold as many parameters as the
    two of a 4*n_embd MLP (3*h*n = 8*n*n)."""
    return round(8 * n_embd / 3)


class TransformerLayer(eqx.Module):
    wte: eqx.nn.Embedding
    wpe: eqx.nn.Embedding | None  # None with rotary position embeddings
    drop: eqx.nn.Dropout
    h: Block  # n_layer blocks stacked along a leading axis
    ln_f: eqx.nn.LayerNorm

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        wte_key, wpe_key, blocks_key = jax.random.split(key, 3)
        self.wte = eqx.nn.Embedding(config.vocab_size, config.n_embd, key=wte_key)
        learned = config.pos_emb == "learned"
        self.wpe = eqx.nn.Embedding(config.block_size, config.n_embd, key=wpe_key) if learned else None
        self.drop = eqx.nn.Dropout(config.dropout)
        make_block = lambda k: Block(config, key=k)
        self.h = eqx.filter_vmap(make_block)(jax.random.split(blocks_key, config.n_layer))
        self.ln_f = eqx.nn.LayerNorm(config.n_embd, use_bias=config.bias)

    def __call__(self, idx: Int[Array, " seq"], *, key=None, cache=None, pos=0):
        """`(x, (k, v))`: the final hidden states of `idx`, tokens at positions `pos, pos+1, ...`,
        and their keys and values in every layer, (n_layer, n_head, seq, head_size) each. `cache`
        as in `CausalSelfAttention`, stacked over layers, (n_layer, n_head, block_size,
        head_size) each."""
        drop_key, blocks_key = _split(key, 2)
        positions = pos + jnp.arange(idx.shape[0])
        x = self.wte.weight[idx]
        if self.wpe is not None:
            x = x + jax.lax.dynamic_slice_in_dim(self.wpe.weight, pos, idx.shape[0])
        x = self.drop(x, key=drop_key)

        block_arrays, block_static = eqx.partition(self.h, eqx.is_array)
        n_layer = jax.tree.leaves(block_arrays)[0].shape[0]
        block_keys = None if blocks_key is None else jax.random.split(blocks_key, n_layer)

        def apply_block(x, layer):
            arrays, layer_key, layer_cache = layer
            return eqx.combine(arrays, block_static)(x, positions, key=layer_key, cache=layer_cache)

        # Inside a scan, common subexpressions cannot be merged across iterations, so
        # checkpoint's guard against that is not needed (where the plan unrolls the scan, it
        # also keeps everything: nothing is recomputed).
        plan = layer_plan()
        apply_block = jax.checkpoint(apply_block, prevent_cse=False, policy=plan.saved_for_backward)
        x, new_kv = jax.lax.scan(apply_block, x, (block_arrays, block_keys, cache),
                                 unroll=plan.scan_unroll)
        return _sequence(self.ln_f, x), new_kv


def _modules(model, kind) -> list:
    return [x for x in jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, kind)) if isinstance(x, kind)]


def gpt2_initialisation(config: GPTConfig) -> list[tuple[Callable, Callable]]:
    """GPT-2's initialisation as (which parameters, how each is drawn), the groups disjoint:
    Linear and Embedding weights N(0, 0.02); the residual projections, the last Linear of
    attention and of the MLP, N(0, 0.02/sqrt(2*n_layer)) so that the residual stream's variance
    does not grow with depth; Linear biases zero. LayerNorms keep weight 1 and bias 0. With
    `zero_init_proj` the residual projections and an untied head start at zero instead (the
    modded-nanogpt speedrun): each block starts as the identity."""

    def residual(m):
        projections = [m.transformer.h.attn.c_proj.weight, m.transformer.h.mlp.c_proj.weight]
        zeroed_head = [m.head.weight] if config.zero_init_proj and m.head is not None else []
        return projections + zeroed_head

    def weights(m):
        excluded = residual(m)
        modules = _modules(m, (eqx.nn.Linear, eqx.nn.Embedding))
        return [module.weight for module in modules if not any(module.weight is r for r in excluded)]

    biases = lambda m: [linear.bias for linear in _modules(m, eqx.nn.Linear) if linear.bias is not None]
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    residual_init = lambda p, key: zeros_(p) if config.zero_init_proj else normal_(p, std=residual_std, key=key)
    return [
        (weights, lambda p, key: normal_(p, std=0.02, key=key)),
        (residual, residual_init),
        (biases, lambda p, key: zeros_(p)),
    ]


def soft_cap(logits: Float[Array, "seq vocab"], cap: float) -> Float[Array, "seq vocab"]:
    """`cap * tanh(logits / cap)` in float32 (Gemma 2; the modded-nanogpt speedrun): logits
    stay within (-cap, cap), smoothly. `cap=0` leaves them as they are."""
    return logits if cap == 0 else cap * jnp.tanh(logits.astype(jnp.float32) / cap)


class GPT(eqx.Module):
    """The language model. nanoGPT's entry points `GPT.from_pretrained` (nanojaxgpt/hf.py) and
    `model.generate` (nanojaxgpt/generate.py) are attached by the package's `__init__.py`, above
    the modules that implement them: this module imports neither."""

    transformer: TransformerLayer
    head: eqx.nn.Linear | None  # the untied output head; None: the token embedding matrix
    config: GPTConfig  # a hashable leaf: filter_jit treats it as static, tree_at can replace it

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        """Equinox's default initialisation; `GPT.create_instance` gives GPT-2's."""
        self.config = config
        self.transformer = TransformerLayer(config, key=key)
        self.head = None if config.tied_head else eqx.nn.Linear(
            config.n_embd, config.vocab_size, use_bias=False, key=jax.random.fold_in(key, 1))

    @classmethod
    def create_instance(cls, config: GPTConfig, key: PRNGKeyArray) -> "GPT":
        """A new model with GPT-2's initialisation (`gpt2_initialisation`), each array drawn
        with a key of its own."""
        model_key, init_key = jax.random.split(key)
        model = cls(config, key=model_key)
        params = [param for _, param in named_parameters(model)]
        param_keys = {id(p): k for p, k in zip(params, jax.random.split(init_key, len(params)))}
        for where, init in gpt2_initialisation(config):
            values = [init(param, key=param_keys[id(param)]) for param in where(model)]
            model = eqx.tree_at(where, model, values)
        return model

    def __call__(self, idx: Int[Array, " seq"], *, key=None) -> Float[Array, "seq vocab"]:
        if idx.ndim != 1:
            raise ValueError(
                f"the model takes one sequence of token ids, shape (seq,), not shape {idx.shape}: "
                f"for a batch, jax.vmap(model)(idx)"
            )
        if idx.shape[0] > self.config.block_size:
            raise ValueError(
                f"Cannot forward a sequence of length {idx.shape[0]}: block_size is only "
                f"{self.config.block_size}"
            )
        x, _ = self.transformer(idx, key=key)
        return self.lm_head(x)

    def lm_head(self, x: Float[Array, "seq embd"]) -> Float[Array, "seq vocab"]:
        """The output projection: the token embedding matrix itself (GPT-2's weight tying) or,
        with `tied_head=False`, a matrix of its own; then the soft cap, if any."""
        weight = self.transformer.wte.weight if self.head is None else self.head.weight
        return soft_cap(dense(x, weight), self.config.logit_softcap)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position embeddings are left out by default, as in nanoGPT
        (the token embeddings stay in: they are also the output layer)."""
        n_params = sum(p.size for _, p in named_parameters(self))
        if non_embedding and self.transformer.wpe is not None:
            n_params -= self.transformer.wpe.weight.size
        return n_params

    def crop_block_size(self, block_size: int) -> "GPT":
        """A copy that accepts at most `block_size` tokens, for example to fine-tune GPT-2
        (block 1024) with a shorter context."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(
                f"block_size={block_size} must be in [1, {self.config.block_size}], "
                f"the model's current block_size"
            )
        config = GPTConfig(**{**self.config.__dict__, "block_size": block_size})
        if self.transformer.wpe is None:  # rotary embeddings hold no table to crop
            return eqx.tree_at(lambda m: m.config, self, config)
        wpe = self.transformer.wpe.weight[:block_size]
        return eqx.tree_at(lambda m: (m.transformer.wpe.weight, m.config), self, (wpe, config))

    def configure_optimizers(self, weight_decay: float, learning_rate, betas: tuple[float, float]):
        """nanoGPT's name for the optimizer (nanojaxgpt/optim.py): AdamW that decays the weight
        matrices and embeddings but not biases or LayerNorm gains. Use it on
        `eqx.filter(model, eqx.is_inexact_array)`."""
        return adamw(self, weight_decay, learning_rate, betas)

    def estimate_mfu(self, fwdbwd_per_iter: int, dt: float, peak_flops: float = 312e12) -> float:
        """Model FLOPs utilisation: achieved FLOP/s over `peak_flops` (default: A100 bf16)."""
        flops_per_iter = flops_per_token(self.config, self.get_num_params())
        flops_per_iter *= self.config.block_size * fwdbwd_per_iter
        return flops_per_iter / dt / peak_flops


def flops_per_token(config: GPTConfig, num_params: int) -> int:
    """Forward plus backward FLOPs per token (PaLM appendix B): 6N for the matmuls with the
    weights and 12*L*H*Q*T for attention."""
    head_size = config.n_embd // config.n_head
    return 6 * num_params + 12 * config.n_layer * config.n_head * head_size * config.block_size

