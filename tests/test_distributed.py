"""Several devices and processes on this CPU: XLA's virtual host devices stand in for GPUs, and
two processes on 127.0.0.1 join through jax.distributed with CPU collectives (gloo)."""

import json
import os
import socket
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import MODERN_OPTIONS
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.config import parse_args
from nanojaxgpt.precision import DynamicLossScale
from nanojaxgpt.optim import make_optimizer
from nanojaxgpt.train import make_step, train

# a global batch of 8 sequences per iteration: 4 micro-batches of 2 on one device, or one
# micro-batch of 2 on each of 4 devices (gradient_accumulation_steps counts all devices' micro-batches)
TINY = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=2",
    "--gradient_accumulation_steps=4", "--dropout=0.0", "--warmup_iters=1", "--eval_interval=1000",
    "--eval_iters=1", "--log_interval=1", "--always_save_checkpoint=True", "--device=cpu",
]

RUN = """
import sys
from nanojaxgpt.config import parse_args
from nanojaxgpt.distributed import initialize_multihost
from nanojaxgpt.train import train
config = parse_args(sys.argv[1:])
initialize_multihost(config.coordinator_address, config.num_processes, config.process_id)
model = train(config)
print("c_attn sharding:", model.transformer.h.attn.c_attn.weight.sharding.spec)
"""


@pytest.fixture
def data_root(shakespeare_char_dir, tmp_path):
    from nanojaxgpt.prepare import prepare_dataset

    prepare_dataset("shakespeare_char", shakespeare_char_dir)
    return tmp_path


def start(root, devices: int, *args: str) -> subprocess.Popen:
    # CPU devices even where an accelerator is the default: several processes cannot share one GPU
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *TINY, *args], cwd=root, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    return out


def step_losses(root, out_dir) -> dict[int, float]:
    with open(root / out_dir / "metrics.jsonl") as f:
        return {r["iter"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_data_parallel_and_fsdp_match_one_device(data_root):
    single = finish(start(data_root, 1, "--out_dir=single", "--max_iters=5"))
    parallel = finish(start(data_root, 4, "--out_dir=dp", "--max_iters=5"))
    fsdp = finish(start(data_root, 4, "--out_dir=fsdp", "--max_iters=5", "--fsdp=True"))
    assert "devices: 1 (cpu), mesh data=1" in single
    assert "devices: 4 (cpu), mesh data=4\n" in parallel and "tokens per iteration will be: 128" in parallel
    assert "devices: 4 (cpu), mesh data=4 (fsdp)" in fsdp
    assert "c_attn sharding: P()" in parallel
    # (n_layer, 3*n_embd, n_embd) = (2, 96, 32): split along its largest axis that 4 divides
    assert "c_attn sharding: P(None, 'data')" in fsdp
    expected = step_losses(data_root, "single")
    assert sorted(expected) == [0, 1, 2, 3, 4]
    for run in ("dp", "fsdp"):
        losses = step_losses(data_root, run)
        assert losses.keys() == expected.keys()
        for it in expected:
            assert losses[it] == pytest.approx(expected[it], abs=1e-5), (run, it)


def test_fsdp_matches_one_device_with_every_modern_option(data_root):
    modern = [*MODERN_OPTIONS, "--max_iters=5"]
    single = start(data_root, 1, "--out_dir=single", *modern)
    fsdp = start(data_root, 4, "--out_dir=fsdp", "--fsdp=True", *modern)
    finish(single), finish(fsdp)
    expected = step_losses(data_root, "single")
    losses = step_losses(data_root, "fsdp")
    assert sorted(losses) == sorted(expected) == [0, 1, 2, 3, 4]
    for it in expected:
        assert losses[it] == pytest.approx(expected[it], abs=1e-4), it


def test_sequences_that_do_not_split_like_nanogpts_still_train_on_any_device_count(data_root):
    """12 sequences per iteration in one micro-batch (the default's split) cannot be nanoGPT's
    12 per device on several devices: they split over the devices instead (or over the most
    devices they divide), with a note, and the losses are the one-device losses."""
    split = ["--batch_size=12", "--gradient_accumulation_steps=1", "--max_iters=3"]
    runs = {n: start(data_root, n, f"--out_dir=split{n}", *split) for n in (1, 2, 3, 4)}
    runs[5] = start(data_root, 5, "--out_dir=split5", *split)
    out = {n: finish(process) for n, process in runs.items()}
    assert "note:" not in out[1] and "devices: 1 (cpu)" in out[1]
    assert ("note: gradient_accumulation_steps=1 x batch_size=12 does not split over 3 devices as "
            "nanoGPT's DDP would; the same 12 sequences per iteration run on 3 devices, 1 "
            "micro-batch of 4 each") in out[3]
    assert "devices: 4 (cpu), mesh data=4" in out[4] and "1 micro-batch of 3 each" in out[4]
    assert "run on 4 of the 5 devices" in out[5] and "devices: 4 (cpu)" in out[5]
    expected = step_losses(data_root, "split1")
    assert sorted(expected) == [0, 1, 2]
    for n in (2, 3, 4, 5):
        losses = step_losses(data_root, f"split{n}")
        for it in expected:
            assert losses[it] == pytest.approx(expected[it], abs=1e-5), (n, it)


def test_two_processes_train_like_one_and_their_checkpoint_resumes_in_one(data_root):
    finish(start(data_root, 1, "--out_dir=single", "--max_iters=8"))
    address = f"127.0.0.1:{free_port()}"
    processes = [
        start(data_root, 2, "--out_dir=multi", "--max_iters=5", f"--coordinator_address={address}",
              "--num_processes=2", f"--process_id={i}")
        for i in range(2)
    ]
    main_out, other_out = [finish(p) for p in processes]
    assert "devices: 4 (cpu), mesh data=4" in main_out
    assert "iter 0:" in main_out and "iter 0:" not in other_out  # only process 0 logs
    expected = step_losses(data_root, "single")
    multi = step_losses(data_root, "multi")
    assert sorted(multi) == [0, 1, 2, 3, 4]
    for it in multi:
        assert multi[it] == pytest.approx(expected[it], abs=1e-5), it
    assert json.loads((data_root / "multi/ckpt.json").read_text())["iter_num"] == 5

    finish(start(data_root, 1, "--out_dir=multi", "--max_iters=8", "--init_from=resume"))
    resumed = step_losses(data_root, "multi")
    for it in (5, 6, 7):
        assert resumed[it] == pytest.approx(expected[it], abs=1e-5), it


def test_bfloat16_compute_stays_close_to_float32(data_root, monkeypatch):
    monkeypatch.chdir(data_root)
    short = ["--max_iters=50", "--eval_interval=50", "--eval_iters=10"]
    train(parse_args([*short, "--out_dir=f32", "--dtype=float32"]))
    train(parse_args([*short, "--out_dir=bf16", "--dtype=bfloat16"]))
    val = {}
    for run in ("f32", "bf16"):
        with open(data_root / run / "metrics.jsonl") as f:
            val[run] = [r["val_loss"] for r in map(json.loads, f) if r.get("iter") == 50 and "val_loss" in r][0]
    assert val["f32"] < 3.3
    assert abs(val["bf16"] - val["f32"]) < 0.05


@pytest.mark.parametrize("options", [[], MODERN_OPTIONS], ids=["default", "modern"])
def test_float16_skips_an_overflowing_step_and_lowers_the_scale(options):
    config = parse_args(["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=8", *options])
    model = GPT.create_instance(GPTConfig.from_training(config, vocab_size=11), jax.random.key(0))
    optimizer = make_optimizer(model, config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    x = jax.random.randint(jax.random.key(1), (1, 2, 8), 0, 11)
    before = [np.asarray(p) for p in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]

    # a loss scale of 2**100 overflows float16's gradients: the step must be skipped
    huge = DynamicLossScale.create(2.0**100)
    model, opt_state, _, scale = make_step(model, opt_state, x, x, jax.random.key(2), optimizer, jnp.float16, huge)
    after = [np.asarray(p) for p in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert float(scale.scale) == 2.0**99 and int(scale.good_steps) == 0

    model, opt_state, loss, scale = make_step(
        model, opt_state, x, x, jax.random.key(3), optimizer, jnp.float16, DynamicLossScale.create()
    )
    params = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, params))
    assert np.isfinite(float(loss)) and float(scale.scale) == 2.0**16 and int(scale.good_steps) == 1
