"""The optimizer: nanoGPT's AdamW and learning-rate schedule, with gradient clipping.

Which parameters are which is read from the model's structure (`param_groups`): the blocks'
weight matrices, the embeddings (the token embedding is also the output head), and the gains
and biases. AdamW decays the first two, as nanoGPT decays its 2-D parameters; an optimizer for
the hidden matrices alone (Muon) can take its share from the same labels. The blocks are stacked
along a leading layer axis, so a block's matrix is 3-D here: counting dimensions per layer, not
per array, is what makes the labels right.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

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


def make_optimizer(model, config) -> optax.GradientTransformation:
    """The training config's optimizer: clipping at grad_clip (0 disables it), then AdamW with
    the schedule."""
    optimizer = adamw(model, config.weight_decay, lambda count: learning_rate_at(count, config),
                      (config.beta1, config.beta2))
    if config.grad_clip == 0.0:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optimizer)
