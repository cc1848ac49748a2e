"""nanoGPT's own checkpoints in and out, and nanoGPT's training curve, step for step.

The PyTorch side is scripts/torch_reference.py: nanoGPT's model (its module names, so its
state_dict is nanoGPT's), configure_optimizers, get_lr, training step and checkpoint dict,
written from nanoGPT's documented behaviour."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from nanojaxgpt import GPT
from nanojaxgpt.checkpoint import load_checkpoint
from nanojaxgpt.config import parse_args
from nanojaxgpt.data import BatchSampler
from nanojaxgpt.errors import run_main
from nanojaxgpt.export import main as export_main
from nanojaxgpt.layout import per_layer
from nanojaxgpt.optim import learning_rate_at
from nanojaxgpt.prepare import prepare_dataset
from nanojaxgpt.sample import main as sample_main
from nanojaxgpt.train import main as train_main, train

pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")
torch = pytest.importorskip("torch")
sys.path.insert(0, str(REPO / "scripts"))
import torch_reference  # noqa: E402

# nanoGPT's network (exact GELU) and CPU learning rates, fp32, no dropout, accumulation over 2
# micro-batches, clipping. (At 3e-3 this small model amplifies any float32 rounding difference
# tenfold every few steps from about step 15, so any two implementations part there: torch's own
# fused and unfused AdamW by 3e-3 in loss within 100 steps.)
CURVE = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4",
    "--gradient_accumulation_steps=2", "--dropout=0.0", "--mlp=gelu_exact", "--learning_rate=1e-3",
    "--warmup_iters=10", "--lr_decay_iters=90", "--min_lr=1e-4", "--max_iters=100", "--grad_clip=1.0",
    "--weight_decay=0.1", "--beta2=0.99", "--eval_interval=1000", "--eval_iters=2", "--log_interval=1",
    "--always_save_checkpoint=True",
]  # fmt: skip


@pytest.fixture
def data_root(shakespeare_char_dir, monkeypatch):
    prepare_dataset("shakespeare_char", shakespeare_char_dir)
    monkeypatch.chdir(shakespeare_char_dir.parent.parent)
    return shakespeare_char_dir.parent.parent


def nanogpt_run(config, seed: int = 0):
    """nanoGPT's model (torch's initialisation, seeded) and its AdamW."""
    torch.manual_seed(seed)
    model = torch_reference.GPT(config, vocab_size=65)
    return model, torch_reference.make_optimizer(model, config)


def train_nanogpt(model, optimizer, config, iterations) -> list[float]:
    """nanoGPT's training loop over `iterations`, on the batches nanojaxgpt draws."""
    sampler = BatchSampler("data/shakespeare_char", config.block_size, config.batch_size, config.seed)
    losses = []
    for it in iterations:
        for group in optimizer.param_groups:
            group["lr"] = torch_reference.get_lr(it, config)
        x, y = (torch.from_numpy(a).long() for a in sampler.batches("train", config.gradient_accumulation_steps, 0, it))
        losses.append(torch_reference.train_step(model, optimizer, x, y, config))
    return losses


def save_nanogpt(path, model, optimizer, config, iter_num: int, best_val_loss, prefix: str = "") -> None:
    """What nanoGPT's train.py writes at iter_num (after setting that iteration's lr)."""
    for group in optimizer.param_groups:
        group["lr"] = torch_reference.get_lr(iter_num, config)
    checkpoint = torch_reference.nanogpt_checkpoint(model, optimizer, config, iter_num, best_val_loss)
    checkpoint["model"] = {prefix + name: tensor for name, tensor in checkpoint["model"].items()}
    torch.save(checkpoint, path)


def logged_losses(out_dir) -> list[float]:
    with open(f"{out_dir}/metrics.jsonl") as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def test_learning_rate_schedule_is_nanogpts_at_its_ends():
    config = parse_args(["--learning_rate=6e-4", "--min_lr=6e-5", "--warmup_iters=10", "--lr_decay_iters=100"])
    for it in (0, 5, 9, 10, 11, 50, 99, 100, 101, 1000):
        assert float(learning_rate_at(it, config)) == pytest.approx(torch_reference.get_lr(it, config), rel=1e-6)
    constant = parse_args(["--decay_lr=False"])
    assert float(learning_rate_at(7, constant)) == pytest.approx(torch_reference.get_lr(7, constant)) == 1e-3


@pytest.mark.parametrize("bias", [False, True])
def test_training_follows_nanogpts_curve_step_for_step(data_root, bias):
    config = parse_args([*CURVE, f"--bias={bias}"])
    model, optimizer = nanogpt_run(config)
    save_nanogpt("start.pt", model, optimizer, config, 0, 1e9)
    theirs = train_nanogpt(model, optimizer, config, range(100))
    # every key but dtype comes from the checkpoint's config, as when continuing nanoGPT's run
    train(parse_args(["--init_from=start.pt", "--out_dir=ours", "--dtype=float32"]))
    ours = logged_losses("ours")
    assert len(ours) == 100 and ours[-1] < ours[0] - 0.5  # it learns
    assert np.abs(np.array(ours) - np.array(theirs)).max() < 1e-4
    trained, state = load_checkpoint("ours")
    assert state["iter_num"] == 100
    expected = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    weights = per_layer(trained)
    assert weights.keys() == expected.keys() - {"lm_head.weight"}
    assert max(np.abs(weights[name] - expected[name]).max() for name in weights) < 1e-4


def test_a_nanogpt_run_comes_in_and_goes_back_out_bit_for_bit(data_root, capsys):
    config = parse_args([*CURVE, "--bias=True"])
    model, optimizer = nanogpt_run(config, seed=1)
    train_nanogpt(model, optimizer, config, range(6))
    # torch.compile'd models save their names with a prefix, as nanoGPT's train.py leaves them
    save_nanogpt("ckpt.pt", model, optimizer, config, 6, torch.tensor(2.5), prefix="_orig_mod.")

    idx = np.random.default_rng(0).integers(0, 65, (3, 16))
    with torch.no_grad():
        theirs = model.eval()(torch.from_numpy(idx)).numpy()
    ours = jax.vmap(GPT.from_pretrained("ckpt.pt"))(jnp.asarray(idx))
    assert np.abs(np.asarray(ours) - theirs).max() < 1e-5

    # in: a run of ours that takes no step (max_iters is the checkpoint's iter_num) and saves;
    # out: the export; back: the same tensors, optimizer state included
    train(parse_args(["--init_from=ckpt.pt", "--out_dir=ours", "--max_iters=6", "--dtype=float32"]))
    run_main(export_main, ["ours", "back", "--format=nanogpt"])
    assert capsys.readouterr().out.endswith(
        "nanoGPT's sample.py reads the vocabulary from its data/shakespeare_char/meta.pkl: copy "
        "back/meta.pkl there\nwrote ckpt.pt, meta.pkl to back\n")
    original = torch.load("ckpt.pt", weights_only=True)
    back = torch.load("back/ckpt.pt", weights_only=True)
    assert {"_orig_mod." + name for name in back["model"]} == set(original["model"])
    for name, tensor in back["model"].items():
        assert torch.equal(tensor, original["model"]["_orig_mod." + name]), name
    assert back["optimizer"]["state"].keys() == original["optimizer"]["state"].keys()
    for index, state in original["optimizer"]["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(back["optimizer"]["state"][index][key], state[key]), (index, key)
    for ours_group, their_group in zip(back["optimizer"]["param_groups"], original["optimizer"]["param_groups"]):
        assert ours_group["params"] == their_group["params"]
        assert ours_group["weight_decay"] == their_group["weight_decay"]
        assert ours_group["betas"] == their_group["betas"] and ours_group["eps"] == their_group["eps"]
        assert ours_group["lr"] == pytest.approx(their_group["lr"], rel=1e-6)
    assert back["model_args"] == original["model_args"] and back["iter_num"] == 6
    assert torch.equal(back["best_val_loss"], original["best_val_loss"])
    # nanoGPT's train.py (init_from='resume') loads both, as it does: strictly
    resumed, resumed_optimizer = nanogpt_run(config)
    resumed.load_state_dict(back["model"])
    resumed_optimizer.load_state_dict(back["optimizer"])


def test_sampling_from_a_nanogpt_checkpoint_decodes_with_its_data_sets_vocabulary(data_root, capsys):
    config = parse_args(CURVE)
    model, optimizer = nanogpt_run(config)
    save_nanogpt("ckpt.pt", model, optimizer, config, 0, 1e9)
    run_main(sample_main, ["--init_from=ckpt.pt", "--num_samples=2", "--max_new_tokens=20", "--start=ROMEO:"])
    first_line, samples = capsys.readouterr().out.split("\n", 1)
    assert first_line == "Loading meta from data/shakespeare_char/meta.pkl..."
    samples = samples.split("---------------\n")
    assert len(samples) == 3 and all(s.startswith("ROMEO:") and len(s) == 6 + 20 + 1 for s in samples[:2])


def bad_checkpoints(model, optimizer, config) -> dict:
    good = torch_reference.nanogpt_checkpoint(model, optimizer, config, 0, 1e9)
    return {
        "hf-state-dict": (model.state_dict(), f"a bare state dict of {len(model.state_dict())} tensors (a "
                          f"Hugging Face pytorch_model.bin?)"),
        "other-keys": ({"weights": 1, "step": 3}, "is not nanoGPT's ckpt.pt: it has no 'model' or 'model_args'"),
        "inexpressible": ({**good, "model_args": {**good["model_args"], "n_kv_head": 1}},
                          "model_args has n_kv_head, which nanoGPT's model.py does not"),
        "truncated": (None, "is not a readable torch file"),
    }


@pytest.mark.parametrize("kind", ["hf-state-dict", "other-keys", "inexpressible", "truncated"])
def test_a_checkpoint_that_is_not_nanogpts_is_one_line_and_nothing_is_written(data_root, capsys, kind):
    config = parse_args([*CURVE, "--n_layer=1"])
    model, optimizer = nanogpt_run(config)
    content, message = bad_checkpoints(model, optimizer, config)[kind]
    torch.save(content if content is not None else {"model": model.state_dict()}, "bad.pt")
    if content is None:
        with open("bad.pt", "r+b") as f:
            f.truncate(len(f.read()) // 2)
    with pytest.raises(SystemExit) as exit:
        run_main(train_main, ["--init_from=bad.pt", "--out_dir=out"])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err.count("\n") == 1 and err.startswith("error: bad.pt"), err
    assert message in err
    assert not (data_root / "out").exists()


def test_without_torch_reading_a_ckpt_pt_says_to_install_it(data_root, capsys, monkeypatch):
    (data_root / "ckpt.pt").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as where it is not installed
    with pytest.raises(SystemExit) as exit:
        run_main(sample_main, ["--init_from=ckpt.pt"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == ("error: nanoGPT's ckpt.pt is a torch file: reading or writing it "
                                       'needs torch, pip install -e ".[torch]"\n')


def test_export_refuses_what_nanogpt_cannot_express_before_writing(data_root, capsys):
    train(parse_args([*CURVE, "--mlp=swiglu", "--max_iters=1", "--out_dir=ours"]))
    with pytest.raises(SystemExit) as exit:
        run_main(export_main, ["ours", "back", "--format=nanogpt"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        "error: the model in ours has options nanoGPT cannot express: mlp='swiglu' (nanoGPT's MLP is "
        "'gelu_exact', the erf GELU: train with --mlp=gelu_exact)\n")
    assert not (data_root / "back").exists()
