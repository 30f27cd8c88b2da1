"""classify_outliers on the cluster with its tasks on different workers: work files travel through S3.

The worker that builds the feature table is shut down (warm: it finishes that task, takes no new
one), so classification and report must run on the other worker, which can only read the features
from object storage (``CBMFLOW_WORK_URI``). Runs after the fault cases (file name order): it adds a
SIMULATED season (AOI ``ana``) to the shared results database and removes it at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cbmflow.core import storage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
from test_analytics_db import YEAR, _season  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]
DAG = "classify_outliers"


def _host(ti: dict[str, Any]) -> str:
    return str(ti.get("hostname") or "").split("@", 1)[0]


def test_classify_tasks_on_different_workers_share_work_files_on_s3(cluster: Any) -> None:
    lc = cluster
    with psycopg.connect(lc.dsn) as conn:
        _season(conn, ["grassland", "maize", "winter_wheat"], 30, [3, 40, 70])
    try:
        lc.client.wait_dag(DAG)
        run = lc.client.trigger(DAG, {"aoi": "ana", "year": YEAR, "min_class_size": 20})
        # the worker running `features` stops taking tasks: warm shutdown of its Celery main process
        deadline = time.monotonic() + 300
        stopped = None
        while stopped is None:
            tis = {t["task_id"]: t for t in lc.client.task_instances(DAG, run)}
            feats = tis.get("features", {})
            if feats.get("state") == "running" and _host(feats).startswith("worker-"):
                stopped = _host(feats)
                os.kill(lc.pid_of(stopped), signal.SIGTERM)
            assert time.monotonic() < deadline, lc.client.task_states(DAG, run)
            time.sleep(0.5)
        state = lc.client.wait_run(DAG, run, timeout=400)
        tis = {t["task_id"]: t for t in lc.client.task_instances(DAG, run)}
        assert state == "success", lc.client.task_states(DAG, run)
        hosts = {k: _host(t) for k, t in tis.items()}
        assert hosts["features"] == stopped
        assert hosts["classify_and_flag"] != stopped and hosts["classify_and_flag"].startswith("worker-"), hosts
        assert hosts["report"] != stopped, hosts
        # everything the tasks handed each other lives in the cluster's work bucket
        work = f"s3://{lc.bucket}/work"
        with psycopg.connect(lc.dsn) as conn:
            run_id, report_uri = conn.execute("SELECT run_id, report_uri FROM classification_runs").fetchone()
        assert report_uri == f"{work}/reports/ana/{YEAR}/run_{run_id}/index.html"
        with lc.s3():
            objects = storage.list_uris(work)
        assert f"{work}/ana/{YEAR}/features.parquet" in objects and report_uri in objects
    finally:
        with psycopg.connect(lc.dsn) as conn:
            conn.execute("DELETE FROM classification_runs WHERE aoi = 'ana'")
            conn.execute("DELETE FROM signatures WHERE pid IN (SELECT pid FROM parcels WHERE aoi = 'ana')")
            conn.execute("DELETE FROM parcels WHERE aoi = 'ana'")
            conn.execute("DELETE FROM catalogue WHERE product_id LIKE 'SIM\\_bs\\_%' OR product_id LIKE 'SIM\\_c6\\_%'")
            conn.execute("DELETE FROM aois WHERE name = 'ana'")
            conn.commit()
        for i in (1, 2):
            if not lc.client.worker_ready(f"worker-{i}") or lc.pid_of(f"worker-{i}") is None \
                    or not _alive(lc.pid_of(f"worker-{i}")):
                lc.script("stop", f"worker-{i}")
                lc.restart_worker(f"worker-{i}")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
