from __future__ import annotations

import pytest

from cbmflow import airflow_adapter
from cbmflow.core.errors import ConfigError, CorruptData, NothingToDo, TransientError


def _raise(exc: Exception):
    raise exc


def test_run_maps_outcomes_onto_airflow() -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    assert airflow_adapter.run(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(AirflowSkipException, match="NothingToDo: nothing new"):
        airflow_adapter.run(_raise, NothingToDo("nothing new"))
    with pytest.raises(AirflowFailException, match="CorruptData: scene X"):
        airflow_adapter.run(_raise, CorruptData("scene X"))
    with pytest.raises(TransientError):
        airflow_adapter.run(_raise, TransientError("busy"))


def test_configure_from_connections(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_DB", "postgres://alice:s3cret@dbhost:6543/results")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CBMFLOW_S3",
        '{"conn_type": "aws", "login": "AK", "password": "SK", "extra": {"endpoint_url": "http://minio:9000"}}',
    )
    monkeypatch.setenv("CBMFLOW_DSN", "unchanged")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "unchanged")
    airflow_adapter.configure()
    import os

    assert os.environ["CBMFLOW_DSN"] == "postgresql://alice:s3cret@dbhost:6543/results"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AK"


def test_s3_connection_without_endpoint_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_S3", '{"conn_type": "aws", "login": "AK", "password": "SK"}')
    with pytest.raises(ConfigError, match="no endpoint_url"):
        airflow_adapter.configure()


def test_assets_are_distinct_per_card_type() -> None:
    uris = {airflow_adapter.card_ready_asset(c).uri for c in ("bs", "c6", "s2")}
    assert len(uris) == 3
    with pytest.raises(ValueError):
        airflow_adapter.card_ready_asset("xx")


def test_extraction_scope_takes_the_year_and_window_from_the_run_never_the_calendar() -> None:
    from datetime import UTC, datetime

    from cbmflow.airflow_adapter import extraction_scope

    s, e = datetime(2025, 5, 2, 6, tzinfo=UTC), datetime(2025, 5, 3, 6, tzinfo=UTC)
    bf = extraction_scope({"aoi": "nl"}, run_type="backfill", logical_date=e, data_interval_start=s,
                          data_interval_end=e)
    assert (bf["year"], bf["start"], bf["end"], bf["aois"]) == (2025, s.isoformat(), e.isoformat(), ["nl"])
    manual = extraction_scope({}, run_type="manual", logical_date=e, data_interval_start=s, data_interval_end=e)
    assert (manual["year"], manual["start"], manual["end"], manual["aois"]) == (2025, None, None, None)
    assert extraction_scope({"year": 2024}, run_type="backfill", data_interval_start=s,
                            data_interval_end=e)["year"] == 2024


def test_marker_seasons_come_from_the_triggering_asset_event() -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from cbmflow.airflow_adapter import marker_seasons

    ev = SimpleNamespace(extra={"years": [2024], "aois": ["nl"]})
    ctx = {"triggering_asset_events": {"cbmflow_signatures": [ev]}, "logical_date": None,
           "dag_run": SimpleNamespace(logical_date=None, run_after=datetime(2026, 12, 7, tzinfo=UTC))}
    assert marker_seasons({}, ctx)[:2] == ([2024], ["nl"])
    ctx["triggering_asset_events"] = {}
    assert marker_seasons({}, ctx)[:2] == ([2026], None)
    assert marker_seasons({"year": 2023, "aoi": "x"}, ctx)[:2] == ([2023], ["x"])
