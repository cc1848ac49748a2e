import json
import os
import pickle
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.checkpoint import load_model_and_tokenizer, save_checkpoint
from nanojaxgpt.errors import RuntimeFailure, UsageError
from nanojaxgpt.generate import generate
from nanojaxgpt.sample import SEPARATOR, SampleConfig, decode, main, parse_args
from nanojaxgpt.tokenizer import CharTokenizer, GPT2Tokenizer, tokenizer_from_record

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


@pytest.fixture(scope="module")
def char_model() -> GPT:
    config = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=len(set(TEXT)))
    return eqx.filter_jit(lambda key: GPT.create_instance(config, key))(jax.random.key(0))


@pytest.fixture
def trained_run(tmp_path, monkeypatch, char_model):
    """A working directory as training leaves it: out-shakespeare-char/ with a checkpoint, and
    data/shakespeare_char/meta.pkl with the vocabulary."""
    monkeypatch.chdir(tmp_path)
    tokenizer = CharTokenizer.from_text(TEXT)
    (tmp_path / "data" / "shakespeare_char").mkdir(parents=True)
    with open(tmp_path / "data" / "shakespeare_char" / "meta.pkl", "wb") as f:
        pickle.dump(tokenizer.meta(), f)
    state = {"iter_num": 10, "best_val_loss": 2.0, "config": {"dataset": "shakespeare_char"}}
    save_checkpoint(tmp_path / "out-shakespeare-char", char_model, None, state)
    return tokenizer


def samples_of(stdout: str) -> list[str]:
    if stdout.startswith(("Loading meta from", "No meta.pkl found")):
        stdout = stdout.split("\n", 1)[1]  # which vocabulary was loaded, as nanoGPT says
    parts = stdout.split(SEPARATOR + "\n")
    assert parts[-1] == "", "the output ends with a separator line"
    return parts[:-1]


def test_samples_are_decoded_with_meta_and_separated_like_nanogpt(trained_run, char_model, capsys):
    tokenizer = trained_run
    main(["--num_samples=3", "--max_new_tokens=24", "--start=Before", "--seed=7"])
    out = capsys.readouterr()
    samples = samples_of(out.out)
    assert len(samples) == 3
    assert out.out.startswith("Loading meta from data/shakespeare_char/meta.pkl...\n")
    # each sample is the prompt and 24 new characters, then the newline print adds
    prompts = jnp.tile(jnp.array(tokenizer.encode("Before")), (3, 1))
    expected = generate(char_model, prompts, 24, 0.8, 200, key=jax.random.key(7))
    assert samples == [tokenizer.decode(row) + "\n" for row in np.asarray(expected)]
    assert len(set(samples)) == 3  # one batch, independent draws


MODERN = dict(pos_emb="rotary", qk_norm=True, mlp="relu2", tied_head=False, logit_softcap=30.0)


@pytest.mark.parametrize("options", [{}, MODERN], ids=["default", "modern"])
def test_a_checkpoint_with_its_vocabulary_samples_from_any_directory(tmp_path, monkeypatch, capsys, options):
    config = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=len(set(TEXT)), **options)
    char_model = eqx.filter_jit(lambda key: GPT.create_instance(config, key))(jax.random.key(0))
    tokenizer = CharTokenizer.from_text(TEXT)
    state = {"iter_num": 10, "best_val_loss": 2.0, "config": {"dataset": "shakespeare_char"},
             "tokenizer": tokenizer.record()}
    save_checkpoint(tmp_path / "run", char_model, None, state)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no data/ folder here
    main([f"--out_dir={tmp_path / 'run'}", "--num_samples=2", "--max_new_tokens=8", "--start=hear"])
    out = capsys.readouterr().out
    assert out.startswith(f"Loading meta from {tmp_path / 'run' / 'ckpt.json'}...\n")
    expected = generate(char_model, jnp.tile(jnp.array(tokenizer.encode("hear")), (2, 1)), 8, 0.8, 200,
                        key=jax.random.key(1337))
    assert samples_of(out) == [tokenizer.decode(row) + "\n" for row in np.asarray(expected)]
    # the notebook's way: the model and the tokenizer that turns its tokens into text
    model, loaded = load_model_and_tokenizer(tmp_path / "run")
    assert loaded == tokenizer
    tokens = model.generate(jnp.array(loaded.encode("hear")), 8, temperature=0.0, key=jax.random.key(0))
    assert loaded.decode(tokens).startswith("hear") and len(loaded.decode(tokens)) == 12


def test_gpt2_bpe_is_recorded_by_name():
    assert GPT2Tokenizer().record() == {"kind": "gpt2"}
    assert isinstance(tokenizer_from_record({"kind": "gpt2"}), GPT2Tokenizer)
    chars = CharTokenizer.from_text(TEXT)
    assert chars.record() == {"kind": "characters", "chars": "".join(sorted(set(TEXT)))}
    assert tokenizer_from_record(json.loads(json.dumps(chars.record()))) == chars


def test_start_from_file_and_greedy(trained_run, tmp_path, capsys):
    (tmp_path / "prompt.txt").write_text("hear me", encoding="utf-8")
    main(["--start=FILE:prompt.txt", "--num_samples=2", "--max_new_tokens=5", "--temperature=0"])
    first, second = samples_of(capsys.readouterr().out)
    assert first == second and first.startswith("hear me") and len(first) == len("hear me") + 5 + 1


def test_no_checkpoint_tells_to_train_first(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.sample"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: no checkpoint in out-shakespeare-char: run `python -m nanojaxgpt.train` first to "
        "train the default character model (or sample GPT-2 with --init_from=gpt2)\n"
    )


def test_other_out_dir_without_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        RuntimeFailure,
        match=r"no checkpoint in out-x: train one there with `python -m nanojaxgpt.train --out_dir=out-x`",
    ):
        main(["--out_dir=out-x"])


def test_missing_meta_for_a_character_model_is_explained(trained_run, tmp_path):
    (tmp_path / "data" / "shakespeare_char" / "meta.pkl").unlink()
    with pytest.raises(
        RuntimeFailure,
        match=r"vocabulary of 27 tokens but no data/shakespeare_char/meta.pkl was found",
    ):
        main(["--max_new_tokens=2"])


def test_prompt_characters_outside_the_vocabulary(trained_run):
    with pytest.raises(
        UsageError, match=r"start: characters 'Zb' are not in this data set's vocabulary"
    ):
        main(["--start=Zebra"])
    with pytest.raises(UsageError, match="start=FILE:nowhere.txt: cannot read nowhere.txt"):
        main(["--start=FILE:nowhere.txt"])
    with pytest.raises(UsageError, match="start is empty"):
        main(["--start="])


def test_options_are_checked_against_the_defaults():
    config = parse_args(
        ["--temperature=1", "--top_k=None", "--start=1", "--compile=False", "--device=cpu"]
    )
    assert config == SampleConfig(
        temperature=1.0, top_k=None, start="1", compile=False, device="cpu"
    )
    assert isinstance(config.temperature, float)
    # the run's folder as the first argument, as for plot
    assert parse_args(["out-x", "--num_samples=2"]) == SampleConfig(out_dir="out-x", num_samples=2)
    for argv, message in [
        (
            ["--max_new_token=3"],
            "unknown config key 'max_new_token' in --max_new_token=3; did you mean 'max_new_tokens'?",
        ),
        (
            ["--num_samples=two"],
            r"num_samples='two' in --num_samples=two is a str; num_samples takes an int, like its default 10",
        ),
        (["--top_k=2.5"], "top_k takes an int"),
        (["--seed=True"], "is a bool; seed takes an int"),
        (["num_samples=3"], "num_samples=3: overrides take the form --key=value"),
        (["out-a", "out-b"], r"out-a out-b: give one OUT_DIR: python -m nanojaxgpt.sample \[OUT_DIR\] "),
        (["--num_samples=0"], "num_samples=0 must be at least 1"),
        (["--temperature=-1"], r"temperature=-1.0 must be >= 0 \(0 is greedy\)"),
        (["--top_k=0"], "top_k=0 must be at least 1"),
        (["--dtype=float64"], "dtype='float64' is not one of float32, bfloat16, float16"),
        (["--device=mps"], "device='mps' is not one of auto, cpu, cuda, gpu, tpu"),
        (
            ["--init_from=gpt2-small"],
            "init_from='gpt2-small' is not one of resume, gpt2, .*; did you mean 'gpt2-xl'",
        ),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_args(argv)


def test_local_hugging_face_directory_decodes_with_gpt2_bpe(tmp_path, monkeypatch, capsys):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    monkeypatch.chdir(tmp_path)
    # a GPT-2 directory written by hand, in the hub's layout: vocab 300 covers "\n" (198)
    config = dict(model_type="gpt2", vocab_size=300, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    rng = np.random.default_rng(0)
    shapes = {
        "wte.weight": (300, 16), "wpe.weight": (16, 16), "ln_f.weight": (16,), "ln_f.bias": (16,),
        "h.0.ln_1.weight": (16,), "h.0.ln_1.bias": (16,), "h.0.ln_2.weight": (16,), "h.0.ln_2.bias": (16,),
        "h.0.attn.c_attn.weight": (16, 48), "h.0.attn.c_attn.bias": (48,),
        "h.0.attn.c_proj.weight": (16, 16), "h.0.attn.c_proj.bias": (16,),
        "h.0.mlp.c_fc.weight": (16, 64), "h.0.mlp.c_fc.bias": (64,),
        "h.0.mlp.c_proj.weight": (64, 16), "h.0.mlp.c_proj.bias": (16,),
    }  # fmt: skip
    tensors = {key: rng.normal(0, 0.2, shape).astype(np.float32) for key, shape in shapes.items()}
    model_dir = tmp_path / "tiny-gpt2"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    safetensors_numpy.save_file(tensors, model_dir / "model.safetensors")
    main(
        [
            f"--init_from={model_dir}",
            "--num_samples=2",
            "--max_new_tokens=6",
            "--start=\n",
            "--temperature=0",
        ]
    )
    first, second = samples_of(capsys.readouterr().out)
    assert first == second and first.startswith("\n")
    model = GPT.from_pretrained(str(model_dir))
    expected = generate(model, jnp.array([[198]]), 6, temperature=0.0, key=jax.random.key(0))
    assert first == GPT2Tokenizer().decode(expected[0]) + "\n"
    with pytest.raises(
        UsageError, match="start encodes to token id 15496, outside the model's vocabulary of 300"
    ):
        main([f"--init_from={model_dir}", "--start=Hello"])


def test_ids_past_the_tokenizers_vocabulary_decode_as_replacement_characters():
    chars = CharTokenizer.from_text("abc")
    assert decode(chars, [0, 1, 5, 2, 3]) == "ab\ufffdc\ufffd"
    assert decode(GPT2Tokenizer(), [15496, 50300, 11]) == "Hello\ufffd,"
