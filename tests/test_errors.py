"""Bad input and faults: one line on stderr naming the problem and the fix, a non-zero exit, and
no file of the user's damaged.

Most tests run the real command (`python -m nanojaxgpt.train` or `.sample`) in a folder holding
a small synthetic character data set, and check the exit code (2 usage, 1 runtime failure, 130
interrupt), that stderr is exactly one `error: ...` line with no traceback, and that every file
that was there before is byte-identical after.
"""

import hashlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanojaxgpt.config import KEYS, TrainConfig, parse_args
from nanojaxgpt.errors import RuntimeFailure, UsageError, error_line

REPO = Path(__file__).resolve().parent.parent
VOCAB = sorted(set("abcdefgh \n"))  # 10 characters
TINY = [
    "--dataset=tiny", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=8",
    "--batch_size=2", "--eval_iters=1",
]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
CHECKPOINT_FILES = ("ckpt.json", "model.eqx", "optimizer.eqx")


def write_dataset(root: Path, name: str = "tiny", train=None, val=None) -> Path:
    """data/<name>/ with meta.pkl for VOCAB and random train.bin (2,000 ids) and val.bin (500)."""
    data_dir = root / "data" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = {"vocab_size": len(VOCAB), "itos": dict(enumerate(VOCAB)), "stoi": {c: i for i, c in enumerate(VOCAB)}}
    (data_dir / "meta.pkl").write_bytes(pickle.dumps(meta))
    rng = np.random.default_rng(0)
    train = rng.integers(0, len(VOCAB), 2000) if train is None else train
    val = rng.integers(0, len(VOCAB), 500) if val is None else val
    np.asarray(train, dtype=np.uint16).tofile(data_dir / "train.bin")
    np.asarray(val, dtype=np.uint16).tofile(data_dir / "val.bin")
    return data_dir


def run(module: str, *args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"nanojaxgpt.{module}", *args],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, **kwargs,
    )


def train(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return run("train", *TINY, *args, cwd=cwd, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, exit_code: int) -> str:
    """The one `error: ...` line of a failed command, after checking its exit code and that
    stderr holds nothing else (no traceback)."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_did_not_train(result: subprocess.CompletedProcess) -> None:
    assert not re.search(r"^(step|iter) \d+", result.stdout, re.M), result.stdout


@pytest.fixture
def root(tmp_path) -> Path:
    """A working folder holding data/tiny/, as after preparing a data set."""
    write_dataset(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    write_dataset(folder)
    result = train(
        "--out_dir=out", "--max_iters=10", "--eval_interval=5", "--log_interval=5",
        "--always_save_checkpoint=True", cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def trained(trained_once, tmp_path) -> Path:
    """A working folder holding data/tiny/ and, in out/, the checkpoint of a run to iter 10."""
    copy = tmp_path / "trained"
    shutil.copytree(trained_once, copy)
    return copy


# --- configuration ---------------------------------------------------------------------------


def test_unknown_key_names_the_nearest_valid_key(root):
    before = snapshot(root)
    result = train("--batchsize=8", cwd=root)
    assert one_error_line(result, 2) == (
        "error: unknown config key 'batchsize' in --batchsize=8; did you mean 'batch_size'?"
    )
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "override, message",
    [
        ("--batch_size=abc", "batch_size='abc' in --batch_size=abc is a str; batch_size takes an int, like its default 12"),
        ("--dropout=2", "dropout=2.0 must be in [0, 1), e.g. --dropout=0.2"),
    ],
)
def test_wrong_type_or_range_names_key_value_and_expectation(root, override, message):
    before = snapshot(root)
    assert one_error_line(train(override, cwd=root), 2) == f"error: {message}"
    assert snapshot(root) == before


RAISING_CONFIG = "n_layer = 1\nbatch_size = 4\nmax_iters = int('ten')\n"


def test_config_file_missing_or_raising_names_the_file_and_line(root):
    before = snapshot(root)
    assert one_error_line(train("no_such_config.py", cwd=root), 2) == (
        "error: config file no_such_config.py does not exist; give the path of a .py config file"
    )
    (root / "my_config.py").write_text(RAISING_CONFIG)
    before = snapshot(root)
    assert one_error_line(train("my_config.py", cwd=root), 2) == (
        "error: config file my_config.py failed at line 3: ValueError: invalid literal for int() "
        "with base 10: 'ten'"
    )
    assert snapshot(root) == before


def test_debug_prints_the_traceback_too(root):
    (root / "my_config.py").write_text(RAISING_CONFIG)
    result = train("my_config.py", "--debug", cwd=root)
    assert result.returncode == 2
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'File "my_config.py", line 3' in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: config file my_config.py failed at line 3: ValueError: invalid literal for int() "
        "with base 10: 'ten'"
    )


def test_values_no_run_could_use_are_refused(tmp_path):
    refused = {
        "--learning_rate=1e400": "learning_rate=inf must be a finite number",
        "--min_lr=1" + "0" * 30: f"min_lr in --min_lr=1{'0' * 30} is a number too large to use; give one below 2**63",
    }
    for override, message in refused.items():
        with pytest.raises(UsageError) as error:
            parse_args([override])
        assert str(error.value) == message
    config_file = tmp_path / "my_config.py"
    config_file.write_text("beta2 = float('nan')\n")
    with pytest.raises(UsageError, match=r"^beta2=nan must be a finite number$"):
        parse_args([str(config_file)])
    config_file.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(UsageError, match=f"^config file {config_file} failed at line 2: SystemExit: 0$"):
        parse_args([str(config_file)])


def test_unknown_init_from_lists_the_accepted_values(root):
    before = snapshot(root)
    assert one_error_line(train("--init_from=gpt3", cwd=root), 2) == (
        "error: init_from='gpt3' is not one of scratch, resume, gpt2, gpt2-medium, gpt2-large, "
        "gpt2-xl, a Hugging Face model directory or a nanoGPT ckpt.pt"
    )
    assert snapshot(root) == before


# --- data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, script, command",
    [
        # a data set we know how to fetch, run where its nanoGPT-style script is not
        ("openwebtext", False, "python -m nanojaxgpt.prepare --name openwebtext"),
        # where the script is, as in a clone of this repository
        ("tinystories", True, "python data/tinystories/prepare.py"),
        # a name of the user's own: prepare a text file under it
        ("my_text", False, "python -m nanojaxgpt.prepare --input FILE --name my_text"),
    ],
)
def test_unprepared_data_set_names_the_prepare_command(tmp_path, dataset, script, command):
    if script:
        (tmp_path / "data" / dataset).mkdir(parents=True)
        shutil.copy(REPO / "data" / dataset / "prepare.py", tmp_path / "data" / dataset)
    before = snapshot(tmp_path)
    result = train(f"--dataset={dataset}", cwd=tmp_path)
    assert one_error_line(result, 1) == (
        f"error: data/{dataset}/train.bin not found; prepare the data set first: {command}"
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "train_ids, val_ids, message",
    [
        (np.arange(8) % 10, None, "data/tiny/train.bin holds 8 tokens, fewer than block_size + 1 = 9; "
                                  "use a smaller --block_size or more data"),
        ([], None, "data/tiny/train.bin holds 0 tokens, fewer than block_size + 1 = 9; "
                   "use a smaller --block_size or more data"),
        (None, [3] * 50 + [10] + [3] * 49, "data/tiny holds token id 10, outside the model's "
                                           "vocab_size 10; prepare the data set again"),
    ],
    ids=["short", "empty", "id-outside-vocab"],
)
def test_bad_data_is_refused_before_training(tmp_path, train_ids, val_ids, message):
    write_dataset(tmp_path, train=train_ids, val=val_ids)
    before = snapshot(tmp_path)
    result = train("--out_dir=out", cwd=tmp_path)
    assert one_error_line(result, 1) == f"error: {message}"
    assert_did_not_train(result)
    assert snapshot(tmp_path) == before


def test_token_file_of_odd_size_is_refused(tmp_path):
    from nanojaxgpt.data import BatchSampler

    data_dir = write_dataset(tmp_path)
    (data_dir / "val.bin").write_bytes(b"\x01\x00" * 20 + b"\x01")
    with pytest.raises(RuntimeFailure, match=r"^.*val\.bin holds 41 bytes, not a whole number of "
                                             r"uint16 token ids; prepare the data set again$"):
        BatchSampler(data_dir, block_size=8, batch_size=2, seed=0)


# --- checkpoints -----------------------------------------------------------------------------


def test_resume_without_a_checkpoint_names_the_file(root):
    before = snapshot(root)
    result = train("--init_from=resume", "--out_dir=out", cwd=root)
    assert one_error_line(result, 1) == (
        "error: no checkpoint in out: out/ckpt.json does not exist; train one first with "
        "--init_from=scratch, or set --out_dir to the folder of an earlier run"
    )
    assert snapshot(root) == before


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_checkpoint_is_reported_and_left_as_it_is(trained, damage):
    model_file = trained / "out/model.eqx"
    data = bytearray(model_file.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(data)
    before = snapshot(trained)
    result = train("--init_from=resume", "--out_dir=out", "--max_iters=20", cwd=trained)
    assert one_error_line(result, 1) == (
        "error: out/model.eqx is missing, truncated or corrupted (sha256 mismatch); restore the "
        "checkpoint from a copy, or train again"
    )
    assert_did_not_train(result)
    assert snapshot(trained) == before


def test_resume_with_another_model_config_lists_the_keys(trained):
    before = snapshot(trained)
    result = train("--init_from=resume", "--out_dir=out", "--n_layer=2", "--n_embd=32", cwd=trained)
    assert one_error_line(result, 2) == (
        "error: the checkpoint in out has another model config: n_layer (checkpoint 1, requested "
        "2); n_embd (checkpoint 16, requested 32); drop these overrides or use another out_dir"
    )
    assert snapshot(trained) == before


def test_out_dir_that_cannot_be_created_is_one_line(root):
    # root cannot be kept from writing to a mode 0o500 folder: a path under a file fails for all
    (root / "notes.txt").write_text("keep me\n")
    before = snapshot(root)
    result = train("--out_dir=notes.txt/run", "--max_iters=2", cwd=root)
    assert one_error_line(result, 1) == (
        "error: cannot write notes.txt/run/metrics.jsonl (Not a directory); set --out_dir to a "
        "folder you can write to"
    )
    assert_did_not_train(result)
    assert snapshot(root) == before


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(trained):
    from nanojaxgpt.checkpoint import load_checkpoint

    before = snapshot(trained / "out")
    # with files limited to 4 KiB a write fails with EFBIG, as on a full disk with ENOSPC
    # (Python ignores SIGXFSZ); the checkpoint's files are bigger, the metrics log smaller
    command = [
        sys.executable, "-m", "nanojaxgpt.train", *TINY, "--init_from=resume", "--out_dir=out",
        "--max_iters=14", "--eval_interval=2", "--always_save_checkpoint=True",
    ]
    result = subprocess.run(
        ["bash", "-c", 'ulimit -f 4 && exec "$@"', "bash", *command],
        cwd=trained, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert one_error_line(result, 1) == (
        "error: could not save the checkpoint in out (File too large); the previous checkpoint "
        "there is unchanged"
    )
    after = snapshot(trained / "out")
    assert sorted(after) == sorted(before)  # no temporary files left behind
    assert {name: after[name] for name in CHECKPOINT_FILES} == {name: before[name] for name in CHECKPOINT_FILES}
    assert load_checkpoint(trained / "out")[1]["iter_num"] == 10


def test_disk_full_during_the_first_save_is_one_line_and_leaves_no_partial_files(root):
    # the first leaf of model.eqx (10 x 32 floats) is already past a 1 KiB file size limit:
    # equinox reports that write failing as its own error, caused by the OSError
    command = [sys.executable, "-m", "nanojaxgpt.train", *TINY, "--n_embd=32", "--out_dir=out",
               "--max_iters=2", "--eval_interval=2", "--always_save_checkpoint=True"]
    result = subprocess.run(
        ["bash", "-c", 'ulimit -f 1 && exec "$@"', "bash", *command],
        cwd=root, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert one_error_line(result, 1).startswith("error: could not save the checkpoint in out (")
    assert sorted(path.name for path in (root / "out").iterdir()) == ["metrics.jsonl"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["train", "sample"])
def test_a_device_this_machine_lacks_is_one_line_naming_those_it_has(root, command):
    result = run(command, "--device=cuda", cwd=root)
    assert one_error_line(result, 2) == (
        "error: device='cuda', but JAX finds no cuda device here (it has: cpu); use --device=auto "
        "or one of those"
    )


def test_a_step_that_cannot_fit_in_memory_stops_before_training(root):
    # 10 million sequences a step: about 200 GiB of activations, far past this machine's memory
    result = train("--batch_size=10000000", "--out_dir=out", cwd=root)
    error = one_error_line(result, 2)
    assert re.fullmatch(
        r"error: the training step needs about \d+\.\d GiB per device \(temporaries \d+\.\d GiB\), "
        r"more than the \d+\.\d GiB of host memory available: lower batch_size and raise "
        r"gradient_accumulation_steps \(the same tokens per iteration\), use --dtype=bfloat16, or "
        r"--fsdp=True over more devices", error), error
    assert_did_not_train(result)


# --- faults while training -------------------------------------------------------------------


def test_non_finite_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(trained):
    import equinox as eqx
    import jax

    from nanojaxgpt.checkpoint import load_checkpoint

    before = snapshot(trained / "out")
    # Adam moves every weight by about the learning rate: 1e30 overflows the logits at once.
    # Evals at 12, 16, ...: with always_save_checkpoint a non-finite model must not be saved.
    result = train(
        "--init_from=resume", "--out_dir=out", "--max_iters=40", "--learning_rate=1e30",
        "--grad_clip=0.0", "--warmup_iters=0", "--dtype=float32", "--eval_interval=4",
        "--log_interval=5", "--always_save_checkpoint=True", cwd=trained,
    )
    line = one_error_line(result, 1)
    assert re.fullmatch(
        r"error: loss became (nan|inf) at iter 12; the last checkpoint in out is kept: lower "
        r"learning_rate or raise warmup_iters",
        line,
    ), line
    after = snapshot(trained / "out")
    assert {name: after[name] for name in CHECKPOINT_FILES} == {name: before[name] for name in CHECKPOINT_FILES}
    model, state = load_checkpoint(trained / "out")
    assert state["iter_num"] == 10
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def test_ctrl_c_saves_the_current_iteration_exits_130_and_resume_continues(root):
    args = [*TINY, "--out_dir=out", "--max_iters=1000000", "--eval_interval=1000000", "--log_interval=1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "nanojaxgpt.train", *args],
        cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = []
    for line in process.stdout:  # past compilation, inside the loop
        seen.append(line)
        if line.startswith("iter 3:"):
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    stdout = "".join(seen) + stdout
    assert process.returncode == 130, stderr
    assert stderr == "interrupted\n"
    stopped_at = int(re.search(r"^interrupted at iter (\d+)", stdout, re.M).group(1))
    logged = [int(n) for n in re.findall(r"^iter (\d+):", stdout, re.M)]
    assert logged == list(range(stopped_at))  # every step before the stop ran, none after
    from nanojaxgpt.checkpoint import read_checkpoint_state

    assert read_checkpoint_state(root / "out")["iter_num"] == stopped_at

    resumed = run(
        "train", *args, "--init_from=resume", f"--max_iters={stopped_at + 2}",
        "--always_save_checkpoint=True", cwd=root,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [int(n) for n in re.findall(r"^iter (\d+):", resumed.stdout, re.M)][0] == stopped_at
    assert read_checkpoint_state(root / "out")["iter_num"] == stopped_at + 2


# --- sampling --------------------------------------------------------------------------------

# sample.py says on stdout which vocabulary it loaded, as nanoGPT's does; an error found after
# that is still the one line on stderr
LOADED = "Loading meta from out/ckpt.json...\n"


@pytest.mark.parametrize(
    "start, stdout, stderr",
    [
        ("FILE:missing.txt", "", "error: start=FILE:missing.txt: cannot read missing.txt (No such file or directory)\n"),
        ("", LOADED, "error: start is empty: the prompt needs at least one token, e.g. --start=Hello\n"),
        ("hey", LOADED, "error: start: characters 'y' are not in this data set's vocabulary of 10; use "
                        "only characters from its training text\n"),
    ],
    ids=["missing-file", "empty", "outside-vocab"],
)
def test_bad_prompt_is_one_error_line(trained, start, stdout, stderr):
    before = snapshot(trained)
    result = run(
        "sample", "--out_dir=out", f"--start={start}", "--num_samples=1", "--max_new_tokens=4",
        cwd=trained,
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, stdout, stderr)
    assert snapshot(trained) == before


# --- the parser never fails any other way ----------------------------------------------------

NEAR_MISSES = st.sampled_from(KEYS).flatmap(
    lambda key: st.sampled_from(
        [key, key.upper(), key[:-1], key + "s", key.replace("_", ""), key.replace("_", "-"), f" {key}"]
    )
)
NAMES = st.one_of(st.sampled_from(KEYS), NEAR_MISSES, st.text(max_size=12))
NASTY_VALUES = [
    "", "0", "-1", "1.5", "1e400", "-1e400", "nan", "inf", "True", "false", "None", "'x'", '"',
    "'", "''", "[1, 2]", "{}", "()", "{1: 2}", "9" * 5000, "1" + "0" * 400, "2**1000", "(" * 300,
    "[" * 100000, "=", "a=b", "é", "\u2028", "\x00", "1_000", "0x10", "1j", "...", "b'x'",
    "lambda: 0", "__import__('os')", "float('nan')", "float('inf')", "10**400", "-10**5000", "exit()",
    "gpt2", "resume", "scratch",
]
VALUES = st.one_of(
    st.sampled_from(NASTY_VALUES),
    st.text(max_size=30),
    st.integers().map(str),
    st.floats().map(repr),
)
OVERRIDES = st.one_of(
    st.builds(lambda key, value: f"--{key}={value}", NAMES, VALUES),
    st.builds(lambda key: f"--{key}", NAMES),
    st.sampled_from(["--", "--=", "--=1", "-batch_size=1", "--debug"]),
)


def check_parse(argv: list[str]) -> None:
    try:
        config = parse_args(argv)
    except UsageError as error:
        line = error_line(error)  # what the command prints
        assert line.isprintable() and len(line) > len("error: "), argv
    else:
        assert isinstance(config, TrainConfig)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDES, max_size=6))
def test_fuzzed_overrides_give_a_config_or_a_usage_error(argv):
    check_parse(argv)


@settings(
    max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(
        st.one_of(st.builds(lambda key, value: f"{key} = {value}", NAMES, VALUES), st.text(max_size=30)),
        max_size=5,
    ),
    overrides=st.lists(OVERRIDES, max_size=2),
)
def test_fuzzed_config_files_give_a_config_or_a_usage_error(tmp_path, lines, overrides):
    path = tmp_path / "fuzzed_config.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    check_parse([str(path), *overrides])


@pytest.mark.parametrize("value", NASTY_VALUES, ids=range(len(NASTY_VALUES)))
def test_every_key_with_each_nasty_value_gives_a_config_or_a_usage_error(tmp_path, value):
    path = tmp_path / "nasty_config.py"
    for key in KEYS:
        check_parse([f"--{key}={value}"])
        path.write_text(f"{key} = {value}\n", encoding="utf-8", errors="surrogatepass")
        check_parse([str(path)])
