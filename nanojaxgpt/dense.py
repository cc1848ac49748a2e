"""`dense(x, weight)`: x @ weight.T over the last axis of x, as one 2-D matmul over all the
others, whatever batch axes `jax.vmap` adds.

Why a primitive of our own: the model's layers act on one sequence, and `jax.vmap` turns their
(seq, in) @ (in, out) matmuls into (batch, seq, in) @ (in, out). The weight gradient of that
contracts two axes (batch and seq), which XLA:CPU lowers through transposed copies of the
activations and of the incoming gradient; the same work on a flat (batch*seq, in) array is one
plain matmul. `jax.vmap` cannot see that the batch axis may be merged into the rows, so this
primitive tells it: its batching rule moves the batch axis to the front, its lowering flattens
all leading axes, and its transpose rules (it is bilinear) are flat matmuls too. It works under
every transformation in any order (grad of vmap, vmap of grad, jvp, scan, checkpoint).
"""

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

dense_p = Primitive("dense")


def dense(x: jax.Array, weight: jax.Array) -> jax.Array:
    """x (..., in) times weight (out, in) transposed: (..., out), like `torch.nn.functional.linear`
    without the bias."""
    return dense_p.bind(x, weight)


def _flat_matmul(x, weight):
    flat = x.reshape(-1, x.shape[-1]) @ weight.T
    return flat.reshape(*x.shape[:-1], weight.shape[0])


def _abstract_eval(x, weight):
    if x.shape[-1:] != weight.shape[1:] or weight.ndim != 2:
        raise TypeError(f"dense: x {x.shape} does not match weight {weight.shape} (out, in)")
    return jax.core.ShapedArray(x.shape[:-1] + weight.shape[:1], jnp.result_type(x, weight))


def _batch(args, dims):
    x, weight = args
    x_dim, weight_dim = dims
    if weight_dim is not None:  # one weight per example: a batched matmul, not a flat one
        return jax.vmap(_flat_matmul, in_axes=(x_dim, weight_dim))(x, weight), 0
    return dense(jnp.moveaxis(x, x_dim, 0), weight), 0


def _transpose_x(cotangent, x, weight):
    return dense(cotangent, weight.T)


def _transpose_weight(cotangent, x, weight):
    rows = cotangent.reshape(-1, cotangent.shape[-1])
    return rows.T @ x.reshape(-1, x.shape[-1])


dense_p.def_impl(_flat_matmul)
dense_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(dense_p, mlir.lower_fun(_flat_matmul, multiple_results=False))
batching.primitive_batchers[dense_p] = _batch
ad.defbilinear(dense_p, _transpose_x, _transpose_weight)
