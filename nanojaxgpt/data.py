"""Training batches from nanoGPT's data files, `data/<dataset>/{train,val}.bin` (uint16 token
ids), or from a folder of token shards (`index.json`; nanojaxgpt/shards.py), memory-mapped.

A batch is a pure function of (seed, split, counter): random windows of block_size + 1 tokens,
drawn uniformly among all the windows of the split (across its shards; none crosses a shard's
end). So the sampler has no state to save beyond its seed, and a resumed run draws exactly the
batches an uninterrupted one would.
"""

from pathlib import Path

import numpy as np

from nanojaxgpt.errors import RuntimeFailure
from nanojaxgpt.shards import open_shards, read_index

SPLITS = ("train", "val")


def open_bin(path: Path, block_size: int) -> np.ndarray:
    """nanoGPT's `<split>.bin`, memory-mapped, after checking it holds at least one window."""
    size = path.stat().st_size  # np.memmap fails on an empty file or half a token id
    if size % 2:
        raise RuntimeFailure(
            f"{path} holds {size} bytes, not a whole number of uint16 token ids; "
            f"prepare the data set again"
        )
    if size // 2 < block_size + 1:
        raise RuntimeFailure(
            f"{path} holds {size // 2} tokens, fewer than block_size + 1 = "
            f"{block_size + 1}; use a smaller --block_size or more data"
        )
    return np.memmap(path, dtype=np.uint16, mode="r")


class BatchSampler:
    def __init__(self, data_dir: str | Path, block_size: int, batch_size: int, seed: int):
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        index = read_index(Path(data_dir))
        if index is None:
            self.tokens = {split: [open_bin(Path(data_dir) / f"{split}.bin", block_size)] for split in SPLITS}
            self.known_max_token_id = None
        else:
            self.tokens = open_shards(Path(data_dir), index)
            self.known_max_token_id = max(shard.max_token_id for shard in index.shards)
        # the windows of a split, numbered across its shards: shard i holds those below ends[i]
        self.window_ends = {split: np.cumsum([max(len(part) - block_size, 0) for part in parts])
                            for split, parts in self.tokens.items()}
        for split, ends in self.window_ends.items():
            if ends[-1] == 0:
                raise RuntimeFailure(f"no {split} shard of {data_dir} holds block_size + 1 = "
                                     f"{block_size + 1} tokens; use a smaller --block_size")

    def max_token_id(self) -> int:
        """The largest token id of the data (a shard folder's index knows it; .bin files are read)."""
        if self.known_max_token_id is not None:
            return self.known_max_token_id
        return max(int(part.max()) for parts in self.tokens.values() for part in parts)

    def batches(
        self, split: str, count: int, *counter: int, rows: slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """`count` batches of inputs and next-token targets, (count, batch_size, block_size)
        int32, drawn by a generator seeded with (seed, split, *counter). `rows` picks the
        sequences of each batch that this process reads (the others are never loaded)."""
        parts, ends = self.tokens[split], self.window_ends[split]
        rng = np.random.default_rng([self.seed, SPLITS.index(split), *counter])
        windows = rng.integers(0, ends[-1], size=(count, self.batch_size))[:, rows]
        part = np.searchsorted(ends, windows, side="right")
        starts = windows - np.concatenate([[0], ends[:-1]])[part]
        sequences = np.stack([parts[p][i : i + self.block_size + 1] for p, i in zip(part.ravel(), starts.ravel())])
        sequences = sequences.astype(np.int32).reshape(*windows.shape, self.block_size + 1)
        return sequences[..., :-1], sequences[..., 1:]
