"""Plot a run's losses: `python -m nanojaxgpt.plot [OUT_DIR]` writes OUT_DIR/loss.png.

Reads OUT_DIR/metrics.jsonl, which training appends to: the per-iteration training loss of the
log lines and the train/val losses of each evaluation. Needs matplotlib (`pip install -e ".[plot]"`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from nanojaxgpt.config import out_dir_argument, read_overrides
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.usage import describe


@dataclass(frozen=True)
class PlotConfig:
    out_dir: str = "out-shakespeare-char"  # the run to plot (also the first argument, OUT_DIR)


def read_metrics(out_dir: Path) -> list[dict]:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        raise RuntimeFailure(f"{path} not found; train into {out_dir} first: python -m nanojaxgpt.train --out_dir={out_dir}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(out_dir: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError('plotting needs matplotlib: pip install -e ".[plot]"') from None
    records = read_metrics(out_dir)
    logs = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot([r["iter"] for r in logs], [r["loss"] for r in logs], alpha=0.4, label="train (batch)")
    ax.plot([r["iter"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train (eval)")
    ax.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val (eval)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(str(out_dir))
    ax.legend()
    ax.grid(alpha=0.3)
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str]) -> None:
    config = PlotConfig(**read_overrides(out_dir_argument(argv, "plot"), PlotConfig(), config_files=False))
    print(f"wrote {plot_losses(Path(config.out_dir))}")


def usage() -> str:
    return describe(
        PlotConfig, "python -m nanojaxgpt.plot [OUT_DIR] [--key=value ...]",
        "Draw OUT_DIR/loss.png from OUT_DIR/metrics.jsonl (what training logs): the training loss\n"
        "of each logged iteration and the train and val losses of each evaluation. Needs\n"
        'matplotlib: pip install -e ".[plot]".',
    )


if __name__ == "__main__":
    run_main(main, usage=usage)
