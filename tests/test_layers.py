"""The import layers of ARCHITECTURE.md, checked on the source: every module has a layer, imports
only from its own layer or below (module-level and function-level imports alike; imports under
``TYPE_CHECKING`` are free), and no module imports itself back through a cycle.

The three declared upward edges are the fluent methods `LuzModule.fit`, `Fitted.predict` and
`Fitted.evaluate`, which forward to `luz.run`.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: dict[int, set[str]] = {
    # L0 · vocabulary and primitives (stdlib and torch only)
    0: {"events", "errors", "_validate", "_hints", "_tree", "_dist", "_persist", "_console"},
    # L1 · the data of a run
    1: {
        "records",
        "batch",
        "outputs",
        "_inmemory",
        "data",
        "_loaders",
        "_stream",
        "_dist.group",
        "_dist.collectives",
        "_dist.sharding",
        "_dist.fsdp",
    },
    # L2 · shared state
    2: {"_context_fields", "context"},
    # L3 · extension contracts
    3: {
        "callbacks.base",
        "callbacks._runner",
        "metrics",
        "metrics.base",
        "metrics.set",
        "metrics._shapes",
        "metrics.classification",
        "metrics.regression",
        "metrics.auc",
        "metrics.torchmetrics_adapter",
    },
    # L4 · devices
    4: {"accelerator"},
    # L5 · run state on disk
    5: {
        "_persist.atomic",
        "_persist.plain",
        "_persist.digest",
        "_persist.rng",
        "_persist.verify",
        "_persist.sharded",
        "_persist.sharded_read",
        "_persist.model_file",
        "_dist.run_state",
        "_persist.checkpoint",
        "_persist.restore",
    },
    # L6 · the loop
    6: {"step", "loop"},
    # L7 · built-in callbacks and output
    7: {
        "callbacks",
        "callbacks.defaults",
        "callbacks.progress",
        "callbacks._progress_text",
        "callbacks._progress_notebook",
        "callbacks.loggers",
        "callbacks.monitor",
        "callbacks.early_stopping",
        "callbacks.checkpoint",
        "callbacks.resume",
        "callbacks.lr_scheduler",
        "callbacks.lr_monitor",
        "callbacks.gradient_clip",
        "callbacks.gradient_accumulation",
        "callbacks.amp",
        "callbacks.mixup",
        "callbacks.terminate_on_nan",
        "callbacks._tracking",
        "callbacks.mlflow_logger",
        "callbacks.wandb_logger",
        "_dist.sync",
        "_dist.plan",
        "reporting",
    },
    # L8 · specification and results
    8: {"_module_checks", "module", "results"},
    # L9 · entry points
    9: {"", "_run_setup", "run", "serialization", "lr_finder"},
}
LAYER = {f"luz.{name}".rstrip("."): layer for layer, names in LAYERS.items() for name in names}

ALLOWED_UPWARD = {("luz.module", "luz.run"), ("luz.results", "luz.run")}
"""The fluent methods: ``LuzModule.fit``, ``Fitted.predict`` and ``Fitted.evaluate``."""


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "luz").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> set[str]:
    """The luz modules ``name`` imports at run time (at module level or inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "luz")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            if base.split(".")[0] == "luz":
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(MODULES) - set(LAYER))
    assert not missing, f"give these modules a layer in tests/test_layers.py (and ARCHITECTURE): {missing}"
    stale = sorted(set(LAYER) - set(MODULES))
    assert not stale, f"the layer table names modules that do not exist: {stale}"


def test_imports_go_down_only() -> None:
    upward = [
        f"{source} (L{LAYER[source]}) imports {target} (L{LAYER[target]})"
        for source, targets in GRAPH.items()
        for target in sorted(targets)
        if target in LAYER and LAYER[target] > LAYER[source] and (source, target) not in ALLOWED_UPWARD
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_package_inits_import_only_their_own_submodules() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if path.name == "__init__.py" and name != "luz"
        for target in sorted(GRAPH[name])
        if not target.startswith(name + ".")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = {s: {t for t in ts if (s, t) not in ALLOWED_UPWARD and t in GRAPH} for s, ts in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    # The checker itself must see what it checks: deferred imports are edges too.
    assert "luz.run" in GRAPH["luz.module"]  # the import inside LuzModule.fit
    assert "luz.records" in GRAPH["luz.context"]  # `from luz import records as _records`
    assert "luz.accelerator" not in GRAPH["luz.context"]  # only under TYPE_CHECKING


def test_built_in_callbacks_never_import_the_loop_or_the_entry_points() -> None:
    # Callbacks react to breakpoints; they never drive the loop themselves.
    wrong = [
        f"{name} imports {target}"
        for name in GRAPH
        if name.startswith("luz.callbacks.")
        for target in sorted(GRAPH[name])
        if target in ("luz.loop", "luz.run", "luz.lr_finder")
    ]
    assert not wrong, "\n".join(wrong)
