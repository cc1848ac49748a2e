"""Plot losses: `python -m nanojaxgpt.plot [OUT_DIR]` writes OUT_DIR/loss.png, the run's losses
against iterations; `python -m nanojaxgpt.plot OUT_DIR OUT_DIR ...` writes
out-plots/val_loss_vs_time.png (`--output`), the val loss of each run against wall-clock seconds
on one figure (the picture for choosing a recipe: loss per second).

Reads OUT_DIR/metrics.jsonl, which training appends to: the per-iteration training loss of the
log lines, the train/val losses of each evaluation and HellaSwag's accuracies (drawn below the
losses), each with its time. Needs matplotlib
(`pip install -e ".[plot]"`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from nanojaxgpt.config import folder_arguments, out_dir_argument, read_overrides
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.usage import describe


@dataclass(frozen=True)
class PlotConfig:
    out_dir: str = "out-shakespeare-char"  # the run to plot (also the first argument, OUT_DIR)
    output: str = "out-plots/val_loss_vs_time.png"  # the figure of several runs (OUT_DIR OUT_DIR ...)


def read_metrics(out_dir: Path) -> list[dict]:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        raise RuntimeFailure(f"{path} not found; train into {out_dir} first: python -m nanojaxgpt.train --out_dir={out_dir}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError('plotting needs matplotlib: pip install -e ".[plot]"') from None
    return plt


# HellaSwag acc_norm of GPT-2 124M as build-nanogpt scores it, and of a model that guesses
GPT2_124M_HELLASWAG, CHANCE = 0.2955, 0.25


def plot_losses(out_dir: Path) -> Path:
    """The run's losses against iterations and, when it measured HellaSwag (hellaswag_interval),
    its accuracies below them, beside GPT-2 124M's and chance."""
    plt = pyplot()
    records = read_metrics(out_dir)
    logs = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    hellaswag = [r for r in records if "hellaswag_acc_norm" in r]
    panels = 2 if hellaswag else 1
    fig, axes = plt.subplots(panels, 1, figsize=(8, 3 + 2.5 * panels), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot([r["iter"] for r in logs], [r["loss"] for r in logs], alpha=0.4, label="train (batch)")
    ax.plot([r["iter"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train (eval)")
    ax.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val (eval)")
    ax.set_ylabel("loss")
    ax.set_title(str(out_dir))
    if hellaswag:
        bottom = axes[1, 0]
        for key in ("hellaswag_acc", "hellaswag_acc_norm"):
            bottom.plot([r["iter"] for r in hellaswag], [r[key] for r in hellaswag], "o-", label=key)
        bottom.axhline(GPT2_124M_HELLASWAG, color="gray", linestyle="--", label="GPT-2 124M acc_norm")
        bottom.axhline(CHANCE, color="gray", linestyle=":", label="chance")
        bottom.set_ylabel("HellaSwag accuracy")
    for ax in axes[:, 0]:
        ax.legend()
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("iteration")
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_val_loss_vs_time(out_dirs: list[Path], path: Path) -> Path:
    """Each run's val loss against the wall-clock seconds since it started, on one figure."""
    plt = pyplot()
    runs = {out_dir: [r for r in read_metrics(out_dir) if "val_loss" in r] for out_dir in out_dirs}
    untimed = [str(d) for d, evals in runs.items() if any("time_s" not in r for r in evals)]
    if untimed:
        raise RuntimeFailure(f"{', '.join(untimed)}: metrics.jsonl has no times (written before "
                             f"nanojaxgpt logged them); train again to plot against time")
    fig, ax = plt.subplots(figsize=(8, 5))
    for out_dir, evals in runs.items():
        ax.plot([r["time_s"] for r in evals], [r["val_loss"] for r in evals], "o-", label=str(out_dir))
    ax.set_xlabel("wall-clock seconds (loading and compiling included)")
    ax.set_ylabel("val loss")
    ax.legend()
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str]) -> None:
    folders = folder_arguments(argv)
    if len(folders) > 1:
        options = [arg for arg in argv if arg not in folders]
        config = PlotConfig(**read_overrides(options, PlotConfig(), config_files=False))
        print(f"wrote {plot_val_loss_vs_time([Path(f) for f in folders], Path(config.output))}")
        return
    config = PlotConfig(**read_overrides(out_dir_argument(argv, "plot"), PlotConfig(), config_files=False))
    print(f"wrote {plot_losses(Path(config.out_dir))}")


def usage() -> str:
    return describe(
        PlotConfig, "python -m nanojaxgpt.plot [OUT_DIR ...] [--key=value ...]",
        "One run: draw OUT_DIR/loss.png from OUT_DIR/metrics.jsonl (what training logs), the\n"
        "training loss of each logged iteration and the train and val losses of each evaluation.\n"
        "Several runs: draw each one's val loss against wall-clock seconds into --output.\n"
        'Needs matplotlib: pip install -e ".[plot]".',
    )


if __name__ == "__main__":
    run_main(main, usage=usage)
