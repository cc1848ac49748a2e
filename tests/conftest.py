import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from nanojaxgpt.compile_cache import use_compilation_cache
from nanojaxgpt.determinism import request_deterministic_ops

# resume is bit-identical on GPUs only with XLA's deterministic ops, which must be asked for
# before JAX starts (`python -m nanojaxgpt.train` does it in main; the tests call train())
request_deterministic_ops()
# The tests, and the training commands they run (compile_cache='auto'), keep their compiled
# programs in a folder of this test run's own, not in the user's ~/.cache: what many tests
# compile alike (the tiny models' steps) is compiled once, by whichever of pytest-xdist's workers
# comes to it first. The folder goes when the run ends.
TEST_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"nanojaxgpt-tests-{TEST_RUN}")
use_compilation_cache("auto")


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):  # the controller, after every worker is done
        shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)


# every option of the modern recipe on, Muon included, as command-line overrides
MODERN_OPTIONS = ["--optimizer=muon", "--pos_emb=rotary", "--qk_norm=True", "--mlp=relu2",
                  "--tied_head=False", "--logit_softcap=30", "--zero_init_proj=True"]

REPO = Path(__file__).resolve().parent.parent
# CI and developers have the project's shared folder beside the checkout; the text is never committed
TINY_SHAKESPEARE = Path(
    os.environ.get("TINY_SHAKESPEARE", REPO.parent / "shared/data/tinyshakespeare/input.txt")
)


@pytest.fixture
def tiny_shakespeare() -> Path:
    """Path to Tiny Shakespeare's input.txt (1,115,394 characters)."""
    if not TINY_SHAKESPEARE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Tiny Shakespeare not found at {TINY_SHAKESPEARE}")
        pytest.skip(f"Tiny Shakespeare not found at {TINY_SHAKESPEARE}")
    return TINY_SHAKESPEARE


@pytest.fixture
def shakespeare_char_dir(tmp_path, tiny_shakespeare) -> Path:
    """A `data/shakespeare_char` folder holding input.txt, as a user has after downloading it."""
    data_dir = tmp_path / "data" / "shakespeare_char"
    data_dir.mkdir(parents=True)
    shutil.copy(tiny_shakespeare, data_dir / "input.txt")
    return data_dir


@pytest.fixture
def exact_float32_matmuls():
    """float32 matmuls computed in float32. JAX's default, which the product keeps, is TF32 on
    NVIDIA GPUs (a 10-bit mantissa): comparisons of float32 results to 1e-5 hold only with this."""
    with jax.default_matmul_precision("highest"):
        yield


def shakespeare_documents(tiny_shakespeare: Path, count: int = 300) -> list[str]:
    """Tiny Shakespeare's first speeches as documents, one of which says <|endoftext|> in its text."""
    documents = tiny_shakespeare.read_text(encoding="utf-8").split("\n\n")[:count]
    documents[5] = "A document that says <|endoftext|> in its text, which is only text."
    return documents


@pytest.fixture
def fineweb_root(tmp_path, tiny_shakespeare, monkeypatch) -> Path:
    """A folder holding data/fineweb-edu, prepared from local documents (12,704 tokens in shards
    of 3,000), as the current directory."""
    from nanojaxgpt.fineweb import prepare_fineweb

    monkeypatch.chdir(tmp_path)
    with open("documents.jsonl", "w") as f:
        f.writelines(json.dumps({"text": text}) + "\n" for text in shakespeare_documents(tiny_shakespeare))
    prepare_fineweb("fineweb-edu", Path("data/fineweb-edu"), data_files="documents.jsonl", shard_size=3000)
    return tmp_path
