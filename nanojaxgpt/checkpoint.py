"""Checkpoints in `out_dir`: `model.eqx`, `optimizer.eqx` and `ckpt.json`, saved atomically.

- `model.eqx` and `optimizer.eqx` are `eqx.tree_serialise_leaves` files (NumPy arrays, never
  pickles); `ckpt.json` holds the model config, the training state and the two files' sha256.
- A save writes `*.tmp` files, then commits by renaming `ckpt.json.part` to `ckpt.json.tmp`, then
  moves the three into place. Killed before the commit, the old checkpoint is untouched and the
  temporary files are discarded; killed after it, the next load or save finishes the moves. Either
  way one whole checkpoint loads, never a mix of two.
"""

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.errors import RuntimeFailure
from nanojaxgpt.model import GPT
from nanojaxgpt.tokenizer import GPT2Tokenizer, Tokenizer, load_tokenizer, tokenizer_from_record

FORMAT_VERSION = 1
MODEL_FILE = "model.eqx"
OPTIMIZER_FILE = "optimizer.eqx"
STATE_FILE = "ckpt.json"


class CheckpointError(RuntimeFailure):
    """A checkpoint that is missing, damaged or unusable; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.tmp"


def finish_interrupted_save(out_dir: Path) -> None:
    """Complete a save that was committed but not moved into place, or discard one that was
    never committed."""
    committed = _tmp(out_dir, STATE_FILE)
    if committed.exists():
        for name in (MODEL_FILE, OPTIMIZER_FILE):
            if _tmp(out_dir, name).exists():
                os.replace(_tmp(out_dir, name), out_dir / name)
        os.replace(committed, out_dir / STATE_FILE)
        _sync_dir(out_dir)
    else:
        for name in (MODEL_FILE, OPTIMIZER_FILE):
            _tmp(out_dir, name).unlink(missing_ok=True)


def has_checkpoint(out_dir: str | os.PathLike) -> bool:
    """Whether `out_dir` holds a checkpoint, committed or committed but not yet moved in place."""
    return any((Path(out_dir) / name).exists() for name in (STATE_FILE, f"{STATE_FILE}.tmp"))


def save_checkpoint(out_dir: str | os.PathLike, model: GPT, opt_state: Any, state: dict) -> None:
    """Save `model`, `opt_state` and the JSON-able `state` (iter_num, best_val_loss, ...)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        finish_interrupted_save(out_dir)
        hashes = {}
        for name, tree in ((MODEL_FILE, model), (OPTIMIZER_FILE, opt_state)):
            _write_synced(_tmp(out_dir, name), lambda f: eqx.tree_serialise_leaves(f, tree))
            hashes[name] = _sha256(_tmp(out_dir, name))
        record = {
            "format_version": FORMAT_VERSION,
            "model_args": asdict(model.config),
            "sha256": hashes,
            **state,
        }
        part = out_dir / f"{STATE_FILE}.part"
        _write_synced(part, lambda f: f.write(json.dumps(record, indent=1).encode()))
        os.replace(part, _tmp(out_dir, STATE_FILE))  # the commit point
        finish_interrupted_save(out_dir)
    except (OSError, RuntimeError) as error:
        # equinox reports a failed write inside tree_serialise_leaves as RuntimeErrors naming
        # the leaf, caused in the end by the OSError
        os_error = error
        while os_error is not None and not isinstance(os_error, OSError):
            os_error = os_error.__cause__
        if os_error is None:
            raise
        for name in (MODEL_FILE, OPTIMIZER_FILE):
            _tmp(out_dir, name).unlink(missing_ok=True)
        raise CheckpointError(
            f"could not save the checkpoint in {out_dir} ({os_error.strerror or os_error}); "
            f"the previous checkpoint there is unchanged"
        ) from error


def read_checkpoint_state(out_dir: str | os.PathLike) -> dict:
    """The checkpoint's `ckpt.json`, after checking that its files are whole."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and os.access(out_dir, os.W_OK):
        finish_interrupted_save(out_dir)
    state_path = out_dir / STATE_FILE
    if not state_path.exists():
        raise CheckpointError(
            f"no checkpoint in {out_dir}: {state_path} does not exist; train one first with "
            f"--init_from=scratch, or set --out_dir to the folder of an earlier run"
        )
    try:
        state = json.loads(state_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_path} is not valid JSON ({error}); the checkpoint is damaged")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{state_path} has format_version {state.get('format_version')!r}; this nanojaxgpt "
            f"reads version {FORMAT_VERSION}"
        )
    for name, expected in state["sha256"].items():
        path = out_dir / name
        if not path.exists() or _sha256(path) != expected:
            raise CheckpointError(
                f"{path} is missing, truncated or corrupted (sha256 mismatch); restore the "
                f"checkpoint from a copy, or train again"
            )
    return state


def load_checkpoint(out_dir: str | os.PathLike) -> tuple[GPT, dict]:
    """`(model, state)` from `out_dir`: the model as saved (dropout as trained) and ckpt.json."""
    out_dir = Path(out_dir)
    state = read_checkpoint_state(out_dir)
    config = GPTConfig(**state["model_args"])
    skeleton = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    return _deserialise(out_dir / MODEL_FILE, skeleton), state


def load_optimizer_state(out_dir: str | os.PathLike, optimizer, model: GPT):
    """The optimizer state saved beside `model`; `optimizer` must be built as it was in
    training (its state's structure depends on it)."""
    params = eqx.filter(model, eqx.is_inexact_array)
    return _deserialise(Path(out_dir) / OPTIMIZER_FILE, jax.eval_shape(optimizer.init, params))


def _deserialise(path: Path, like):
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} does not match its ckpt.json ({error})") from error


def load_model(out_dir: str | os.PathLike) -> GPT:
    """The trained model in `out_dir`, in inference mode (no dropout): ready to sample from."""
    return eqx.nn.inference_mode(load_checkpoint(out_dir)[0])


def checkpoint_tokenizer(out_dir: str | os.PathLike, state: dict) -> tuple[Tokenizer, Path | None]:
    """The tokenizer the model in `out_dir` was trained with, and the file it was read from (None
    for GPT-2's BPE assumed). ckpt.json keeps it; older checkpoints name only their data set,
    whose meta.pkl is looked for under ./data, as nanoGPT's sample.py does."""
    if "tokenizer" in state:
        return tokenizer_from_record(state["tokenizer"]), Path(out_dir) / STATE_FILE
    dataset = state.get("config", {}).get("dataset")
    meta = None if dataset is None else Path("data") / dataset / "meta.pkl"
    if meta is None or not meta.exists():
        return GPT2Tokenizer(), None
    return load_tokenizer(meta.parent), meta


def load_model_and_tokenizer(out_dir: str | os.PathLike, verbose: bool = False) -> tuple[GPT, Tokenizer]:
    """The trained model in `out_dir` (inference mode) and its tokenizer, from any directory:
    `tokenizer.decode(model.generate(...))` is text. `verbose` prints nanoGPT's line saying
    where the vocabulary came from."""
    model, state = load_checkpoint(out_dir)  # the files' hashes checked once
    model = eqx.nn.inference_mode(model)
    tokenizer, source = checkpoint_tokenizer(out_dir, state)
    if verbose:
        print(f"Loading meta from {source}..." if source else "No meta.pkl found, assuming GPT-2 encodings...")
    if tokenizer.vocab_size > model.config.vocab_size:
        dataset = state.get("config", {}).get("dataset")
        found = (
            f"{source} has {tokenizer.vocab_size} tokens"
            if source
            else f"no data/{dataset}/meta.pkl was found, and GPT-2's BPE has {tokenizer.vocab_size}"
        )
        raise CheckpointError(
            f"the model in {out_dir} has a vocabulary of {model.config.vocab_size} tokens but "
            f"{found}: run from the directory holding data/{dataset}/ as prepared for training"
        )
    return model, tokenizer
