"""Training configuration: nanoGPT's train.py keys, config files and `--key=value` overrides.

`python -m nanojaxgpt.train [config.py ...] [--key=value ...]` reads its arguments in order, as
nanoGPT's configurator does: a config file is Python assignments (`n_layer = 6`), an override
replaces one key. Unlike nanoGPT, an unknown key, a value of the wrong type or one out of range
stops with one line (naming the nearest valid key) before any work starts.
"""

import ast
import dataclasses
import difflib
import math
import os
import types
from dataclasses import dataclass, field

from nanojaxgpt.architecture import PRETRAINED, GPTConfig
from nanojaxgpt.errors import UsageError


@dataclass
class TrainConfig:
    """The embedded default: nanoGPT's CPU recipe for the character model on Tiny Shakespeare
    (its config/train_shakespeare_char.py, shrunk to 4 layers of 128 with block 64)."""

    # I/O
    out_dir: str = "out-shakespeare-char"  # where checkpoints and metrics.jsonl go
    eval_interval: int = 250  # estimate the losses (and save if val improves) this often
    log_interval: int = 10  # print the training loss every this many iterations
    eval_iters: int = 20  # batches per loss estimate
    eval_only: bool = False  # evaluate once and exit
    always_save_checkpoint: bool = False  # else save only when val loss improves
    init_from: str = "scratch"  # 'scratch', 'resume', 'gpt2'..'gpt2-xl', an HF model dir or a nanoGPT ckpt.pt
    overwrite_checkpoint: bool = False  # let a new run (not resume) replace the checkpoint in out_dir
    # wandb logging (the optional `wandb` extra)
    wandb_log: bool = False  # log the evaluations to Weights & Biases
    wandb_project: str = "shakespeare-char"  # its project
    wandb_run_name: str = "mini-gpt"  # its run name
    # a benchmark and samples while training, as build-nanogpt has them
    hellaswag_interval: int = 0  # HellaSwag's accuracy every this many iterations and at the end; 0 is off
    hellaswag_file: str = ""  # HellaSwag's validation jsonl; '' downloads it once into the cache
    sample_interval: int = 0  # print a few samples every this many iterations and at the end; 0 is off
    sample_prompt: str = "\n"  # the text the samples continue
    # data
    dataset: str = "shakespeare_char"  # reads data/<dataset>/train.bin and val.bin, or its shards
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    batch_size: int = 12  # sequences per micro-batch
    block_size: int = 64  # context length in tokens
    # model
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # 0 for pretraining; 0.1 or more when fine-tuning or overfitting
    bias: bool = False  # biases in Linears and LayerNorms, as GPT-2 has
    mlp: str = "swiglu"  # or 'gelu' (GPT-2's MLP), 'gelu_exact' (nanoGPT's: erf GELU), 'relu2' (ReLU^2)
    pos_emb: str = "learned"  # 'learned' (GPT-2) or 'rotary' (RoPE on queries and keys)
    qk_norm: bool = False  # RMS-normalise each head's queries and keys
    tied_head: bool = True  # the output head is the token embedding matrix; False gives it its own
    logit_softcap: float = 0.0  # > 0 caps the logits smoothly: cap * tanh(logits / cap)
    zero_init_proj: bool = False  # start the residual projections (and an untied head) at zero
    # AdamW
    learning_rate: float = 1e-3  # peak learning rate
    max_iters: int = 2000  # training iterations in all
    weight_decay: float = 1e-1  # on weight matrices and embeddings only
    beta1: float = 0.9  # AdamW's momentum
    beta2: float = 0.99  # a little bigger than GPT-2's 0.95: few tokens per iteration
    grad_clip: float = 1.0  # clip gradients at this global norm; 0.0 disables
    # Muon
    optimizer: str = "adamw"  # or 'muon': Muon for the blocks' matrices, AdamW for the rest
    muon_learning_rate: float = 0.02  # Muon's peak learning rate, on the same schedule
    muon_momentum: float = 0.95  # Muon's (Nesterov) momentum
    muon_ns_steps: int = 5  # Newton-Schulz iterations per update (each costs ~3 matmuls a matrix)
    # learning rate schedule: linear warmup, then cosine decay to min_lr
    decay_lr: bool = True  # False keeps learning_rate constant
    warmup_iters: int = 100  # iterations of linear warmup
    lr_decay_iters: int = 2000  # iterations until min_lr (about max_iters, as in nanoGPT)
    min_lr: float = 1e-4  # learning rate after the decay (about learning_rate/10)
    # system
    device: str = "auto"  # 'cpu', 'cuda' ('gpu'), 'tpu', or 'auto' for JAX's default
    dtype: str = "auto"  # compute dtype: 'float32', 'bfloat16', 'float16' or 'auto' (bf16 on GPU/TPU)
    compile: bool = True  # False runs the step without jit, for debugging
    compile_cache: str = "auto"  # compiled steps kept for the next run: 'auto', a folder, or '' for none
    deterministic: bool = True  # bit-identical runs and resume on GPUs too; False is faster there
    backend: str = "nccl"  # accepted so nanoGPT's commands paste as they are; JAX needs none
    seed: int = 1337  # of the initialisation, the batches and dropout
    # several devices and hosts (batch_size is per device, as in nanoGPT's DDP)
    fsdp: bool = False  # shard parameters and optimizer state over the devices, not replicate
    coordinator_address: str = ""  # 'host:port' of process 0 for multi-host runs, or 'auto'
    num_processes: int = 1  # processes in a multi-host run
    process_id: int = 0  # this process's index, 0 to num_processes-1
    # keys given by a config file or an override, for notes about keys we accept but ignore
    explicitly_set: frozenset = field(default=frozenset(), repr=False, compare=False)


# the optimizers nanojaxgpt/optim.py builds by name (its `OPTIMIZERS`)
OPTIMIZER_CHOICES = ("adamw", "muon")
# compute dtypes; 'auto' is bfloat16 on GPUs and TPUs, float32 on CPUs (nanojaxgpt/precision.py)
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
KEYS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "explicitly_set"]
DEFAULTS = TrainConfig()
# Keys that belong to the process running a run, not to the run: a run that continues another
# (--init_from=resume, or a nanoGPT ckpt.pt) takes every other key from the checkpoint's config
# unless its command line or config file gives it anew.
PROCESS_KEYS = ("out_dir", "init_from", "overwrite_checkpoint", "eval_only", "wandb_log", "wandb_project",
                "wandb_run_name", "hellaswag_file", "device", "compile", "compile_cache", "deterministic",
                "backend", "coordinator_address", "num_processes", "process_id")


def _check_key(key: str, defaults, where: str) -> None:
    keys = [f.name for f in dataclasses.fields(defaults) if f.name != "explicitly_set"]
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(keys)}"
        raise UsageError(f"unknown config key '{key}' {where}; {hint}")


def _typed(key: str, value, defaults, where: str, optional: tuple = ()):
    """`value` as the type of `key`'s default (an int is a fine float; the `optional` keys
    also take None), or a UsageError."""
    default = getattr(defaults, key)
    expected = type(default)
    if value is None and key in optional:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise UsageError(f"{key} {where} is a number too large to use; give one below 2**63")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise UsageError(
            f"{key}={value!r} {where} is {_a(type(value).__name__)}; {key} takes "
            f"{_a(expected.__name__)}, like its default {default!r}"
        )
    return value


def _a(word: str) -> str:
    """`word` with its indefinite article: "an int", "a str"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _parse_override_value(key: str, text: str, defaults):
    """nanoGPT's rule: a Python literal if it parses as one, else the string itself."""
    expected = type(getattr(defaults, key))
    if expected is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return text if expected is str and not isinstance(value, str) else value


def read_overrides(argv: list[str], defaults, config_files: bool = True, optional: tuple = ()) -> dict:
    """The values that config files and `--key=value` overrides give, applied in order and
    checked against the keys and types of the dataclass instance `defaults`."""
    values: dict = {}
    for arg in argv:
        if not arg.startswith("--") and config_files:
            for key, value in _read_config_file(arg).items():
                _check_key(key, defaults, f"in {arg}")
                values[key] = _typed(key, value, defaults, f"in {arg}", optional)
            continue
        key, sep, text = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep:
            raise UsageError(f"{arg}: overrides take the form --key=value, e.g. --{key}=...")
        _check_key(key, defaults, f"in {arg}")
        values[key] = _typed(key, _parse_override_value(key, text, defaults), defaults, f"in {arg}", optional)
    return values


def folder_arguments(argv: list[str]) -> list[str]:
    """The arguments that name run folders (OUT_DIR): not `--key=value`, no `=`."""
    return [arg for arg in argv if not arg.startswith("--") and "=" not in arg]


def out_dir_argument(argv: list[str], command: str) -> list[str]:
    """`argv` with a lone OUT_DIR read as `--out_dir=OUT_DIR`: the sampling and plotting
    commands take the run's folder either way."""
    folders = folder_arguments(argv)
    if len(folders) > 1:
        raise UsageError(
            f"{' '.join(folders)}: give one OUT_DIR: python -m nanojaxgpt.{command} [OUT_DIR] "
            f"[--key=value ...]"
        )
    return [f"--out_dir={arg}" if arg in folders else arg for arg in argv]


def _read_config_file(path: str) -> dict:
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        files = [os.path.join(os.path.dirname(path), name) for name in sorted(os.listdir(folder))
                 if name.endswith(".py")] if os.path.isdir(folder) else []
        close = difflib.get_close_matches(path, files, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "give the path of a .py config file"
        raise UsageError(f"config file {path} does not exist; {hint}")
    namespace: dict = {}
    try:
        with open(path) as f:
            source = f.read()
        exec(compile(source, path, "exec"), namespace)
    except (Exception, SystemExit) as error:  # the user's file may raise anything; say where
        line = getattr(error, "lineno", None) or _traceback_line(error, path)
        raise UsageError(
            f"config file {path} failed at line {line}: {type(error).__name__}: {error}"
        ) from error
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and not isinstance(value, types.ModuleType)
    }


def _traceback_line(error: BaseException, path: str):
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def parse_args(argv: list[str]) -> TrainConfig:
    """A TrainConfig from config files and `--key=value` overrides, applied in order."""
    values = read_overrides(argv, DEFAULTS)
    config = TrainConfig(**values, explicitly_set=frozenset(values))
    check_ranges(config)
    return config


def check_ranges(config: TrainConfig) -> None:
    """Values of the right type that still cannot work, caught before any work starts."""
    for key in KEYS:
        if isinstance(getattr(config, key), float) and not math.isfinite(getattr(config, key)):
            raise UsageError(f"{key}={getattr(config, key)} must be a finite number")
    positive = ("eval_interval", "log_interval", "eval_iters", "gradient_accumulation_steps",
                "batch_size", "num_processes", "muon_ns_steps")
    for key in positive:
        if getattr(config, key) <= 0:
            raise UsageError(f"{key}={getattr(config, key)} must be a positive integer")
    non_negative = ("max_iters", "weight_decay", "grad_clip", "warmup_iters", "lr_decay_iters",
                    "min_lr", "hellaswag_interval", "sample_interval")
    for key in non_negative:
        if getattr(config, key) < 0:
            raise UsageError(f"{key}={getattr(config, key)} must be >= 0")
    if config.learning_rate <= 0:
        raise UsageError(f"learning_rate={config.learning_rate} must be > 0")
    if config.optimizer not in OPTIMIZER_CHOICES:
        raise UsageError(f"optimizer={config.optimizer!r} is not one of {', '.join(OPTIMIZER_CHOICES)}")
    if config.muon_learning_rate <= 0:
        raise UsageError(f"muon_learning_rate={config.muon_learning_rate} must be > 0")
    for key in ("beta1", "beta2", "muon_momentum"):
        if not 0.0 <= getattr(config, key) < 1.0:
            raise UsageError(f"{key}={getattr(config, key)} must be in [0, 1)")
    try:  # the model's keys: GPTConfig's own checks
        GPTConfig.from_training(config, vocab_size=1)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.dtype not in DTYPE_CHOICES:
        raise UsageError(f"dtype={config.dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
    if config.init_from not in ("scratch", "resume", *PRETRAINED) and not os.path.exists(config.init_from):
        raise UsageError(
            f"init_from={config.init_from!r} is not one of scratch, resume, "
            f"{', '.join(PRETRAINED)}, a Hugging Face model directory or a nanoGPT ckpt.pt"
        )


def config_from_record(record: dict) -> TrainConfig:
    """The config a checkpoint's `config` record holds; keys it lacks (older versions) keep
    their defaults."""
    return TrainConfig(**{key: value for key, value in record.items() if key in KEYS})


def continued_config(config: TrainConfig, saved: dict, where: str) -> tuple[TrainConfig, list[str]]:
    """`config` for a run that continues the one whose config was `saved` (a checkpoint's, read
    from `where`): each key of the run that this command does not give comes from `saved`.
    Returns that config and the keys given anew with another value than saved, as
    `max_iters=4000 (was 2000)`."""
    run_keys = [key for key in KEYS if key in saved and key not in PROCESS_KEYS]
    taken = {key: _typed(key, saved[key], DEFAULTS, f"in {where}") for key in run_keys
             if key not in config.explicitly_set}
    changed = [f"{key}={getattr(config, key)!r} (was {saved[key]!r})" for key in run_keys
               if key in config.explicitly_set and getattr(config, key) != saved[key]]
    continued = dataclasses.replace(config, **taken)
    check_ranges(continued)
    return continued, changed
