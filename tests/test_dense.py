"""`dense` must be x @ weight.T under every transformation, and its weight gradient under
`jax.vmap` must be one flat matmul: that is what makes training fast on XLA:CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanojaxgpt.dense import dense

# float32 results are compared to tight tolerances: pin float32 matmuls (TF32 on GPUs otherwise)
pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")

B, T, C_IN, C_OUT = 3, 5, 8, 6


def plain(x, weight):
    return x @ weight.T


@pytest.fixture
def arrays():
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (B, T, C_IN))
    weight = jax.random.normal(keys[1], (C_OUT, C_IN))
    target = jax.random.normal(keys[2], (B, T, C_OUT))
    return x, weight, target


def close(a, b):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(C_IN,), (T, C_IN), (B, T, C_IN)])
def test_value_is_x_times_weight_transposed(arrays, shape):
    _, weight, _ = arrays
    x = jax.random.normal(jax.random.key(1), shape)
    out = dense(x, weight)
    assert out.shape == shape[:-1] + (C_OUT,)
    close(out, plain(x, weight))
    close(jax.jit(dense)(x, weight), plain(x, weight))


def test_gradients_match_the_plain_matmul_in_every_order(arrays):
    x, weight, target = arrays

    def sequence_loss(matmul, x_seq, w, t_seq):
        return jnp.sum((jnp.tanh(matmul(x_seq, w)) - t_seq) ** 2)

    def batch_loss(matmul, x, w):  # the training pattern: grad of vmap
        return jax.vmap(sequence_loss, (None, 0, None, 0))(matmul, x, w, target).sum()

    both = lambda f: [f(dense), f(plain)]
    close(*both(lambda m: jax.grad(batch_loss, (1, 2))(m, x, weight)))
    # one sequence, no vmap
    close(*both(lambda m: jax.grad(sequence_loss, (1, 2))(m, x[0], weight, target[0])))
    # per-example gradients: vmap of grad
    per_example = lambda m: jax.vmap(jax.grad(sequence_loss, 2), (None, 0, None, 0))(m, x, weight, target)
    close(*both(per_example))
    # forward mode, and second order
    close(*both(lambda m: jax.jvp(lambda w: m(x, w), (weight,), (jnp.ones_like(weight),))))
    hessian = lambda m: jax.hessian(lambda w: sequence_loss(m, x[0, :2], w, target[0, :2]))(weight)
    close(*both(hessian))


def test_one_weight_per_example_under_vmap(arrays):
    x, _, _ = arrays
    weights = jax.random.normal(jax.random.key(2), (B, C_OUT, C_IN))
    close(jax.vmap(dense)(x, weights), jax.vmap(plain)(x, weights))
    close(jax.vmap(dense, (None, 0))(x[0], weights), jax.vmap(plain, (None, 0))(x[0], weights))


def test_weight_gradient_of_a_vmapped_layer_is_one_flat_matmul(arrays):
    """With a plain matmul, vmap makes the weight gradient contract two axes (batch and
    sequence), which XLA:CPU runs through transposed copies; dense contracts one."""
    x, weight, target = arrays

    def loss(matmul, w):
        return jnp.sum(jax.vmap(lambda x_seq: matmul(x_seq, w))(x) * target)

    def weight_gradient_contracting_axes(matmul):
        jaxpr = jax.make_jaxpr(jax.grad(lambda w: loss(matmul, w)))(weight)
        return [
            len(e.params["dimension_numbers"][0][0])
            for e in jaxpr.eqns
            if e.primitive.name == "dot_general" and e.outvars[0].aval.size == weight.size
        ]

    assert weight_gradient_contracting_axes(plain) == [2]  # the slow form dense avoids
    assert weight_gradient_contracting_axes(dense) == [1]
