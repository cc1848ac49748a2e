import functools
import os
import random
import signal
import subprocess
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nanojaxgpt.checkpoint as checkpoint
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_optimizer_state,
    save_checkpoint,
)

CONFIG = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11, dropout=0.1)


@functools.cache
def new_model_and_optimizer():
    model = GPT.create_instance(CONFIG, jax.random.key(0))
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95))
    return model, optimizer, optimizer.init(eqx.filter(model, eqx.is_inexact_array))


def filled(value: float):
    """A model and AdamW state whose every float equals `value`: a checkpoint is consistent
    when its arrays all equal its iter_num."""
    fill = lambda x: jnp.full_like(x, value) if eqx.is_inexact_array(x) else x
    model, optimizer, opt_state = new_model_and_optimizer()
    return jax.tree.map(fill, model), optimizer, jax.tree.map(fill, opt_state)


def load_consistent_iter(out_dir) -> int:
    model, state = load_checkpoint(out_dir)
    values = {float(v) for p in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)) for v in np.unique(p)}
    assert values == {float(state["iter_num"])}, (values, state["iter_num"])
    return state["iter_num"]


def test_round_trip_restores_model_optimizer_and_state(tmp_path):
    model, optimizer, opt_state = filled(3.0)
    save_checkpoint(tmp_path, model, opt_state, {"iter_num": 3, "best_val_loss": 1.5})
    assert sorted(os.listdir(tmp_path)) == ["ckpt.json", "model.eqx", "optimizer.eqx"]
    loaded, state = load_checkpoint(tmp_path)
    assert loaded.config == CONFIG and state["iter_num"] == 3 and state["best_val_loss"] == 1.5
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    loaded_opt = load_optimizer_state(tmp_path, optimizer, loaded)
    assert jax.tree.structure(loaded_opt) == jax.tree.structure(opt_state)
    for a, b in zip(jax.tree.leaves(opt_state), jax.tree.leaves(loaded_opt)):
        np.testing.assert_array_equal(a, b)
    assert load_model(tmp_path).transformer.drop.inference is True


class SimulatedKill(BaseException):
    """Not an Exception: like SIGKILL, no cleanup code of the saver gets to run."""


@pytest.mark.parametrize("kill_at", range(12))
def test_a_save_killed_at_any_step_leaves_one_whole_checkpoint(tmp_path, monkeypatch, kill_at):
    model, _, opt_state = filled(1.0)
    save_checkpoint(tmp_path, model, opt_state, {"iter_num": 1})
    steps = []

    def dies_at(name, real):
        def step(*args, **kwargs):
            steps.append(name)
            if len(steps) == kill_at + 1:
                if name == "write":  # die half way through writing the file
                    path, write = args
                    real(path, lambda f: f.write(b"partial"))
                raise SimulatedKill
            return real(*args, **kwargs)
        return step

    monkeypatch.setattr(checkpoint, "_write_synced", dies_at("write", checkpoint._write_synced))
    monkeypatch.setattr(checkpoint.os, "replace", dies_at("replace", os.replace))
    model, _, opt_state = filled(2.0)
    try:
        save_checkpoint(tmp_path, model, opt_state, {"iter_num": 2})
        killed = False
    except SimulatedKill:
        killed = True
    monkeypatch.undo()
    # 3 writes then 4 renames (the commit, then 3 moves into place)
    assert killed == (kill_at < 7)
    assert load_consistent_iter(tmp_path) == (1 if kill_at < 4 else 2)
    assert sorted(os.listdir(tmp_path)) in (
        ["ckpt.json", "model.eqx", "optimizer.eqx"],
        ["ckpt.json", "ckpt.json.part", "model.eqx", "optimizer.eqx"],
    )
    model, _, opt_state = filled(3.0)
    save_checkpoint(tmp_path, model, opt_state, {"iter_num": 3})
    assert load_consistent_iter(tmp_path) == 3


SAVER = """
import sys, jax, jax.numpy as jnp, equinox as eqx
sys.path.insert(0, {tests!r})
from test_checkpoint import filled
from nanojaxgpt.checkpoint import save_checkpoint
for i in range({first}, {first} + 100000):
    model, _, opt_state = filled(float(i))
    save_checkpoint({out!r}, model, opt_state, {{"iter_num": i}})
    print(i, flush=True)
"""


def test_sigkill_during_saves_never_breaks_the_checkpoint(tmp_path):
    tests_dir = os.path.dirname(__file__)
    rng = random.Random(0)
    for attempt in range(4):
        first = 1 + 100000 * attempt  # each saver's checkpoints are told apart by their iter_num
        script = SAVER.format(tests=tests_dir, out=str(tmp_path), first=first)
        saver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        saver.stdout.readline()  # one whole save has happened
        time.sleep(rng.uniform(0.0, 0.3))
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=60)
        assert load_consistent_iter(tmp_path) >= first


def test_damaged_checkpoints_are_reported_with_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"no checkpoint in {tmp_path}: .*ckpt.json does not exist"):
        load_checkpoint(tmp_path)
    model, _, opt_state = filled(1.0)
    save_checkpoint(tmp_path, model, opt_state, {"iter_num": 1})
    model_file = tmp_path / "model.eqx"
    intact = model_file.read_bytes()
    model_file.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(CheckpointError, match="model.eqx is missing, truncated or corrupted"):
        load_checkpoint(tmp_path)
    assert model_file.read_bytes() == intact[: len(intact) // 2]  # reading changed nothing
    model_file.write_bytes(intact)
    (tmp_path / "ckpt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="ckpt.json is not valid JSON"):
        load_checkpoint(tmp_path)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _, opt_state = filled(1.0)
    save_checkpoint(tmp_path, model, opt_state, {"iter_num": 1})

    def disk_full(path, write):
        with open(path, "wb") as f:
            f.write(b"x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_synced", disk_full)
    model, _, opt_state = filled(2.0)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint there is unchanged"):
        save_checkpoint(tmp_path, model, opt_state, {"iter_num": 2})
    monkeypatch.undo()
    assert load_consistent_iter(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.json", "model.eqx", "optimizer.eqx"]
