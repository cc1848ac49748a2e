"""Benchmark the training step: `python -m nanojaxgpt.bench [config.py] [--key=value ...]`.

nanoGPT's bench.py for nanojaxgpt: times the compiled step (forward, backward, AdamW) on
synthetic batches (`--real_data=True` samples the data set) and prints ms/iter, tokens/s,
achieved FLOP/s, MFU, the first step's compile time and peak memory. `--profile=True` writes a
JAX profiler trace (open it with TensorBoard or Perfetto). Model and batch keys are training's.
`--sampling=True` times sampling from that model instead: 5 samples from a one-token prompt with
the key/value cache (nanojaxgpt/generate.py) against nanoGPT's full recompute.
"""

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.config import TrainConfig, parse_args, read_overrides
from nanojaxgpt.data import BatchSampler
from nanojaxgpt.determinism import request_deterministic_ops
from nanojaxgpt.errors import run_main
from nanojaxgpt.flops import device_peak_flops
from nanojaxgpt.generate import generate, generate_by_recompute
from nanojaxgpt.host_memory import keep_freed_host_memory
from nanojaxgpt.memory import compile_step
from nanojaxgpt.model import GPT, flops_per_token
from nanojaxgpt.precision import cast_floats, resolve_dtype
from nanojaxgpt.tokenizer import load_tokenizer
from nanojaxgpt.optim import make_optimizer
from nanojaxgpt.train import make_step
from nanojaxgpt.usage import describe, options


@dataclass
class BenchOptions:
    num_steps: int = 20  # timed steps, after warmup
    warmup_steps: int = 3  # untimed steps after the first (compiling) one
    real_data: bool = False  # batches from the data set instead of random tokens
    profile: bool = False  # write a JAX profiler trace of the timed steps
    profile_dir: str = "out-bench-trace"  # where the trace goes
    json_out: str = ""  # also write the figures to this file, as JSON
    sampling: bool = False  # time sampling (key/value cache against full recompute) instead


def split_bench_options(argv: list[str]) -> tuple[BenchOptions, list[str]]:
    """Our own `--key=value` options (typed by the training config's reader), and the rest for
    the training config parser."""
    is_ours = lambda arg: arg.removeprefix("--").partition("=")[0] in BenchOptions.__dataclass_fields__
    ours = [arg for arg in argv if arg.startswith("--") and is_ours(arg)]
    rest = [arg for arg in argv if arg not in ours]
    return BenchOptions(**read_overrides(ours, BenchOptions(), config_files=False)), rest


def peak_memory_bytes() -> tuple[int, str]:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"], "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"


def vocab_size_of(dataset: str) -> int:
    """The data set's character vocabulary, or GPT-2's padded to 50304 as nanoGPT does."""
    data_dir = Path("data") / dataset
    return load_tokenizer(data_dir).vocab_size if (data_dir / "meta.pkl").exists() else 50304


def bench(config: TrainConfig, options: BenchOptions) -> dict:
    model_config = GPTConfig.from_training(config, vocab_size=vocab_size_of(config.dataset))
    model = GPT.create_instance(model_config, jax.random.key(config.seed))
    optimizer = make_optimizer(model, config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    dtype = resolve_dtype(config.dtype)
    shape = (config.gradient_accumulation_steps, config.batch_size, config.block_size)
    if options.real_data:
        sampler = BatchSampler(Path("data") / config.dataset, config.block_size, config.batch_size, config.seed)
        next_batch = lambda i: sampler.batches("train", config.gradient_accumulation_steps, 0, i)
    else:
        rng = np.random.default_rng(config.seed)
        next_batch = lambda i: (rng.integers(0, model_config.vocab_size, shape, dtype=np.int32),) * 2

    start = time.perf_counter()
    compiled_step, step_memory = compile_step(
        make_step, model, opt_state, *next_batch(0), jax.random.key(0), optimizer, dtype
    )
    compile_s = time.perf_counter() - start

    def step(i):
        nonlocal model, opt_state
        x, y = next_batch(i)
        model, opt_state, loss, _ = compiled_step(model, opt_state, x, y, jax.random.key(i), optimizer, dtype)
        return loss

    step(0).block_until_ready()
    for i in range(options.warmup_steps):
        step(1 + i)
    loss = step(0)
    loss.block_until_ready()
    if options.profile:
        jax.profiler.start_trace(options.profile_dir)
    start = time.perf_counter()
    for i in range(options.num_steps):
        loss = step(100 + i)
    loss.block_until_ready()
    dt = (time.perf_counter() - start) / options.num_steps
    if options.profile:
        jax.profiler.stop_trace()

    peak_flops, peak_source = device_peak_flops()
    sequences = config.batch_size * config.gradient_accumulation_steps
    tokens_per_s = sequences * config.block_size / dt
    memory, memory_source = peak_memory_bytes()
    return {
        "device": jax.devices()[0].device_kind,
        "ms_per_iter": dt * 1000,
        "tokens_per_s": tokens_per_s,
        "flops_per_s": flops_per_token(model_config, model.get_num_params()) * tokens_per_s,
        "mfu": model.estimate_mfu(sequences, dt, peak_flops),
        "peak_flops": peak_flops,
        "peak_source": peak_source,
        "compile_s": compile_s,
        "step_memory": step_memory,
        "peak_memory_bytes": memory,
        "memory_source": memory_source,
        "loss": float(loss),
    }


def bench_sampling(model: GPT, num_samples: int = 5, max_new_tokens: int = 500, repeats: int = 2) -> dict:
    """Tokens per second of `generate` (all samples as one batch) and of `generate_by_recompute`
    (one sample after another), from a one-token prompt, and the compile time of `generate`;
    best of `repeats` runs, each after a warm-up run."""
    prompt = jnp.zeros((num_samples, 1), jnp.int32)
    key = jax.random.key(0)

    def timed(f):
        start = time.perf_counter()
        jax.block_until_ready(f())
        return time.perf_counter() - start

    cached = lambda: generate(model, prompt, max_new_tokens, 0.8, 200, key=key)
    first = timed(cached)
    cached_s = min(timed(cached) for _ in range(repeats))
    recompute = lambda: [
        generate_by_recompute(model, row, max_new_tokens, 0.8, 200, key=k)
        for row, k in zip(prompt, jax.random.split(key, num_samples))
    ]
    timed(recompute)
    recompute_s = min(timed(recompute) for _ in range(repeats))
    n_tokens = num_samples * max_new_tokens
    return {
        "cached_tokens_per_s": n_tokens / cached_s,
        "recompute_tokens_per_s": n_tokens / recompute_s,
        "speedup": recompute_s / cached_s,
        "compile_s": first - cached_s,
    }


def sampling_main(config: TrainConfig) -> None:
    """The README's sampling figures for the model of `config` (random weights: the speed does
    not depend on them), in its dtype, past block_size and within it."""
    model_config = GPTConfig.from_training(config, vocab_size=vocab_size_of(config.dataset))
    model = GPT.create_instance(model_config, jax.random.key(config.seed))
    model = cast_floats(model, resolve_dtype(config.dtype))
    print(f"{model_config}, {resolve_dtype(config.dtype).name} on {jax.devices()[0].device_kind}")
    print("5 samples from a 1-token prompt, temperature 0.8, top_k 200; best of 2 runs")
    block = model_config.block_size
    for new, note in ((500, f"past block_size={block}"), (block - 1, "all within block_size")):
        result = bench_sampling(model, 5, new)
        print(
            f"5 x {new} new tokens ({note}): KV cache, one batch "
            f"{result['cached_tokens_per_s']:.0f} tokens/s (compile {result['compile_s']:.1f} s); "
            f"full recompute, per sample {result['recompute_tokens_per_s']:.0f} tokens/s; "
            f"{result['speedup']:.1f}x"
        )


def main(argv: list[str]) -> None:
    keep_freed_host_memory()
    options, rest = split_bench_options(argv)
    config = parse_args(rest)
    request_deterministic_ops(config.deterministic)
    if options.sampling:
        sampling_main(config)
        return
    result = bench(config, options)
    print(f"{config.n_layer} layers, {config.n_head} heads, {config.n_embd} embd, block {config.block_size}, "
          f"batch {config.batch_size}x{config.gradient_accumulation_steps}, mlp {config.mlp}, "
          f"{resolve_dtype(config.dtype).name} on {jax.devices()[0].device_kind}")
    print(f"compile (the training step, ahead of time): {result['compile_s']:.2f}s")
    print(result["step_memory"])
    print(f"time per iteration: {result['ms_per_iter']:.2f}ms, {result['tokens_per_s']:,.0f} tokens/s")
    print(f"achieved: {result['flops_per_s'] / 1e9:,.1f} GFLOP/s, MFU {result['mfu'] * 100:.2f}% "
          f"of {result['peak_flops'] / 1e9:,.0f} GFLOP/s ({result['peak_source']})")
    print(f"peak memory: {result['peak_memory_bytes'] / 2**20:,.0f} MiB ({result['memory_source']})")
    if options.profile:
        print(f"profile written to {options.profile_dir}")
    if options.json_out:
        Path(options.json_out).write_text(json.dumps(result, indent=1))


def usage() -> str:
    bench_options = describe(
        BenchOptions, "python -m nanojaxgpt.bench [config.py ...] [--key=value ...]",
        "Time the compiled training step (forward, backward, AdamW) on the model and batch that the\n"
        "training keys below describe, as nanoGPT's bench.py.",
    )
    return f"{bench_options}\n\n{options(TrainConfig, hidden=('explicitly_set',))}"


if __name__ == "__main__":
    run_main(main, usage=usage)
