"""Run every Python code block of the documentation, page by page.

Each page's ```python blocks run in order in one fresh module namespace (later blocks use
earlier names), in a temporary working directory, with one thread and matplotlib's Agg backend.
A block preceded by the line ``<!-- skip-test -->`` is a fragment by nature and is not run.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

import luz
from luz.events import BREAKPOINT_TREE

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- skip-test -->"
NEEDS = re.compile(r"^<!-- needs: ([\w ]+) -->$", re.MULTILINE)
"""A page's optional packages (an extra): its code is skipped where one is not installed."""
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block not marked with the skip marker."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before.strip() == SKIP_MARKER:
            continue
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


@pytest.fixture
def doc_env(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The experiment-tracking examples set these; the page's run must not leak them.
    for name in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_SILENT"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = torch.get_rng_state()
    yield tmp_path
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_code_runs(page: Path, doc_env: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for needs in NEEDS.findall(text):
        for package in needs.split():
            pytest.importorskip(package)
    blocks = python_blocks(text)
    # A real module, so classes defined on the page can be found by `luz.load` and pickled.
    name = f"_luz_docs_{page.stem.replace('-', '_').replace('.', '_')}"
    module = types.ModuleType(name)
    module.__file__ = str(doc_env / f"{name}.py")
    sys.modules[name] = module
    try:
        for line, code in blocks:
            compiled = compile(code, f"{page.name}:{line}", "exec")
            exec(compiled, module.__dict__)
    finally:
        del sys.modules[name]


def test_breakpoint_tree_in_get_started_matches_the_code() -> None:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- breakpoint-tree -->\s*\n```text\n(.*?)```", text, flags=re.DOTALL)
    assert match is not None, "docs/index.md lost its <!-- breakpoint-tree --> block"
    assert match.group(1) == BREAKPOINT_TREE


def test_context_page_documents_every_field() -> None:
    text = (DOCS / "context.md").read_text(encoding="utf-8")
    fields = set(luz.Context.__annotations__)
    fields |= {n for n, v in vars(luz.Context).items() if isinstance(v, property)}
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert not missing, f"docs/context.md does not mention: {missing}"


def test_skip_markers_precede_code_blocks() -> None:
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() == SKIP_MARKER:
                assert i + 1 < len(lines) and lines[i + 1].startswith("```"), f"{page.name}:{i + 1}"


def test_architecture_page_lists_the_enforced_layers() -> None:
    from tests.test_layers import LAYERS

    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    documented: dict[int, set[str]] = {}
    for layer, cell in re.findall(r"^\| L(\d) · [^|]*\| ([^|]*) \|", text, flags=re.MULTILINE):
        paths = re.findall(r"`([\w/]+)\.py`", cell)
        names = {p.removesuffix("__init__").rstrip("/").replace("/", ".") for p in paths}
        documented[int(layer)] = names
    assert documented == LAYERS, "docs/architecture.md's layer table differs from tests/test_layers.py"
