"""Tier 1: every DAG file imports cleanly, is documented, acyclic, and follows the conventions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
HEAVY = {"rasterio", "geopandas", "numpy", "pandas", "sklearn", "psycopg", "boto3", "shapely",
         "pystac", "pystac_client", "sarsen", "matplotlib", "exactextract", "pyogrio"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_there_are_dags() -> None:
    assert DAG_FILES, "no DAG files found"


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_one_dag_per_file_named_like_the_file(dagbag, path: Path) -> None:
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]
    assert [d.dag_id for d in dags] == [path.stem]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_documented_tagged_and_acyclic(dagbag, path: Path) -> None:
    dag = dagbag.dags[path.stem]
    assert dag.doc_md and len(dag.doc_md.strip()) > 80, f"{path.stem} needs a real doc_md"
    assert "cbmflow" in dag.tags
    assert dag.catchup is False
    # topological sort raises on a cycle
    order = [t.task_id for t in dag.topological_sort()]
    assert sorted(order) == sorted(dag.task_ids)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_heavy_imports_only_inside_tasks(path: Path) -> None:
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = set()
    for node in top:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif node.module:
            names.add(node.module.split(".")[0])
    assert not (names & HEAVY), f"{path.name} imports {names & HEAVY} at module level"


def test_domain_package_never_imports_airflow() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "cbmflow"
    offenders = []
    for py in src.rglob("*.py"):
        if py.name == "airflow_adapter.py":
            continue
        for node in ast.walk(ast.parse(py.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            if any(m == "airflow" or m.startswith("airflow.") for m in mods):
                offenders.append(py.name)
    assert offenders == []


def _names_used_in_bodies(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(module, attribute, line) for every `from M import N` and every `alias.attr` of an imported module."""
    out: list[tuple[str, str, int]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(fn) if n is not fn):
            continue  # the DAG function: its task bodies are checked one by one
        aliases: dict[str, str] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    out.append((node.module, a.name, node.lineno))
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(fn):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                out.append((aliases[node.value.id], node.attr, node.lineno))
    return out


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_task_bodies_name_only_what_exists(path: Path) -> None:
    """A task body's deferred imports and module attributes resolve (a renamed function fails here, not in a run)."""
    import importlib

    missing = []
    for module, attr, line in _names_used_in_bodies(ast.parse(path.read_text())):
        if not module.startswith("cbmflow"):
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError:  # `module` names an object, not a module: checked as attribute of its parent
            parent, _, name = module.rpartition(".")
            obj = getattr(importlib.import_module(parent), name, None)
            if obj is None or not hasattr(obj, attr):
                missing.append(f"{path.name}:{line} {module}.{attr}")
            continue
        if not hasattr(mod, attr):
            try:
                importlib.import_module(f"{module}.{attr}")
            except ImportError:
                missing.append(f"{path.name}:{line} {module}.{attr}")
    assert missing == [], missing
