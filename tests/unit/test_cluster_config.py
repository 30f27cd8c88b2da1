"""The local cluster's settings (scripts/cluster.sh) and the extract concurrency they derive."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cbmflow.airflow_adapter import extract_concurrency

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CBMFLOW_", "AWS_"))}
    env.update(CBMFLOW_CLUSTER_DIR=str(tmp_path / "cluster"), **extra)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), "env"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_cluster_env_is_complete_and_secrets_stay_secret(tmp_path: Path) -> None:
    env = _env(tmp_path, WORKERS="3", CBMFLOW_API_PORT="18080")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://127.0.0.1:6379/")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) >= 3600
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["CBMFLOW_EXTRACT_CONCURRENCY"] == str(3 * int(env["CBMFLOW_WORKER_CONCURRENCY"]))
    assert env["CBMFLOW_WORK_URI"].startswith("s3://")
    assert env["AIRFLOW_CONN_CBMFLOW_DB"].startswith("postgres://")
    assert '"endpoint_url"' in env["AIRFLOW_CONN_CBMFLOW_S3"] and '"password": "***"' in env["AIRFLOW_CONN_CBMFLOW_S3"]
    # the secrets are generated once, shared, masked when printed, and readable by the owner only
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
        assert env[key] == "***"
    secrets = tmp_path / "cluster" / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    first = secrets.read_text()
    assert "AIRFLOW__API_AUTH__JWT_SECRET=" in first and "AIRFLOW__CORE__FERNET_KEY=" in first
    _env(tmp_path)
    assert secrets.read_text() == first
    assert stat.S_IMODE((tmp_path / "cluster" / "passwords.json").stat().st_mode) == 0o600


def test_extract_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CBMFLOW_EXTRACT_CONCURRENCY", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert extract_concurrency() == 2
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    assert extract_concurrency() is None
    monkeypatch.setenv("CBMFLOW_EXTRACT_CONCURRENCY", "8")
    assert extract_concurrency() == 8
    monkeypatch.setenv("CBMFLOW_EXTRACT_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="CBMFLOW_EXTRACT_CONCURRENCY"):
        extract_concurrency()
