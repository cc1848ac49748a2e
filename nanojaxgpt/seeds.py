"""One recipe over several seeds, and two recipes compared: what a loss claim needs.

`python -m nanojaxgpt.seeds [config.py ...] [--key=value ...] [--seeds=1337,1338,1339]
[--target=1.8857] [--compare=other.py]` trains the recipe once per seed, one run after another
(each in `<out_dir>-seed<N>`, replacing what an earlier call left there; the compared recipe's
in `<out_dir>-compare-seed<N>` unless it names its own out_dir), and prints for each
seed and as mean +- sample std: the final val loss, the run's wall time (the whole process) and
the wall time at which val loss first reached `target` (from the run's metrics.jsonl, so at
evaluation points; loading and compiling count). `--compare` runs a second recipe (config files
and overrides separated by commas, applied after the first recipe's) over the same seeds and
prints the difference of the means with a 95% confidence interval (Welch's t). At nanoGPT's CPU
recipe one seed's val loss moves by about 0.02: a difference whose interval holds 0 is noise.
"""

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nanojaxgpt.config import DEFAULTS, read_overrides
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main

# Student's t at 0.975 (two-sided 95%) by degrees of freedom; between two entries the smaller
# degrees of freedom is taken, which widens the interval a little (conservative)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}
OWN_KEYS = ("seeds", "target", "compare")


@dataclass
class SeedRun:
    seed: int
    val_loss: float  # at the last evaluation
    wall_s: float  # the whole training process
    target_s: float | None  # run time when val loss first reached the target; None: never
    target_iter: int | None


def t_975(df: float) -> float:
    usable = [d for d in T_975 if d <= df]
    return T_975[max(usable)] if usable else T_975[1]


def mean_difference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(b) - mean(a) and its 95% confidence interval (Welch's t; needs 2 values each)."""
    diff = statistics.fmean(b) - statistics.fmean(a)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_975(df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def run_seed(train_args: list[str], out_dir: str, seed: int, target: float | None) -> SeedRun:
    """Train one seed in its own process; its log goes to out_dir/train.log."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nanojaxgpt.train", *train_args, f"--seed={seed}",
               f"--out_dir={out_dir}", "--overwrite_checkpoint=True"]
    start = time.perf_counter()
    with open(Path(out_dir) / "train.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    wall_s = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeFailure(f"the run of seed {seed} failed (exit {result.returncode}); its "
                             f"output is in {Path(out_dir) / 'train.log'}")
    with open(Path(out_dir) / "metrics.jsonl") as f:
        evals = [r for r in map(json.loads, f) if "val_loss" in r]
    reached = [r for r in evals if target is not None and r["val_loss"] <= target]
    return SeedRun(seed, evals[-1]["val_loss"], wall_s, reached[0]["time_s"] if reached else None,
                   reached[0]["iter"] if reached else None)


def seed_line(run: SeedRun, target: float | None) -> str:
    line = f"seed {run.seed}: val loss {run.val_loss:.4f}, wall {run.wall_s:.1f} s"
    if target is not None:
        line += (f", reached {target} at {run.target_s:.1f} s (iter {run.target_iter})"
                 if run.target_s is not None else f", never reached {target}")
    return line


def spread(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.{digits}f} +- {std:.{digits}f}"


def summary(runs: list[SeedRun], target: float | None) -> str:
    line = (f"mean +- std over {len(runs)} seeds: val loss {spread([r.val_loss for r in runs], 4)}, "
            f"wall {spread([r.wall_s for r in runs], 1)} s")
    if target is not None:
        times = [r.target_s for r in runs if r.target_s is not None]
        reached = f"{len(times)} of {len(runs)} reached it"
        line += (f", time to {target}: {spread(times, 1)} s ({reached})" if times
                 else f", time to {target}: - ({reached})")
    return line


def comparison(a: list[SeedRun], b: list[SeedRun], target: float | None) -> list[str]:
    rows = [("val loss", [r.val_loss for r in a], [r.val_loss for r in b], 4),
            ("wall s", [r.wall_s for r in a], [r.wall_s for r in b], 1)]
    if target is not None and all(r.target_s is not None for r in a + b):
        rows.append((f"time to {target} s", [r.target_s for r in a], [r.target_s for r in b], 1))
    lines = []
    for name, xa, xb, digits in rows:
        diff, low, high = mean_difference(xa, xb)
        lines.append(f"compare - recipe: {name} {diff:+.{digits}f} (95% CI {low:+.{digits}f} to "
                     f"{high:+.{digits}f})")
    return lines


def split_args(argv: list[str]) -> tuple[dict, list[str]]:
    """(this command's own options, the training arguments)."""
    own, train_args = {}, []
    for arg in argv:
        key, _, value = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and key in OWN_KEYS:
            own[key] = value
        else:
            train_args.append(arg)
    return own, train_args


def run_recipe(name: str, train_args: list[str], out_dir: str, seeds: list[int], target) -> list[SeedRun]:
    print(f"{name}: {' '.join(train_args) or '(the default recipe)'}", flush=True)
    runs = []
    for seed in seeds:
        runs.append(run_seed(train_args, f"{out_dir}-seed{seed}", seed, target))
        print(f"  {seed_line(runs[-1], target)}", flush=True)
    print(f"  {summary(runs, target)}", flush=True)
    return runs


def main(argv: list[str]) -> None:
    own, train_args = split_args(argv)
    try:
        seeds = [int(s) for s in own.get("seeds", "1337,1338,1339").split(",")]
        target = float(own["target"]) if own.get("target") else None
    except ValueError:
        raise UsageError("--seeds takes integers separated by commas (--seeds=1337,1338,1339) and "
                         "--target a number (--target=1.8857)") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise UsageError(f"--seeds={own['seeds']}: give distinct seeds, at least 2 for a std")
    out_dir = read_overrides(train_args, DEFAULTS).get("out_dir", DEFAULTS.out_dir)  # checks the keys
    compare_args = [*train_args, *own["compare"].split(",")] if own.get("compare") else None
    if compare_args is not None:
        compare_dir = read_overrides(compare_args, DEFAULTS).get("out_dir", DEFAULTS.out_dir)
        compare_dir = f"{out_dir}-compare" if compare_dir == out_dir else compare_dir
    recipe = run_recipe("recipe", train_args, out_dir, seeds, target)
    if compare_args is not None:
        compared = run_recipe("compare", compare_args, compare_dir, seeds, target)
        if len(seeds) > 1:
            print("\n".join(comparison(recipe, compared, target)))


USAGE = """usage: python -m nanojaxgpt.seeds [config.py ...] [--key=value ...] [--seeds=1337,1338,1339]
                                  [--target=VAL_LOSS] [--compare=config.py,--key=value,...]
""" + __doc__.split("\n", 1)[1]


if __name__ == "__main__":
    run_main(main, usage=lambda: USAGE)
