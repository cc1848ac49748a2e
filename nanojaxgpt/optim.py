"""The optimizer: nanoGPT's AdamW and learning-rate schedule, with gradient clipping, or Muon
for the blocks' matrices beside AdamW for the rest (`optimizer='muon'`).

Which parameters are which is read from the model's structure (`param_groups`): the blocks'
weight matrices, the embeddings and the output head, and the gains and biases. AdamW decays the
first two, as nanoGPT decays its 2-D parameters; Muon takes the hidden matrices from the same
labels. The blocks are stacked along a leading layer axis, so a block's matrix is 3-D here:
counting dimensions per layer, not per array, is what makes the labels right, and Muon is told
that the layer axis is a batch axis (`BLOCK_MATRIX`), so it orthogonalises each layer's matrix.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, muon

HIDDEN_MATRIX, EMBEDDING, GAIN_OR_BIAS = "hidden matrix", "embedding", "gain or bias"


def param_groups(model) -> eqx.Module:
    """The model's parameters, each replaced by its group's name."""
    params = eqx.filter(model, eqx.is_inexact_array)
    groups = jax.tree.map(lambda p: EMBEDDING if p.ndim >= 2 else GAIN_OR_BIAS, params)
    per_layer = lambda p: HIDDEN_MATRIX if p.ndim - 1 >= 2 else GAIN_OR_BIAS
    return eqx.tree_at(lambda m: m.transformer.h, groups, jax.tree.map(per_layer, params.transformer.h))


def adamw(model, weight_decay: float, learning_rate, betas: tuple[float, float]):
    """AdamW over `eqx.filter(model, eqx.is_inexact_array)`, decaying the hidden matrices and
    the embeddings but not the gains and biases."""
    decay = jax.tree.map(lambda group: group != GAIN_OR_BIAS, param_groups(model))
    return optax.adamw(learning_rate, b1=betas[0], b2=betas[1], weight_decay=weight_decay, mask=decay)


def learning_rate_at(it, config):
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr, then min_lr. Works on Python
    numbers (for the log) and traced arrays (inside the optimizer) alike."""
    if not config.decay_lr:
        return config.learning_rate * jnp.ones_like(it, dtype=jnp.float32)
    warmup = config.learning_rate * (it + 1) / (config.warmup_iters + 1)
    decay_ratio = (it - config.warmup_iters) / max(config.lr_decay_iters - config.warmup_iters, 1)
    coeff = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(decay_ratio, 0.0, 1.0)))
    decayed = config.min_lr + coeff * (config.learning_rate - config.min_lr)
    return jnp.where(
        it < config.warmup_iters, warmup, jnp.where(it > config.lr_decay_iters, config.min_lr, decayed)
    )


# a block's Linear weight is (layer, out, in): x @ W.T reduces over `in`; `layer` is a batch axis
BLOCK_MATRIX = MuonDimensionNumbers(reduction_axis=2, output_axis=1)


def adamw_for_all(model, config) -> optax.GradientTransformation:
    """nanoGPT's optimizer: AdamW with the schedule for every parameter."""
    schedule = lambda count: learning_rate_at(count, config)
    return adamw(model, config.weight_decay, schedule, (config.beta1, config.beta2))


def muon_and_adamw(model, config) -> optax.GradientTransformation:
    """Muon (Jordan et al. 2024; optax.contrib.muon) for the blocks' weight matrices: momentum
    orthogonalised by Newton-Schulz iterations, at muon_learning_rate on the same schedule's
    shape. The embeddings, an untied head, the gains and the biases keep AdamW."""
    ratio = config.muon_learning_rate / config.learning_rate
    schedule = lambda count: learning_rate_at(count, config) * ratio
    labels = jax.tree.map(lambda group: "muon" if group == HIDDEN_MATRIX else "adamw", param_groups(model))
    hidden = muon(schedule, ns_steps=config.muon_ns_steps, beta=config.muon_momentum,
                  weight_decay=config.weight_decay, muon_weight_dimension_numbers=BLOCK_MATRIX)
    # the labels are a GPT, which is callable: given as a function, so optax does not call it
    return optax.multi_transform({"muon": hidden, "adamw": adamw_for_all(model, config)}, lambda _: labels)


# the optimizer of each `optimizer` key (its names: config.OPTIMIZER_CHOICES)
OPTIMIZERS = {"adamw": adamw_for_all, "muon": muon_and_adamw}


def make_optimizer(model, config) -> optax.GradientTransformation:
    """The training config's optimizer: clipping at grad_clip (0 disables it), then the
    `optimizer` with the schedule."""
    optimizer = OPTIMIZERS[config.optimizer](model, config)
    if config.grad_clip == 0.0:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optimizer)
