"""`python -m nanojaxgpt.export OUT_DIR HF_DIR`: a trained model as a Hugging Face GPT-2 that
transformers loads with the same logits, and back."""

import json
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.checkpoint import save_checkpoint
from nanojaxgpt.tokenizer import GPT2Tokenizer

pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")


def trained_run(out_dir, dataset="openwebtext", **config) -> GPT:
    """A checkpoint in out_dir whose every array is random (gains and biases too), so that each
    must land in its place."""
    config = GPTConfig(**{**dict(n_layer=2, n_head=4, n_embd=32, block_size=24, vocab_size=100,
                                 mlp="gelu", bias=True), **config})
    model = GPT.create_instance(config, jax.random.key(0))
    leaves, treedef = jax.tree.flatten(eqx.filter(model, eqx.is_inexact_array))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    model = eqx.combine(jax.tree.unflatten(treedef, noisy), model)
    save_checkpoint(out_dir, model, (), {"iter_num": 0, "best_val_loss": 0.0, "config": {"dataset": dataset}})
    return model


def export(out_dir, hf_dir, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nanojaxgpt.export", str(out_dir), str(hf_dir)],
                          cwd=cwd, capture_output=True, text=True)


def our_logits(model, idx) -> np.ndarray:
    return np.asarray(eqx.filter_jit(jax.vmap(GPT.__call__, in_axes=(None, 0)))(model, jnp.asarray(idx)))


@pytest.mark.parametrize("bias, mlp", [(True, "gelu"), (False, "gelu_exact")])
def test_transformers_loads_the_export_with_our_logits_and_so_do_we(tmp_path, bias, mlp):
    model = trained_run(tmp_path / "out", bias=bias, mlp=mlp)
    result = export(tmp_path / "out", tmp_path / "hf", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote config.json, model.safetensors to {tmp_path / 'hf'}\n"
    config = json.loads((tmp_path / "hf/config.json").read_text())
    assert config["activation_function"] == {"gelu": "gelu_new", "gelu_exact": "gelu"}[mlp]
    assert config["bos_token_id"] is config["eos_token_id"] is None  # not GPT-2's vocabulary: no GPT-2 ids
    # the files get the user's umask, as any file written
    assert (tmp_path / "hf/model.safetensors").stat().st_mode == (tmp_path / "hf/config.json").stat().st_mode
    idx = np.random.default_rng(0).integers(0, 100, (3, 24))
    expected = our_logits(model, idx)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        theirs = hf(torch.from_numpy(idx)).logits.numpy()
    assert np.abs(theirs - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.5
    np.testing.assert_array_equal(our_logits(GPT.from_pretrained(str(tmp_path / "hf")), idx), expected)


def test_a_model_trained_on_gpt2_bpe_takes_gpt2s_tokenizer_along(tmp_path):
    trained_run(tmp_path / "out", vocab_size=50304, n_embd=16, n_head=2, n_layer=1)
    assert export(tmp_path / "out", tmp_path / "hf", tmp_path).returncode == 0
    assert {"vocab.json", "merges.txt"} <= {path.name for path in (tmp_path / "hf").iterdir()}
    config = json.loads((tmp_path / "hf/config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == 50256
    tokenizer = transformers.GPT2Tokenizer.from_pretrained(tmp_path / "hf")
    text = "Hello, world! Export me to the hub."
    assert tokenizer.encode(text) == GPT2Tokenizer().encode(text)


def test_options_gpt2_cannot_express_are_refused_before_anything_is_written(tmp_path):
    trained_run(tmp_path / "out", mlp="swiglu")
    result = export(tmp_path / "out", tmp_path / "hf", tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: the model in {tmp_path / 'out'} has options GPT-2's architecture cannot express: "
        f"mlp='swiglu' (GPT-2's MLP is 'gelu': train with --mlp=gelu)\n"
    )
    assert not (tmp_path / "hf").exists()
    assert json.loads((tmp_path / "out/ckpt.json").read_text())["model_args"]["mlp"] == "swiglu"
