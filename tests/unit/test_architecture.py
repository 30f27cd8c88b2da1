"""The package's import structure: no cycle, no simulator in production, Airflow only in the adapter.

The graph is read from the source (every ``import`` statement, at module level or inside a
function), so an import hidden in a function body counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (resolved to existing modules)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + ".") :
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_production_package_never_imports_a_simulator_or_dev_tool() -> None:
    bad = {m: sorted(d for d in deps if d.split(".")[0] in {"cbmflow_sim", "cbmflow_dev"})
           for m, deps in _graph().items() if m.split(".")[0] == "cbmflow"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_the_adapter_imports_airflow() -> None:
    offenders = []
    for path in (SRC / "cbmflow").rglob("*.py"):
        if path.name == "airflow_adapter.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "airflow" or n.startswith("airflow.") for n in names):
                offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


# The stages in the order the data flows, over the core, with the two edges on top. A module may
# import its own package and the packages before it, never one after it.
LAYERS = ["core", "parcels", "catalogue", "card", "extract", "markers", "analytics", "web",
          "cli", "airflow_adapter"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "cbmflow" and len(parts) > 1 else None


def test_every_production_module_has_a_stage() -> None:
    loose = sorted(m for m in _graph() if m.startswith("cbmflow.") and _stage(m) not in LAYERS)
    assert loose == []


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = []
    for module, deps in _graph().items():
        a = _stage(module)
        if a is None:
            continue
        for dep in deps:
            b = _stage(dep)
            if b is not None and b != a and LAYERS.index(b) > LAYERS.index(a):
                upward.append(f"{module} -> {dep}")
    assert upward == []


def test_commands_live_in_cli() -> None:
    """Only `cli/` modules define command groups (a stage module holds no argparse wiring)."""
    import ast

    offenders = []
    for path in sorted((SRC / "cbmflow").rglob("*.py")):
        rel = path.relative_to(SRC / "cbmflow")
        if rel.parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if "register_cli" in names or any(n.startswith(("_cli_", "_cmd_")) for n in names):
            offenders.append(str(rel))
    assert offenders == [], offenders
