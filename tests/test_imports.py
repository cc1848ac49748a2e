"""The dependency direction: each module imports only modules below it, read from the source."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nanojaxgpt"


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(the package's modules, the other top-level packages) that `module` imports, anywhere in
    its source."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            names = [node.module]
        for name in names:
            if name.startswith("nanojaxgpt."):
                ours.add(name.split(".")[1])
            else:
                others.add(name.split(".")[0])
    return ours, others


def closure(module: str) -> set[str]:
    """`module` and every module of the package that it imports, directly or not."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports_of(name)[0])
    return seen


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_config_parsing_needs_no_jax():
    modules = closure("config")
    assert modules == {"config", "architecture", "errors"}
    third_party = set().union(*(imports_of(m)[1] for m in modules)) - set(sys.stdlib_module_names)
    assert third_party == set()


def test_the_model_imports_no_inference_hugging_face_or_command_code():
    assert closure("model") == {"model", "architecture", "dense", "determinism", "optim"}


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_back_up(module):
    """No cycles: a module never reaches itself through its imports."""
    for imported in imports_of(module)[0]:
        assert module not in closure(imported), f"{module} -> {imported} -> ... -> {module}"


def test_the_package_attaches_nanogpts_entry_points():
    from nanojaxgpt import GPT
    from nanojaxgpt.generate import generate
    from nanojaxgpt.hf import from_pretrained

    assert GPT.generate is generate
    assert GPT.from_pretrained is from_pretrained
