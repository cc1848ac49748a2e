import subprocess
import sys

import pytest

from conftest import REPO
from nanojaxgpt.config import TrainConfig, parse_args
from nanojaxgpt.errors import UsageError
from nanojaxgpt.nanogpt import CONFIG_KEYS
from nanojaxgpt.architecture import ARCHITECTURE_KEYS, GPTConfig


def test_default_is_nanogpts_cpu_recipe():
    config = parse_args([])
    expected = dict(
        out_dir="out-shakespeare-char", eval_interval=250, eval_iters=20, log_interval=10,
        dataset="shakespeare_char", batch_size=12, block_size=64, n_layer=4, n_head=4,
        n_embd=128, dropout=0.0, bias=False, learning_rate=1e-3, max_iters=2000,
        lr_decay_iters=2000, min_lr=1e-4, beta2=0.99, warmup_iters=100, gradient_accumulation_steps=1,
        always_save_checkpoint=False, init_from="scratch", mlp="swiglu", dtype="auto",
    )
    assert {key: getattr(config, key) for key in expected} == expected


def test_overrides_are_typed_like_the_defaults():
    config = parse_args([
        "--batch_size=8", "--learning_rate=1", "--min_lr=3e-5", "--compile=False",
        "--out_dir=runs/a", "--dataset='shakespeare'", "--bias=true", "--wandb_run_name=123",
    ])
    assert config.batch_size == 8
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.min_lr == 3e-5
    assert config.compile is False and config.bias is True
    assert config.out_dir == "runs/a" and config.dataset == "shakespeare"
    assert config.wandb_run_name == "123"
    assert config.explicitly_set >= {"batch_size", "compile", "out_dir"}


def test_config_file_then_overrides_in_order(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text(
        "import time\n"
        "n_layer = 6\n"
        "batch_size = 4 * 16\n"
        "_scratch = 3\n"
        "wandb_run_name = 'ft-' + str(_scratch)\n"
    )
    config = parse_args([str(path), "--n_layer=2"])
    assert (config.n_layer, config.batch_size, config.wandb_run_name) == (2, 64, "ft-3")
    assert parse_args(["--n_layer=2", str(path)]).n_layer == 6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batchsize=8"], "unknown config key 'batchsize' in --batchsize=8; did you mean 'batch_size'?"),
        (["--zzz=1"], "unknown config key 'zzz' in --zzz=1; the keys are out_dir, eval_interval, "),
        (["--batch_size=abc"], "batch_size='abc' in --batch_size=abc is a str; batch_size takes an int"),
        (["--batch_size=2.5"], "batch_size=2.5 in --batch_size=2.5 is a float; batch_size takes an int"),
        (["--bias=1"], "bias=1 in --bias=1 is an int; bias takes a bool"),
        (["--dropout=2"], r"dropout=2.0 must be in \[0, 1\)"),
        (["--batch_size=0"], "batch_size=0 must be a positive integer"),
        (["--n_embd=100", "--n_head=3"], "n_embd=100 is not divisible by n_head=3"),
        (["--n_layer"], "--n_layer: overrides take the form --key=value"),
        (["--init_from=gpt3"], "init_from='gpt3' is not one of scratch, resume, gpt2, gpt2-medium"),
        (["--mlp=relu"], "mlp='relu' is not one of swiglu, gelu, gelu_exact, relu2"),
        (["--pos_emb=alibi"], "pos_emb='alibi' is not one of learned, rotary"),
        (["--pos_emb=rotary", "--n_embd=132", "--n_head=4"], "pos_emb='rotary' needs an even head size"),
        (["--logit_softcap=-1"], r"logit_softcap=-1.0 must be >= 0 \(0 is off\)"),
        (["--optimizer=sgd"], "optimizer='sgd' is not one of adamw, muon"),
        (["--muon_learning_rate=0"], "muon_learning_rate=0.0 must be > 0"),
        (["--muon_momentum=1"], r"muon_momentum=1.0 must be in \[0, 1\)"),
        (["no_such_config.py"], "config file no_such_config.py does not exist"),
        (["configs/speedrun_shakespear_char.py"], "config file configs/speedrun_shakespear_char.py does not "
         "exist; did you mean configs/speedrun_shakespeare_char.py\\?$"),
    ],
)
def test_bad_arguments_raise_one_line(argv, message, monkeypatch):
    monkeypatch.chdir(REPO)  # where configs/ is
    with pytest.raises(UsageError, match=message) as error:
        parse_args(argv)
    assert "\n" not in str(error.value)


def test_config_file_errors_name_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("n_layer = 6\nbatch_size = 1 / 0\n")
    with pytest.raises(UsageError, match=f"config file {broken} failed at line 2: ZeroDivisionError"):
        parse_args([str(broken)])
    unknown = tmp_path / "unknown.py"
    unknown.write_text("n_layers = 6\n")
    with pytest.raises(UsageError, match=f"unknown config key 'n_layers' in {unknown}; did you mean 'n_layer'"):
        parse_args([str(unknown)])
    wrong_type = tmp_path / "wrong_type.py"
    wrong_type.write_text("max_iters = '100'\n")
    with pytest.raises(UsageError, match="max_iters='100' in .* is a str; max_iters takes an int"):
        parse_args([str(wrong_type)])


def test_train_command_reports_usage_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.train", "--batchsize=8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "error: unknown config key 'batchsize' in --batchsize=8; did you mean 'batch_size'?\n"
    assert not list(tmp_path.iterdir())  # nothing was written


def test_keys_are_nanogpts_plus_ours():
    nanogpt_keys = {
        "out_dir", "eval_interval", "log_interval", "eval_iters", "eval_only",
        "always_save_checkpoint", "init_from", "wandb_log", "wandb_project", "wandb_run_name",
        "dataset", "gradient_accumulation_steps", "batch_size", "block_size", "n_layer", "n_head",
        "n_embd", "dropout", "bias", "learning_rate", "max_iters", "weight_decay", "beta1",
        "beta2", "grad_clip", "decay_lr", "warmup_iters", "lr_decay_iters", "min_lr", "device",
        "dtype", "compile", "backend",
    }
    keys = set(TrainConfig.__dataclass_fields__) - {"explicitly_set"}
    ours = {"mlp", "seed", "fsdp", "coordinator_address", "num_processes", "process_id",
            "deterministic", "compile_cache", "overwrite_checkpoint", "pos_emb", "qk_norm", "tied_head",
            "logit_softcap", "zero_init_proj", "optimizer", "muon_learning_rate", "muon_momentum", "muon_ns_steps",
            "hellaswag_interval", "hellaswag_file", "sample_interval", "sample_prompt"}
    assert keys == nanogpt_keys | ours
    assert set(CONFIG_KEYS) == nanogpt_keys  # what a nanoGPT ckpt.pt's config holds, and ours writes


def test_every_model_field_is_a_training_key_and_the_default_is_the_cpu_recipe():
    config = GPTConfig.from_training(TrainConfig(), vocab_size=65)
    assert config == GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65,
                               dropout=0.0, bias=False, mlp="swiglu")
    assert set(ARCHITECTURE_KEYS) == {"block_size", "n_layer", "n_head", "n_embd", "bias", "mlp",
                                      "pos_emb", "qk_norm", "tied_head", "logit_softcap"}
