"""Runs made with dag.test() (the demo's way) leave their task logs where the api-server reads them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def test_dag_test_runs_write_task_logs_the_ui_can_read(clean_db: str, airflow_db: str, shared_data: Path,
                                                       tmp_path: Path) -> None:
    from airflow.configuration import conf
    from airflow.utils.log.file_task_handler import FileTaskHandler, StructuredLogMessage

    from cbmflow import airflow_adapter

    dr = airflow_adapter.test_dag("import_parcels", {
        "file": str(shared_data / "parcels" / "at_schlaege_2025.gpkg.zip"), "aoi": "logs", "year": 2025,
        "id_col": "GEO_ID", "crop_col": "SNAR_CODE", "crop_name_col": "SNAR_BEZEICHNUNG",
        "report": str(tmp_path / "report.csv"),
    }, dags_folder=str(ROOT / "dags"))
    ti = next(t for t in dr.get_task_instances() if t.task_id == "import_file")
    # the file Airflow's own log reader opens for this task instance
    handler = FileTaskHandler(base_log_folder=conf.get("logging", "base_log_folder"))
    expected = os.path.join(conf.get("logging", "base_log_folder"), handler._render_filename(ti, ti.try_number))
    path = airflow_adapter.task_log_path(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)
    assert path == expected and os.path.exists(path)
    lines = [StructuredLogMessage.model_validate_json(line) for line in Path(path).read_text().splitlines()]
    events = [m.event for m in lines]
    assert any("started in-process" in e for e in events), events
    assert any("ended success" in e for e in events), events
    assert any("logs" in e and "parcel" in e.lower() for e in events), events  # cbmflow's own lines
    assert all(m.timestamp is not None for m in lines)
