"""A data set as a folder of token shards, as build-nanogpt and llm.c keep FineWeb.

`data/<name>/index.json` lists the shards, each a `.npy` file of uint16 GPT-2 token ids: shard
0 is the validation split, the others the training split. Training memory-maps them (nothing
is read until a batch needs it) and draws its windows from all the shards of a split at once
(nanojaxgpt/data.py). The index also says how the shards were made, which token stream
position each one ends at (so that an interrupted preparation resumes after its last whole
shard: nanojaxgpt/fineweb.py), and whether the preparation is complete.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nanojaxgpt.errors import RuntimeFailure

INDEX_FILE = "index.json"
FORMAT = "nanojaxgpt token shards, version 1"


@dataclass
class Shard:
    file: str  # beside index.json
    split: str  # "val" (shard 0) or "train"
    tokens: int
    end: tuple[int, int]  # where the stream goes on after it: (document, token of that document)
    max_token_id: int


@dataclass
class ShardIndex:
    dataset: str  # fineweb-edu or fineweb: what was prepared
    name: str  # the folder under data/
    subset: str | None  # the hub's config, such as sample-10BT (None: local files)
    data_files: str | None  # the local files' glob (None: the hub)
    shard_size: int  # tokens per shard (the last may hold fewer)
    max_tokens: int | None  # the slice taken, if any
    shards: list[Shard] = field(default_factory=list)
    documents: int = 0  # documents begun so far
    complete: bool = False
    encoding: str = "gpt2"  # GPT-2's BPE, each document after <|endoftext|>
    format: str = FORMAT

    @property
    def tokens(self) -> int:
        return sum(shard.tokens for shard in self.shards)

    def options(self) -> dict:
        """What makes two preparations the same token stream, cut the same way."""
        return {"dataset": self.dataset, "subset": self.subset, "data_files": self.data_files,
                "shard_size": self.shard_size}

    def prepare_command(self) -> str:
        """The command that makes these shards, or finishes them."""
        options = {"name": self.name if self.name != self.dataset else None, "subset": self.subset,
                   "data_files": self.data_files, "shard_size": self.shard_size, "max_tokens": self.max_tokens}
        given = "".join(f" --{key}={value}" for key, value in options.items() if value is not None)
        return f"python -m nanojaxgpt.prepare {self.dataset}{given}"

    def summary(self) -> str:
        """The line a preparation ends with."""
        val = sum(shard.tokens for shard in self.shards if shard.split == "val")
        return (f"{self.name}: {self.documents:,} documents, {self.tokens:,} tokens in {len(self.shards)} "
                f"shards (validation: shard 0, {val:,} tokens)")


def shard_file(name: str, number: int) -> str:
    """build-nanogpt's names: `<name>_val_000000.npy`, then `<name>_train_000001.npy`, ..."""
    return f"{name}_{'val' if number == 0 else 'train'}_{number:06d}.npy"


def read_index(data_dir: Path) -> ShardIndex | None:
    """The folder's index, or None where there is none."""
    path = Path(data_dir) / INDEX_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}, not {FORMAT!r}")
        shards = [Shard(**{**shard, "end": tuple(shard["end"])}) for shard in record.pop("shards")]
        return ShardIndex(**record, shards=shards)
    except (ValueError, TypeError, KeyError) as error:
        raise RuntimeFailure(f"{path} is damaged ({error}); delete the folder and prepare the data set "
                             f"again") from None


def write_index(data_dir: Path, index: ShardIndex) -> None:
    """Replace the folder's index in one step: a reader sees the old one or the new one."""
    path = Path(data_dir) / INDEX_FILE
    part = path.with_name(f".{INDEX_FILE}.part")
    part.write_text(json.dumps(asdict(index), indent=1))
    os.replace(part, path)


def open_shards(data_dir: Path, index: ShardIndex) -> dict[str, list[np.ndarray]]:
    """Each split's shards, memory-mapped, after checking that they are what the index says."""
    data_dir, prepare = Path(data_dir), index.prepare_command()
    if not index.complete:
        raise RuntimeFailure(
            f"{data_dir} is not fully prepared ({len(index.shards)} shards so far): finish it with "
            f"{prepare} (the finished shards are kept)"
        )
    splits = {"train": [], "val": []}
    for shard in index.shards:
        path = data_dir / shard.file
        try:
            tokens = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise RuntimeFailure(f"{path} cannot be read ({error}): prepare the data set again with "
                                 f"{prepare}") from None
        if tokens.dtype != np.uint16 or tokens.shape != (shard.tokens,):
            raise RuntimeFailure(
                f"{path} holds {tokens.shape} {tokens.dtype}, not the {shard.tokens:,} uint16 token ids "
                f"{INDEX_FILE} lists: prepare the data set again with {prepare}"
            )
        splits[shard.split].append(tokens)
    if not splits["train"]:
        raise RuntimeFailure(f"{data_dir} holds only the validation shard: prepare more tokens than "
                             f"one shard, or a smaller --shard_size, with {prepare}")
    return splits
