"""The pandas-free parcel reader (`cbmflow.parcels.vector`): same ids, shapes, order and CRS as the general one."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.crs import CRS
from shapely.geometry import Polygon, box

from cbmflow.core.errors import InputError, NotFound
from cbmflow.parcels import vector
from cbmflow.parcels.store import read_vector


@pytest.mark.parametrize("name,id_col", [("dk_marker_2026.gpkg", "fid"), ("nl_brp_2023.gpkg", "id")])
def test_real_geopackages_read_as_the_general_reader_does(shared_data: Path, name: str, id_col: str) -> None:
    path = shared_data / "parcels" / name
    fast = vector._read_gpkg(path, id_col)
    assert fast is not None, "a single-layer GeoPackage takes the sqlite3 path"
    ref = read_vector(path)
    assert fast.ids.tolist() == ref[id_col].tolist()
    assert fast.ids.dtype == np.asarray(ref[id_col]).dtype
    want = np.asarray(ref.geometry.values, dtype=object)
    assert bool(np.all(shapely.equals_exact(fast.geoms, want, tolerance=0) | (shapely.is_missing(fast.geoms)
                                                                             & shapely.is_missing(want))))
    assert CRS.from_user_input(fast.crs) == CRS.from_user_input(ref.crs.to_wkt())
    assert set(fast.columns) == {str(c) for c in ref.columns if c != ref.geometry.name}


def test_null_and_empty_geometries_and_text_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    frame = gpd.GeoDataFrame({"code": ["a", "b", "c"]},
                             geometry=[box(0, 0, 10, 10), None, Polygon()], crs="EPSG:32633")
    frame.to_file(path, driver="GPKG")
    got = vector.read_shapes(path, "code")
    assert got.ids.tolist() == ["a", "b", "c"]
    assert got.geoms[0].equals(box(0, 0, 10, 10))
    assert got.geoms[1] is None
    assert got.geoms[2].is_empty
    assert got.crs == "EPSG:32633"


def test_several_layers_go_through_the_general_reader(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "two.gpkg"
    gpd.GeoDataFrame({"pid": [7]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:3035").to_file(path, layer="fields")
    gpd.GeoDataFrame({"pid": [8]}, geometry=[shapely.Point(0, 0)], crs="EPSG:3035").to_file(path, layer="wells")
    assert vector._read_gpkg(path, "pid") is None
    got = vector.read_shapes(path, "pid")
    assert got.ids.tolist() == [7]  # the polygon layer, as `parcels import` chooses
    assert "2 layers" in caplog.text


def test_null_ids_go_through_the_general_reader(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"pid": [1.0, None]}, geometry=[box(0, 0, 1, 1), box(1, 1, 2, 2)],
                     crs="EPSG:3035").to_file(path)
    assert vector._read_gpkg(path, "pid") is None
    got = vector.read_shapes(path, "pid")
    assert len(got) == 2 and np.isnan(got.ids[1])


def test_missing_column_and_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"pid": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:3035").to_file(path)
    with pytest.raises(InputError, match=r"no column 'parcel'.*available: fid, pid"):
        vector.read_shapes(path, "parcel")
    with pytest.raises(NotFound, match="nope.gpkg does not exist"):
        vector.read_shapes(tmp_path / "nope.gpkg", "pid")


def test_a_corrupt_geometry_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"pid": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:3035").to_file(path)
    with sqlite3.connect(path) as con:
        con.execute("DROP TRIGGER IF EXISTS rtree_p_geom_update1")
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            con.execute(f'DROP TRIGGER "{name}"')
        con.execute("UPDATE p SET geom = ?", (b"GP\x00\x00\xe6\x10\x00\x00garbage",))
    with pytest.raises(InputError, match=r"p\.gpkg: a geometry is not valid WKB"):
        vector.read_shapes(path, "pid")


def test_cli_extract_cold_path_loads_no_pandas(tmp_path: Path) -> None:
    """`cbmflow extract` of a GeoPackage to Parquet imports neither pandas, geopandas, psycopg nor boto3."""
    import rasterio
    from rasterio.transform import from_origin

    raster = tmp_path / "r.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(0, 40, 10, 10)) as dst:
        dst.write(np.arange(16, dtype=np.float32).reshape(4, 4), 1)
    parcels = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"pid": [5, 6]}, geometry=[box(0, 20, 20, 40), box(20, 0, 40, 20)],
                     crs="EPSG:32633").to_file(parcels)
    out = tmp_path / "o.parquet"
    code = (
        "import sys\nfrom cbmflow.cli.parser import main\n"
        f"rc = main(['extract', '--raster', {str(raster)!r}, '--parcels', {str(parcels)!r}, '--id-col', 'pid',"
        f" '--out', {str(out)!r}])\n"
        "print(sorted(m for m in ('pandas', 'geopandas', 'psycopg', 'boto3', 'pyproj') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout
    import pandas as pd

    df = pd.read_parquet(out).set_index("parcel_id")
    # parcel 5: rows 0-1, cols 0-1 -> 0, 1, 4, 5; parcel 6: rows 2-3, cols 2-3 -> 10, 11, 14, 15
    assert df.loc[5, "mean"] == pytest.approx(2.5) and df.loc[6, "mean"] == pytest.approx(12.5)
    assert df["count"].tolist() == [4, 4] and df["band"].tolist() == ["1", "1"]
    assert str(df["count"].dtype) == "int32" and str(df["p50"].dtype) == "float32"


def test_text_column_buffers() -> None:
    from cbmflow.cli.extract import _arrow_column

    col = _arrow_column(np.array(["VV", "", "Ä-é"], dtype=object))
    assert col.to_pylist() == ["VV", "", "Ä-é"]
    assert _arrow_column(np.array(["a", None], dtype=object)).to_pylist() == ["a", None]
    assert _arrow_column(np.array([1.5, 2.5], dtype=np.float32)).to_pylist() == [1.5, 2.5]


@pytest.mark.parametrize("buffer", [0.0, 6.0])
def test_shapes_in_another_crs_give_the_frame_path_result(tmp_path: Path, buffer: float) -> None:
    """Shapes in EPSG:4326 over a UTM raster: reprojected (and buffered in metres) as a GeoDataFrame is."""
    import rasterio
    from rasterio.transform import from_origin

    from cbmflow.extract import zonal

    raster = tmp_path / "r.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=40, height=40, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(500000, 6000400, 10, 10)) as dst:
        dst.write(np.arange(1600, dtype=np.float32).reshape(40, 40), 1)
    utm = gpd.GeoDataFrame({"pid": [1, 2]}, geometry=[box(500020, 6000100, 500200, 6000300),
                                                      box(500210, 6000010, 500390, 6000390)], crs="EPSG:32633")
    geo = utm.to_crs("EPSG:4326")
    shapes = vector.Shapes(ids=np.array([1, 2]), geoms=np.asarray(geo.geometry.values, dtype=object),
                           crs="EPSG:4326")
    res, ids = zonal.extract_result(str(raster), shapes, id_col="pid", buffer=buffer)
    want = zonal.extract_stats(str(raster), geo, id_col="pid", buffer=buffer).set_index("parcel_id")
    assert ids.tolist() == want.index.tolist() == [1, 2]
    assert res.count.tolist() == want["count"].tolist()
    assert np.allclose(res.mean, want["mean"])
    assert res.count[0] == (16 * 18 if buffer else 18 * 20)  # 6 m in: one pixel centre row/column less each side
