"""Data sets to token ids on disk, as nanoGPT's `data/<name>/prepare.py` scripts make them.

Every data set becomes `train.bin` and `val.bin`, flat arrays of uint16 token ids, in its folder:
- `shakespeare_char`: Tiny Shakespeare as characters, split 90/10, with a `meta.pkl` holding the
  vocabulary (`vocab_size`, `itos`, `stoi`).
- `shakespeare`: Tiny Shakespeare split 90/10, then GPT-2's BPE (works offline, see tokenizer.py).
- `openwebtext`, `tinystories`: downloaded with Hugging Face `datasets` (the `data` extra),
  tokenised with GPT-2's BPE in parallel, each document followed by `<|endoftext|>`.
- any text file: `python -m nanojaxgpt.prepare --input FILE --name NAME --encoding char|gpt2`.
- `fineweb-edu`, `fineweb`: uint16 token shards and an index.json instead (nanojaxgpt/fineweb.py).

Files are written to temporary names and renamed into place only once all of them are complete,
so a failure leaves the files of an earlier run as they were.
"""

import argparse
import contextlib
import hashlib
import os
import pickle
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.fineweb import DEFAULT_SHARD_SIZE, DEFAULT_SUBSET, REPOSITORIES, prepare_fineweb
from nanojaxgpt.tokenizer import CharTokenizer, gpt2_encoding

# nanoGPT's source for Tiny Shakespeare, and the sha256 of the file it serves
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

# Hugging Face data sets; "openwebtext" is the old name of Skylion007/openwebtext
OPENWEBTEXT_REPO = "Skylion007/openwebtext"
TINYSTORIES_REPO = "roneneldan/TinyStories"

DATASETS = ("shakespeare_char", "shakespeare", "openwebtext", "tinystories")
ENCODINGS = ("char", "gpt2")
MAX_UINT16_VOCAB = 2**16  # ids are stored as uint16


@contextlib.contextmanager
def staged_files(data_dir: Path, names: list[str]):
    """Temporary paths in `data_dir`, one per name, moved onto `data_dir/name` when the block ends
    without error and deleted otherwise."""
    data_dir.mkdir(parents=True, exist_ok=True)
    staged = {name: data_dir / f".{name}.{os.getpid()}.tmp" for name in names}
    try:
        yield staged
        for name, temp_path in staged.items():
            os.replace(temp_path, data_dir / name)
    finally:
        for temp_path in staged.values():
            temp_path.unlink(missing_ok=True)


def check_tiny_shakespeare(data: bytes, source: str, fix: str) -> None:
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != TINY_SHAKESPEARE_SHA256:
        raise RuntimeFailure(
            f"{source} is not Tiny Shakespeare (sha256 {sha256}, expected "
            f"{TINY_SHAKESPEARE_SHA256}): {fix}"
        )


def read_tiny_shakespeare(data_dir: Path) -> str:
    """The text of `data_dir/input.txt`, downloaded first when it is missing."""
    path = data_dir / "input.txt"
    if path.exists():
        data = path.read_bytes()
        check_tiny_shakespeare(data, str(path), "delete it to download it again")
        return data.decode("utf-8")
    print(f"downloading Tiny Shakespeare to {path}")
    try:
        with urllib.request.urlopen(TINY_SHAKESPEARE_URL, timeout=60) as response:
            data = response.read()
    except OSError as error:  # URLError, timeouts and dropped connections are all OSErrors
        raise RuntimeFailure(
            f"could not download Tiny Shakespeare ({error}): put its input.txt at {path}"
        ) from error
    check_tiny_shakespeare(data, TINY_SHAKESPEARE_URL, f"put its input.txt at {path}")
    with staged_files(data_dir, ["input.txt"]) as staged:
        staged["input.txt"].write_bytes(data)
    return data.decode("utf-8")


def prepare_text(text: str, data_dir: Path, encoding: str = "char") -> None:
    """Split `text` 90/10 into train and val as nanoGPT does, encode each part with `encoding`
    ("char" or "gpt2") and write `train.bin`, `val.bin` and, for "char", `meta.pkl`."""
    if encoding not in ENCODINGS:
        raise UsageError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    n = len(text)
    if n < 2:
        raise UsageError(
            f"the text has {n} characters: give at least 2, to split into train and val"
        )
    train_text, val_text = text[: int(n * 0.9)], text[int(n * 0.9) :]
    print(f"length of dataset in characters: {n:,}")

    if encoding == "char":
        tokenizer = CharTokenizer.from_text(text)
        print(f"vocab size: {tokenizer.vocab_size:,}")
        if tokenizer.vocab_size > MAX_UINT16_VOCAB:
            raise UsageError(
                f"the text has {tokenizer.vocab_size:,} distinct characters, more than the "
                f"{MAX_UINT16_VOCAB:,} ids uint16 can hold: use --encoding gpt2"
            )
        train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
        names = ["train.bin", "val.bin", "meta.pkl"]
    else:
        bpe = gpt2_encoding()
        print(f"vocab size: {bpe.n_vocab:,}")
        train_ids, val_ids = bpe.encode_ordinary(train_text), bpe.encode_ordinary(val_text)
        names = ["train.bin", "val.bin"]
    print(f"train has {len(train_ids):,} tokens")
    print(f"val has {len(val_ids):,} tokens")

    with staged_files(data_dir, names) as staged:
        np.array(train_ids, dtype=np.uint16).tofile(staged["train.bin"])
        np.array(val_ids, dtype=np.uint16).tofile(staged["val.bin"])
        if encoding == "char":
            with open(staged["meta.pkl"], "wb") as f:
                pickle.dump(tokenizer.meta(), f)
    if encoding == "gpt2":
        # a meta.pkl left by an earlier character-level run would make readers decode as characters
        (data_dir / "meta.pkl").unlink(missing_ok=True)


def download_hf_dataset(name: str, num_proc: int):
    """The `datasets.DatasetDict` of "openwebtext" or "tinystories", with splits train and val."""
    try:
        from datasets import DatasetDict, load_dataset
    except ImportError as error:
        raise RuntimeFailure(
            f"preparing {name} needs Hugging Face datasets: pip install -e \".[data]\""
        ) from error
    repo = OPENWEBTEXT_REPO if name == "openwebtext" else TINYSTORIES_REPO
    try:
        dataset = load_dataset(repo, num_proc=num_proc)
    except Exception as error:  # datasets raises many kinds; the user needs the first line of any
        reason = str(error).strip().partition("\n")[0]
        raise RuntimeFailure(
            f"could not load {repo} from Hugging Face ({type(error).__name__}: {reason}): "
            "check your internet connection, free disk space and datasets version"
        ) from error
    if name == "openwebtext":
        # openwebtext has only a train split (8,013,769 documents): nanoGPT holds out 0.05% as val
        splits = dataset["train"].train_test_split(test_size=0.0005, seed=2357, shuffle=True)
        return DatasetDict(train=splits["train"], val=splits["test"])
    return DatasetDict(train=dataset["train"], val=dataset["validation"])


def tokenize_document(example: dict) -> dict:
    """GPT-2's ids for one document, ended by `<|endoftext|>` so documents stay apart."""
    encoding = gpt2_encoding()
    ids = encoding.encode_ordinary(example["text"])
    ids.append(encoding.eot_token)
    return {"ids": ids, "len": len(ids)}


def write_tokenized_splits(splits, data_dir: Path, num_proc: int, num_shards: int = 1024) -> None:
    """Tokenise each split of a `datasets.DatasetDict` (a "text" column) with `num_proc`
    processes, and write it to `data_dir/<split>.bin` in `num_shards` pieces, so no split has to
    fit in memory at once."""
    tokenized = splits.map(
        tokenize_document, remove_columns=["text"], desc="tokenizing the splits", num_proc=num_proc
    )
    names = [f"{split}.bin" for split in tokenized]
    with staged_files(data_dir, names) as staged:
        for split, dataset in tokenized.items():
            total_len = int(np.sum(dataset["len"], dtype=np.uint64))
            print(f"{split} has {total_len:,} tokens")
            ids = np.memmap(staged[f"{split}.bin"], dtype=np.uint16, mode="w+", shape=(total_len,))
            start = 0
            split_shards = min(num_shards, len(dataset))
            for index in tqdm(range(split_shards), desc=f"writing {split}.bin"):
                shard = dataset.shard(num_shards=split_shards, index=index, contiguous=True)
                shard_ids = np.concatenate(shard.with_format("numpy")["ids"])
                ids[start : start + len(shard_ids)] = shard_ids
                start += len(shard_ids)
            ids.flush()
            del ids  # close the map before the file is renamed


def prepare_dataset(name: str, data_dir: Path, num_proc: int | None = None) -> None:
    """Prepare the data set `name` (one of `DATASETS`) into `data_dir`, downloading what it needs.

    `num_proc` is the number of processes that load and tokenise openwebtext or tinystories
    (default: the CPU count, at most 8).
    """
    data_dir = Path(data_dir)
    if name in ("shakespeare_char", "shakespeare"):
        text = read_tiny_shakespeare(data_dir)
        prepare_text(text, data_dir, encoding="char" if name == "shakespeare_char" else "gpt2")
    elif name in ("openwebtext", "tinystories"):
        num_proc = num_proc or min(8, os.cpu_count() or 1)
        splits = download_hf_dataset(name, num_proc)
        write_tokenized_splits(splits, data_dir, num_proc)
    else:
        raise UsageError(
            f"unknown data set {name!r}: use one of {', '.join(DATASETS)}, "
            "or prepare your own text with python -m nanojaxgpt.prepare --input FILE --name NAME"
        )


def prepare_command(name: str, data_dir: Path) -> str:
    """The command that writes data set `name` into `data_dir`, for saying that it is missing."""
    if (data_dir / "prepare.py").exists():  # nanoGPT's layout: data/<name>/prepare.py
        return f"python {data_dir / 'prepare.py'}"
    if name in DATASETS:
        return f"python -m nanojaxgpt.prepare --name {name}"
    if name in REPOSITORIES:
        return f"python -m nanojaxgpt.prepare {name}"
    return f"python -m nanojaxgpt.prepare --input FILE --name {name}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line `UsageError` rather than usage text."""

    def error(self, message):
        raise UsageError(f"{message}: see python -m nanojaxgpt.prepare --help")


def positive(text: str) -> int:
    """argparse's type for counts: a positive integer (`1e8` and `100_000_000` welcome)."""
    try:
        value = float(text.replace("_", "")) if "e" in text.lower() else int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of at least 1")
    return int(value)


def main(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="python -m nanojaxgpt.prepare",
        description="Write train.bin and val.bin (and meta.pkl for characters) into data/NAME, or "
                    "for fineweb-edu and fineweb token shards and an index.json.",
    )
    parser.add_argument("dataset", nargs="?", metavar="DATASET",
                        help=f"one of {', '.join([*DATASETS, *REPOSITORIES])}; or none, with --input")
    parser.add_argument("--name", metavar="NAME (str)", help="the data set's folder under data/; none "
                        "means DATASET (with --input, give it)")
    parser.add_argument("--input", type=Path, metavar="FILE (path)", help="a UTF-8 text file to prepare")
    parser.add_argument(
        "--encoding", choices=ENCODINGS, help="with --input: characters (char) or GPT-2's BPE (gpt2); "
        "none means char"
    )
    parser.add_argument("--data_dir", "--data-dir", type=Path, metavar="DIR (path)",
                        help="where to write; none means data/NAME")
    parser.add_argument("--num_proc", "--num-proc", type=positive, metavar="N (int)",
                        help="tokenising processes: none means up to 8 (for fineweb, one fewer than the CPUs)")
    fineweb = parser.add_argument_group("fineweb-edu and fineweb")
    fineweb.add_argument("--subset", metavar="S (str)",
                         help=f"the hub's subset (config): none means {DEFAULT_SUBSET}; sample-100BT, ...")
    fineweb.add_argument("--shard_size", type=positive, metavar="N (int)",
                         help=f"tokens per shard, none means {DEFAULT_SHARD_SIZE:,}; shard 0 is the "
                              f"validation split")
    fineweb.add_argument("--max_tokens", type=positive, metavar="N (int)", help="take only the first N tokens")
    fineweb.add_argument("--data_files", metavar="GLOB (str)",
                         help="local parquet or jsonl files with a 'text' column instead of the hub")
    args = parser.parse_args(argv)
    given = [key for key in ("subset", "shard_size", "max_tokens", "data_files") if getattr(args, key) is not None]
    name = args.name or args.dataset
    if not name or Path(name).name != name:
        raise UsageError(f"--name {name!r} must be a plain folder name, such as my_text")
    data_dir = args.data_dir or Path("data") / name

    if args.dataset in REPOSITORIES:
        if args.input is not None or args.encoding is not None:
            raise UsageError(f"{args.dataset} is read from the hub or --data_files, not --input: drop "
                             f"--input and --encoding")
        shard_size = args.shard_size or DEFAULT_SHARD_SIZE
        if args.max_tokens is not None and args.max_tokens <= shard_size:
            raise UsageError(f"--max_tokens={args.max_tokens} fills only shard 0, the validation split: take "
                             f"more tokens than --shard_size={shard_size}, or a smaller --shard_size")
        # one core reads the documents and writes the shards: on 2 cores, 1 tokenising process is fastest
        num_proc = args.num_proc or max(1, min(8, (os.cpu_count() or 1) - 1))
        index = prepare_fineweb(args.dataset, data_dir, args.subset or DEFAULT_SUBSET, args.data_files,
                                shard_size, args.max_tokens, num_proc)
        print(index.summary())
        return
    if given:
        raise UsageError(f"--{', --'.join(given)} apply to {' and '.join(REPOSITORIES)} only")
    if args.dataset is not None and args.input is not None:
        raise UsageError("give a DATASET or --input FILE, not both")
    if args.input is None:
        if args.encoding is not None:
            raise UsageError("--encoding applies only with --input FILE: give both, or neither")
        prepare_dataset(args.dataset or name, data_dir, num_proc=args.num_proc)
        return
    try:
        text = args.input.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{args.input} is not UTF-8 text ({error.reason}): convert it to UTF-8"
        ) from error
    except OSError as error:
        raise UsageError(
            f"cannot read {args.input} ({error.strerror}): give --input a text file"
        ) from error
    prepare_text(text, data_dir, encoding=args.encoding or "char")
    print(f"wrote {data_dir}")


if __name__ == "__main__":
    run_main(main)
