"""Broken variants of the real shared parcel files: every rejected row is named, wrong CRSs stop the import."""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Polygon

from cbmflow import cli
from cbmflow.core.errors import InputError
from cbmflow.parcels import store as parcels

pytestmark = pytest.mark.integration

AT = "at_schlaege_2025.gpkg.zip"
AT_KW = dict(aoi="at", year=2025, id_col="GEO_ID", crop_col="SNAR_CODE")


def _at(shared_data: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(shared_data / "parcels" / AT)


def _report(path: str) -> list[tuple[int, str, str, str]]:
    with open(path, newline="") as f:
        return [(int(r["row"]), r["parcel_id"], r["action"], r["reason"]) for r in csv.DictReader(f)]


def _save(frame: gpd.GeoDataFrame, tmp_path: Path, name: str = "broken.gpkg") -> Path:
    path = tmp_path / name
    frame.to_file(path)
    return path


def _spike_through(poly: Polygon, far: float) -> Polygon:
    """The ring with one vertex thrown ``far`` metres beyond the far side of the parcel (crosses itself)."""
    c = np.asarray(poly.exterior.coords)[:-1]
    centre = np.asarray(poly.centroid.coords[0])
    direction = (centre - c[0]) / np.linalg.norm(centre - c[0])
    tip = centre + direction * far
    return Polygon(np.vstack([c[:1], [tip], c[1:]]))


def _stray_vertex(poly: Polygon, far: float) -> Polygon:
    """The ring with one vertex moved ``far`` metres west (the spike does not cross the parcel)."""
    c = np.asarray(poly.exterior.coords)[:-1]
    west = int(np.argmin(c[:, 0]))
    stray = c[west] + np.array([-far, 0.0])
    return Polygon(np.vstack([c[: west + 1], [stray], c[west + 1:]]))


def test_broken_variants_of_a_real_file_are_each_named_in_the_report(conn, shared_data: Path, tmp_path: Path) -> None:
    at = _at(shared_data)
    ids = [parcels.cell_text(v) for v in at["GEO_ID"].tolist()]
    g = list(at.geometry.values)
    x0, y0 = g[2].exterior.coords[0]
    g[2] = Polygon([(x0, y0), (x0 + 10, y0), (x0 + 20, y0)])  # zero area: every vertex on a line
    g[4] = _spike_through(g[4], 30_000.0)  # self-intersecting 30 km spike
    g[6] = _stray_vertex(g[6], 4_000_000.0)  # one vertex 4,000 km west (it used to pick UTM zone 23N)
    g[8] = shapely.affinity.scale(g[8], 0.005, 0.005)  # < 1 m2
    g[10] = shapely.affinity.scale(g[10], 40, 40)  # ~3,900 ha
    g[12] = LineString(list(g[12].exterior.coords))  # non-polygon
    g[14] = Polygon()  # empty
    g[16] = Polygon(list(g[16].exterior.coords)[::-1])  # clockwise ring: normalised, not reported
    g[18] = Polygon([(x0, y0), (x0 + 100, y0), (x0 + 100, y0 + 100), (x0, y0 + 100), (x0 + 1, y0 - 1)])  # 1 m knot
    broken = at.copy()
    broken["geometry"] = g
    broken.loc[20, "GEO_ID"] = broken.loc[21, "GEO_ID"]  # duplicate id
    broken.loc[22, "GEO_ID"] = None  # missing id
    path = _save(broken, tmp_path)
    result = parcels.import_parcels(conn, path, report_path=str(tmp_path / "r.csv"), **AT_KW)  # type: ignore[arg-type]

    report = _report(result.report_path)
    got = {(row, action): reason for row, _, action, reason in report}
    assert sorted(got) == [
        (3, "rejected"), (5, "rejected"), (7, "rejected"), (9, "rejected"), (11, "rejected"), (13, "rejected"),
        (15, "rejected"), (19, "repaired"), (22, "rejected"), (23, "rejected"),
    ]
    assert got[(3, "rejected")].startswith("zero area")
    assert "repair would change the area by" in got[(5, "rejected")]
    assert "above the maximum of 1,000 ha" in got[(7, "rejected")]
    assert "below the minimum of 1 m2" in got[(9, "rejected")]
    assert "ha above the maximum of 1,000 ha" in got[(11, "rejected")]
    assert got[(13, "rejected")] == "non-polygon geometry (LineString)"
    assert got[(15, "rejected")] == "null or empty geometry"
    assert "repaired with make_valid" in got[(19, "repaired")]
    assert got[(22, "rejected")] == "duplicate parcel id; row 21 is kept"
    assert got[(23, "rejected")] == "missing parcel id"
    ids_in_report = {row: pid for row, pid, _, _ in report}
    assert ids_in_report[3] == ids[2] and ids_in_report[7] == ids[6]
    # the stray vertex no longer moves the working CRS: UTM 33N from the median centre
    assert (result.epsg, result.read, result.accepted, result.rejected, result.repaired) == (32633, 100, 91, 9, 1)
    assert result.oriented == 2  # the clockwise ring and the repaired knot (make_valid's output is clockwise)
    area16 = conn.execute("SELECT area_m2, ST_IsValid(geom) FROM parcels WHERE parcel_id = %s", (ids[16],)).fetchone()
    assert area16[0] == pytest.approx(at.geometry.iloc[16].area, rel=2e-3) and area16[1]


def test_z_coordinates_are_dropped_and_reported(conn, shared_data: Path, tmp_path: Path) -> None:
    at = _at(shared_data).head(5)
    at["geometry"] = shapely.force_3d(np.asarray(at.geometry.values), z=250.0)
    path = _save(at, tmp_path, "z.gpkg")
    assert gpd.read_file(path).geometry.has_z.all()
    result = parcels.import_parcels(conn, path, report_path=str(tmp_path / "z.csv"), **AT_KW)  # type: ignore[arg-type]
    assert (result.accepted, result.repaired, result.rejected) == (5, 5, 0)
    assert {r[3] for r in _report(result.report_path)} == {"Z coordinates dropped (parcels are 2D)"}
    assert conn.execute("SELECT bool_and(ST_NDims(geom) = 2) FROM parcels").fetchone()[0] is True


def test_duplicates_of_a_real_file_name_the_kept_row(conn, shared_data: Path, tmp_path: Path) -> None:
    at = _at(shared_data)
    doubled = gpd.GeoDataFrame(
        __import__("pandas").concat([at, at.iloc[[0, 1]]], ignore_index=True), crs=at.crs)
    result = parcels.import_parcels(conn, _save(doubled, tmp_path), report_path=str(tmp_path / "d.csv"), **AT_KW)  # type: ignore[arg-type]
    assert [(r[0], r[2], r[3]) for r in _report(result.report_path)] == [
        (101, "rejected", "duplicate parcel id; row 1 is kept"), (102, "rejected", "duplicate parcel id; row 2 is kept")]
    assert result.accepted == 100


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("EPSG:4326", "are not degrees, but the file's CRS label is EPSG:4326"),
        ("EPSG:25832", "100 of 100 parcels lie outside the area of use of the file's CRS label EPSG:25832"),
        ("EPSG:2154", "100 of 100 parcels lie outside the area of use of the file's CRS label EPSG:2154"),
    ],
)
def test_wrong_crs_label_stops_the_import(conn, shared_data: Path, tmp_path: Path, label: str, message: str) -> None:
    at = _at(shared_data).set_crs(label, allow_override=True)
    with pytest.raises(InputError, match=message):
        parcels.import_parcels(conn, _save(at, tmp_path), report_path=str(tmp_path / "w.csv"), **AT_KW)  # type: ignore[arg-type]
    assert conn.execute("SELECT count(*) FROM parcels").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM aois").fetchone()[0] == 0


def test_degrees_labelled_as_metres_have_zero_areas_and_stop(conn, shared_data: Path, tmp_path: Path) -> None:
    at = _at(shared_data).to_crs(4326).set_crs(32633, allow_override=True)  # (15.0, 48.3) read as metres
    with pytest.raises(InputError, match=r"median parcel area in EPSG:3263\d is .* m2 .*CRS label \(EPSG:32633\) is "
                                         r"probably wrong"):
        parcels.import_parcels(conn, _save(at, tmp_path), report_path=str(tmp_path / "w.csv"), **AT_KW)  # type: ignore[arg-type]
    assert conn.execute("SELECT count(*) FROM parcels").fetchone()[0] == 0


def test_distorting_and_geographic_working_crs_are_refused(conn, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "parcels" / AT
    with pytest.raises(InputError, match=r"EPSG:3857 .* distorts parcel areas over this AOI by up to x2\.2\d"):
        parcels.import_parcels(conn, path, epsg=3857, report_path=str(tmp_path / "a.csv"), **AT_KW)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"EPSG:4326 \(WGS 84\) is geographic"):
        parcels.import_parcels(conn, path, epsg=4326, report_path=str(tmp_path / "a.csv"), **AT_KW)  # type: ignore[arg-type]
    # a national CRS with negligible distortion is fine: Austria Lambert
    ok = parcels.import_parcels(conn, path, epsg=31287, report_path=str(tmp_path / "a.csv"), **AT_KW)  # type: ignore[arg-type]
    assert (ok.epsg, ok.accepted) == (31287, 100)


def test_cli_wrong_label_and_3857_exit_non_zero_with_one_line(clean_db: str, shared_data: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    at = _at(shared_data).set_crs("EPSG:25832", allow_override=True)
    path = _save(at, tmp_path)
    argv = ["parcels", "import", str(path), "--aoi", "at", "--year", "2025", "--id-col", "GEO_ID",
            "--crop-col", "SNAR_CODE", "--report", str(tmp_path / "c.csv")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CRS label is probably wrong" in err[0]
    argv[2] = str(shared_data / "parcels" / AT)
    assert cli.main([*argv, "--epsg", "3857"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "distorts parcel areas" in err[0] and "EPSG:32633" in err[0]
    # bounds are configurable from the command line: 4 AT parcels are smaller than 100 m2
    assert cli.main([*argv, "--min-area-m2", "100"]) == 0
    out = capsys.readouterr().out
    assert "rejected 4\n" in out
    assert "below the minimum of 100 m2" in (tmp_path / "c.csv").read_text()


def test_aoi_spanning_two_utm_zones_warns(conn, shared_data: Path, tmp_path: Path) -> None:
    result = parcels.import_parcels(
        conn, shared_data / "parcels" / "nl_brp_2023.gpkg", aoi="nl", year=2023, id_col="id",
        crop_col="gewascode", report_path=str(tmp_path / "nl.csv"))
    assert result.epsg == 32631
    assert result.warnings == (
        "the parcels span 2 UTM zones (EPSG:32631 54, EPSG:32632 46 parcels); working in EPSG:32631, "
        "the zone of their median centre (5.951, 52.116)",)
