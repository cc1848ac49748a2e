"""FineWeb-edu as token shards: prepared from local files through --data_files (the hub cannot be
reached here; the same code streams it), resumed after an interruption, and trained on, with
exact resume, on one and on several (virtual) devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanojaxgpt.fineweb as fineweb
from conftest import shakespeare_documents
from nanojaxgpt.config import parse_args
from nanojaxgpt.data import BatchSampler
from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main as prepare_main
from nanojaxgpt.shards import read_index
from nanojaxgpt.tokenizer import gpt2_encoding
from nanojaxgpt.train import main as train_main, train

pytest.importorskip("datasets")
# the processes that tokenise are forked from a process where JAX may run; they never use it
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")

TINY = ["--dataset=fineweb-edu", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16",
        "--batch_size=2", "--gradient_accumulation_steps=4", "--eval_interval=4", "--eval_iters=2",
        "--log_interval=1", "--always_save_checkpoint=True", "--warmup_iters=2", "--device=cpu"]


def token_stream(documents: list[str]) -> list[int]:
    """What tiktoken makes of the documents, each after <|endoftext|>."""
    encoding = gpt2_encoding()
    return [token for text in documents for token in [encoding.eot_token, *encoding.encode_ordinary(text)]]


def shard_bytes(data_dir: Path) -> list[bytes]:
    return [(data_dir / shard.file).read_bytes() for shard in read_index(data_dir).shards]


def test_preparation_cuts_tiktokens_stream_into_shards_with_shard_0_for_validation(tmp_path, tiny_shakespeare,
                                                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    documents = shakespeare_documents(tiny_shakespeare)
    with open("documents.jsonl", "w") as f:
        f.writelines(json.dumps({"text": text, "id": i}) + "\n" for i, text in enumerate(documents))
    run_main(prepare_main, ["fineweb-edu", "--data_files=documents.jsonl", "--shard_size=3000", "--num_proc=2"])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "fineweb-edu: 300 documents, 12,704 tokens in 5 shards (validation: shard 0, 3,000 tokens)")
    index = read_index(Path("data/fineweb-edu"))
    assert index.complete and [s.split for s in index.shards] == ["val"] + ["train"] * 4
    assert [s.file for s in index.shards][:2] == ["fineweb-edu_val_000000.npy", "fineweb-edu_train_000001.npy"]
    shards = [np.load(Path("data/fineweb-edu") / s.file) for s in index.shards]
    assert [len(s) for s in shards] == [3000, 3000, 3000, 3000, 704] and all(s.dtype == np.uint16 for s in shards)
    assert np.concatenate(shards).tolist() == token_stream(documents)  # to the token


def test_an_interrupted_preparation_resumes_to_the_same_bytes(fineweb_root, tiny_shakespeare, monkeypatch):
    reference = shard_bytes(fineweb_root / "data/fineweb-edu")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": shakespeare_documents(tiny_shakespeare)}).to_parquet("documents.parquet")
    stream, skipped = fineweb.stream_documents, []

    def interrupted_after_200(*args, skip):
        skipped.append(skip)
        for number, texts in enumerate(stream(*args, skip=skip)):
            if not skipped[1:] and number == 200 // 20:
                raise KeyboardInterrupt  # Ctrl-C, in the middle of shard 2
            yield texts

    monkeypatch.setattr(fineweb, "stream_documents", interrupted_after_200)
    monkeypatch.setattr(fineweb, "DOCUMENTS_PER_BATCH", 20)  # 1,024 would read all 300 at once
    options = ["fineweb-edu", "--name=resumed", "--data_files=documents.parquet", "--shard_size=3000"]
    with pytest.raises(SystemExit):  # 130, interrupted
        run_main(prepare_main, options)
    index = read_index(Path("data/resumed"))
    assert not index.complete and len(index.shards) == 2  # the third was being written
    run_main(prepare_main, options)
    assert skipped == [0, index.shards[-1].end[0]]  # the second run skipped what shards 0-1 hold
    assert shard_bytes(Path("data/resumed")) == reference
    # a slice, then the rest: its partial last shard is written again, whole
    run_main(prepare_main, [*options[:1], "--name=sliced", *options[2:], "--max_tokens=7000"])
    assert [s.tokens for s in read_index(Path("data/sliced")).shards] == [3000, 3000, 1000]
    run_main(prepare_main, [*options[:1], "--name=sliced", *options[2:]])
    assert shard_bytes(Path("data/sliced")) == reference


def test_shards_that_cannot_fit_on_the_disk_are_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        run_main(prepare_main, ["fineweb-edu", f"--max_tokens={10**15}"])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: data/fineweb-edu: the shards need about 2,000,000.0 GB (1,000,000,000,000,000 "
                          "tokens at 2 bytes) but ")
    assert err.endswith("free some space, put data/ on a larger disk, or take a slice with --max_tokens\n")
    assert not (tmp_path / "data").exists()


def test_a_shard_folder_without_its_index_is_one_line(fineweb_root, capsys):
    (fineweb_root / "data/fineweb-edu/index.json").unlink()
    with pytest.raises(SystemExit) as exit:
        run_main(train_main, [*TINY, "--out_dir=out"])
    assert exit.value.code == 1
    assert capsys.readouterr().err == (
        "error: data/fineweb-edu holds .npy shards but no index.json, which says which are whole: prepare it "
        "again with python -m nanojaxgpt.prepare fineweb-edu\n")
    assert not (fineweb_root / "out").exists()


def test_batches_come_from_every_shard_of_their_split(fineweb_root):
    sampler = BatchSampler("data/fineweb-edu", block_size=16, batch_size=64, seed=0)
    assert [len(part) for part in sampler.tokens["train"]] == [3000, 3000, 3000, 704]
    x, y = sampler.batches("train", 4, 0, 0)
    stream = np.concatenate(sampler.tokens["train"])
    starts = [next(i for i in range(len(stream)) if (stream[i : i + 16] == row).all()) for row in x.reshape(-1, 16)]
    assert len({start // 3000 for start in starts}) == 4  # all four train shards
    np.testing.assert_array_equal(x[..., 1:], y[..., :-1])


RESUMED_ON_4_DEVICES = """
import sys
from nanojaxgpt.config import parse_args
from nanojaxgpt.train import train
train(parse_args([*sys.argv[1:], "--out_dir=straight4", "--max_iters=8"]))
train(parse_args([*sys.argv[1:], "--out_dir=split4", "--max_iters=4"]))
train(parse_args(["--out_dir=split4", "--max_iters=8", "--init_from=resume"]))
"""


def test_training_on_shards_resumes_bit_identically_on_one_and_on_four_devices(fineweb_root):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    four = subprocess.Popen([sys.executable, "-c", RESUMED_ON_4_DEVICES, *TINY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    train(parse_args([*TINY, "--out_dir=straight", "--max_iters=8"]))
    train(parse_args([*TINY, "--out_dir=split", "--max_iters=4"]))
    train(parse_args(["--out_dir=split", "--max_iters=8", "--init_from=resume"]))
    out, _ = four.communicate(timeout=300)
    assert four.returncode == 0, out
    assert "devices: 4 (cpu), mesh data=4" in out
    for run in ("split", "split4"):
        for name in ("model.eqx", "optimizer.eqx"):
            assert (fineweb_root / run / name).read_bytes() == (fineweb_root / run.replace("split", "straight") / name).read_bytes()

    def losses(out_dir):
        with open(fineweb_root / out_dir / "metrics.jsonl") as f:
            return [r["loss"] for r in map(json.loads, f) if "loss" in r]

    assert len(losses("straight")) == 8
    np.testing.assert_allclose(losses("straight4"), losses("straight"), rtol=1e-5)
