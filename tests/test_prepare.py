import hashlib
import io
import pickle
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import tiktoken

from nanojaxgpt.errors import RuntimeFailure, UsageError
from nanojaxgpt.prepare import prepare_dataset, prepare_text, write_tokenized_splits
from nanojaxgpt.tokenizer import CharTokenizer, gpt2_encoding

# When other tests have started JAX in this process, JAX warns at each fork of the datasets
# workers that tokenise openwebtext and tinystories; those workers never use JAX
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function _at_fork:pytest.PytestUnraisableExceptionWarning"
    ),
]

NANOGPT_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
EOT = 50256
HELLO = "hello, world\n" * 10  # 130 characters: 117 train, 13 val; GPT-2: [31373, 11, 995, 198]


def read_ids(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


@pytest.fixture
def offline_gpt2(monkeypatch):
    """GPT-2's encoding as built with no internet: tiktoken's own download fails."""

    def no_network(name):
        raise OSError(f"cannot fetch {name}: no network")

    monkeypatch.setattr(tiktoken, "get_encoding", no_network)
    gpt2_encoding.cache_clear()
    yield
    gpt2_encoding.cache_clear()


def serve(monkeypatch, data: bytes):
    """Make downloads return `data`, checking they ask for nanoGPT's URL."""

    def urlopen(url, timeout):
        assert url == NANOGPT_URL
        return io.BytesIO(data)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_shakespeare_char_downloads_and_matches_nanogpt(tmp_path, monkeypatch, tiny_shakespeare):
    text = tiny_shakespeare.read_text(encoding="utf-8")
    serve(monkeypatch, tiny_shakespeare.read_bytes())
    data_dir = tmp_path / "data" / "shakespeare_char"
    prepare_dataset("shakespeare_char", data_dir)

    assert (data_dir / "input.txt").read_text(encoding="utf-8") == text
    train, val = read_ids(data_dir / "train.bin"), read_ids(data_dir / "val.bin")
    assert (len(train), len(val)) == (1_003_854, 111_540)
    with open(data_dir / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    assert sorted(meta) == ["itos", "stoi", "vocab_size"]
    assert meta["vocab_size"] == 65
    assert meta["stoi"]["\n"] == 0 and meta["itos"][64] == "z"
    tokenizer = CharTokenizer(meta["stoi"], meta["itos"])
    assert tokenizer.decode(train) + tokenizer.decode(val) == text
    written = sorted(p.name for p in data_dir.iterdir())
    assert written == ["input.txt", "meta.pkl", "train.bin", "val.bin"]


def test_shakespeare_gpt2_offline_matches_nanogpt(shakespeare_char_dir, offline_gpt2):
    (shakespeare_char_dir / "meta.pkl").write_bytes(b"left by a character-level run")
    prepare_dataset("shakespeare", shakespeare_char_dir)

    train = read_ids(shakespeare_char_dir / "train.bin")
    val = read_ids(shakespeare_char_dir / "val.bin")
    assert (len(train), len(val)) == (301_966, 36_059)
    text = (shakespeare_char_dir / "input.txt").read_text(encoding="utf-8")
    assert gpt2_encoding().decode(train + val) == text
    # else readers of the folder would decode as characters
    assert not (shakespeare_char_dir / "meta.pkl").exists()


def test_offline_gpt2_encoding_is_gpt2(offline_gpt2):
    encoding = gpt2_encoding()
    assert encoding.encode_ordinary("Hello world") == [15496, 995]
    assert encoding.encode_ordinary("hello, world\n") == [31373, 11, 995, 198]
    assert (encoding.n_vocab, encoding.eot_token) == (50257, EOT)
    assert encoding.encode("<|endoftext|>", allowed_special="all") == [EOT]


def test_offline_download_says_where_to_put_input_txt(tmp_path, monkeypatch):
    def urlopen(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(RuntimeFailure) as error:
        prepare_dataset("shakespeare_char", tmp_path)
    assert str(error.value) == (
        "could not download Tiny Shakespeare (<urlopen error [Errno -3] Temporary failure in name "
        f"resolution>): put its input.txt at {tmp_path / 'input.txt'}"
    )
    assert list(tmp_path.iterdir()) == []


def test_download_with_wrong_sha256_is_not_kept(tmp_path, monkeypatch):
    serve(monkeypatch, b"To be, or not to be\n")
    with pytest.raises(RuntimeFailure) as error:
        prepare_dataset("shakespeare", tmp_path)
    sha256 = hashlib.sha256(b"To be, or not to be\n").hexdigest()
    assert str(error.value) == (
        f"{NANOGPT_URL} is not Tiny Shakespeare (sha256 {sha256}, expected "
        f"86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed): "
        f"put its input.txt at {tmp_path / 'input.txt'}"
    )
    assert list(tmp_path.iterdir()) == []


def test_damaged_input_txt_is_refused(shakespeare_char_dir):
    path = shakespeare_char_dir / "input.txt"
    damaged = path.read_bytes()[:-1]
    path.write_bytes(damaged)
    with pytest.raises(RuntimeFailure) as error:
        prepare_dataset("shakespeare_char", shakespeare_char_dir)
    assert str(error.value) == (
        f"{path} is not Tiny Shakespeare (sha256 {hashlib.sha256(damaged).hexdigest()}, expected "
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed): "
        "delete it to download it again"
    )
    assert [p.name for p in shakespeare_char_dir.iterdir()] == ["input.txt"]


def test_unknown_data_set(tmp_path):
    with pytest.raises(UsageError) as error:
        prepare_dataset("shakespear", tmp_path)
    assert str(error.value) == (
        "unknown data set 'shakespear': use one of shakespeare_char, shakespeare, openwebtext, "
        "tinystories, or prepare your own text with python -m nanojaxgpt.prepare --input FILE "
        "--name NAME"
    )


def test_char_vocab_must_fit_uint16(tmp_path):
    text = "".join(chr(i) for i in range(2**16 + 1))
    with pytest.raises(UsageError) as error:
        prepare_text(text, tmp_path)
    assert str(error.value) == (
        "the text has 65,537 distinct characters, more than the 65,536 ids uint16 can hold: "
        "use --encoding gpt2"
    )
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_earlier_files(tmp_path, monkeypatch):
    prepare_text(HELLO, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["meta.pkl", "train.bin", "val.bin"]

    def disk_full(obj, file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pickle, "dump", disk_full)
    with pytest.raises(OSError):
        prepare_text("a different text", tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # and no temporary files


def run_cli(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "nanojaxgpt.prepare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_prepares_a_text_file(tmp_path):
    (tmp_path / "hello.txt").write_text(HELLO, encoding="utf-8")
    data_dir = tmp_path / "data" / "hello"

    result = run_cli(tmp_path, "--input", "hello.txt", "--name", "hello", "--encoding", "char")
    assert result.returncode == 0, result.stderr
    assert "train has 117 tokens\nval has 13 tokens\n" in result.stdout
    with open(data_dir / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    assert meta["itos"] == dict(enumerate("\n ,dehlorw"))
    ids = [5, 4, 6, 6, 7, 2, 1, 9, 7, 8, 6, 3, 0]  # "hello, world\n"
    assert read_ids(data_dir / "train.bin") == ids * 9
    assert read_ids(data_dir / "val.bin") == ids

    result = run_cli(tmp_path, "--input", "hello.txt", "--name", "hello", "--encoding", "gpt2")
    assert result.returncode == 0, result.stderr
    assert read_ids(data_dir / "train.bin") == [31373, 11, 995, 198] * 9
    assert read_ids(data_dir / "val.bin") == [31373, 11, 995, 198]
    assert sorted(p.name for p in data_dir.iterdir()) == ["train.bin", "val.bin"]


@pytest.mark.parametrize(
    "file_bytes, args, message",
    [
        (
            None,
            ["--input", "text.txt", "--name", "t"],
            "cannot read text.txt (No such file or directory): give --input a text file",
        ),
        (
            b"",
            ["--input", "text.txt", "--name", "t"],
            "the text has 0 characters: give at least 2, to split into train and val",
        ),
        (
            b"\xff\xfe",
            ["--input", "text.txt", "--name", "t"],
            "text.txt is not UTF-8 text (invalid start byte): convert it to UTF-8",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path, file_bytes, args, message):
    if file_bytes is not None:
        (tmp_path / "text.txt").write_bytes(file_bytes)
    result = run_cli(tmp_path, *args)
    assert (result.returncode, result.stderr) == (2, f"error: {message}\n")
    assert not (tmp_path / "data").exists()


def test_cli_bad_argument_is_one_line(tmp_path):
    (tmp_path / "text.txt").write_text("abc", encoding="utf-8")
    result = run_cli(tmp_path, "--input", "text.txt", "--name", "t", "--encoding", "bpe")
    assert result.returncode == 2
    # argparse quotes the choices differently across Python versions
    assert result.stderr.startswith(
        "error: argument --encoding: invalid choice: 'bpe' (choose from"
    )
    assert result.stderr.endswith("): see python -m nanojaxgpt.prepare --help\n")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()


def documents(count: int) -> list[str]:
    return [f"Document {i}: " + "Hello world" * i for i in range(count)]


def expected_ids(docs: list[str]) -> list[int]:
    return [token for doc in docs for token in gpt2_encoding().encode_ordinary(doc) + [EOT]]


def split_documents(ids: list[int]) -> list[str]:
    """The documents in a .bin file written by write_tokenized_splits (each ends in EOT)."""
    assert ids[-1] == EOT
    return gpt2_encoding().decode(ids[:-1]).split("<|endoftext|>")


def test_tokenized_splits_are_written_in_order(tmp_path):
    datasets = pytest.importorskip("datasets")
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": documents(7)}),
        val=datasets.Dataset.from_dict({"text": ["Hello world", "hello, world\n"]}),
    )
    write_tokenized_splits(splits, tmp_path, num_proc=2, num_shards=3)

    train = read_ids(tmp_path / "train.bin")
    assert len(train) == 71
    assert train[:5] == [24941, 657, 25, 220, EOT]  # "Document 0: "
    assert train == expected_ids(documents(7))
    assert read_ids(tmp_path / "val.bin") == [15496, 995, EOT, 31373, 11, 995, 198, EOT]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.bin", "val.bin"]


def test_openwebtext_holds_out_val_as_nanogpt(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def load_dataset(repo, num_proc):
        assert (repo, num_proc) == ("Skylion007/openwebtext", 2)
        return datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": documents(20)}))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    prepare_dataset("openwebtext", tmp_path, num_proc=2)

    train = split_documents(read_ids(tmp_path / "train.bin"))
    val = split_documents(read_ids(tmp_path / "val.bin"))
    assert (len(train), len(val)) == (19, 1)  # 0.05% of 20 documents, rounded up
    assert sorted(train + val) == sorted(documents(20))


def test_tinystories_uses_its_validation_split(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def load_dataset(repo, num_proc):
        assert (repo, num_proc) == ("roneneldan/TinyStories", 2)
        return datasets.DatasetDict(
            train=datasets.Dataset.from_dict({"text": documents(5)}),
            validation=datasets.Dataset.from_dict({"text": ["Hello world"]}),
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    prepare_dataset("tinystories", tmp_path, num_proc=2)

    assert read_ids(tmp_path / "train.bin") == expected_ids(documents(5))
    assert read_ids(tmp_path / "val.bin") == [15496, 995, EOT]


def test_hugging_face_failure_is_one_line(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def load_dataset(repo, num_proc):
        raise ConnectionError("Couldn't reach 'roneneldan/TinyStories' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(RuntimeFailure) as error:
        prepare_dataset("tinystories", tmp_path, num_proc=2)
    assert str(error.value) == (
        "could not load roneneldan/TinyStories from Hugging Face (ConnectionError: Couldn't reach "
        "'roneneldan/TinyStories' on the Hub): check your internet connection, free disk space "
        "and datasets version"
    )
