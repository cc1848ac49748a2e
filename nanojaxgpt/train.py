"""Train a GPT: `python -m nanojaxgpt.train [config.py] [--key=value ...]`.

With no arguments it trains the character model on Tiny Shakespeare with nanoGPT's CPU recipe,
preparing the data first if needed. The log lines are nanoGPT's; every eval and log line also goes
to `out_dir/metrics.jsonl`. `--init_from=resume` continues exactly where the last checkpoint left
off: the batches and dropout masks depend only on the seed and the iteration number.
"""

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from tqdm import tqdm

from nanojaxgpt.architecture import ARCHITECTURE_KEYS, GPTConfig
from nanojaxgpt.checkpoint import has_checkpoint, load_checkpoint, load_optimizer_state, save_checkpoint
from nanojaxgpt.compile_cache import use_compilation_cache
from nanojaxgpt.config import TrainConfig, continued_config, parse_args
from nanojaxgpt.data import BatchSampler
from nanojaxgpt.determinism import (
    NONDETERMINISTIC_NOTE,
    deterministic_ops_requested,
    request_deterministic_ops,
)
from nanojaxgpt.distributed import (
    gather_to_host,
    initialize_multihost,
    is_main_process,
    local_rows,
    make_mesh,
    place,
    select_device,
    split_iteration,
    state_shardings,
    to_global_batch,
)
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.flops import device_peak_flops
from nanojaxgpt.generate import generate
from nanojaxgpt.hellaswag import check_gpt2_vocabulary, hellaswag_file, read_examples, render
from nanojaxgpt.hellaswag import evaluate as evaluate_hellaswag
from nanojaxgpt.hf import from_pretrained
from nanojaxgpt.host_memory import keep_freed_host_memory
from nanojaxgpt.memory import compile_step
from nanojaxgpt.model import GPT
from nanojaxgpt.nanogpt import adamw_state, is_nanogpt_checkpoint, read_checkpoint as read_nanogpt_checkpoint
from nanojaxgpt.optim import learning_rate_at, make_optimizer
from nanojaxgpt.precision import DynamicLossScale, all_finite, cast_floats, resolve_dtype
from nanojaxgpt.prepare import prepare_command, prepare_dataset
from nanojaxgpt.progress import ESTIMATE_AFTER, announce_compile, eval_bar, eval_batch_done, long_run_note
from nanojaxgpt.sample import decode, encode_prompt
from nanojaxgpt.shards import INDEX_FILE
from nanojaxgpt.tokenizer import CharTokenizer, GPT2Tokenizer, Tokenizer, load_tokenizer
from nanojaxgpt.usage import describe

# data sets that the training command prepares itself when their files are missing
SELF_PREPARING = ("shakespeare_char", "shakespeare")


def compute_loss(model: GPT, x, y, key, dtype=jnp.float32):
    """Mean next-token cross-entropy of a batch (B, T); the forward runs in `dtype`, the
    softmax and the loss in float32."""
    model = cast_floats(model, dtype)
    keys = None if key is None else jax.random.split(key, x.shape[0])
    logits = jax.vmap(lambda idx, k: model(idx, key=k))(x, keys)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
    return losses.mean()


@eqx.filter_jit(donate="all")
def make_step(model: GPT, opt_state, x, y, key, optimizer, dtype=jnp.float32, loss_scale=None):
    """One optimizer step over a batch of micro-batches x, y: (accumulation, B, T). Gradients
    are averaged across the micro-batches inside the compiled step. With a `loss_scale`
    (float16), a step whose gradients overflow changes nothing but the scale.
    Returns `(model, opt_state, loss, loss_scale)`."""
    params = eqx.filter(model, eqx.is_inexact_array)
    micro_keys = jax.random.split(key, x.shape[0])
    scale = 1.0 if loss_scale is None else loss_scale.scale

    def accumulate(grad_sum, micro_batch):
        scaled_loss = lambda m: compute_loss(m, *micro_batch, dtype) * scale
        loss, grads = eqx.filter_value_and_grad(scaled_loss)(model)
        return jax.tree.map(jnp.add, grad_sum, grads), loss / scale

    zeros = jax.tree.map(jnp.zeros_like, params)
    grad_sum, losses = jax.lax.scan(accumulate, zeros, (x, y, micro_keys))
    grads = jax.tree.map(lambda g: g / (x.shape[0] * scale), grad_sum)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_model = eqx.apply_updates(model, updates)
    if loss_scale is not None:
        finite = all_finite(grads)
        keep_if_finite = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_model = eqx.combine(keep_if_finite(*(eqx.filter(t, eqx.is_array) for t in (new_model, model))), model)
        new_opt_state = keep_if_finite(new_opt_state, opt_state)
        loss_scale = loss_scale.adjust(finite)
    return new_model, new_opt_state, losses.mean(), loss_scale


@eqx.filter_jit
def evaluate(model: GPT, x, y, dtype=jnp.float32):
    """Mean loss over a stack of batches (n, B, T), dropout off. Each batch done advances the
    evaluation's progress bar (nanojaxgpt/progress.py)."""
    model = eqx.nn.inference_mode(model)

    def batch_loss(batch):
        i, x, y = batch
        loss = compute_loss(model, x, y, None, dtype)
        jax.debug.callback(eval_batch_done, i + 1, loss)
        return loss

    losses = jax.lax.map(batch_loss, (jnp.arange(x.shape[0]), x, y))
    return losses.mean()


def load_data(config: TrainConfig, global_batch: int) -> tuple[BatchSampler, Tokenizer]:
    """The batch sampler and the data set's tokenizer: its characters from meta.pkl, else
    GPT-2's BPE. The data set is train.bin and val.bin, or a folder of shards (index.json)."""
    data_dir = Path("data") / config.dataset
    sharded = (data_dir / INDEX_FILE).exists()
    missing = [] if sharded else [name for name in ("train.bin", "val.bin") if not (data_dir / name).exists()]
    if missing and any(data_dir.glob("*.npy")):
        raise RuntimeFailure(f"{data_dir} holds .npy shards but no {INDEX_FILE}, which says which are whole: "
                             f"prepare it again with {prepare_command(config.dataset, data_dir)}")
    if missing and config.dataset in SELF_PREPARING:
        if is_main_process():
            print(f"preparing {data_dir} ({', '.join(missing)} missing)")
            prepare_dataset(config.dataset, data_dir)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("data prepared")
    elif missing:
        raise RuntimeFailure(
            f"{data_dir / missing[0]} not found; prepare the data set first: "
            f"{prepare_command(config.dataset, data_dir)}"
        )
    sampler = BatchSampler(data_dir, config.block_size, global_batch, config.seed)
    tokenizer = load_tokenizer(data_dir)
    if isinstance(tokenizer, CharTokenizer) and is_main_process():
        print(f"found vocab_size = {tokenizer.vocab_size} (inside {data_dir / 'meta.pkl'})")
    return sampler, tokenizer


def new_model(config: TrainConfig, vocab_size: int | None, key) -> GPT:
    """The model a new run starts from: initialised, or GPT-2's weights."""
    if config.init_from == "scratch":
        print("Initializing a new model from scratch")
        return GPT.create_instance(GPTConfig.from_training(config, vocab_size=vocab_size or 50304), key)
    print(f"Initializing from OpenAI GPT-2 weights: {config.init_from}")
    model = from_pretrained(config.init_from, dict(dropout=config.dropout))
    return model.crop_block_size(config.block_size) if config.block_size < model.config.block_size else model


@dataclass
class ContinuedRun:
    """The run that this one continues: our checkpoint in out_dir, or nanoGPT's ckpt.pt."""

    source: str  # its out_dir, or the ckpt.pt
    model: GPT
    iter_num: int
    best_val_loss: float
    time_s: float  # its training time so far, which this run's `time_s` continues
    loss_scale: dict  # float16's loss scale as it stood, if any
    optimizer_state: Callable  # optimizer (built as in that run) -> its state as saved


def continue_run(config: TrainConfig, say) -> tuple[TrainConfig, ContinuedRun | None]:
    """The run's config and, when it continues another run, that run. Its config comes from
    that run's checkpoint, but for the keys this command gives anew (said in one line) and
    those of the process (`PROCESS_KEYS`)."""
    if config.init_from == "resume":
        say(f"Resuming training from {config.out_dir}")
        model, state = load_checkpoint(config.out_dir)
        run = ContinuedRun(config.out_dir, model, state["iter_num"], state["best_val_loss"],
                           state.get("time_s", 0.0), state.get("loss_scale") or {},
                           lambda optimizer, model: load_optimizer_state(config.out_dir, optimizer, model))
        saved = state.get("config", {})
    elif is_nanogpt_checkpoint(config.init_from):
        say(f"Initializing from nanoGPT's checkpoint {config.init_from}")
        if config.optimizer != "adamw":
            raise UsageError(f"{config.init_from} holds AdamW's state: continue it with --optimizer=adamw")
        nanogpt = read_nanogpt_checkpoint(config.init_from)
        run = ContinuedRun(config.init_from, nanogpt.model, nanogpt.iter_num, nanogpt.best_val_loss, 0.0, {},
                           lambda optimizer, model: adamw_state(
                               optimizer.init(eqx.filter(model, eqx.is_inexact_array)), nanogpt))
        # its dtype describes nanoGPT's machine ('float16' wherever torch sees no bfloat16 GPU, a
        # CPU included), as device and compile do (PROCESS_KEYS): this process chooses its own
        saved = {key: value for key, value in nanogpt.config.items() if key != "dtype"}
    else:
        return config, None
    check_resumed_config(config, asdict(run.model.config), run.source)
    saved = {**saved, **{key: getattr(run.model.config, key) for key in ARCHITECTURE_KEYS}}
    config, changed = continued_config(config, saved, run.source)
    if changed:
        say(f"note: given anew, unlike the checkpoint's config: {', '.join(changed)}")
    return config, dataclasses.replace(run, model=with_dropout(run.model, config.dropout))


def with_dropout(model: GPT, dropout: float) -> GPT:
    """`model` with its dropout rate set to `dropout` (a continued run may change it)."""
    if dropout == model.config.dropout:
        return model
    config = dataclasses.replace(model.config, dropout=dropout)
    skeleton = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    return eqx.combine(eqx.filter(model, eqx.is_array), eqx.filter(skeleton, eqx.is_array, inverse=True))


def check_resumed_config(config: TrainConfig, checkpoint_config: dict, where: str) -> None:
    """Continuing with a model config other than the checkpoint's is a mistake: say which keys."""
    mismatched = [
        f"{key} (checkpoint {checkpoint_config[key]!r}, requested {getattr(config, key)!r})"
        for key in ARCHITECTURE_KEYS
        if key in config.explicitly_set and checkpoint_config[key] != getattr(config, key)
    ]
    if mismatched:
        raise UsageError(
            f"the checkpoint in {where} has another model config: {'; '.join(mismatched)}; "
            f"drop these overrides or use another out_dir"
        )


# what goes to Weights & Biases, under its names: the evaluations, not every iteration's loss
WANDB_NAMES = {"train_loss": "train/loss", "val_loss": "val/loss", "lr": "lr",
               "hellaswag_acc": "hellaswag/acc", "hellaswag_acc_norm": "hellaswag/acc_norm"}


class MetricsLog:
    """nanoGPT's log lines on stdout (above the progress bar), and JSON lines in out_dir, each
    with `time_s`, the wall-clock seconds since the run started (loading and compiling
    included; a resumed run goes on from its checkpoint's time): what `nanojaxgpt.seeds` and
    `nanojaxgpt.plot` put loss against."""

    def __init__(self, config: TrainConfig, time_s: float = 0.0, enabled: bool = True):
        self.started = time.time() - time_s
        self.path = Path(config.out_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.wandb = None
        if enabled:  # fail now, not after loading data and compiling, if out_dir cannot be made
            self._append(None)
        if enabled and config.init_from != "resume" and config.overwrite_checkpoint:
            self.path.unlink(missing_ok=True)  # the run it replaces leaves no records behind
        if config.wandb_log and enabled:
            try:
                import wandb
            except ImportError:
                raise UsageError('wandb_log=True needs wandb: pip install -e ".[wandb]", or --wandb_log=False') from None

            wandb.init(project=config.wandb_project, name=config.wandb_run_name, config=asdict(config))
            self.wandb = wandb

    def write(self, line: str, record: dict) -> None:
        if not self.enabled:
            return
        tqdm.write(line)
        self._append({**record, "time_s": self.elapsed()})
        logged = {WANDB_NAMES[key]: value for key, value in record.items() if key in WANDB_NAMES}
        if self.wandb is not None and logged:
            self.wandb.log({"iter": record["iter"], **logged})

    def elapsed(self) -> float:
        """The run's wall-clock seconds so far, to the millisecond."""
        return round(time.time() - self.started, 3)

    def _append(self, record: dict | None) -> None:
        """Make out_dir and append `record` (if any) to the metrics file; failing, one line."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if record is not None:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
        except OSError as error:
            raise RuntimeFailure(
                f"cannot write {self.path} ({error.strerror or error}); set --out_dir to a "
                f"folder you can write to"
            ) from error


def check_finite(loss: float, iter_num: int, out_dir: str) -> None:
    if not math.isfinite(loss):
        raise RuntimeFailure(
            f"loss became {loss} at iter {iter_num}; the last checkpoint in {out_dir} is kept: "
            f"lower learning_rate or raise warmup_iters"
        )


@contextlib.contextmanager
def stop_requests():
    """While inside, the first Ctrl-C only raises a flag (read with the yielded function), so
    the loop can stop between steps and save; a second Ctrl-C interrupts at once."""
    requested = False

    def on_sigint(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


def split_over_devices(config: TrainConfig, say) -> tuple[int, int, int]:
    """(devices, micro-steps, sequences per device per micro-step) for the sequences per
    iteration that the config asks for (gradient_accumulation_steps counts the micro-batches of
    all devices together, as in nanoGPT's DDP). Where nanoGPT's split does not exist on this
    many devices, another with the same sequences per iteration, said in one note line."""
    sequences = config.gradient_accumulation_steps * config.batch_size
    n_devices = jax.device_count()
    devices, micro_steps, device_batch = split_iteration(sequences, config.batch_size, n_devices)
    if devices < n_devices and jax.process_count() > 1:
        raise UsageError(
            f"{sequences} sequences per iteration (gradient_accumulation_steps x batch_size) do "
            f"not split over the {n_devices} devices of {jax.process_count()} processes; make "
            f"gradient_accumulation_steps a multiple of {n_devices}"
        )
    nanogpts = (n_devices, config.gradient_accumulation_steps, config.batch_size)
    if (devices, micro_steps * devices, device_batch) != nanogpts:
        on = f"{devices} of the {n_devices} devices" if devices < n_devices else f"{devices} devices"
        say(f"note: gradient_accumulation_steps={config.gradient_accumulation_steps} x batch_size="
            f"{config.batch_size} does not split over {n_devices} devices as nanoGPT's DDP would; "
            f"the same {sequences} sequences per iteration run on {on}, {micro_steps} "
            f"micro-batch{'es' if micro_steps > 1 else ''} of {device_batch} each")
    return devices, micro_steps, device_batch


def refuse_to_replace_a_checkpoint(config: TrainConfig) -> None:
    """A new run saves over the checkpoint already in out_dir: stop before any work, unless the
    user asked for that (evaluating only never saves)."""
    starts_anew = config.init_from != "resume" and not config.eval_only
    if starts_anew and has_checkpoint(config.out_dir) and not config.overwrite_checkpoint:
        raise UsageError(
            f"{config.out_dir} already holds a checkpoint that this new run (init_from="
            f"{config.init_from}) would replace: continue it with --init_from=resume, train into "
            f"another --out_dir, or replace it with --overwrite_checkpoint=True"
        )


HELLASWAG_BATCH = 16  # examples per batch in training's HellaSwag evaluations
SAMPLES, SAMPLE_TOKENS, SAMPLE_TOP_K = 4, 32, 50  # build-nanogpt's samples while training


def hellaswag_while_training(config: TrainConfig, tokenizer: Tokenizer, mesh, dtype,
                             show_bar: bool) -> Callable | None:
    """model -> (acc, acc_norm) on HellaSwag, with its examples read and rendered once (and
    the scoring compiled once); None with hellaswag_interval=0."""
    if not config.hellaswag_interval:
        return None
    check_gpt2_vocabulary(tokenizer.vocab_size, isinstance(tokenizer, GPT2Tokenizer), f"data set {config.dataset}")
    rendered = render(read_examples(hellaswag_file(config.hellaswag_file)), config.block_size)
    return lambda model: evaluate_hellaswag(model, rendered, HELLASWAG_BATCH, mesh, dtype, show_bar)[:2]


def samples_while_training(config: TrainConfig, tokenizer: Tokenizer, key, dtype) -> Callable | None:
    """(model, iter_num) -> a few top-k samples continuing sample_prompt, each iteration's
    drawn with a key of its own (the cached generator compiles once); None with
    sample_interval=0."""
    if not config.sample_interval:
        return None
    prompt = encode_prompt(config.sample_prompt, tokenizer, tokenizer.vocab_size, "sample_prompt")
    prompts = jnp.tile(jnp.asarray(prompt, jnp.int32), (SAMPLES, 1))

    def draw(model: GPT, iter_num: int) -> list[str]:
        tokens = generate(cast_floats(model, dtype), prompts, SAMPLE_TOKENS, 1.0, SAMPLE_TOP_K,
                          key=jax.random.fold_in(key, iter_num))
        return [decode(tokenizer, row.tolist()) for row in np.asarray(gather_to_host(tokens))]

    return draw


def train(config: TrainConfig) -> GPT:
    """Run the training loop of `config` on every device; returns the final model."""
    refuse_to_replace_a_checkpoint(config)
    main_process = is_main_process()
    say = print if main_process else lambda *args: None
    config, continued = continue_run(config, say)
    n_devices, micro_steps, device_batch = split_over_devices(config, say)
    mesh = make_mesh(n_devices)
    global_batch = device_batch * n_devices
    say(f"devices: {n_devices} ({jax.devices()[0].platform}), mesh data={n_devices}"
        f"{' (fsdp)' if config.fsdp else ''}")
    if jax.devices()[0].platform == "gpu" and not deterministic_ops_requested():
        say(NONDETERMINISTIC_NOTE)
    sampler, tokenizer = load_data(config, global_batch)
    dtype = resolve_dtype(config.dtype)
    show_bars = main_process and sys.stderr.isatty()
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    hellaswag = hellaswag_while_training(config, tokenizer, mesh, dtype, show_bars)
    samples = samples_while_training(config, tokenizer, init_key, dtype)
    log = MetricsLog(config, continued.time_s if continued else 0.0, enabled=main_process)
    vocab_size = tokenizer.vocab_size if isinstance(tokenizer, CharTokenizer) else None
    tokens_per_iter = config.gradient_accumulation_steps * config.batch_size * config.block_size
    say(f"tokens per iteration will be: {tokens_per_iter:,}")

    model = continued.model if continued else new_model(config, vocab_size, init_key)
    if vocab_size is not None and vocab_size > model.config.vocab_size:
        raise UsageError(
            f"data set {config.dataset} has vocab_size {vocab_size} but the model only "
            f"{model.config.vocab_size}; train from scratch or use a data set it was trained on"
        )
    if sampler.max_token_id() >= model.config.vocab_size:
        raise RuntimeFailure(
            f"data/{config.dataset} holds token id {sampler.max_token_id()}, outside the model's "
            f"vocab_size {model.config.vocab_size}; prepare the data set again"
        )
    say(f"number of parameters: {model.get_num_params() / 1e6:.2f}M")
    optimizer = make_optimizer(model, config)
    if continued is None:
        iter_num, best_val_loss = 0, 1e9
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    else:
        iter_num, best_val_loss = continued.iter_num, continued.best_val_loss
        opt_state = continued.optimizer_state(optimizer, model)
        if iter_num >= config.max_iters and not config.eval_only:
            say(f"note: the checkpoint in {continued.source} is at iter {iter_num} and max_iters is "
                f"{config.max_iters}: nothing to train; to train on, raise --max_iters (and "
                f"--lr_decay_iters with it)")
    saved_scale = continued.loss_scale if continued else {}
    loss_scale = DynamicLossScale.create(**saved_scale) if dtype == jnp.float16 else None
    model = place(model, state_shardings(model, mesh, config.fsdp))
    opt_state = place(opt_state, state_shardings(opt_state, mesh, config.fsdp))

    def save() -> None:
        host_model, host_opt_state = gather_to_host(model), gather_to_host(opt_state)
        if not main_process:
            return
        print(f"saving checkpoint to {config.out_dir}")
        save_checkpoint(config.out_dir, host_model, host_opt_state, {
            "iter_num": iter_num,
            "best_val_loss": best_val_loss,
            "time_s": log.elapsed(),  # training time so far, which a resumed run continues
            "config": {k: v for k, v in asdict(config).items() if k != "explicitly_set"},
            # batches and dropout keys are functions of (seed, iter_num): nothing else to keep
            "rng": {"seed": config.seed, "next_iter": iter_num},
            "tokenizer": tokenizer.record(),  # to decode without the data set
            "loss_scale": None if loss_scale is None else {
                "scale": float(loss_scale.scale), "good_steps": int(loss_scale.good_steps)},
        })

    def batches(split: str, count: int, *counter: int):
        x, y = sampler.batches(split, count, *counter, rows=local_rows(global_batch))
        return to_global_batch(x, mesh), to_global_batch(y, mesh)

    def estimate_loss() -> dict:
        losses = {}
        for split in ("train", "val"):
            with eval_bar(split, config.eval_iters, show_bars):
                x, y = batches(split, config.eval_iters, 1, iter_num)
                losses[split] = float(evaluate(model, x, y, dtype))
        return losses

    step = make_step
    if config.compile:  # ahead of time, to know before the first step whether it fits
        empty = np.zeros((micro_steps, global_batch // jax.process_count(), config.block_size), np.int32)
        example_batch = (to_global_batch(empty, mesh),) * 2
        with announce_compile(say):
            step, memory = compile_step(make_step, model, opt_state, *example_batch,
                                        jax.random.fold_in(train_key, iter_num), optimizer, dtype, loss_scale)
        say(memory)
    peak_flops, _ = device_peak_flops()  # per device: MFU as in bench.py
    bar = tqdm(total=config.max_iters, initial=iter_num, unit="it", disable=not show_bars)
    t_log, iters_since_log, running_mfu = time.time(), 0, -1.0
    first_iter, eval_s, t_timed = iter_num, 0.0, time.time()  # for the run's length, see progress.py
    with stop_requests() as stop_requested:
        while True:
            if stop_requested():
                say(f"interrupted at iter {iter_num}")
                save()
                raise KeyboardInterrupt
            due = lambda interval: interval > 0 and (
                iter_num % interval == 0 or iter_num >= config.max_iters or config.eval_only)
            if due(config.eval_interval):
                t_eval = time.time()
                losses = estimate_loss()
                if iter_num == first_iter:
                    eval_s = time.time() - t_eval
                lr = float(learning_rate_at(iter_num, config))
                log.write(
                    f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}",
                    {"iter": iter_num, "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr},
                )
                for split_loss in losses.values():  # before always_save_checkpoint saves it
                    check_finite(split_loss, iter_num, config.out_dir)
                if losses["val"] < best_val_loss or config.always_save_checkpoint:
                    best_val_loss = min(best_val_loss, losses["val"])
                    if iter_num > 0:
                        save()
            if hellaswag is not None and due(config.hellaswag_interval):
                acc, acc_norm = hellaswag(model)
                log.write(f"step {iter_num}: hellaswag acc {acc:.4f}, acc_norm {acc_norm:.4f}",
                          {"iter": iter_num, "hellaswag_acc": acc, "hellaswag_acc_norm": acc_norm})
            if samples is not None and due(config.sample_interval) and iter_num > 0:
                texts = samples(model, iter_num)
                log.write("\n".join(f"sample {i}: {text}" for i, text in enumerate(texts)),
                          {"iter": iter_num, "samples": texts})
            if due(config.eval_interval) or due(config.hellaswag_interval) or due(config.sample_interval):
                t_log, iters_since_log = time.time(), 0  # the iterations are timed without these
                if iter_num == first_iter:
                    t_timed = t_log
            if iter_num >= config.max_iters or config.eval_only:
                break

            x, y = batches("train", micro_steps, 0, iter_num)
            step_key = jax.random.fold_in(train_key, iter_num)
            model, opt_state, loss, loss_scale = step(
                model, opt_state, x, y, step_key, optimizer, dtype, loss_scale
            )
            iters_since_log += 1
            bar.update()
            if iter_num == first_iter + ESTIMATE_AFTER - 1:
                jax.block_until_ready(loss)
                iter_s = (time.time() - t_timed) / ESTIMATE_AFTER
                evals_left = (config.max_iters // config.eval_interval - iter_num // config.eval_interval
                              + (config.max_iters % config.eval_interval != 0))
                note = long_run_note(config.max_iters - iter_num - 1, evals_left, iter_s, eval_s,
                                     jax.devices()[0].platform)
                if note:
                    say(note)
            if iter_num % config.log_interval == 0:
                lossf = float(loss)  # the loop's only host sync outside evals
                if loss_scale is None:  # float16 skips overflowing steps instead
                    check_finite(lossf, iter_num, config.out_dir)
                dt = (time.time() - t_log) / iters_since_log
                if iters_since_log == config.log_interval:  # no eval or compilation in dt
                    mfu = model.estimate_mfu(device_batch * micro_steps, dt, peak_flops)
                    running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
                log.write(
                    f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms, mfu {max(running_mfu, 0) * 100:.2f}%",
                    {"iter": iter_num, "loss": lossf, "time_ms": dt * 1000, "mfu": running_mfu},
                )
                t_log, iters_since_log = time.time(), 0
            iter_num += 1
    bar.close()
    return model


def main(argv: list[str]) -> None:
    keep_freed_host_memory()
    config = parse_args(argv)
    if "backend" in config.explicitly_set:
        print(f"note: backend={config.backend!r} is ignored: JAX picks its own collectives")
    request_deterministic_ops(config.deterministic)
    use_compilation_cache(config.compile_cache)
    select_device(config.device)
    initialize_multihost(config.coordinator_address, config.num_processes, config.process_id)
    with jax.disable_jit(not config.compile):
        train(config)


def usage() -> str:
    return describe(
        TrainConfig, "python -m nanojaxgpt.train [config.py ...] [--key=value ...]",
        "Train a GPT. Config files (Python assignments, like nanoGPT's) and --key=value overrides\n"
        "apply in order; with none, nanoGPT's CPU recipe for the Shakespeare characters.",
        hidden=("explicitly_set",),
    )


if __name__ == "__main__":
    run_main(main, usage=usage)
