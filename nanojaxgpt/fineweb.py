"""FineWeb-edu and FineWeb as token shards, the data build-nanogpt and llm.c reproduce GPT-2 on:

    python -m nanojaxgpt.prepare fineweb-edu [--subset=sample-10BT] [--shard_size=100000000]
        [--max_tokens=N] [--data_files=GLOB] [--num_proc=N] [--name=NAME]

- Documents stream from the Hugging Face hub (HuggingFaceFW/fineweb-edu or HuggingFaceFW/fineweb,
  the subset sample-10BT by default: only what is tokenised is downloaded) or, with
  `--data_files`, from local parquet or jsonl files with a `text` column.
- Each document becomes `<|endoftext|>` then its GPT-2 tokens (tiktoken's `encode_ordinary`),
  tokenised by `num_proc` processes, in order. The stream is cut into shards of `shard_size`
  tokens (a document may straddle two); shard 0 is the validation split (nanojaxgpt/shards.py).
- A shard is written to a temporary file, renamed when whole, then listed in `index.json` with
  where the stream goes on after it. An interrupted preparation starts again after its last
  whole shard, skipping the documents before it unread; the shard it was writing is rewritten.
- The disk space the shards need (2 bytes a token) is checked before anything starts.
"""

import glob
import multiprocessing
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from nanojaxgpt.errors import RuntimeFailure, UsageError
from nanojaxgpt.shards import Shard, ShardIndex, read_index, shard_file, write_index
from nanojaxgpt.tokenizer import gpt2_encoding

# the data sets, by their name here, and their repositories on the Hugging Face hub
REPOSITORIES = {"fineweb-edu": "HuggingFaceFW/fineweb-edu", "fineweb": "HuggingFaceFW/fineweb"}
DEFAULT_SUBSET = "sample-10BT"
DEFAULT_SHARD_SIZE = 100_000_000  # build-nanogpt's: 100 shards for 10B tokens
# GPT-2 tokens in the subsets that do not say their size in their name (sample-10BT does)
SUBSET_TOKENS = {("fineweb-edu", "default"): 1_300_000_000_000, ("fineweb", "default"): 15_000_000_000_000}
DOCUMENTS_PER_BATCH = 1024  # read and handed to the processes at a time: bounded memory, in order


def tokenize(text: str) -> np.ndarray:
    """`<|endoftext|>` and GPT-2's tokens of one document, as uint16."""
    encoding = gpt2_encoding()
    ids = encoding.encode_ordinary(text)
    tokens = np.empty(len(ids) + 1, np.uint16)
    tokens[0], tokens[1:] = encoding.eot_token, ids
    return tokens


def stream_documents(dataset: str, subset: str | None, data_files: str | None, skip: int) -> Iterator[list[str]]:
    """The documents' texts, in order, after the first `skip`, in lists of DOCUMENTS_PER_BATCH."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise RuntimeFailure(f"preparing {dataset} needs Hugging Face datasets: "
                             f'pip install -e ".[data]"') from None
    if data_files:
        files = sorted(glob.glob(data_files, recursive=True))
        kind = "parquet" if files and all(f.endswith(".parquet") for f in files) else "json"
        stream = load_dataset(kind, data_files=files, split="train", streaming=True)
        where = f"--data_files={data_files}"
    else:
        stream = load_dataset(REPOSITORIES[dataset], name=subset, split="train", streaming=True)
        where = f"{REPOSITORIES[dataset]} ({subset}) on the Hugging Face hub"
    try:
        for batch in stream.skip(skip).iter(batch_size=DOCUMENTS_PER_BATCH):
            if "text" not in batch:
                raise RuntimeFailure(f"{where}: the documents have no 'text' column (they have "
                                     f"{', '.join(batch)}); give files whose text is in 'text'")
            yield batch["text"]
    except RuntimeFailure:
        raise
    except Exception as error:  # datasets raises many kinds; the user needs the first line of any
        reason = str(error).strip().partition("\n")[0] or type(error).__name__
        fix = ("check the files" if data_files else
               "connect to the internet, or read local files with --data_files=GLOB")
        raise RuntimeFailure(f"could not read {where} ({type(error).__name__}: {reason}): {fix}") from None


def expected_tokens(dataset: str, subset: str | None, data_files: str | None,
                    max_tokens: int | None) -> int | None:
    """About how many tokens the preparation makes, where that can be known beforehand."""
    if max_tokens is not None:
        return max_tokens
    if data_files:  # about 1 token a byte of parquet (compressed), 1 per 5 of jsonl
        files = glob.glob(data_files, recursive=True)
        return sum(os.path.getsize(f) // (1 if f.endswith(".parquet") else 5) for f in files)
    size = re.fullmatch(r"sample-(\d+)BT", subset or "")
    return int(size.group(1)) * 10**9 if size else SUBSET_TOKENS.get((dataset, subset))


def check_disk_space(data_dir: Path, tokens: int | None, done: int) -> None:
    """Stop before starting if the shards still to write cannot fit where they go."""
    if tokens is None:
        print(f"note: the size of this subset is unknown here: the shards take 2 bytes a token in {data_dir}")
        return
    needed = 2 * max(tokens - done, 0)
    existing = next(folder for folder in [data_dir, *data_dir.parents] if folder.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise RuntimeFailure(
            f"{data_dir}: the shards need about {needed / 1e9:,.1f} GB ({tokens - done:,} tokens at 2 bytes) "
            f"but {free / 1e9:,.1f} GB are free there: free some space, put data/ on a larger disk, or "
            f"take a slice with --max_tokens"
        )


def starting_index(data_dir: Path, wanted: ShardIndex) -> ShardIndex:
    """The preparation to continue in `data_dir` (its whole shards kept, a last partial one
    dropped), or `wanted` anew."""
    index = read_index(data_dir)
    if index is None:
        if any(data_dir.glob("*.npy")):
            raise UsageError(f"{data_dir} holds .npy files but no index.json, which says which shards are "
                             f"whole: delete them, or prepare into another --name")
        return wanted
    if index.options() != wanted.options():
        given = ", ".join(f"{key}={value}" for key, value in index.options().items())
        raise UsageError(f"{data_dir} holds shards of another preparation ({given}): give the same "
                         f"options to finish it, delete the folder, or prepare into another --name")
    if index.complete and index.max_tokens == wanted.max_tokens:
        return index
    if wanted.max_tokens is not None and index.tokens > wanted.max_tokens:
        raise UsageError(f"{data_dir} holds {index.tokens:,} tokens already, more than --max_tokens="
                         f"{wanted.max_tokens}: delete the folder to take a smaller slice")
    whole = [shard for shard in index.shards if shard.tokens == index.shard_size]
    documents = whole[-1].end[0] + (whole[-1].end[1] > 0) if whole else 0
    return ShardIndex(**{**vars(index), "shards": whole, "documents": documents, "complete": False,
                         "max_tokens": wanted.max_tokens})


def prepare_fineweb(dataset: str, data_dir: Path, subset: str | None = DEFAULT_SUBSET,
                    data_files: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
                    max_tokens: int | None = None, num_proc: int = 1) -> ShardIndex:
    """Prepare `dataset` (fineweb-edu or fineweb) as shards in `data_dir`, or finish an earlier
    preparation there; returns its index."""
    data_dir = Path(data_dir)
    subset = None if data_files else subset
    wanted = ShardIndex(dataset, data_dir.name, subset, data_files, shard_size, max_tokens)
    index = starting_index(data_dir, wanted)
    if index.complete:
        return index
    total = expected_tokens(dataset, subset, data_files, max_tokens)
    check_disk_space(data_dir, total, index.tokens)
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(".*.tmp"):
        stale.unlink()  # the shard an interrupted preparation was writing
    for shard in [path for path in data_dir.glob("*.npy") if path.name not in {s.file for s in index.shards}]:
        shard.unlink()  # a partial last shard, or shards past a dropped one: written again
    document, offset = index.shards[-1].end if index.shards else (0, 0)
    buffer, filled, done = np.empty(shard_size, np.uint16), 0, index.tokens  # done: in whole shards
    bar = tqdm(total=total, initial=index.tokens, unit="tok", unit_scale=True, desc=f"{index.name}")

    def finish_shard(end: tuple[int, int]) -> None:
        nonlocal filled, done
        number = len(index.shards)
        path = data_dir / shard_file(index.name, number)
        staged = data_dir / f".{path.name}.tmp"
        with open(staged, "wb") as f:
            np.save(f, buffer[:filled])
        os.replace(staged, path)
        index.shards.append(Shard(path.name, "val" if number == 0 else "train", filled, end,
                                  int(buffer[:filled].max())))
        write_index(data_dir, index)
        filled, done = 0, done + filled

    def room() -> int:
        """Tokens the slice still takes (max_tokens), as many as there are without one."""
        return np.iinfo(np.int64).max if max_tokens is None else max_tokens - done - filled

    pool = multiprocessing.Pool(num_proc) if num_proc > 1 else None
    try:
        for texts in stream_documents(dataset, subset, data_files, skip=document):
            for tokens in (pool.imap(tokenize, texts, chunksize=16) if pool else map(tokenize, texts)):
                used = offset  # of this document's tokens, the first `offset` are in earlier shards
                while used < len(tokens) and room() > 0:
                    take = min(len(tokens) - used, shard_size - filled, room())
                    buffer[filled : filled + take] = tokens[used : used + take]
                    filled, used = filled + take, used + take
                    bar.update(take)
                    if filled == shard_size:
                        finish_shard((document, used) if used < len(tokens) else (document + 1, 0))
                index.documents = document + 1
                document, offset = document + 1, 0
                if room() <= 0:
                    break
            if room() <= 0:
                break
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    if filled:
        finish_shard((index.documents, 0))
    index.complete = True
    write_index(data_dir, index)
    return index
