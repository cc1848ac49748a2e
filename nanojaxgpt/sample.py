"""Sample from a trained model or from GPT-2: `python -m nanojaxgpt.sample [--key=value ...]`.

nanoGPT's sample.py options, given as `--key=value` and checked against the defaults below.
With no arguments it samples from the default training run's checkpoint (out-shakespeare-char).
Text is decoded with the vocabulary the checkpoint keeps; a nanoGPT `ckpt.pt` (or an older
checkpoint of ours) with its data set's `data/<dataset>/meta.pkl` when there is one, otherwise
with GPT-2's BPE (offline too); GPT-2 models always use GPT-2's BPE. The
`num_samples` samples are drawn as one batch with a key/value cache (nanojaxgpt/generate.py).
"""

import difflib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nanojaxgpt.architecture import PRETRAINED
from nanojaxgpt.checkpoint import STATE_FILE, CheckpointError, load_model_and_tokenizer
from nanojaxgpt.config import out_dir_argument, read_overrides
from nanojaxgpt.distributed import device_platform, select_device
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.generate import generate
from nanojaxgpt.hf import from_pretrained
from nanojaxgpt.model import GPT
from nanojaxgpt.nanogpt import is_nanogpt_checkpoint, load_model_and_tokenizer as load_nanogpt_model_and_tokenizer
from nanojaxgpt.precision import cast_floats
from nanojaxgpt.tokenizer import GPT2Tokenizer, Tokenizer
from nanojaxgpt.usage import describe

SEPARATOR = "---------------"
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class SampleConfig:
    init_from: str = "resume"  # 'resume' (out_dir), 'gpt2'..'gpt2-xl', an HF model dir or a nanoGPT ckpt.pt
    out_dir: str = "out-shakespeare-char"  # where `python -m nanojaxgpt.train` saves by default
    start: str = "\n"  # the prompt, or "FILE:prompt.txt" to read it from a file
    num_samples: int = 10  # drawn together, as one batch
    max_new_tokens: int = 500  # tokens generated per sample
    temperature: float = 0.8  # 1.0 = as trained, < 1.0 = less random, > 1.0 = more; 0 = greedy
    top_k: int | None = 200  # draw among the top_k most likely tokens only; None for all
    seed: int = 1337  # the samples drawn depend only on it
    device: str = "auto"  # 'cpu', 'cuda' ('gpu'), 'tpu', or 'auto' for JAX's default
    dtype: str = "float32"  # of weights and activations: 'float32', 'bfloat16' or 'float16'
    compile: bool = True  # accepted so nanoGPT's commands paste as they are; we always compile
    meta: str = ""  # a nanoGPT ckpt.pt's vocabulary, its meta.pkl; '' looks in data/<its dataset>/


def parse_args(argv: list[str]) -> SampleConfig:
    """A SampleConfig from `--key=value` options, typed and checked like training's."""
    argv = out_dir_argument(argv, "sample")
    config = SampleConfig(**read_overrides(argv, SampleConfig(), config_files=False, optional=("top_k",)))
    check(config)
    return config


def check(config: SampleConfig) -> None:
    """Values of the right type that still cannot work, caught before any work starts."""
    if config.num_samples < 1:
        raise UsageError(f"num_samples={config.num_samples} must be at least 1")
    if config.max_new_tokens < 0:
        raise UsageError(f"max_new_tokens={config.max_new_tokens} must be >= 0")
    if not config.temperature >= 0:
        raise UsageError(f"temperature={config.temperature} must be >= 0 (0 is greedy)")
    if config.top_k is not None and config.top_k < 1:
        raise UsageError(f"top_k={config.top_k} must be at least 1, or None for no limit")
    if config.dtype not in DTYPES:
        raise UsageError(f"dtype={config.dtype!r} is not one of {', '.join(DTYPES)}")
    device_platform(config.device)
    check_init_from(config.init_from)


def check_init_from(init_from: str) -> None:
    """A model to sample from: 'resume', a GPT-2 name, or a path (a folder or a ckpt.pt)."""
    choices = ("resume", *PRETRAINED)
    if init_from not in choices and not Path(init_from).exists():
        close = difflib.get_close_matches(init_from, choices, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"init_from={init_from!r} is not one of {', '.join(choices)}, a local "
            f"Hugging Face model directory or a nanoGPT ckpt.pt{hint}"
        )


def load_resumed(out_dir: str) -> tuple[GPT, Tokenizer]:
    """The trained model in `out_dir` and its tokenizer, or an error that says how to get one."""
    try:
        return load_model_and_tokenizer(out_dir, verbose=True)
    except CheckpointError:
        if (Path(out_dir) / STATE_FILE).exists():
            raise
        if out_dir == SampleConfig().out_dir:
            raise RuntimeFailure(
                f"no checkpoint in {out_dir}: run `python -m nanojaxgpt.train` first to train the "
                f"default character model (or sample GPT-2 with --init_from=gpt2)"
            ) from None
        raise RuntimeFailure(
            f"no checkpoint in {out_dir}: train one there with `python -m nanojaxgpt.train "
            f"--out_dir={out_dir}`, or give the --out_dir of a trained model"
        ) from None


def load_for_sampling(init_from: str, out_dir: str, meta: str = "") -> tuple[GPT, Tokenizer]:
    """The model that `init_from` names, without dropout, and its tokenizer: the checkpoint in
    `out_dir` ('resume'), a nanoGPT ckpt.pt (its vocabulary: `meta`, see nanojaxgpt/nanogpt.py),
    or GPT-2's weights (GPT-2's BPE)."""
    if init_from == "resume":
        return load_resumed(out_dir)
    if is_nanogpt_checkpoint(init_from):
        return load_nanogpt_model_and_tokenizer(init_from, meta)
    return from_pretrained(init_from, dict(dropout=0.0)), GPT2Tokenizer()


def read_prompt(start: str) -> str:
    """`start` itself, or the text of the file it names as `FILE:path`."""
    if not start.startswith("FILE:"):
        return start
    path = Path(start.removeprefix("FILE:"))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(f"start=FILE:{path}: cannot read {path} ({reason})") from None


def encode_prompt(text: str, tokenizer, vocab_size: int, key: str = "start") -> list[int]:
    """The ids of the prompt `text`, given as the option `key`, or a UsageError."""
    try:
        ids = tokenizer.encode(text)
    except ValueError as error:
        raise UsageError(f"{key}: {error}") from None
    if not ids:
        raise UsageError(f"{key} is empty: the prompt needs at least one token, e.g. --{key}=Hello")
    if max(ids) >= vocab_size:
        raise UsageError(
            f"{key} encodes to token id {max(ids)}, outside the model's vocabulary of {vocab_size}"
        )
    return ids


def decode(tokenizer, ids: list[int]) -> str:
    """The text of `ids`; an id past the tokenizer's vocabulary (a model's vocab_size padded
    up, as GPT-2's 50257 to 50304) shows as U+FFFD instead of stopping the run."""
    pieces, run = [], []
    for i in ids:
        if i < tokenizer.vocab_size:
            run.append(i)
        else:
            pieces += [tokenizer.decode(run), "\ufffd"]
            run = []
    return "".join(pieces) + tokenizer.decode(run)


def main(argv: list[str]) -> None:
    config = parse_args(argv)
    prompt = read_prompt(config.start)  # a missing prompt file fails before any model loads
    select_device(config.device)
    model, tokenizer = load_for_sampling(config.init_from, config.out_dir, config.meta)
    model = cast_floats(model, jnp.dtype(config.dtype))
    ids = encode_prompt(prompt, tokenizer, model.config.vocab_size)
    prompts = jnp.tile(jnp.asarray(ids, jnp.int32), (config.num_samples, 1))
    key = jax.random.key(config.seed)
    samples = generate(model, prompts, config.max_new_tokens, config.temperature, config.top_k, key=key)
    for sample in np.asarray(samples):
        print(decode(tokenizer, sample.tolist()))
        print(SEPARATOR)


def usage() -> str:
    return describe(
        SampleConfig, "python -m nanojaxgpt.sample [OUT_DIR] [--key=value ...]",
        "Sample from a trained model (its checkpoint in out_dir) or from GPT-2, as nanoGPT's sample.py.",
    )


if __name__ == "__main__":
    run_main(main, usage=usage)
