"""Parcel import into the real PostGIS: every shared file, idempotence, upserts, loading."""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon

from cbmflow import cli
from cbmflow.core import storage
from cbmflow.core.errors import InputError, NotFound
from cbmflow.parcels import store as parcels

pytestmark = pytest.mark.integration

# (file, aoi, year, id_col, crop_col, crop_name_col)
SHARED_FILES = {
    "at": ("at_schlaege_2025.gpkg.zip", "at", 2025, "GEO_ID", "SNAR_CODE", "SNAR_BEZEICHNUNG"),
    "dk_fiboa": ("dk_2024_fiboa.parquet", "dk", 2024, "id", "crop:code", "crop:name"),
    "dk_marker": ("dk_marker_2026.gpkg", "dk", 2026, "Markblok,Marknr", "Afgkode", "Afgroede"),
    "nl": ("nl_brp_2023.gpkg", "nl", 2023, "id", "gewascode", "gewas"),
}


def _import(conn, shared_data: Path, key: str, tmp_path: Path) -> parcels.ImportResult:
    name, aoi, year, id_col, crop_col, name_col = SHARED_FILES[key]
    return parcels.import_parcels(
        conn, shared_data / "parcels" / name, aoi=aoi, year=year, id_col=id_col,
        crop_col=crop_col, crop_name_col=name_col, report_path=str(tmp_path / f"{key}.csv"),
    )


def _report(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_shared_parcel_file_imports_with_a_report(conn, shared_data: Path, tmp_path: Path) -> None:
    at = _import(conn, shared_data, "at", tmp_path)
    assert (at.read, at.accepted, at.repaired, at.rejected, at.new, at.epsg) == (100, 100, 0, 0, 100, 32633)
    assert _report(at.report_path) == []

    fiboa = _import(conn, shared_data, "dk_fiboa", tmp_path)
    # the fiboa file repeats 6 field ids (farm ids were removed): later copies are rejected
    assert (fiboa.read, fiboa.accepted, fiboa.rejected, fiboa.epsg) == (100, 93, 7, 32632)
    rows = _report(fiboa.report_path)
    assert [(r["row"], r["parcel_id"], r["action"]) for r in rows] == [
        ("53", "25-0", "rejected"), ("55", "21-0", "rejected"), ("57", "22-0", "rejected"),
        ("58", "20-0", "rejected"), ("76", "1-0", "rejected"), ("87", "1-0", "rejected"),
        ("100", "70-0", "rejected"),
    ]
    assert rows[0]["reason"] == "duplicate parcel id; row 1 is kept"

    marker = _import(conn, shared_data, "dk_marker", tmp_path)
    assert (marker.accepted, marker.rejected, marker.epsg) == (100, 0, 32632)
    nl = _import(conn, shared_data, "nl", tmp_path)
    assert (nl.accepted, nl.rejected, nl.epsg) == (100, 0, 32631)
    assert conn.execute("SELECT count(*) FROM parcels WHERE aoi = 'nl' AND crop_name = 'Sloot'").fetchone()[0] == 43

    # composite ids, crop codes as text, geometry stored as MultiPolygon with the AOI's SRID
    row = conn.execute(
        "SELECT crop_code, crop_name, ST_SRID(geom), GeometryType(geom), ST_IsValid(geom) "
        "FROM parcels WHERE aoi = 'dk' AND year = 2026 AND parcel_id = '554258-40-1-0'"
    ).fetchone()
    assert row == ("593", "Poppel", 32632, "MULTIPOLYGON", True)
    assert conn.execute("SELECT count(*) FROM aois").fetchone()[0] == 3
    # area in the working CRS agrees with the declared gross area (1.33547297 ha) to 0.1 %
    at_area = conn.execute(
        "SELECT area_m2 FROM parcels WHERE aoi = 'at' AND parcel_id = '106806035'"
    ).fetchone()[0]
    assert at_area == pytest.approx(13354.7297, rel=1e-3)


def test_reimport_changes_nothing(conn, shared_data: Path, tmp_path: Path) -> None:
    first = _import(conn, shared_data, "at", tmp_path)
    before = conn.execute("SELECT pid, parcel_id, imported_at FROM parcels ORDER BY pid").fetchall()
    again = _import(conn, shared_data, "at", tmp_path)
    after = conn.execute("SELECT pid, parcel_id, imported_at FROM parcels ORDER BY pid").fetchall()
    assert (again.new, again.updated, again.unchanged) == (0, 0, 100)
    assert before == after
    assert first.parcels_version == again.parcels_version == parcels.get_aoi(conn, "at").parcels_version == 1


def _square(x: float, y: float, size: float = 100.0) -> Polygon:
    return Polygon([(x, y), (x + size, y), (x + size, y + size), (x, y + size)])


def test_changed_crop_and_new_parcel_update_and_bump_version(conn, tmp_path: Path) -> None:
    path = tmp_path / "p.geojson"
    gpd.GeoDataFrame(
        {"id": ["a", "b"], "crop": ["1", "2"]}, geometry=[_square(500000, 5350000), _square(500200, 5350000)],
        crs=32633,
    ).to_file(path)
    kw = dict(aoi="t", year=2025, id_col="id", crop_col="crop", report_path=str(tmp_path / "r.csv"))
    first = parcels.import_parcels(conn, path, **kw)
    assert (first.new, first.parcels_version, first.epsg) == (2, 1, 32633)
    pids = dict(conn.execute("SELECT parcel_id, pid FROM parcels").fetchall())

    gpd.GeoDataFrame(
        {"id": ["a", "b", "c"], "crop": ["1", "9", "3"]},
        geometry=[_square(500000, 5350000), _square(500200, 5350000), _square(500400, 5350000, 50)],
        crs=32633,
    ).to_file(path)
    second = parcels.import_parcels(conn, path, **kw)
    assert (second.new, second.updated, second.unchanged, second.parcels_version) == (1, 1, 1, 2)
    got = parcels.load_parcels(conn, "t", 2025)
    assert got["parcel_id"].tolist() == ["a", "b", "c"]
    assert got["crop_code"].tolist() == ["1", "9", "3"]
    assert got["pid"].tolist()[:2] == [pids["a"], pids["b"]]  # pids are stable
    assert got["area_m2"].tolist() == [10000.0, 10000.0, 2500.0]
    assert got.crs.to_epsg() == 32633

    # bbox filter (AOI CRS) picks only the parcel it touches
    sub = parcels.load_parcels(conn, "t", 2025, bbox=(500410, 5350010, 500420, 5350020))
    assert sub["parcel_id"].tolist() == ["c"]
    # geometry change alone is an update too
    gpd.GeoDataFrame({"id": ["c"], "crop": ["3"]}, geometry=[_square(500400, 5350000, 60)], crs=32633).to_file(path)
    third = parcels.import_parcels(conn, path, **kw)
    assert (third.updated, third.parcels_version) == (1, 3)
    assert parcels.load_parcels(conn, "t", 2025)["area_m2"].tolist() == [10000.0, 10000.0, 3600.0]


def test_aoi_epsg_conflict_and_unknown_aoi(conn, shared_data: Path, tmp_path: Path) -> None:
    _import(conn, shared_data, "at", tmp_path)
    with pytest.raises(InputError, match="already works in EPSG:32633"):
        parcels.import_parcels(
            conn, shared_data / "parcels" / "at_schlaege_2025.gpkg.zip", aoi="at", year=2025,
            id_col="GEO_ID", crop_col="SNAR_CODE", epsg=31287, report_path=str(tmp_path / "x.csv"),
        )
    with pytest.raises(NotFound, match="AOI 'xx' does not exist; known AOIs: at"):
        parcels.load_parcels(conn, "xx", 2025)


def test_import_from_s3_with_report_in_s3(conn, shared_data: Path, s3_bucket: str) -> None:
    src = storage.upload(shared_data / "parcels" / "nl_brp_2023.gpkg", f"{s3_bucket}/in/nl.gpkg")
    result = parcels.import_parcels(
        conn, src, aoi="nl", year=2023, id_col="id", crop_col="gewascode",
        report_path=f"{s3_bucket}/reports/nl.csv",
    )
    assert result.accepted == 100
    assert storage.read_bytes(f"{s3_bucket}/reports/nl.csv") == b"row,parcel_id,action,reason\n"
    with pytest.raises(NotFound):
        parcels.import_parcels(conn, "s3://no-such-bucket-cbm/x.gpkg", aoi="nl", year=2023,
                               id_col="id", crop_col="gewascode")


def test_cli_import_and_list_columns(clean_db: str, shared_data: Path, tmp_path: Path, capsys) -> None:
    path = str(shared_data / "parcels" / "nl_brp_2023.gpkg")
    assert cli.main(["parcels", "list-columns", path]) == 0
    assert "gewascode\tint32\t343" in capsys.readouterr().out
    report = tmp_path / "rep.csv"
    argv = ["parcels", "import", path, "--aoi", "nl", "--year", "2023", "--id-col", "id",
            "--crop-col", "gewascode", "--crop-name-col", "gewas", "--report", str(report)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "read 100\nimported 100 (new 100, updated 0, unchanged 0)\nrepaired 0\nrejected 0\n" in out
    assert report.exists()
    assert cli.main(argv[:-6] + ["--id-col", "nope", "--crop-col", "gewascode"]) == 2
    err = capsys.readouterr().err
    assert "--id-col column(s) nope not found; available columns: id, category, gewas, gewascode, jaar, status" in err


@pytest.mark.system
def test_import_parcels_dag(airflow_db: str, clean_db: str, shared_data: Path, tmp_path: Path) -> None:
    """The import_parcels DAG imports a file end to end with dag.test() (system tier)."""
    import importlib.util

    from cbmflow.core.config import project_root

    spec = importlib.util.spec_from_file_location("import_parcels_dag", project_root() / "dags" / "import_parcels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.import_parcels()
    conf = {"file": str(shared_data / "parcels" / "dk_marker_2026.gpkg"), "aoi": "dk", "year": 2026,
            "id_col": "Markblok,Marknr", "crop_col": "Afgkode", "crop_name_col": "Afgroede",
            "report": str(tmp_path / "dag-report.csv")}
    dr = dag.test(run_conf=conf)
    assert dr.state == "success", [ti.task_id for ti in dr.get_task_instances() if ti.state != "success"]
    import psycopg

    with psycopg.connect(clean_db) as c:
        assert c.execute("SELECT count(*), min(crop_code) FROM parcels WHERE aoi = 'dk' AND year = 2026").fetchone() == (100, "1")
    assert (tmp_path / "dag-report.csv").read_text() == "row,parcel_id,action,reason\n"
    # bad input fails the run (no retry): unknown column
    dr = dag.test(run_conf=dict(conf, id_col="nope"))
    assert dr.state == "failed"


def test_seasons_with_parcels_lists_aoi_years_that_hold_parcels(conn, tmp_path: Path) -> None:
    path = tmp_path / "s.geojson"
    gpd.GeoDataFrame({"id": ["a"], "crop": ["1"]}, geometry=[_square(500000, 5350000)], crs=32633).to_file(path)
    for aoi, year in (("north", 2024), ("north", 2025), ("south", 2025)):
        parcels.import_parcels(conn, path, aoi=aoi, year=year, id_col="id", crop_col="crop",
                               report_path=str(tmp_path / f"{aoi}{year}.csv"))
    assert parcels.seasons_with_parcels(conn, [2025]) == [("north", 2025), ("south", 2025)]
    assert parcels.seasons_with_parcels(conn, [2024, 2025], ["north"]) == [("north", 2024), ("north", 2025)]
    assert parcels.seasons_with_parcels(conn, [2023]) == []
    assert parcels.seasons_with_parcels(conn, [2025], ["nowhere"]) == []
