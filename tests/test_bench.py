"""`python -m nanojaxgpt.bench`: the figures it prints and writes, on a small model."""

import json
import re
import subprocess
import sys

import jax
import pytest

from conftest import MODERN_OPTIONS
from nanojaxgpt.precision import resolve_dtype


@pytest.mark.parametrize("options, mlp", [
    ([], "swiglu"),
    (MODERN_OPTIONS, "relu2"),
], ids=["default", "modern"])
def test_bench_prints_and_writes_its_figures(tmp_path, options, mlp):
    result = subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.bench", "--n_layer=1", "--n_head=2", "--n_embd=32",
         "--block_size=16", "--batch_size=2", "--num_steps=2", "--warmup_steps=1",
         f"--json_out={tmp_path / 'bench.json'}", *options],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    out = result.stdout
    ran = f"{resolve_dtype('auto').name} on {jax.devices()[0].device_kind}"  # float32 on cpu, here
    assert f"1 layers, 2 heads, 32 embd, block 16, batch 2x1, mlp {mlp}, {ran}" in out
    assert re.search(r"^compile \(the training step, ahead of time\): \d+\.\d\ds$", out, re.M)
    assert re.search(r"^memory: the training step needs \d+ MiB per device", out, re.M)
    assert re.search(r"^time per iteration: \d+\.\d\dms, [\d,]+ tokens/s$", out, re.M)
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["tokens_per_s"] == pytest.approx(2 * 16 / (figures["ms_per_iter"] / 1000))
    assert 0 < figures["mfu"] < 1 and figures["loss"] > 0
