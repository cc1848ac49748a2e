"""Names for the arrays of an Equinox model, as `torch.nn.Module.named_parameters` gives them.

A name is the dotted attribute path from the root (`transformer.wte.weight`); list and tuple
entries appear as their index (`layers.0.weight`).
"""

from typing import Any, Iterator

import equinox as eqx
import jax
from jaxtyping import Array


def _path_to_name(path) -> str:
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        else:
            raise TypeError(f"cannot name the pytree path entry {entry!r}")
    return ".".join(parts)


def named_parameters(model: Any) -> Iterator[tuple[str, Array]]:
    """Yield `(dotted name, array)` for every floating-point array in `model`, in tree order."""
    params = eqx.filter(model, eqx.is_inexact_array)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        yield _path_to_name(path), leaf


def find_sub_tree(tree: Any, name: str) -> Any:
    """The node of `tree` at a dotted name such as `transformer.ln_f.weight`.

    Works as the `where` of `eqx.tree_at`: `eqx.tree_at(lambda m: find_sub_tree(m, name), ...)`.
    """
    node = tree
    for part in name.split("."):
        try:
            if isinstance(node, dict):
                node = node[part]
            else:
                node = node[int(part)] if part.isdigit() else getattr(node, part)
        except (AttributeError, IndexError, KeyError, TypeError) as error:
            raise KeyError(f"{name!r}: no {part!r} in {type(node).__name__}") from error
    return node
