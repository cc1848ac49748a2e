"""HellaSwag, scored as build-nanogpt scores it (completion style), for a model of ours.

- The validation split (10,042 examples, rowanz/hellaswag's jsonl) is downloaded once into
  `$XDG_CACHE_HOME/nanojaxgpt/hellaswag/` (~/.cache by default), or read from a given file.
- Each example's four endings are scored by the model's loss on the ending's tokens: the context
  (`ctx`), then " " + ending, in GPT-2's BPE. `acc` takes the ending with the lowest summed loss,
  `acc_norm` the one with the lowest mean loss per ending token. build-nanogpt's figures for
  GPT-2 124M: acc 0.2859, acc_norm 0.2955 (the Eleuther harness, multiple-choice style: 28.92%
  and 31.14%).
- Every example is padded to one shape, 4 endings of `length` tokens (the longest example's,
  rounded up to a multiple of 32, at most block_size; a longer one keeps its last block_size
  tokens), so the scoring compiles once; each batch of examples is split over all devices and
  processes, as training's batches are.
"""

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from nanojaxgpt.distributed import gather_to_host, local_rows, to_global_batch
from nanojaxgpt.errors import RuntimeFailure, UsageError
from nanojaxgpt.model import GPT
from nanojaxgpt.precision import cast_floats
from nanojaxgpt.tokenizer import gpt2_encoding

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
EXAMPLES = 10_042  # in the validation split
GPT2_VOCAB = 50257
LENGTH_MULTIPLE = 32


def cached_file() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "nanojaxgpt" / "hellaswag" / "hellaswag_val.jsonl"


def hellaswag_file(given: str = "") -> Path:
    """The validation jsonl: `given`, or the cached download (made now if missing)."""
    if given:
        if not Path(given).is_file():
            raise UsageError(f"hellaswag_file={given}: no such file; give HellaSwag's hellaswag_val.jsonl, "
                             f"or '' to download it")
        return Path(given)
    path = cached_file()
    if path.exists():
        return path
    print(f"downloading HellaSwag's validation split to {path}")
    try:
        with urllib.request.urlopen(URL, timeout=60) as response:
            data = response.read()
    except OSError as error:  # URLError, timeouts and dropped connections are all OSErrors
        raise RuntimeFailure(f"could not download HellaSwag ({error}): download {URL} elsewhere and "
                             f"give it with --hellaswag_file=PATH") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_bytes(data)
    os.replace(staged, path)
    return path


def read_examples(path: Path) -> list[dict]:
    """The examples of a HellaSwag jsonl file: each with a context, four endings and a label."""
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
                ok = (isinstance(example.get("ctx"), str) and isinstance(example.get("endings"), list)
                      and len(example["endings"]) == 4 and all(isinstance(e, str) for e in example["endings"])
                      and example.get("label") in (0, 1, 2, 3))
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                raise RuntimeFailure(f"{path} line {number} is not a HellaSwag example (JSON with 'ctx', 4 "
                                     f"'endings' and a 'label' 0-3): give HellaSwag's hellaswag_val.jsonl")
            examples.append(example)
    if not examples:
        raise RuntimeFailure(f"{path} holds no examples: give HellaSwag's hellaswag_val.jsonl")
    return examples


@dataclass
class Rendered:
    """Examples as the model reads them: each row's `tokens` (n, 4, length), the first position
    `starts` (n, 4) whose next token is the ending's, and those next tokens, `targets` (n, 4,
    width), -1 past the ending's end. Only those positions go through the output layer, whose
    50,304 logits a position are most of the work of a small model."""

    tokens: np.ndarray
    starts: np.ndarray
    targets: np.ndarray
    labels: np.ndarray  # (n,)


def render(examples: list[dict], block_size: int) -> Rendered:
    """Each ending after its context, as build-nanogpt's render_example tokenises them
    (`encode(ctx)`, `encode(" " + ending)`), padded to one shape."""
    encoding = gpt2_encoding()
    rows = []
    for example in examples:
        context = encoding.encode(example["ctx"])
        for ending in example["endings"]:
            tokens = context + encoding.encode(" " + ending)
            kept = tokens[-block_size:]
            start = max(len(context) - 1 - (len(tokens) - len(kept)), 0)  # the context's last position kept
            rows.append((kept, start, kept[start + 1 :]))
    round_up = lambda n, multiple: -(-n // multiple) * multiple
    length = min(round_up(max(len(tokens) for tokens, _, _ in rows), LENGTH_MULTIPLE), block_size)
    width = min(round_up(max(len(targets) for _, _, targets in rows), 8), length)
    tokens, targets = np.zeros((len(rows), length), np.int32), np.full((len(rows), width), -1, np.int32)
    for i, (row_tokens, _, row_targets) in enumerate(rows):
        tokens[i, : len(row_tokens)] = row_tokens
        targets[i, : len(row_targets)] = row_targets
    starts = np.array([start for _, start, _ in rows], np.int32)
    n = len(examples)
    return Rendered(tokens.reshape(n, 4, length), starts.reshape(n, 4), targets.reshape(n, 4, width),
                    np.array([e["label"] for e in examples]))


@eqx.filter_jit
def ending_losses(model: GPT, tokens, starts, targets, dtype=jnp.float32):
    """Each row's summed loss over its ending's tokens and their number, (rows,) each."""
    model = eqx.nn.inference_mode(cast_floats(model, dtype))

    def row_logits(idx, start):
        x, _ = model.transformer(idx)
        positions = jnp.minimum(start + jnp.arange(targets.shape[-1]), idx.shape[0] - 1)  # past the end: masked
        return model.lm_head(x[positions])

    logits = jax.vmap(row_logits)(tokens, starts).astype(jnp.float32)
    on_ending = targets >= 0
    chosen = jnp.take_along_axis(logits, jnp.where(on_ending, targets, 0)[..., None], axis=-1)[..., 0]
    losses = jax.nn.logsumexp(logits, axis=-1) - chosen  # the cross-entropy, without a log-softmax array
    return jnp.where(on_ending, losses, 0.0).sum(-1), on_ending.sum(-1)


def evaluate(model: GPT, rendered: Rendered, batch_size: int, mesh, dtype=jnp.float32, show_bar: bool = True):
    """`(acc, acc_norm, chosen)`: the accuracies and each example's chosen ending by summed loss
    and by mean loss, (n, 2), for `model` placed on `mesh`. Batches of `batch_size` examples
    (rounded up to a multiple of the device count), the last one padded."""
    n_devices = mesh.devices.size
    batch_size = -(-batch_size // n_devices) * n_devices
    n = len(rendered.labels)
    padded = -(-n // batch_size) * batch_size

    def rows_of(array: np.ndarray, fill: int) -> np.ndarray:
        """`array` with one row per ending, padded to whole batches with `fill`."""
        rows = np.full((padded * 4, *array.shape[2:]), fill, np.int32)
        rows[: n * 4] = array.reshape(n * 4, *array.shape[2:])
        return rows

    arrays = rows_of(rendered.tokens, 0), rows_of(rendered.starts, 0), rows_of(rendered.targets, -1)
    mine = local_rows(batch_size * 4)  # this process's share of each batch
    sums, counts = [], []
    for start in tqdm(range(0, padded * 4, batch_size * 4), desc="hellaswag", unit="batch", leave=False,
                      disable=not show_bar):
        batch = [to_global_batch(a[start : start + batch_size * 4][mine][None], mesh)[0] for a in arrays]
        loss_sum, count = gather_to_host(ending_losses(model, *batch, dtype))
        sums.append(loss_sum)
        counts.append(count)
    sums, counts = (np.concatenate(a)[: n * 4].reshape(n, 4) for a in (sums, counts))
    chosen = np.stack([sums.argmin(-1), (sums / np.maximum(counts, 1)).argmin(-1)], axis=-1)
    acc, acc_norm = (chosen == rendered.labels[:, None]).mean(0)
    return float(acc), float(acc_norm), chosen


def check_gpt2_vocabulary(vocab_size: int, tokenizer_is_gpt2: bool, what: str) -> None:
    """HellaSwag is read in GPT-2's BPE: a model of another vocabulary cannot score it."""
    if not tokenizer_is_gpt2 or vocab_size < GPT2_VOCAB:
        raise UsageError(
            f"{what} reads another vocabulary than GPT-2's BPE ({vocab_size} tokens), in which HellaSwag "
            f"is scored: train on a GPT-2 BPE data set (fineweb-edu, openwebtext, shakespeare) to evaluate it"
        )
