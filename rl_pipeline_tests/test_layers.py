"""The layers of DESIGN.md hold: read every module's imports (without importing it) and check them.

The core (limits, state, retry, breaker, quota, pagination, client, ingest, warehouse, ...) imports no
Dagster and nothing of the layers built on it; the Dagster layer does not import the CLI; the demo API
stands alone; no module imports itself back through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rl_pipeline

PACKAGE = Path(rl_pipeline.__file__).parent
DAGSTER_LAYER = ("rl_pipeline.defs", "rl_pipeline.definitions")
CLI = ("rl_pipeline.cli",)
DEMO_API = ("rl_pipeline.demo_api",)


def within(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute; `from a import b` counts as importing `a.b` when that is a
    module, and importing `a.b` runs the package `a` first (unless `path` is inside `a` itself)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, node.module] if node.module else base)
            found.add(source)
            found |= {f"{source}.{alias.name}" for alias in node.names}
    modules = {m for m in found if m in MODULES or m.split(".")[0] != "rl_pipeline"}
    outer = {parent for m in modules for parent in parents(m) if not within(name, (parent,))}
    return (modules | outer) - {name}


def parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES]


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def core(module: str) -> bool:
    return module.startswith("rl_pipeline.") and not within(module, DAGSTER_LAYER + CLI + DEMO_API)


def test_the_graph_is_read() -> None:
    assert "rl_pipeline.guard" in GRAPH["rl_pipeline.client"]
    assert "rl_pipeline.limits.algorithms" in GRAPH["rl_pipeline.sources"]
    assert "dagster" in GRAPH["rl_pipeline.definitions"]


def test_the_core_imports_no_dagster_and_nothing_built_on_it() -> None:
    wrong = {
        (module, imported)
        for module, imported_set in GRAPH.items()
        if core(module)
        for imported in imported_set
        if imported.split(".")[0] in ("dagster", "dagster_shared") or within(imported, DAGSTER_LAYER + CLI + DEMO_API)
    }
    assert not wrong


def test_the_dagster_layer_does_not_import_the_cli() -> None:
    wrong = {(m, i) for m, imported in GRAPH.items() if within(m, DAGSTER_LAYER) for i in imported if within(i, CLI)}
    assert not wrong


def test_the_demo_api_stands_alone() -> None:
    wrong = {
        (m, i)
        for m, imported in GRAPH.items()
        if within(m, DEMO_API)
        for i in imported
        if i.startswith("rl_pipeline") and not within(i, DEMO_API)
    }
    assert not wrong


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(GRAPH.get(module, ())):
            if imported not in GRAPH:
                continue
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)
