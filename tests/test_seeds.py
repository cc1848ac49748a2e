"""`python -m nanojaxgpt.seeds`: a recipe over several seeds, as mean +- std, and two recipes
compared with a confidence interval."""

import json
import re
import statistics
import subprocess
import sys

import pytest

from nanojaxgpt.errors import UsageError
from nanojaxgpt.seeds import main, mean_difference, split_args, t_975


def test_welch_interval_of_a_difference_of_means():
    # variances 1 and 1 over 3 values each: standard error sqrt(2/3), 4 degrees of freedom
    diff, low, high = mean_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert diff == 1.0
    assert (high - low) / 2 == pytest.approx(2.776 * (2 / 3) ** 0.5)
    assert t_975(4.7) == 2.776 and t_975(1.0) == 12.706 and t_975(500) == 1.980
    assert mean_difference([1.0, 1.0], [2.0, 2.0]) == (1.0, 1.0, 1.0)


def test_own_options_are_told_from_the_training_arguments():
    own, train_args = split_args(["configs/x.py", "--seeds=1,2", "--max_iters=5", "--target=1.9"])
    assert own == {"seeds": "1,2", "target": "1.9"} and train_args == ["configs/x.py", "--max_iters=5"]
    with pytest.raises(UsageError, match="--seeds takes integers"):
        main(["--seeds=a,b"])
    with pytest.raises(UsageError, match="give distinct seeds"):
        main(["--seeds=3,3"])


def test_two_recipes_over_two_seeds(shakespeare_char_dir):
    root = shakespeare_char_dir.parent.parent
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
            "--eval_iters=2", "--eval_interval=2", "--max_iters=4", "--out_dir=runs"]
    result = subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.seeds", *tiny, "--seeds=5,6", "--target=4.5",
         "--compare=--learning_rate=1e-2,--optimizer=muon"],
        cwd=root, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = re.findall(r"^  seed (\d): val loss (\d\.\d{4}), wall (\d+\.\d) s, reached 4.5 at (\d+\.\d) s "
                       r"\(iter (\d)\)$", out, re.M)
    assert [seed for seed, *_ in lines] == ["5", "6", "5", "6"]
    final_vals = []
    for (seed, val, *_), out_dir in zip(lines, ["runs", "runs", "runs-compare", "runs-compare"]):
        with open(root / f"{out_dir}-seed{seed}" / "metrics.jsonl") as f:
            evals = [r for r in map(json.loads, f) if "val_loss" in r]
        assert [r["iter"] for r in evals] == [0, 2, 4] and f"{evals[-1]['val_loss']:.4f}" == val
        final_vals.append(evals[-1]["val_loss"])
    recipe_vals = final_vals[:2]
    assert (f"mean +- std over 2 seeds: val loss {statistics.fmean(recipe_vals):.4f} +- "
            f"{statistics.stdev(recipe_vals):.4f}") in out
    assert "compare: --n_layer=1" in out and "--learning_rate=1e-2 --optimizer=muon" in out
    assert re.search(r"^compare - recipe: val loss [+-]\d\.\d{4} \(95% CI [+-]\d+\.\d{4} to [+-]\d+\.\d{4}\)$",
                     out, re.M)
