"""Where work files and reports go: shared object storage under a distributed executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbmflow.core import storage
from cbmflow.core.errors import ConfigError

_VARS = ("CBMFLOW_WORK_URI", "CBMFLOW_WORK_DIR", "CBMFLOW_REPORT_URI", "CBMFLOW_REPORT_DIR", "AIRFLOW__CORE__EXECUTOR")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for v in _VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("CBMFLOW_HOME", str(tmp_path))


def test_work_uri_prefers_object_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBMFLOW_WORK_URI", "s3://bucket/work/")
    monkeypatch.setenv("CBMFLOW_WORK_DIR", "/tmp/ignored")
    assert storage.work_uri("at", "2025", "features.parquet") == "s3://bucket/work/at/2025/features.parquet"
    assert storage.report_uri("at", "run_1") == "s3://bucket/work/reports/at/run_1"
    monkeypatch.setenv("CBMFLOW_REPORT_URI", "s3://reports")
    assert storage.report_uri("x") == "s3://reports/x"


def test_local_default_only_on_one_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert storage.work_uri() == str(tmp_path / "var" / "work")
    assert storage.report_uri() == str(tmp_path / "reports")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with pytest.raises(ConfigError, match="CBMFLOW_WORK_URI"):
        storage.work_uri()
    with pytest.raises(ConfigError, match="CBMFLOW_REPORT_URI"):
        storage.report_uri()
    # an explicit local folder is the operator's choice (single machine, or a shared file system)
    monkeypatch.setenv("CBMFLOW_WORK_DIR", str(tmp_path / "w"))
    assert storage.work_uri("a") == str(tmp_path / "w" / "a")
