"""GPT-2's layout of the model's arrays, and ours.

Hugging Face's GPT-2 and nanoGPT name each array of each layer on its own
(`transformer.h.3.attn.c_attn.weight`); our blocks are stacked along a leading layer axis
(`transformer.h.attn.c_attn.weight`, shape (n_layer, ...)). `per_layer` and `stacked` convert
between the two for any tree shaped like the model: the model itself, or an optimizer's moments
of its parameters. Arrays a model lacks (biases with bias=False, wpe with rotary embeddings)
are simply absent.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from helpers.eqx import find_sub_tree
from nanojaxgpt.errors import RuntimeFailure

# one block's arrays, in the order of nanoGPT's (and GPT-2's) `named_parameters`
BLOCK_ARRAYS = [
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
]  # fmt: skip
BEFORE_BLOCKS = ["wte.weight", "wpe.weight"]
AFTER_BLOCKS = ["ln_f.weight", "ln_f.bias"]


class PretrainedError(RuntimeFailure):
    """Weights that cannot be downloaded, read or represented; the message says which."""


def is_causal_mask(name: str) -> bool:
    """Whether `name` is a layer's causal-mask buffer, not a weight: `transformer.h.<i>.attn.bias`
    (or `.masked_bias`), which GPT-2's files and nanoGPT without flash attention keep."""
    parts = name.split(".")
    return len(parts) == 5 and parts[1] == "h" and parts[3] == "attn" and parts[4] in ("bias", "masked_bias")


def _array_at(tree, name: str):
    """The array at `name` under `tree`, or None where the model has none."""
    try:
        return find_sub_tree(tree, name)
    except KeyError:
        return None


def per_layer(tree) -> dict[str, np.ndarray]:
    """`{name: array}` for every array of `tree` under GPT-2's names (`transformer.h.<i>.*`), in
    `named_parameters` order: the embeddings, each layer's arrays, the final LayerNorm."""
    transformer = tree.transformer
    arrays = {}
    for name in BEFORE_BLOCKS:
        if _array_at(transformer, name) is not None:
            arrays[f"transformer.{name}"] = np.asarray(_array_at(transformer, name))
    stacked_arrays = {name: np.asarray(_array_at(transformer.h, name)) for name in BLOCK_ARRAYS
                      if _array_at(transformer.h, name) is not None}
    n_layer = len(next(iter(stacked_arrays.values())))
    for i in range(n_layer):
        for name, array in stacked_arrays.items():
            arrays[f"transformer.h.{i}.{name}"] = array[i]
    for name in AFTER_BLOCKS:
        if _array_at(transformer, name) is not None:
            arrays[f"transformer.{name}"] = np.asarray(_array_at(transformer, name))
    return arrays


def stacked(tensors: dict[str, np.ndarray], like, source: str, transposed: tuple[str, ...] = ()):
    """`like` (a model, or a tree shaped like one: its arrays, or abstract ones) holding
    `tensors`, named as `per_layer` names them; the names of a block's arrays in `transposed`
    are stored (in, out), as GPT-2's Conv1D layers store them. Each array must be there with
    the shape `source` (the file that describes the model) implies. The arrays used are removed
    from `tensors`: what is left, the caller did not expect."""
    arrays = {}

    def take(name: str, expected: tuple[int, ...], transpose: bool) -> np.ndarray:
        short = name.removeprefix("transformer.")  # as the hub's GPT-2 files name it
        if name not in tensors:
            raise PretrainedError(f"the weights have no {short!r}, which {source} implies")
        array = np.asarray(tensors.pop(name), dtype=np.float32)
        array = array.T if transpose else array
        if array.shape != expected:
            stored = f"{array.shape[::-1]}, transposed to {array.shape}" if transpose else array.shape
            raise PretrainedError(f"{short} has shape {stored} in the weights; {source} implies {expected}")
        return array

    transformer = like.transformer
    for name in BEFORE_BLOCKS + AFTER_BLOCKS:
        array = _array_at(transformer, name)
        if array is not None:
            arrays[f"transformer.{name}"] = take(f"transformer.{name}", array.shape, False)
    for name in BLOCK_ARRAYS:
        stack = _array_at(transformer.h, name)
        if stack is not None:
            layers = [take(f"transformer.h.{i}.{name}", stack.shape[1:], name in transposed)
                      for i in range(stack.shape[0])]
            arrays[f"transformer.h.{name}"] = np.stack(layers)
    names = list(arrays)
    where = lambda tree: [find_sub_tree(tree, name) for name in names]
    tree = eqx.tree_at(where, like, [jnp.asarray(arrays[name]) for name in names])
    leftover = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.ShapeDtypeStruct)]
    if leftover:  # a mapping above that misses one of the model's arrays: our bug, not the user's
        raise RuntimeError(f"{len(leftover)} arrays of the model were not loaded from the weights")
    return tree
