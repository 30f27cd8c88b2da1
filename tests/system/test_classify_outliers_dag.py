"""``classify_outliers`` end to end under ``dag.test()`` on a SIMULATED season in the real PostGIS."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from dag_loading import load_dag

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from test_analytics_db import YEAR, _parcel, _season  # noqa: E402

pytestmark = pytest.mark.system


def run_dag(conf: dict) -> tuple[str, dict[str, str]]:
    dr = load_dag("classify_outliers").test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    return str(dr.state), states


def test_dag_flags_and_reports(
    airflow_db: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CBMFLOW_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("CBMFLOW_REPORT_DIR", str(tmp_path / "reports"))
    truth = _season(conn, ["grassland", "maize", "winter_wheat"], 30, [3, 40, 70])
    truth.to_parquet(tmp_path / "truth.parquet")
    state, tasks = run_dag({"aoi": "ana", "year": YEAR, "min_class_size": 20,
                            "truth_uri": str(tmp_path / "truth.parquet")})
    assert state == "success", tasks
    run_id, report_uri, recall = conn.execute(
        "SELECT run_id, report_uri, (metrics->'evaluation'->>'recall')::float FROM classification_runs"
    ).fetchone()
    assert report_uri == str(tmp_path / "reports" / "ana" / str(YEAR) / f"run_{run_id}" / "index.html")
    assert Path(report_uri).exists()
    assert recall == 1.0
    counts = dict(conn.execute("SELECT flag, count(*) FROM parcel_flags WHERE run_id = %s GROUP BY flag",
                               (run_id,)).fetchall())
    assert sum(counts.values()) == 90 and counts["red"] == 3
    assert (tmp_path / "work" / "ana" / str(YEAR) / "features.parquet").exists()

    # a season without signatures: the first task skips, nothing downstream runs, no new run
    conn.execute("INSERT INTO aois (name, epsg) VALUES ('empty', 32633)")
    _parcel(conn, "E1", "maize", 0, aoi="empty")
    conn.commit()
    state, tasks = run_dag({"aoi": "empty", "year": YEAR})
    assert tasks["period_means"] == "skipped", tasks
    assert conn.execute("SELECT count(*) FROM classification_runs").fetchone()[0] == 1


def test_dag_without_aoi_fails_naming_the_known_aois(airflow_db: str, conn: psycopg.Connection) -> None:
    """The form's default (no AOI) is a clear failure, not a run on a non-existent 'demo' AOI."""
    conn.execute("INSERT INTO aois (name, epsg) VALUES ('known_one', 32633)")
    conn.commit()
    state, tasks = run_dag({"year": YEAR})  # truth_uri omitted: optional
    assert state == "failed" and tasks["period_means"] == "failed"
    assert tasks["report"] == "upstream_failed"
