"""MkDocs hooks: generate the examples gallery and the benchmark page, check the breakpoint tree.

- Every ``examples/*.py`` becomes a page ``examples/<name>.md`` (its module docstring, its run
  commands and its code), listed under "Examples" in the nav, so a new example shows up without
  editing ``mkdocs.yml``.
- ``bench/RESULTS.md`` becomes ``bench-results.md`` (a placeholder until it exists).
- The ``text`` block after ``<!-- breakpoint-tree -->`` in ``index.md`` must equal
  ``luz.events.BREAKPOINT_TREE``; the build fails otherwise (tests/test_docs.py checks it too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BENCH_RESULTS = ROOT / "bench" / "RESULTS.md"
TREE_MARKER = "<!-- breakpoint-tree -->"


def _example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def _split_docstring(source: str) -> tuple[str, str, str, str]:
    """(title, description, run commands, code without the docstring) of an example."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    code = source
    first = tree.body[0] if tree.body else None
    if doc and isinstance(first, ast.Expr) and first.end_lineno is not None:
        code = "\n".join(source.splitlines()[first.end_lineno :]).lstrip("\n")
    lines = doc.splitlines()
    title = lines[0].rstrip(".") if lines else ""
    body = "\n".join(lines[1:]).strip()
    run = ""
    match = re.search(r"^Run:\s*", body, flags=re.MULTILINE)
    if match:
        run_text = body[match.end() :]
        body = body[: match.start()].strip()
        run_lines = run_text.splitlines()
        indent = match.end() - match.start()
        run = "\n".join(
            [run_lines[0]]
            + [line[indent:] if line[:indent].isspace() else line.strip() for line in run_lines[1:]]
        )
    return title, body, run.rstrip(), code


def _example_page(path: Path) -> tuple[str, str]:
    title, body, run, code = _split_docstring(path.read_text(encoding="utf-8"))
    parts = [f"# {path.stem}", "", f"**{title}.**", "", body, ""]
    if run:
        parts += ["## Run it", "", "```text", run, "```", ""]
    parts += [f"## The code (`examples/{path.name}`)", "", "```python", code.rstrip(), "```", ""]
    return title, "\n".join(parts)


def _examples_index(entries: list[tuple[str, str]]) -> str:
    lines = [
        "# Examples",
        "",
        "Runnable end-to-end scripts in the repository's `examples/` folder. Each trains on data "
        "that ships with scikit-learn or with the repository (no download) and has a `--quick` "
        'smoke mode. Install the extras first: `pip install -e ".[examples]"`.',
        "",
        "| Example | What it shows |",
        "|---|---|",
    ]
    lines += [f"| [{stem}]({stem}.md) | {title} |" for stem, title in entries]
    return "\n".join(lines) + "\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Replace the nav entry ``Examples: examples/index.md`` by the gallery's pages."""
    pages: list[Any] = [{"Overview": "examples/index.md"}]
    pages += [{p.stem: f"examples/{p.stem}.md"} for p in _example_files()]
    nav = config.nav or []
    for i, item in enumerate(nav):
        if isinstance(item, dict) and item.get("Examples") == "examples/index.md":
            nav[i] = {"Examples": pages}
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages."""
    entries = []
    for path in _example_files():
        title, content = _example_page(path)
        entries.append((path.stem, title))
        files.append(File.generated(config, f"examples/{path.stem}.md", content=content))
    files.append(File.generated(config, "examples/index.md", content=_examples_index(entries)))
    if BENCH_RESULTS.exists():
        results = BENCH_RESULTS.read_text(encoding="utf-8")
    else:
        results = (
            "# Benchmark results\n\nNo results recorded yet: run `python bench/overhead.py` and "
            "write its report to `bench/RESULTS.md`.\n"
        )
    files.append(File.generated(config, "bench-results.md", content=results))
    return files


def tree_block(markdown: str) -> str | None:
    """The text of the fenced block that follows the breakpoint-tree marker, or ``None``."""
    match = re.search(re.escape(TREE_MARKER) + r"\s*\n```text\n(.*?)```", markdown, flags=re.DOTALL)
    return match.group(1) if match else None


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fail the build if the documented breakpoint tree drifts from the code."""
    if page.file.src_uri == "index.md":
        from luz.events import BREAKPOINT_TREE

        if tree_block(markdown) != BREAKPOINT_TREE:
            raise PluginError(
                "docs/index.md: the text block after <!-- breakpoint-tree --> must equal "
                'luz.events.BREAKPOINT_TREE; copy it from `python -c "import luz.events as e; '
                "print(e.BREAKPOINT_TREE, end='')\"`."
            )
    return markdown
