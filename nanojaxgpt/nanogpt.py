"""nanoGPT's checkpoints: its `ckpt.pt` in, as our model and AdamW state, and out again.

- nanoGPT's train.py saves `{'model', 'optimizer', 'model_args', 'iter_num', 'best_val_loss',
  'config'}`. Its network is ours with `mlp='gelu_exact'` (its `nn.GELU()` is the exact, erf
  GELU) and the tied head; its Linear weights are (out, in), as `eqx.nn.Linear`'s, so only the
  layers are stacked (nanojaxgpt/layout.py). torch.compile's `_orig_mod.` prefix is dropped.
- Its AdamW keeps `step`, `exp_avg` and `exp_avg_sq` for each parameter, numbered by parameter
  group (the matrices and embeddings, which it decays, then the gains and biases), each group in
  `named_parameters` order: optax's count, `mu` and `nu`. The learning rate is nanoGPT's
  `get_lr(iter_num)`, so the schedule's count is `iter_num`.
- Files are read with `torch.load(weights_only=True)`: tensors and plain Python values only,
  never pickled code (nanoGPT's `config` is numbers, strings and booleans, which that allows).
  torch is needed only here (`pip install -e ".[torch]"`).
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.errors import UsageError
from nanojaxgpt.layout import PretrainedError, is_causal_mask, per_layer, stacked
from nanojaxgpt.model import GPT
from nanojaxgpt.tokenizer import GPT2Tokenizer, Tokenizer, read_meta

# the keys of nanoGPT's model_args, and of its train.py config (all of them ours too)
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")
CONFIG_KEYS = (
    "out_dir", "eval_interval", "log_interval", "eval_iters", "eval_only", "always_save_checkpoint",
    "init_from", "wandb_log", "wandb_project", "wandb_run_name", "dataset",
    "gradient_accumulation_steps", "batch_size", "block_size", "n_layer", "n_head", "n_embd",
    "dropout", "bias", "learning_rate", "max_iters", "weight_decay", "beta1", "beta2", "grad_clip",
    "decay_lr", "warmup_iters", "lr_decay_iters", "min_lr", "backend", "device", "dtype", "compile",
)  # fmt: skip
COMPILED_PREFIX = "_orig_mod."  # what torch.compile puts before every name of a compiled model
HEAD = "lm_head.weight"  # tied to transformer.wte.weight


def is_nanogpt_checkpoint(init_from: str) -> bool:
    """Whether `init_from` names a file, which for us is a nanoGPT `ckpt.pt`."""
    return Path(init_from).is_file()


def _torch():
    try:
        import torch
    except ImportError:
        raise UsageError("nanoGPT's ckpt.pt is a torch file: reading or writing it needs torch, "
                         'pip install -e ".[torch]"') from None
    return torch


@dataclass
class NanoGPTCheckpoint:
    """What nanoGPT's train.py saved, as we use it."""

    model: GPT
    moments: dict[str, tuple[np.ndarray, np.ndarray]]  # AdamW's (exp_avg, exp_avg_sq) by name
    step: int  # AdamW's steps taken (nanoGPT's iterations, but for float16's skipped steps)
    iter_num: int
    best_val_loss: float
    config: dict  # nanoGPT's train.py config


def read_checkpoint(path: str | Path) -> NanoGPTCheckpoint:
    """nanoGPT's `ckpt.pt` at `path`: the model (with its dropout) and, for training on, AdamW's
    state, iter_num, best_val_loss and the run's config."""
    checkpoint = _load(Path(path))
    model = load_model(path, checkpoint, checkpoint["model_args"].get("dropout", 0.0))
    step, moments = _adam_moments(path, checkpoint.get("optimizer"), per_layer(model))
    best = checkpoint.get("best_val_loss", 1e9)
    return NanoGPTCheckpoint(model, moments, step, int(checkpoint.get("iter_num", 0)),
                             float(best.item() if hasattr(best, "item") else best),
                             dict(checkpoint.get("config") or {}))


def _load(path: Path) -> dict:
    """The checkpoint's dict, after checking that it is nanoGPT's."""
    torch = _torch()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise PretrainedError(
            f"{path} holds Python objects that torch.load(weights_only=True) refuses "
            f"({str(error).strip().splitlines()[-1][:120]}): nanojaxgpt runs no pickled code; save "
            f"tensors and plain values only, as nanoGPT's train.py does"
        ) from None
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError... for a bad file
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise PretrainedError(f"{path} is not a readable torch file ({reason}): it is truncated or "
                              f"not a checkpoint; copy it again from where nanoGPT wrote it") from None
    if not isinstance(checkpoint, dict):
        raise PretrainedError(f"{path} holds a {type(checkpoint).__name__}, not nanoGPT's checkpoint dict")
    missing = [key for key in ("model", "model_args") if key not in checkpoint]
    if missing and checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        raise PretrainedError(
            f"{path} is a bare state dict of {len(checkpoint)} tensors (a Hugging Face "
            f"pytorch_model.bin?), not nanoGPT's ckpt.pt: it has no 'model_args'; for a Hugging Face "
            f"model give its folder (config.json and model.safetensors) as init_from"
        )
    if missing:
        raise PretrainedError(f"{path} is not nanoGPT's ckpt.pt: it has no {' or '.join(map(repr, missing))} "
                              f"(its keys: {', '.join(map(str, checkpoint))})")
    return checkpoint


def model_config(model_args: dict, dropout: float, path) -> GPTConfig:
    """Our config of the model nanoGPT's `model_args` describe."""
    unknown = sorted(set(model_args) - set(MODEL_ARGS))
    missing = [key for key in MODEL_ARGS if key not in model_args]
    if unknown:
        raise PretrainedError(f"{path}: model_args has {', '.join(unknown)}, which nanoGPT's model.py "
                              f"does not: a model nanojaxgpt cannot express")
    if missing:
        raise PretrainedError(f"{path}: model_args has no {', '.join(missing)}; nanoGPT's train.py "
                              f"saves all of {', '.join(MODEL_ARGS)}")
    try:
        return GPTConfig(**{**model_args, "dropout": dropout}, mlp="gelu_exact")
    except (ValueError, TypeError) as error:
        raise PretrainedError(f"{path}: model_args describes a model we cannot express: {error}") from None


def load_model(path: str | Path, checkpoint: dict | None = None, dropout: float = 0.0) -> GPT:
    """The model of nanoGPT's `ckpt.pt` at `path` (or of its loaded `checkpoint`)."""
    checkpoint = _load(Path(path)) if checkpoint is None else checkpoint
    config = model_config(checkpoint["model_args"], dropout, path)
    tensors = {name.removeprefix(COMPILED_PREFIX): value for name, value in checkpoint["model"].items()}
    head = tensors.pop(HEAD, None)
    wte = tensors.get("transformer.wte.weight")
    if head is not None and wte is not None and not (head.shape == wte.shape and bool((head == wte).all())):
        raise PretrainedError(f"{path}: lm_head.weight differs from transformer.wte.weight, which "
                              f"nanoGPT's model ties to it; nanojaxgpt cannot express an untied head")
    arrays = {name: value.float().numpy() for name, value in tensors.items() if not is_causal_mask(name)}
    skeleton = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    model = stacked(arrays, skeleton, "model_args")  # takes what it uses
    if arrays:
        raise PretrainedError(f"{path}: the model holds {len(arrays)} arrays that nanoGPT's GPT of these "
                              f"model_args does not have, e.g. {sorted(arrays)[0]!r}")
    return model


def parameter_groups(arrays: dict[str, np.ndarray]) -> list[list[str]]:
    """nanoGPT's configure_optimizers: the names of the parameters of at least 2 dimensions
    (decayed), then of the rest, each in named_parameters order (that of `arrays`)."""
    return [[name for name, a in arrays.items() if a.ndim >= 2], [name for name, a in arrays.items() if a.ndim < 2]]


def _adam_moments(path, optimizer: dict | None, arrays: dict[str, np.ndarray]) -> tuple[int, dict]:
    """AdamW's step count and `{name: (exp_avg, exp_avg_sq)}` from its state_dict, for the
    model's `arrays` (none saved or no step taken: zeros, as AdamW starts)."""
    if not optimizer or not optimizer.get("state"):
        return 0, {name: (np.zeros_like(array), np.zeros_like(array)) for name, array in arrays.items()}
    groups = parameter_groups(arrays)
    saved = [len(group["params"]) for group in optimizer["param_groups"]]
    if saved != [len(group) for group in groups]:
        raise PretrainedError(
            f"{path}: the optimizer has parameter groups of {saved} tensors, not nanoGPT's "
            f"{[len(group) for group in groups]} (decayed, not decayed): not AdamW from nanoGPT's "
            f"configure_optimizers"
        )
    order = [name for group in groups for name in group]
    indices = [index for group in optimizer["param_groups"] for index in group["params"]]
    moments, steps = {}, set()
    for name, index in zip(order, indices):
        state = optimizer["state"][index]
        moments[name] = tuple(state[key].float().numpy().reshape(arrays[name].shape)
                              for key in ("exp_avg", "exp_avg_sq"))
        steps.add(int(state["step"]))
    if len(steps) != 1:
        raise PretrainedError(f"{path}: AdamW's parameters have taken different numbers of steps "
                              f"({sorted(steps)}); nanoGPT steps them all at once")
    return steps.pop(), moments


def _is_adam_or_schedule(node) -> bool:
    return isinstance(node, (optax.ScaleByAdamState, optax.ScaleByScheduleState))


def adamw_state(opt_state, checkpoint: NanoGPTCheckpoint):
    """`opt_state` (a new state of our AdamW, `optimizer.init(params)`) holding the checkpoint's
    moments and step count, its schedule at the checkpoint's iter_num."""

    def restore(node):
        if isinstance(node, optax.ScaleByAdamState):
            mu = stacked({name: m for name, (m, _) in checkpoint.moments.items()}, node.mu, "model_args")
            nu = stacked({name: v for name, (_, v) in checkpoint.moments.items()}, node.nu, "model_args")
            return node._replace(count=jnp.asarray(checkpoint.step, node.count.dtype), mu=mu, nu=nu)
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=jnp.asarray(checkpoint.iter_num, node.count.dtype))
        return node

    return jax.tree.map(restore, opt_state, is_leaf=_is_adam_or_schedule)


def checkpoint_tokenizer(path: str | Path, config: dict, meta: str = "") -> tuple[Tokenizer, Path | None]:
    """The vocabulary of nanoGPT's checkpoint at `path`: `meta` (a meta.pkl) when given, else
    the meta.pkl of its data set under ./data or under the nanoGPT folder that holds the
    checkpoint's out_dir, else GPT-2's BPE (None for the file)."""
    if meta:
        if not Path(meta).is_file():
            raise UsageError(f"meta={meta}: no such file; give the meta.pkl of the data set the model "
                             f"was trained on")
        return read_meta(meta), Path(meta)
    dataset = config.get("dataset")
    nanogpt_root = Path(path).resolve().parent.parent
    candidates = [Path("data", dataset, "meta.pkl"), nanogpt_root / "data" / dataset / "meta.pkl"]
    candidates = candidates if dataset else []
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    return (read_meta(found), found) if found else (GPT2Tokenizer(), None)


def load_model_and_tokenizer(path: str | Path, meta: str = "") -> tuple[GPT, Tokenizer]:
    """The model of nanoGPT's `ckpt.pt` at `path` (inference mode) and its vocabulary (see
    `checkpoint_tokenizer`), saying where that came from as nanoGPT's sample.py does."""
    checkpoint = _load(Path(path))
    model = eqx.nn.inference_mode(load_model(path, checkpoint))
    tokenizer, source = checkpoint_tokenizer(path, checkpoint.get("config") or {}, meta)
    print(f"Loading meta from {source}..." if source else "No meta.pkl found, assuming GPT-2 encodings...")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise PretrainedError(
            f"{path}: the model has a vocabulary of {model.config.vocab_size} tokens but "
            f"{source or 'GPT-2 BPE'} has {tokenizer.vocab_size}: give the meta.pkl of its data set "
            f"with --meta=PATH"
        )
    return model, tokenizer


def _adam_state_of(opt_state) -> optax.ScaleByAdamState:
    nodes = jax.tree.leaves(opt_state, is_leaf=_is_adam_or_schedule)
    return next(node for node in nodes if isinstance(node, optax.ScaleByAdamState))


def write_checkpoint(path: str | Path, model: GPT, opt_state, iter_num: int, best_val_loss: float,
                     config: dict, learning_rate: float) -> None:
    """nanoGPT's `ckpt.pt` of `model` and its AdamW `opt_state` at `iter_num`, as train.py saves
    it: its sample.py samples from it and its train.py (init_from='resume') continues it.
    `config` holds nanoGPT's train.py keys; `learning_rate` is the one of iter_num."""
    torch = _torch()
    arrays = per_layer(model)
    tensors = {name: torch.from_numpy(np.array(array, np.float32)) for name, array in arrays.items()}
    state_dict = {**tensors, HEAD: tensors["transformer.wte.weight"]}  # tied: one tensor, as in nanoGPT
    adam = _adam_state_of(opt_state)
    mu, nu = per_layer(adam.mu), per_layer(adam.nu)
    parameters = {name: torch.nn.Parameter(tensor) for name, tensor in tensors.items()}
    decayed, other = ([parameters[name] for name in group] for group in parameter_groups(arrays))
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config["weight_decay"]}, {"params": other, "weight_decay": 0.0}],
        lr=learning_rate, betas=(config["beta1"], config["beta2"]),
    )
    step = int(adam.count)
    if step:  # before its first step AdamW keeps no state
        for name, parameter in parameters.items():
            optimizer.state[parameter] = {
                "step": torch.tensor(float(step), dtype=torch.float32),
                "exp_avg": torch.from_numpy(np.array(mu[name], np.float32)),
                "exp_avg_sq": torch.from_numpy(np.array(nu[name], np.float32)),
            }
    torch.save({
        "model": state_dict,
        "optimizer": optimizer.state_dict(),
        "model_args": {key: getattr(model.config, key) for key in MODEL_ARGS},
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(best_val_loss, dtype=torch.float32),
        "config": {key: config[key] for key in CONFIG_KEYS if key in config},
    }, path)
