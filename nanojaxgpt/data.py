"""Training batches from nanoGPT's data files: `data/<dataset>/{train,val}.bin` (uint16 token ids).

A batch is a pure function of (seed, split, counter): random windows of block_size + 1 tokens.
So the sampler has no state to save beyond its seed, and a resumed run draws exactly the batches
an uninterrupted one would.
"""

from pathlib import Path

import numpy as np

from nanojaxgpt.errors import RuntimeFailure

SPLITS = ("train", "val")


class BatchSampler:
    def __init__(self, data_dir: str | Path, block_size: int, batch_size: int, seed: int):
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.tokens = {}
        for split in SPLITS:
            path = Path(data_dir) / f"{split}.bin"
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
            self.tokens[split] = np.memmap(path, dtype=np.uint16, mode="r")

    def max_token_id(self) -> int:
        return max(int(tokens.max()) for tokens in self.tokens.values())

    def batches(
        self, split: str, count: int, *counter: int, rows: slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """`count` batches of inputs and next-token targets, (count, batch_size, block_size)
        int32, drawn by a generator seeded with (seed, split, *counter). `rows` picks the
        sequences of each batch that this process reads (the others are never loaded)."""
        tokens = self.tokens[split]
        rng = np.random.default_rng([self.seed, SPLITS.index(split), *counter])
        starts = rng.integers(0, len(tokens) - self.block_size, size=(count, self.batch_size))
        starts = starts[:, rows]
        windows = np.stack([tokens[i : i + self.block_size + 1] for i in starts.ravel()])
        windows = windows.astype(np.int32).reshape(*starts.shape, self.block_size + 1)
        return windows[..., :-1], windows[..., 1:]
