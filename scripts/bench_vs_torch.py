"""nanojaxgpt against nanoGPT's PyTorch model, same network, same machine, one run.

    pip install -e ".[torch]"
    python scripts/bench_vs_torch.py                      # the CPU recipe
    python scripts/bench_vs_torch.py configs/train_shakespeare_char.py --batch_size=8

Times a whole training iteration (forward, backward, clipping, AdamW) of each framework in
alternating rounds, so that both see the same machine load, and prints the median of each and
their ratio. The PyTorch side is nanoGPT's model in eager mode (scripts/torch_reference.py).
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import torch_reference  # noqa: E402

from nanojaxgpt.bench import BenchOptions, bench, split_bench_options, vocab_size_of  # noqa: E402
from nanojaxgpt.config import parse_args  # noqa: E402
from nanojaxgpt.host_memory import keep_freed_host_memory  # noqa: E402


def time_torch(config, steps: int, warmup: int) -> float:
    """Mean seconds per iteration of nanoGPT's step on random batches."""
    model = torch_reference.GPT(config, vocab_size=vocab_size_of(config.dataset))
    optimizer = torch_reference.make_optimizer(model, config)
    shape = (config.gradient_accumulation_steps, config.batch_size, config.block_size)
    x = torch.randint(0, 65, shape)  # any ids below every vocab size
    for _ in range(warmup):
        torch_reference.train_step(model, optimizer, x, x, config)
    start = time.perf_counter()
    for _ in range(steps):
        torch_reference.train_step(model, optimizer, x, x, config)
    return (time.perf_counter() - start) / steps


def main(argv: list[str]) -> None:
    keep_freed_host_memory()  # as nanojaxgpt.train and nanojaxgpt.bench do; PyTorch runs with it too
    options, rest = split_bench_options(argv)
    config = parse_args(rest)
    torch_ms, jax_ms, compile_s, mfu = [], [], None, None
    for _ in range(3):
        torch_ms.append(time_torch(config, options.num_steps, options.warmup_steps) * 1000)
        result = bench(config, BenchOptions(num_steps=options.num_steps, warmup_steps=options.warmup_steps))
        jax_ms.append(result["ms_per_iter"])
        compile_s = compile_s or result["compile_s"]
        mfu = result["mfu"]
    torch_median, jax_median = statistics.median(torch_ms), statistics.median(jax_ms)
    print(f"config: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} embd, block "
          f"{config.block_size}, batch {config.batch_size}x{config.gradient_accumulation_steps}, mlp {config.mlp}")
    print(f"pytorch {torch.__version__} ({torch.get_num_threads()} threads): {torch_median:.1f} ms/iter "
          f"(rounds: {', '.join(f'{t:.1f}' for t in torch_ms)})")
    print(f"nanojaxgpt: {jax_median:.1f} ms/iter (rounds: {', '.join(f'{t:.1f}' for t in jax_ms)}), "
          f"first-step compile {compile_s:.1f}s, MFU {mfu * 100:.1f}%")
    print(f"speed ratio (nanojaxgpt iterations/s over pytorch's): {torch_median / jax_median:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
