"""Evaluate a model on a benchmark: `python -m nanojaxgpt.eval hellaswag [OUT_DIR] [--key=value ...]`.

HellaSwag (nanojaxgpt/hellaswag.py): the model that `init_from` names (the checkpoint in out_dir,
GPT-2's weights, a Hugging Face model folder or a nanoGPT ckpt.pt) scores every example of the
validation split, in batches split over all devices (and the processes of a multi-host run:
JAX_COORDINATOR_ADDRESS or SLURM), and the last line says `hellaswag: N examples, acc A,
acc_norm B`.
"""

import sys
from dataclasses import dataclass

from nanojaxgpt.config import DTYPE_CHOICES, out_dir_argument, read_overrides
from nanojaxgpt.distributed import (
    device_platform,
    initialize_multihost,
    is_main_process,
    make_mesh,
    place,
    select_device,
    state_shardings,
)
from nanojaxgpt.errors import UsageError, run_main
from nanojaxgpt.hellaswag import check_gpt2_vocabulary, evaluate, hellaswag_file, read_examples, render
from nanojaxgpt.precision import resolve_dtype
from nanojaxgpt.sample import check_init_from, load_for_sampling
from nanojaxgpt.tokenizer import GPT2Tokenizer
from nanojaxgpt.usage import describe

TASKS = ("hellaswag",)


@dataclass(frozen=True)
class EvalConfig:
    init_from: str = "resume"  # 'resume' (out_dir), 'gpt2'..'gpt2-xl', an HF model dir or a nanoGPT ckpt.pt
    out_dir: str = "out-gpt2-fineweb"  # the run to evaluate with init_from='resume' (or the argument OUT_DIR)
    hellaswag_file: str = ""  # HellaSwag's validation jsonl; '' downloads it once into the cache
    batch_size: int = 16  # examples per batch, 4 endings each, split over the devices
    device: str = "auto"  # 'cpu', 'cuda' ('gpu'), 'tpu', or 'auto' for JAX's default
    dtype: str = "auto"  # compute dtype: 'float32', 'bfloat16', 'float16' or 'auto' (bf16 on GPU/TPU)


def parse_args(argv: list[str]) -> tuple[str, EvalConfig]:
    if not argv or argv[0] not in TASKS:
        raise UsageError(f"name the benchmark first: python -m nanojaxgpt.eval {'|'.join(TASKS)} [OUT_DIR] "
                         f"[--key=value ...]")
    config = EvalConfig(**read_overrides(out_dir_argument(argv[1:], "eval"), EvalConfig(), config_files=False))
    if config.batch_size < 1:
        raise UsageError(f"batch_size={config.batch_size} must be at least 1")
    if config.dtype not in DTYPE_CHOICES:
        raise UsageError(f"dtype={config.dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
    device_platform(config.device)
    check_init_from(config.init_from)
    return argv[0], config


def main(argv: list[str]) -> None:
    _, config = parse_args(argv)
    examples = read_examples(hellaswag_file(config.hellaswag_file))  # before any model loads
    select_device(config.device)
    initialize_multihost("", 1, 0)  # joins a multi-host launch the environment describes
    model, tokenizer = load_for_sampling(config.init_from, config.out_dir)
    what = config.out_dir if config.init_from == "resume" else config.init_from
    check_gpt2_vocabulary(model.config.vocab_size, isinstance(tokenizer, GPT2Tokenizer), f"the model of {what}")
    mesh = make_mesh()
    model = place(model, state_shardings(model, mesh, fsdp=False))
    rendered = render(examples, model.config.block_size)
    acc, acc_norm, _ = evaluate(model, rendered, config.batch_size, mesh, resolve_dtype(config.dtype),
                                show_bar=is_main_process() and sys.stderr.isatty())
    if is_main_process():
        print(f"hellaswag: {len(examples)} examples, acc {acc:.4f}, acc_norm {acc_norm:.4f}")


def usage() -> str:
    return describe(
        EvalConfig, "python -m nanojaxgpt.eval hellaswag [OUT_DIR] [--key=value ...]",
        "Score a model on HellaSwag's validation split as build-nanogpt does (completion style): acc by\n"
        "each ending's summed loss, acc_norm by its mean loss per token. GPT-2 124M: 0.2859 / 0.2955.",
    )


if __name__ == "__main__":
    run_main(main, usage=usage)
