"""Mixed precision: parameters and optimizer state stay float32; the forward and backward run in
the compute dtype; softmax and loss in float32. float16 needs its loss scaled so that small
gradients do not underflow, and steps whose gradients overflow are skipped, as torch's GradScaler.
"""

import equinox as eqx
import jax
import jax.numpy as jnp


def resolve_dtype(name: str) -> jnp.dtype:
    """`auto` is bfloat16 on GPUs and TPUs and float32 on CPUs, where bfloat16 is emulated."""
    if name == "auto":
        name = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return jnp.dtype(name)


def cast_floats(tree, dtype):
    """`tree` with its floating-point arrays in `dtype`; gradients flow back in float32."""
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


def all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves))


class DynamicLossScale(eqx.Module):
    """The loss is multiplied by `scale` before the backward pass and the gradients divided by
    it after. Overflowing gradients halve the scale (and the step is skipped);
    `growth_interval` finite steps in a row double it."""

    scale: jax.Array
    good_steps: jax.Array
    growth_interval: int = eqx.field(static=True, default=2000)

    @classmethod
    def create(cls, scale: float = 2.0**16, good_steps: int = 0) -> "DynamicLossScale":
        return cls(jnp.asarray(scale, jnp.float32), jnp.asarray(good_steps, jnp.int32))

    def adjust(self, grads_finite: jax.Array) -> "DynamicLossScale":
        grow = self.good_steps + 1 >= self.growth_interval
        scale = jnp.where(grads_finite, jnp.where(grow, 2 * self.scale, self.scale), self.scale / 2)
        good_steps = jnp.where(grads_finite & ~grow, self.good_steps + 1, 0)
        return DynamicLossScale(scale, good_steps, self.growth_interval)
