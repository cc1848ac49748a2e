"""Hugging Face GPT-2 checkpoints in our modules: OpenAI's weights, loaded exactly.

- A model directory holds `config.json` and `model.safetensors` (or shards listed in
  `model.safetensors.index.json`), read with `safetensors` into NumPy: no torch needed.
- 'gpt2', 'gpt2-medium', 'gpt2-large' and 'gpt2-xl' are downloaded from the hub by
  `huggingface_hub` (the optional `hf` extra) into its cache; a local directory works offline.
- GPT-2's Conv1D layers store weights as (in, out); `eqx.nn.Linear` wants (out, in), so they are
  transposed. The per-layer `h.<i>.*` arrays are stacked along our leading layer axis.
- Keys may carry the `transformer.` prefix (what `save_pretrained` writes) or not (the hub's
  files); the causal-mask buffers `h.<i>.attn.bias` and a tied `lm_head.weight` are skipped.
"""

import json
import os
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from nanojaxgpt.architecture import PRETRAINED, GPTConfig
from nanojaxgpt.errors import UsageError
from nanojaxgpt.layout import PretrainedError, is_causal_mask, stacked
from nanojaxgpt.model import GPT
from nanojaxgpt.nanogpt import is_nanogpt_checkpoint, load_model as load_nanogpt_model

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DOWNLOAD_PATTERNS = ["config.json", WEIGHTS_FILE, INDEX_FILE, "model-*-of-*.safetensors"]

# transformers' GPT2Config defaults, for keys a config.json leaves out
HF_DEFAULTS = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}
# GPT-2's Conv1D layers, whose weights are stored (in, out)
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# transformers' activation_function -> our mlp: tanh GELUs (jax.nn.gelu(approximate=True)), or erf
HF_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "gelu": "gelu_exact"}


def from_pretrained(model_type: str, override_args: dict | None = None) -> GPT:
    """GPT-2 from the hub ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'), a local Hugging Face
    model directory (GPT-2: mlp='gelu', bias=True), or the path of a nanoGPT `ckpt.pt`
    (nanojaxgpt/nanogpt.py), as our GPT. Only `dropout` may be overridden, as in nanoGPT."""
    override_args = dict(override_args or {})
    unknown = sorted(set(override_args) - {"dropout"})
    if unknown:
        raise UsageError(
            f"cannot override {', '.join(unknown)} of a pretrained model: only dropout can be "
            f"changed (the weights fix the rest)"
        )
    if is_nanogpt_checkpoint(model_type):
        return load_nanogpt_model(model_type, dropout=override_args.get("dropout", 0.0))
    model_dir = resolve_model_dir(model_type)
    config = gpt_config(read_hf_config(model_dir), dropout=override_args.get("dropout", 0.0))
    return load_weights(config, read_safetensors(model_dir))


def resolve_model_dir(model_type: str) -> Path:
    """The local directory holding `model_type`'s files, downloaded first for a GPT-2 name."""
    if model_type in PRETRAINED:
        return _download(model_type)
    if os.path.isdir(model_type):
        return Path(model_type)
    raise UsageError(
        f"unknown pretrained model {model_type!r}: give one of {', '.join(PRETRAINED)}, or a "
        f"local Hugging Face model directory holding config.json and {WEIGHTS_FILE}, or the "
        f"path of a nanoGPT ckpt.pt"
    )


def _download(name: str) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise PretrainedError(
            f"downloading {name} needs huggingface_hub: pip install -e \".[hf]\", or give a "
            f"local Hugging Face model directory"
        ) from None
    try:
        path = huggingface_hub.snapshot_download(PRETRAINED[name], allow_patterns=DOWNLOAD_PATTERNS)
    except Exception as error:  # offline, hub down, disk full: all end the same way for the user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PretrainedError(
            f"could not download {name} ({PRETRAINED[name]}) from the Hugging Face hub: {reason}; "
            f"connect to the internet, or download it elsewhere and pass its directory"
        ) from error
    return Path(path)


def read_hf_config(model_dir: Path) -> dict:
    """`config.json`, completed with GPT2Config's defaults."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise PretrainedError(f"{model_dir} is not a Hugging Face model directory: no config.json")
    try:
        return {**HF_DEFAULTS, **json.loads(path.read_text())}
    except (ValueError, UnicodeDecodeError) as error:
        raise PretrainedError(f"{path} is not valid JSON ({error})") from error


def gpt_config(hf: dict, dropout: float = 0.0) -> GPTConfig:
    """Our config for a GPT-2 `config.json`, or a PretrainedError naming what we cannot represent."""
    problems = []
    if hf["model_type"] != "gpt2":
        problems.append(f"model_type={hf['model_type']!r} (only 'gpt2' is supported)")
    if hf["activation_function"] not in HF_ACTIVATIONS:
        problems.append(
            f"activation_function={hf['activation_function']!r} (our MLPs are GELU's: "
            f"{', '.join(HF_ACTIVATIONS)})"
        )
    if hf["n_inner"] not in (None, 4 * hf["n_embd"]):
        problems.append(f"n_inner={hf['n_inner']} (our MLP has 4*n_embd={4 * hf['n_embd']})")
    if hf["layer_norm_epsilon"] != 1e-5:
        problems.append(f"layer_norm_epsilon={hf['layer_norm_epsilon']} (ours is 1e-05)")
    for key, supported in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("add_cross_attention", False),
        ("tie_word_embeddings", True),
    ):
        if hf[key] != supported:
            problems.append(f"{key}={hf[key]} (ours is {supported})")
    try:
        config = GPTConfig(
            block_size=hf["n_positions"],
            vocab_size=hf["vocab_size"],
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=hf["n_embd"],
            dropout=dropout,
            bias=True,
            mlp=HF_ACTIVATIONS.get(hf["activation_function"], "gelu"),
        )
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise PretrainedError(
            f"config.json describes a model we cannot represent: {'; '.join(problems)}"
        )
    return config


def read_safetensors(model_dir: Path) -> dict[str, np.ndarray]:
    """Every array in the directory's safetensors file(s), by key as stored."""
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
    except ImportError:
        raise PretrainedError("reading Hugging Face weights needs safetensors: pip install -e "
                              '".[hf]"') from None  # fmt: skip
    model_dir = Path(model_dir)
    if (model_dir / WEIGHTS_FILE).is_file():
        files = [model_dir / WEIGHTS_FILE]
    elif (model_dir / INDEX_FILE).is_file():
        weight_map = json.loads((model_dir / INDEX_FILE).read_text())["weight_map"]
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
    else:
        raise PretrainedError(
            f"{model_dir} holds no {WEIGHTS_FILE} (nor {INDEX_FILE}); save the model with "
            f"save_pretrained(..., safe_serialization=True)"
        )
    tensors = {}
    for path in files:
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError, ValueError, TypeError) as error:
            raise PretrainedError(f"cannot read {path}: {error}") from error
    return tensors


def load_weights(config: GPTConfig, tensors: dict[str, np.ndarray]) -> GPT:
    """Our GPT holding GPT-2's `tensors` (keys with or without the `transformer.` prefix)."""
    tensors = {key if key.startswith(("transformer.", "lm_head.")) else f"transformer.{key}": value
               for key, value in tensors.items()}
    skeleton = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    model = stacked(tensors, skeleton, "config.json", transposed=CONV1D_WEIGHTS)  # takes what it uses
    # left out: the causal masks, and the output layer, which GPT-2 ties to wte.weight
    unexpected = sorted(key.removeprefix("transformer.") for key in tensors
                        if key != "lm_head.weight" and not is_causal_mask(key))
    if unexpected:
        raise PretrainedError(
            f"the weights hold {len(unexpected)} arrays that a GPT-2 of this config.json does "
            f"not have, e.g. {unexpected[0]!r}"
        )
    return model
