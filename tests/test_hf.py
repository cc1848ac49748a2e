import json
import shutil
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.eqx import named_parameters
from nanojaxgpt import GPT
from nanojaxgpt.errors import UsageError
from nanojaxgpt.generate import generate
from nanojaxgpt.hf import PretrainedError, from_pretrained

# float32 results are compared to tight tolerances: pin float32 matmuls (TF32 on GPUs otherwise)
pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TINY_GPT2 = dict(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A small random `GPT2LMHeadModel` saved with `save_pretrained`, and the model itself.
    Every array, biases and LayerNorms included, is random, so each must land in its place;
    the greedy continuations of this seed go through several tokens."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY_GPT2))
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_gain = ".ln_" in name and name.endswith(".weight")
            param.normal_(1.0 if is_gain else 0.0, 0.1 if is_gain else 0.2)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(path)
    return path, model.eval()


@pytest.fixture(scope="module")
def loaded(hf_model) -> GPT:
    return from_pretrained(str(hf_model[0]))


def copy_model_dir(src, dst, config_changes=None, tensors=None):
    """`src`'s config.json (with `config_changes`) and its weights (or `tensors`) in `dst`."""
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **(config_changes or {})}))
    if tensors is None:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        safetensors_numpy.save_file(tensors, dst / "model.safetensors")
    return dst


def test_save_pretrained_writes_prefixed_conv1d_weights(hf_model):
    tensors = safetensors_numpy.load_file(hf_model[0] / "model.safetensors")
    # what the mapping relies on: `transformer.` keys, Conv1D weights stored (in, out)
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)
    assert tensors["transformer.h.1.mlp.c_proj.weight"].shape == (128, 32)


def test_logits_match_transformers(hf_model, loaded):
    _, hf = hf_model
    config = loaded.config
    assert config.mlp == "gelu" and config.bias
    assert (config.block_size, config.vocab_size, config.n_layer, config.n_embd) == (32, 100, 2, 32)
    idx = np.random.default_rng(0).integers(0, 100, (3, 32))
    with torch.no_grad():
        expected = hf(torch.from_numpy(idx)).logits.numpy()
    got = eqx.filter_jit(jax.vmap(GPT.__call__, in_axes=(None, 0)))(loaded, jnp.asarray(idx))
    assert np.abs(np.asarray(got) - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.5  # the comparison is not between near-zero logits


def test_greedy_continuation_matches_transformers(hf_model, loaded):
    _, hf = hf_model
    prompts = np.random.default_rng(1).integers(0, 100, (4, 8))
    tokens = torch.from_numpy(prompts)
    with torch.no_grad():
        for _ in range(20):  # greedy decoding with the Hugging Face forward
            next_token = hf(tokens).logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], dim=1)
    ours = generate(loaded, jnp.asarray(prompts), 20, temperature=0.0, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(ours), tokens.numpy())
    assert len(set(tokens[:, 8:].ravel().tolist())) >= 6  # not one repeated token


def test_keys_without_prefix_and_with_mask_buffers_load_the_same(hf_model, loaded, tmp_path):
    path, _ = hf_model
    tensors = safetensors_numpy.load_file(path / "model.safetensors")
    # the hub's files: no `transformer.` prefix, and each layer's causal mask as a buffer
    hub_style = {key.removeprefix("transformer."): value for key, value in tensors.items()}
    for i in range(2):
        hub_style[f"h.{i}.attn.bias"] = np.tril(np.ones((32, 32), np.float32))[None, None]
    hub_style["lm_head.weight"] = hub_style["wte.weight"]
    model = from_pretrained(str(copy_model_dir(path, tmp_path / "hub-style", tensors=hub_style)))
    for (name, a), (_, b) in zip(named_parameters(model), named_parameters(loaded)):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_sharded_weights_load_through_their_index(hf_model, loaded, tmp_path):
    path, _ = hf_model
    tensors = safetensors_numpy.load_file(path / "model.safetensors")
    sharded = copy_model_dir(path, tmp_path / "sharded", tensors={})
    (sharded / "model.safetensors").unlink()
    keys = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((keys[::2], keys[1::2])):
        name = f"model-0000{i + 1}-of-00002.safetensors"
        safetensors_numpy.save_file({key: tensors[key] for key in part}, sharded / name)
        weight_map.update(dict.fromkeys(part, name))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = from_pretrained(str(sharded))
    for (name, a), (_, b) in zip(named_parameters(model), named_parameters(loaded)):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_gpt_from_pretrained_overrides_only_dropout(hf_model):
    path = str(hf_model[0])
    model = GPT.from_pretrained(path, dict(dropout=0.1))
    assert model.config.dropout == 0.1 and model.transformer.drop.p == 0.1
    with pytest.raises(UsageError, match="cannot override block_size, n_layer of a pretrained"):
        GPT.from_pretrained(path, dict(n_layer=3, block_size=16))
    # init_from='gpt2' with a shorter block_size, as training does it
    cropped = model.crop_block_size(16)
    assert cropped.transformer.wpe.weight.shape == (16, 32)


def test_unknown_model_name_and_missing_files(hf_model, tmp_path):
    with pytest.raises(UsageError, match="unknown pretrained model 'gpt3': give one of gpt2, "):
        from_pretrained("gpt3")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        PretrainedError, match=r"empty is not a Hugging Face model directory: no config.json"
    ):
        from_pretrained(str(empty))
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(hf_model[0] / "config.json", config_only)
    with pytest.raises(PretrainedError, match=r"config-only holds no model.safetensors"):
        from_pretrained(str(config_only))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"activation_function": "relu"}, "activation_function='relu'"),
        ({"n_inner": 64}, r"n_inner=64 \(our MLP has 4\*n_embd=128\)"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon=1e-06"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings=False"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"model_type": "gpt_neo"}, "model_type='gpt_neo'"),
        ({"n_head": 5}, "n_embd=32 is not divisible by n_head=5"),
    ],
)
def test_configs_we_cannot_represent_stop_with_the_reason(hf_model, tmp_path, changes, message):
    model_dir = copy_model_dir(hf_model[0], tmp_path / "model", config_changes=changes)
    with pytest.raises(
        PretrainedError, match="describes a model we cannot represent: .*" + message
    ):
        from_pretrained(str(model_dir))


def test_weights_that_do_not_fit_the_config_name_the_array(hf_model, tmp_path):
    tensors = safetensors_numpy.load_file(hf_model[0] / "model.safetensors")
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(PretrainedError, match="no 'h.1.mlp.c_fc.bias'"):
        from_pretrained(str(copy_model_dir(hf_model[0], tmp_path / "missing", tensors=missing)))
    wider = copy_model_dir(hf_model[0], tmp_path / "vocab", config_changes={"vocab_size": 101})
    with pytest.raises(
        PretrainedError, match=r"wte.weight has shape \(100, 32\).*implies \(101, 32\)"
    ):
        from_pretrained(str(wider))
    extra = {**tensors, "transformer.h.0.attn.q_norm.weight": np.ones(32, np.float32)}
    with pytest.raises(PretrainedError, match="does not have, e.g. 'h.0.attn.q_norm.weight'"):
        from_pretrained(str(copy_model_dir(hf_model[0], tmp_path / "extra", tensors=extra)))


def test_download_failure_is_one_clear_line(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PretrainedError) as error:
        from_pretrained("gpt2-medium")
    message = str(error.value)
    assert message.startswith(
        "could not download gpt2-medium (openai-community/gpt2-medium) from the Hugging Face hub: "
    )
    assert message.endswith(
        "connect to the internet, or download it elsewhere and pass its directory"
    )
    assert "\n" not in message


def test_download_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(
        PretrainedError, match=r'needs huggingface_hub: pip install -e "\.\[hf\]"'
    ):
        from_pretrained("gpt2")
