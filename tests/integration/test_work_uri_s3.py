"""classify_outliers' work files and report on object storage (moto S3), nothing on the local disk."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from cbmflow.analytics import season as analytics
from cbmflow.core import storage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_analytics_db import YEAR, _season  # noqa: E402

pytestmark = pytest.mark.integration


def test_season_work_and_report_on_s3(
    conn: psycopg.Connection, clean_db: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for v in ("CBMFLOW_WORK_DIR", "CBMFLOW_REPORT_DIR", "CBMFLOW_REPORT_URI"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("CBMFLOW_HOME", str(tmp_path))  # the local defaults would land here
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("CBMFLOW_WORK_URI", f"{s3_bucket}/work")
    _season(conn, ["grassland", "maize", "winter_wheat"], 30, [3, 40, 70])

    # the DAG's three steps as separate calls: each reads only what the previous one put on S3
    analytics.season_periods("ana", YEAR, dsn=clean_db)
    feats = analytics.season_features("ana", YEAR, dsn=clean_db)
    assert feats["uri"] == f"{s3_bucket}/work/ana/{YEAR}/features.parquet"
    run_id = analytics.classify_season("ana", YEAR, feats["uri"], dsn=clean_db)
    uri = analytics.report_run(run_id, dsn=clean_db)
    assert uri == f"{s3_bucket}/work/reports/ana/{YEAR}/run_{run_id}/index.html"
    objects = storage.list_uris(f"{s3_bucket}/work")
    assert feats["uri"] in objects and uri in objects
    assert any(o.endswith(".png") for o in objects)
    assert b"<html" in storage.read_bytes(uri).lower()
    assert list(tmp_path.iterdir()) == []  # nothing written to the worker's own disk
