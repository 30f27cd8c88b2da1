"""One DAG file loaded for ``dag.test()``: its import errors fail the test, its tasks run without retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[1] / "dags"


def load_dag(dag_id: str) -> Any:
    """The DAG of ``dags/<dag_id>.py``, every task with ``retries = 0``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    dag = bag.get_dag(dag_id)
    for t in dag.tasks:  # a failing task fails at once instead of waiting out its retry delay
        t.retries = 0
    return dag
