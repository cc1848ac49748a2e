"""`--help` and `-h`: every command prints its usage, every key with its default, its type and a
line on what it does, and exits 0."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nanojaxgpt.bench import BenchOptions
from nanojaxgpt.config import KEYS, TrainConfig
from nanojaxgpt.eval import EvalConfig
from nanojaxgpt.plot import PlotConfig
from nanojaxgpt.sample import SampleConfig
from nanojaxgpt.usage import field_comments


def command_help(command: str, flag: str = "--help") -> str:
    result = subprocess.run([sys.executable, "-m", f"nanojaxgpt.{command}", flag],
                            capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: python -m nanojaxgpt.{command}")
    return result.stdout


def described_keys(text: str) -> dict[str, str]:
    """{key: description} of the `--key=default (type)  description` lines."""
    return dict(re.findall(r"^  --(\w+)=.+? \(\S.*?\)  (\S.*)$", text, re.M))


@pytest.mark.parametrize("cls", [TrainConfig, SampleConfig, BenchOptions, PlotConfig, EvalConfig])
def test_every_key_is_described_beside_its_field(cls):
    comments, _ = field_comments(cls)
    undescribed = {f.name for f in dataclasses.fields(cls)} - set(comments) - {"explicitly_set"}
    assert not undescribed


def test_train_help_lists_every_key_with_its_default_in_nanogpts_groups():
    text = command_help("train", "-h")
    assert set(described_keys(text)) == set(KEYS)
    assert "  --batch_size=12 (int)  sequences per micro-batch\n" in text
    assert "  --init_from='scratch' (str)  " in text and "  --decay_lr=True (bool)  " in text
    headings = re.findall(r"^(\S[^\n]*):$", text, re.M)
    assert headings[:1] == ["I/O"] and {"data", "model", "AdamW", "system"} <= set(headings)


def test_sample_and_bench_help_list_their_keys():
    sample = described_keys(command_help("sample"))
    assert set(sample) == {f.name for f in dataclasses.fields(SampleConfig)}
    bench = described_keys(command_help("bench"))
    assert set(bench) == {f.name for f in dataclasses.fields(BenchOptions)} | set(KEYS)


def test_plot_prepare_export_and_eval_help():
    plot = command_help("plot")
    assert "OUT_DIR/loss.png" in plot and set(described_keys(plot)) == {"out_dir", "output"}
    export = command_help("export")
    assert "GPT2LMHeadModel.from_pretrained(DEST)" in export and "--format=nanogpt" in export
    assert "--compare=" in command_help("seeds") and "Welch" in command_help("seeds", "-h")
    prepare = command_help("prepare")
    for option in ("DATASET", "--name", "--input", "--encoding", "--data_dir", "--num_proc", "--subset",
                   "--shard_size", "--max_tokens", "--data_files"):
        assert option in prepare
    assert set(described_keys(command_help("eval"))) == {f.name for f in dataclasses.fields(EvalConfig)}


def test_the_modules_that_run_as_commands_are_those_whose_help_is_tested():
    """`python -m nanojaxgpt.<module>` does something only for the commands whose --help the
    tests above run (their stderr empty: no warning). The modules the package imports on its
    own (`generate`, `hf`, ...) run nothing, so runpy has no reason to warn about them."""
    package = Path(__file__).resolve().parent.parent / "nanojaxgpt"
    runnable = {path.stem for path in package.glob("*.py") if 'if __name__ == "__main__":' in path.read_text()}
    assert runnable == {"train", "sample", "bench", "prepare", "plot", "export", "seeds", "eval"}


def test_help_into_a_closed_pipe_is_quiet():
    """`--help | head`: the reader stops early; the command exits 0 without a traceback."""
    process = subprocess.Popen([sys.executable, "-m", "nanojaxgpt.train", "--help"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # nothing will be read
    assert (process.wait(), process.stderr.read()) == (0, b"")
