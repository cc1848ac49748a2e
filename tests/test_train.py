import json
import math
import os
import re
import subprocess
import sys

import jax
import pytest

from conftest import MODERN_OPTIONS
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.checkpoint import CheckpointError, load_model_and_tokenizer
from nanojaxgpt.config import parse_args
from nanojaxgpt.errors import UsageError
from nanojaxgpt.memory import device_memory
import nanojaxgpt.progress as progress
from nanojaxgpt.tokenizer import load_tokenizer
from nanojaxgpt.train import evaluate, load_data, main, train

TINY = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4",
    "--gradient_accumulation_steps=2", "--dropout=0.1", "--warmup_iters=2", "--lr_decay_iters=12",
    "--eval_interval=4", "--eval_iters=2", "--log_interval=1", "--always_save_checkpoint=True",
]


@pytest.fixture
def in_data_root(shakespeare_char_dir, monkeypatch):
    """Run in a folder whose data/shakespeare_char holds only input.txt, like a fresh clone."""
    root = shakespeare_char_dir.parent.parent
    monkeypatch.chdir(root)
    return root


def metrics(out_dir) -> list[dict]:
    with open(f"{out_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def losses_only(records: list[dict]) -> list[dict]:
    """The records without their timings, which differ from run to run."""
    return [{k: v for k, v in r.items() if k not in ("time_ms", "mfu", "time_s")} for r in records]


def test_short_default_run_prepares_data_and_learns(in_data_root, capsys):
    train(parse_args(["--max_iters=50", "--eval_interval=25"]))
    assert (in_data_root / "data/shakespeare_char/train.bin").exists()
    out = capsys.readouterr().out
    assert "found vocab_size = 65" in out
    assert re.search(r"^step 0: train loss 4\.\d{4}, val loss 4\.\d{4}$", out, re.M)
    assert re.search(r"^iter 40: loss \d\.\d{4}, time \d+\.\d{2}ms, mfu \d+\.\d{2}%$", out, re.M)
    assert re.search(r"^compiling the training step\.\.\.\ncompiled in \d+\.\d s\nmemory: ", out, re.M)
    assert "note: this run takes about" not in out  # two minutes: no note
    source = re.escape(device_memory()[1])  # the host's memory on a CPU, the GPU's on a GPU
    assert re.search(r"^memory: the training step needs \d+ MiB per device \(parameters, optimizer "
                     rf"state and batch \d+ MiB, temporaries \d+ MiB\) of \d+\.\d GiB \({source}\)$", out, re.M)
    evals = [r for r in metrics("out-shakespeare-char") if "val_loss" in r]
    assert [r["iter"] for r in evals] == [0, 25, 50]
    val = [r["val_loss"] for r in evals]
    assert abs(val[0] - math.log(65)) < 0.1  # a new model guesses uniformly
    assert val[0] > val[1] > val[2] and val[2] < 3.3
    # the checkpoint keeps the vocabulary: it decodes without the data folder
    _, tokenizer = load_model_and_tokenizer("out-shakespeare-char")
    assert tokenizer == load_tokenizer("data/shakespeare_char") and tokenizer.vocab_size == 65


@pytest.mark.parametrize("options", [[], MODERN_OPTIONS], ids=["default", "modern"])
def test_resume_continues_bit_identically(in_data_root, options, capsys):
    train(parse_args([*TINY, *options, "--out_dir=straight", "--max_iters=12"]))
    train(parse_args([*TINY, *options, "--out_dir=split", "--max_iters=6"]))
    capsys.readouterr()
    # every key of the run comes from the checkpoint (TINY's model, batch, schedule and dropout,
    # the options); one given anew wins, and the run says so
    train(parse_args(["--out_dir=split", "--max_iters=12", "--init_from=resume"]))
    assert "\nnote: given anew, unlike the checkpoint's config: max_iters=12 (was 6)\n" in capsys.readouterr().out
    for name in ("model.eqx", "optimizer.eqx"):
        assert (in_data_root / "straight" / name).read_bytes() == (in_data_root / "split" / name).read_bytes()
    straight = losses_only(metrics("straight"))
    split = losses_only(metrics("split"))
    after_resume = lambda records: [r for r in records if r["iter"] >= 6 and not ("val_loss" in r and r["iter"] == 6)]
    assert after_resume(straight) == after_resume(split)
    assert len(after_resume(straight)) == 6 + 2  # six steps, evals at 8 and 12
    assert json.loads((in_data_root / "split/ckpt.json").read_text())["iter_num"] == 12
    # the run's clock goes on from the checkpoint's time: no step back at the resumed iteration
    times = [r["time_s"] for r in metrics("split")]
    assert times == sorted(times)


def test_resuming_a_finished_run_says_there_is_nothing_to_train(in_data_root, capsys):
    train(parse_args([*TINY, "--out_dir=done", "--max_iters=4"]))
    capsys.readouterr()
    train(parse_args([*TINY, "--out_dir=done", "--max_iters=4", "--init_from=resume"]))
    assert ("note: the checkpoint in done is at iter 4 and max_iters is 4: nothing to train; to "
            "train on, raise --max_iters (and --lr_decay_iters with it)\n") in capsys.readouterr().out


def test_a_new_run_never_replaces_a_checkpoint_unasked(in_data_root):
    train(parse_args([*TINY, "--out_dir=kept", "--max_iters=4"]))
    before = {p.name: p.read_bytes() for p in (in_data_root / "kept").iterdir()}
    for init_from in ("scratch", str(in_data_root)):  # the second stands for a GPT-2 directory
        with pytest.raises(UsageError, match=(
            r"^kept already holds a checkpoint that this new run \(init_from=.*\) would replace: "
            r"continue it with --init_from=resume, train into another --out_dir, or replace it "
            r"with --overwrite_checkpoint=True$"
        )):
            train(parse_args([*TINY, "--out_dir=kept", "--max_iters=2", f"--init_from={init_from}"]))
    assert {p.name: p.read_bytes() for p in (in_data_root / "kept").iterdir()} == before
    train(parse_args([*TINY, "--out_dir=kept", "--max_iters=2", "--overwrite_checkpoint=True"]))
    assert json.loads((in_data_root / "kept/ckpt.json").read_text())["iter_num"] == 2
    assert [r["iter"] for r in metrics("kept") if "val_loss" in r] == [0, 2]  # the new run's only


def test_a_long_run_says_how_long_it_takes(in_data_root, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LONG_RUN_S", 0.0)  # every run is long
    train(parse_args([*TINY, "--out_dir=long", "--max_iters=8"]))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: this run")]
    assert len(notes) == 1
    on_a_cpu = (r"; on a CPU, the configs marked GPU in the README take hours: the default recipe "
                r"\(python -m nanojaxgpt.train\) trains in a few minutes")
    assert re.fullmatch(r"note: this run takes about 1 min more: 5 iterations at \d+\.\d\d s and 2 "
                        r"evaluations at \d+ s" + (on_a_cpu if jax.default_backend() == "cpu" else ""), notes[0])


def test_long_run_note_wording():
    assert progress.long_run_note(100, 1, 1.0, 30.0, "gpu") is None  # 130 s
    assert progress.long_run_note(5000, 21, 30.0, 1500.0, "gpu") == (
        "note: this run takes about 50 h 25 min more: 5000 iterations at 30.00 s and 21 "
        "evaluations at 1500 s")


def test_an_evaluation_advances_its_progress_bar_batch_by_batch(in_data_root):
    config = parse_args(TINY)
    sampler, tokenizer = load_data(config, 4)
    model = GPT.create_instance(GPTConfig.from_training(config, tokenizer.vocab_size), jax.random.key(0))
    x, y = sampler.batches("val", 7, 1, 0)
    with progress.eval_bar("val", 7, enabled=True):  # shown after 3 s: not in this test
        float(evaluate(model, x, y))
        assert progress._eval_bar.n == 7


def test_resume_errors(in_data_root):
    with pytest.raises(CheckpointError, match="no checkpoint in empty"):
        train(parse_args([*TINY, "--out_dir=empty", "--init_from=resume"]))
    train(parse_args([*TINY, "--out_dir=run", "--max_iters=4"]))
    with pytest.raises(UsageError, match=r"another model config: n_layer \(checkpoint 2, requested 3\)"):
        train(parse_args([*TINY, "--out_dir=run", "--init_from=resume", "--n_layer=3"]))


def test_compile_false_runs_the_same_steps_without_jit(in_data_root):
    # one layer, one micro-batch, one step, one batch per evaluation: op by op, every op costs
    # its dispatch
    short = [*TINY, "--max_iters=1", "--eval_interval=100", "--n_layer=1", "--gradient_accumulation_steps=1",
             "--eval_iters=1"]
    train(parse_args([*short, "--out_dir=jit"]))
    main([*short, "--out_dir=nojit", "--compile=False"])
    jit, nojit = losses_only(metrics("jit")), losses_only(metrics("nojit"))
    assert [r["iter"] for r in jit] == [r["iter"] for r in nojit] == [0, 0, 1]
    for a, b in zip(jit, nojit):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4), key


def test_plot_draws_the_logged_losses(in_data_root):
    from nanojaxgpt.plot import main as plot_main, plot_losses

    train(parse_args([*TINY, "--out_dir=plotted", "--max_iters=4"]))
    path = plot_losses(in_data_root / "plotted")
    assert path == in_data_root / "plotted/loss.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.unlink()
    for argv in (["plotted"], ["--out_dir=plotted"]):  # the folder given either way, as to sample
        plot_main(argv)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        path.unlink()
    # several runs: their val loss against wall-clock seconds, on one figure
    train(parse_args([*TINY, "--out_dir=other", "--max_iters=4", "--optimizer=muon"]))
    assert all(r["time_s"] > 0 for r in metrics("other"))
    plot_main(["plotted", "other"])  # into out-plots/, which a checkout's .gitignore keeps out
    assert (in_data_root / "out-plots/val_loss_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_loads_its_compiled_programs_from_the_cache(in_data_root):
    """compile_cache='auto' keeps compiled programs under $XDG_CACHE_HOME/nanojaxgpt/jax: a
    second run of the same shapes finds all of them there and adds none; '' keeps none."""
    run = lambda *args, cache_home: subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.train", *TINY, "--max_iters=2", *args],
        cwd=in_data_root, env={**os.environ, "XDG_CACHE_HOME": str(cache_home)},
        capture_output=True, text=True, check=True,
    )
    run("--out_dir=first", cache_home=in_data_root / "cache")
    folder = in_data_root / "cache/nanojaxgpt/jax"
    compiled = sorted(path.name for path in folder.iterdir())
    assert any("make_step" in name for name in compiled)
    run("--out_dir=second", cache_home=in_data_root / "cache")
    assert sorted(path.name for path in folder.iterdir()) == compiled
    run("--out_dir=third", "--compile_cache=", cache_home=in_data_root / "none")
    assert not (in_data_root / "none").exists()
