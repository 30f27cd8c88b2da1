"""Parcel file reading and validation on tiny hand-built files (no database)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, Polygon

from cbmflow.core.errors import InputError, NotFound
from cbmflow.parcels import store as parcels

SQUARE = Polygon([(500000, 5350000), (500100, 5350000), (500100, 5350100), (500000, 5350100)])
# A bowtie: the ring crosses itself at (500005, 5350005); make_valid gives two 50 m^2 triangles.
BOWTIE = Polygon([(500000, 5350000), (500010, 5350010), (500010, 5350000), (500000, 5350010)])


def _write(tmp_path: Path, rows: list[dict], name: str = "p.gpkg", crs: str | None = "EPSG:32633") -> Path:
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    path = tmp_path / name
    frame.to_file(path)
    return path


def _validate(tmp_path: Path, rows: list[dict]) -> parcels.Validation:
    path = _write(tmp_path, rows)
    frame = parcels.read_parcels_file(path, id_col="pid", crop_col="crop")
    return parcels.validate(frame, 32633)


# A square whose last vertex overshoots the first corner: a 1 m knot, repair changes the area 0.01 %.
KNOT = Polygon([(500000, 5350000), (500100, 5350000), (500100, 5350100), (500000, 5350100), (500001, 5349999)])


def test_small_self_intersection_is_repaired_and_reported(tmp_path: Path) -> None:
    v = _validate(tmp_path, [{"pid": "a", "crop": "1", "geometry": KNOT}])
    assert [(i.row, i.parcel_id, i.action) for i in v.issues] == [(1, "a", "repaired")]
    assert "Self-intersection" in v.issues[0].reason and "area change 0.01%" in v.issues[0].reason
    assert v.frame.geometry.iloc[0].geom_type == "MultiPolygon"
    assert v.frame.geometry.iloc[0].is_valid
    assert v.frame["area_m2"].iloc[0] == pytest.approx(9950.99, abs=0.01)


def test_bowtie_is_rejected_beyond_the_repair_tolerance(tmp_path: Path) -> None:
    # the bowtie's two lobes cancel in its signed area: a repair would invent 100 % of the area
    v = _validate(tmp_path, [{"pid": "a", "crop": "1", "geometry": BOWTIE}, {"pid": "b", "crop": "1", "geometry": SQUARE}])
    assert [(i.row, i.action) for i in v.issues] == [(1, "rejected")]
    assert "repair would change the area by 100.0% (tolerance 1.0%)" in v.issues[0].reason
    assert v.frame["parcel_id"].tolist() == ["b"]
    # a looser tolerance accepts it as two triangles
    frame = parcels.read_parcels_file(tmp_path / "p.gpkg", id_col="pid", crop_col="crop")
    loose = parcels.validate(frame, 32633, parcels.Rules(repair_tolerance=1.0))
    assert loose.repaired == 1 and loose.frame["area_m2"].iloc[0] == pytest.approx(50.0)


def test_null_point_and_duplicate_are_rejected_with_reasons(tmp_path: Path) -> None:
    rows = [
        {"pid": "a", "crop": "1", "geometry": SQUARE},
        {"pid": "b", "crop": "1", "geometry": None},
        {"pid": "c", "crop": "1", "geometry": Point(500000, 5350000)},
        {"pid": "a", "crop": "2", "geometry": SQUARE},
        {"pid": "d", "crop": "3", "geometry": LineString([(500000, 5350000), (500001, 5350001)])},
        {"pid": None, "crop": "3", "geometry": SQUARE},
    ]
    v = _validate(tmp_path, rows)
    assert [(i.row, i.parcel_id, i.action, i.reason) for i in v.issues] == [
        (2, "b", "rejected", "null or empty geometry"),
        (3, "c", "rejected", "non-polygon geometry (Point)"),
        (4, "a", "rejected", "duplicate parcel id; row 1 is kept"),
        (5, "d", "rejected", "non-polygon geometry (LineString)"),
        (6, None, "rejected", "missing parcel id"),
    ]
    assert v.frame["parcel_id"].tolist() == ["a"]
    assert v.frame["crop_code"].tolist() == ["1"]  # the first copy is kept
    assert v.frame["area_m2"].tolist() == [10000.0]
    assert v.read == len(v.frame) + v.rejected == 6


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_no_crs_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"pid": "a", "crop": "1", "geometry": SQUARE}], crs=None)
    with pytest.raises(InputError, match=r"p\.gpkg has no CRS"):
        parcels.read_parcels_file(path, id_col="pid", crop_col="crop")


def test_unknown_column_lists_the_available_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"pid": "a", "crop": "1", "geometry": SQUARE}])
    with pytest.raises(InputError) as err:
        parcels.read_parcels_file(path, id_col="pid", crop_col="CROP_CODE")
    assert "--crop-col column(s) CROP_CODE not found" in str(err.value)
    assert "available columns: fid, pid, crop" in str(err.value)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope.gpkg does not exist"):
        parcels.read_parcels_file(tmp_path / "nope.gpkg", id_col="a", crop_col="b")


def test_composite_id_and_numeric_codes(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"blok": "554258-40", "nr": "1-0", "code": 593.0, "geometry": SQUARE}])
    frame = parcels.read_parcels_file(path, id_col="blok,nr", crop_col="code")
    assert frame["parcel_id"].tolist() == ["554258-40-1-0"]
    assert frame["crop_code"].tolist() == ["593"]
    assert frame["row"].tolist() == [1]


def test_zipped_shapefile_and_geojson_and_geoparquet(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"ID": ["x", "y"], "crop:code": ["5", "6"]}, geometry=[SQUARE, BOWTIE], crs=32633)
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    frame.rename(columns={"crop:code": "CROP"}).to_file(shp_dir / "parcels.shp")
    zpath = tmp_path / "parcels.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in shp_dir.iterdir():
            z.write(f, f.name)
    got = parcels.read_parcels_file(zpath, id_col="ID", crop_col="CROP")
    assert got["parcel_id"].tolist() == ["x", "y"] and got.crs.to_epsg() == 32633
    frame.to_file(tmp_path / "p.geojson")
    got = parcels.read_parcels_file(tmp_path / "p.geojson", id_col="ID", crop_col="crop:code")
    assert got["crop_code"].tolist() == ["5", "6"]
    frame.to_parquet(tmp_path / "p.parquet")
    got = parcels.read_parcels_file(tmp_path / "p.parquet", id_col="ID", crop_col="crop:code")
    assert got["crop_code"].tolist() == ["5", "6"] and got.crs.to_epsg() == 32633


def test_reprojection_to_working_crs(tmp_path: Path) -> None:
    # 0.001 deg squares at the equator on 15E (UTM 33 central meridian): ~111.3 m x 110.6 m
    square = Polygon([(15.0, 0.0), (15.001, 0.0), (15.001, 0.001), (15.0, 0.001)])
    path = _write(tmp_path, [{"pid": "a", "crop": "1", "geometry": square}], crs="EPSG:4326")
    frame = parcels.read_parcels_file(path, id_col="pid", crop_col="crop")
    assert parcels.default_epsg(frame) == 32633
    v = parcels.validate(frame, 32633)
    minx, miny, _, _ = v.frame.total_bounds
    assert minx == pytest.approx(500000.0, abs=0.01) and miny == pytest.approx(0.0, abs=0.01)
    assert v.frame["area_m2"].iloc[0] == pytest.approx(111.277 * 110.574 * 0.9996**2, rel=1e-3)


def test_utm_zone_choice() -> None:
    assert parcels.utm_epsg(15.0, 48.3) == 32633
    assert parcels.utm_epsg(9.5, 55.9) == 32632
    assert parcels.utm_epsg(-70.6, -33.4) == 32719
    assert parcels.utm_epsg(179.99, 10) == 32660


def test_report_lists_every_issue(tmp_path: Path) -> None:
    issues = [parcels.ParcelIssue(3, "c", "rejected", "non-polygon geometry (Point)")]
    out = parcels.write_report(issues, str(tmp_path / "r" / "report.csv"))
    assert Path(out).read_text() == "row,parcel_id,action,reason\n3,c,rejected,non-polygon geometry (Point)\n"


def test_m_values_are_dropped_and_missing_crs_names_the_fix(tmp_path: Path) -> None:
    import shapely

    frame = gpd.GeoDataFrame(
        {"row": [1], "parcel_id": ["m"], "crop_code": ["1"], "crop_name": [None]},
        geometry=[shapely.from_wkt("POLYGON M ((500000 5350000 1, 500100 5350000 2, 500100 5350100 3, "
                                   "500000 5350100 4, 500000 5350000 1))")],
        crs=32633,
    )
    v = parcels.validate(frame, 32633)
    assert [(i.action, i.reason) for i in v.issues] == [("repaired", "M coordinates dropped (parcels are 2D)")]
    assert not shapely.has_m(v.frame.geometry.iloc[0]) and v.frame["area_m2"].iloc[0] == 10000.0
    with pytest.raises(InputError, match=r"has no CRS; assign the CRS .* ogr2ogr -a_srs EPSG:25832 fixed\.gpkg"):
        parcels.read_parcels_file(_write(tmp_path, [{"pid": "a", "crop": "1", "geometry": SQUARE}], crs=None),
                                  id_col="pid", crop_col="crop")
