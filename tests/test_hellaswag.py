"""HellaSwag as build-nanogpt scores it: the command's figures and every example's chosen ending
equal an independent reference (transformers' GPT-2 on the same small random weights, scored as
build-nanogpt's hellaswag.py does), and bad input is one line."""

import json

import numpy as np
import pytest

from nanojaxgpt.errors import run_main
from nanojaxgpt.eval import main as eval_main
from nanojaxgpt.hellaswag import read_examples, render

pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# in HellaSwag's jsonl format (ind, activity_label, ctx_a, ctx_b, ... as the file has them)
EXAMPLES = [
    ("A man is sitting on a roof. He", ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                                        "is holding a rubik's cube.", "starts pulling up roofing on a roof."], 3),
    ("A woman pours batter into a pan. She", ["flips the pancake with a spatula.", "paints the fence blue.",
                                              "jumps into the swimming pool.", "reads the newspaper aloud."], 0),
    ("Two kids are playing soccer in a park. One of them", ["kicks the ball toward the goal.",
                                                            "bakes a cake in the oven.", "types on a laptop quietly.",
                                                            "sings to a crowd of thousands."], 0),
    ("[header] How to clean a cast iron skillet [title] Rinse the pan with hot water.",
     ["[step] Dry it thoroughly and rub a thin coat of oil on it.", "[step] Put it in the freezer overnight.",
      "[step] Paint the handle with nail polish.", "[step] Bury it in the garden for a week."], 0),
    ("The camera pans over a snowy mountain. A skier", ["glides down the slope, turning sharply.",
                                                        "eats a sandwich in the kitchen.",
                                                        "repairs a bicycle tire in the garage.",
                                                        "swims laps in an indoor pool."], 0),
    ("A man holds a violin under his chin. He", ["draws the bow across the strings.", "throws it into the lake.",
                                                  "uses it to hammer a nail.", "puts it in the microwave."], 0),
    ("People are gathered around a table playing cards. A woman", ["shuffles the deck and deals.",
                                                                   "climbs a tall tree outside.",
                                                                   "drives a truck down the highway.",
                                                                   "dives off a high board."], 0),
    ("A dog runs across the yard. It", ["catches the frisbee in its mouth.", "opens the refrigerator door.",
                                        "writes a letter to its owner.", "starts the car engine."], 2),
]


def write_examples(path, examples=EXAMPLES) -> None:
    with open(path, "w") as f:
        for i, (ctx, endings, label) in enumerate(examples):
            f.write(json.dumps({"ind": i, "activity_label": "test", "ctx_a": ctx, "ctx_b": "", "ctx": ctx,
                                "split": "val", "split_type": "indomain", "label": label, "endings": endings,
                                "source_id": f"test~{i}"}) + "\n")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A small random GPT-2 of GPT-2's vocabulary, saved as a Hugging Face model folder."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=2)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(1.0 if ".ln_" in name and name.endswith(".weight") else 0.0, 0.3)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(path)
    return path, model


@torch.no_grad()
def build_nanogpt_predictions(model, examples) -> list[tuple[int, int]]:
    """build-nanogpt's hellaswag.py: each ending's masked cross-entropy, summed and averaged."""
    from nanojaxgpt.tokenizer import gpt2_encoding

    encoding, predictions = gpt2_encoding(), []
    for ctx, endings, _ in examples:
        ctx_tokens = encoding.encode(ctx)
        rows = [ctx_tokens + encoding.encode(" " + end) for end in endings]
        masks = [[0] * len(ctx_tokens) + [1] * (len(row) - len(ctx_tokens)) for row in rows]
        width = max(len(row) for row in rows)
        tokens = torch.tensor([row + [0] * (width - len(row)) for row in rows])
        mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
        logits = model(tokens).logits
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                   tokens[:, 1:].reshape(-1), reduction="none").view(4, -1)
        shift_mask = mask[:, 1:]
        sums = (losses * shift_mask).sum(1)
        predictions.append((int(sums.argmin()), int((sums / shift_mask.sum(1)).argmin())))
    return predictions


def test_hellaswag_equals_build_nanogpts_scoring_of_the_same_weights(tiny_gpt2, tmp_path, capsys):
    folder, reference = tiny_gpt2
    write_examples(tmp_path / "hellaswag.jsonl")
    expected = build_nanogpt_predictions(reference, EXAMPLES)
    labels = np.array([label for _, _, label in EXAMPLES])
    acc, acc_norm = (np.array(expected) == labels[:, None]).mean(0)
    assert len({e for e, _ in expected}) > 1  # the random model does not choose one ending throughout

    from nanojaxgpt import GPT
    from nanojaxgpt.distributed import make_mesh
    from nanojaxgpt.hellaswag import evaluate

    model = GPT.from_pretrained(str(folder))
    rendered = render(read_examples(tmp_path / "hellaswag.jsonl"), model.config.block_size)
    assert rendered.tokens.shape == (8, 4, 64)  # one shape: the longest row (37 tokens) to a multiple of 32
    ours = evaluate(model, rendered, batch_size=3, mesh=make_mesh(), show_bar=False)  # the last batch padded
    assert [tuple(row) for row in ours[2]] == expected
    assert ours[:2] == (acc, acc_norm)

    run_main(eval_main, ["hellaswag", f"--init_from={folder}", f"--hellaswag_file={tmp_path / 'hellaswag.jsonl'}"])
    assert capsys.readouterr().out.splitlines()[-1] == f"hellaswag: 8 examples, acc {acc:.4f}, acc_norm {acc_norm:.4f}"


def test_a_context_longer_than_the_block_keeps_its_last_tokens():
    from nanojaxgpt.tokenizer import gpt2_encoding

    example = {"ctx": "one two three four five six seven eight", "endings": [" nine ten"] * 4, "label": 0}
    rendered = render([example], block_size=6)
    everything = gpt2_encoding().encode(example["ctx"]) + gpt2_encoding().encode("  nine ten")
    ending = len(gpt2_encoding().encode("  nine ten"))
    assert rendered.tokens[0, 0].tolist() == everything[-6:]
    # from the context's last position, each position predicts the ending's next token
    assert rendered.starts[0, 0] == 5 - ending
    assert rendered.targets[0, 0].tolist() == everything[-ending:] + [-1] * (6 - ending)


@pytest.mark.parametrize("content, message", [
    (None, "hellaswag_file=missing.jsonl: no such file"),
    ("not json\n", "line 1 is not a HellaSwag example"),
    (json.dumps({"ctx": "a", "endings": ["b", "c"], "label": 0}) + "\n", "line 1 is not a HellaSwag example"),
])
def test_a_missing_or_malformed_hellaswag_file_is_one_line(tmp_path, capsys, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "missing.jsonl").write_text(content)
    with pytest.raises(SystemExit) as exit:
        run_main(eval_main, ["hellaswag", "--init_from=gpt2", "--hellaswag_file=missing.jsonl"])
    err = capsys.readouterr().err
    assert exit.value.code in (1, 2) and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["missing.jsonl"] if content else [])


TINY = ["--dataset=fineweb-edu", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=64", "--batch_size=2",
        "--eval_interval=4", "--eval_iters=1", "--log_interval=1", "--always_save_checkpoint=True", "--dtype=float32"]


def test_training_logs_the_figure_the_command_gives_and_prints_samples(fineweb_root, capsys):
    from nanojaxgpt.config import parse_args
    from nanojaxgpt.train import train

    write_examples(fineweb_root / "hellaswag.jsonl")
    train(parse_args([*TINY, "--out_dir=run", "--max_iters=4", "--hellaswag_interval=4",
                      "--hellaswag_file=hellaswag.jsonl", "--sample_interval=4",
                      "--sample_prompt=Hello, I'm a language model,"]))
    out = capsys.readouterr().out
    with open(fineweb_root / "run/metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    measured = [r for r in records if "hellaswag_acc" in r]
    assert [r["iter"] for r in measured] == [0, 4]
    last = f"acc {measured[-1]['hellaswag_acc']:.4f}, acc_norm {measured[-1]['hellaswag_acc_norm']:.4f}"
    assert f"\nstep 4: hellaswag {last}\n" in out
    samples = [r["samples"] for r in records if "samples" in r]
    assert len(samples) == 1 and len(samples[0]) == 4  # at iteration 4, not at 0
    assert all(text.startswith("Hello, I'm a language model,") for text in samples[0])
    assert "\nsample 3: Hello, I'm a language model," in out
    run_main(eval_main, ["hellaswag", "run", "--hellaswag_file=hellaswag.jsonl", "--dtype=float32"])
    assert capsys.readouterr().out.splitlines()[-1] == f"hellaswag: 8 examples, {last}"


def test_a_model_of_another_vocabulary_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import jax

    from nanojaxgpt import GPT, GPTConfig
    from nanojaxgpt.checkpoint import save_checkpoint

    monkeypatch.chdir(tmp_path)
    write_examples(tmp_path / "hellaswag.jsonl")
    model = GPT.create_instance(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=65), jax.random.key(0))
    chars = "".join(chr(32 + i) for i in range(65))
    save_checkpoint("characters", model, (), {"iter_num": 0, "best_val_loss": 9.0, "config": {},
                                              "tokenizer": {"kind": "characters", "chars": chars}})
    before = sorted(path.name for path in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit:
        run_main(eval_main, ["hellaswag", "characters", "--hellaswag_file=hellaswag.jsonl"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (
        "error: the model of characters reads another vocabulary than GPT-2's BPE (65 tokens), in which "
        "HellaSwag is scored: train on a GPT-2 BPE data set (fineweb-edu, openwebtext, shakespeare) to evaluate it\n")
    assert sorted(path.name for path in tmp_path.rglob("*")) == before
