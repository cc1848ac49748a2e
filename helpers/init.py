"""`torch.nn.init`-style initialisers that return new arrays instead of filling in place.

Used with `eqx.tree_at`: `model = eqx.tree_at(where, model, normal_(old, std=0.02, key=k))`.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray


def normal_(x: Array, mean: float = 0.0, std: float = 1.0, *, key: PRNGKeyArray) -> Array:
    """An array shaped like `x` drawn from N(mean, std**2)."""
    return mean + std * jax.random.normal(key, x.shape, x.dtype)


def zeros_(x: Array) -> Array:
    return jnp.zeros_like(x)
