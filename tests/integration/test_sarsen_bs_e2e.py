"""End to end: sarsen CARD-BS from the real S1B GRD SAFE near Rome and its 30 m DEM.

The SAFE's metadata (orbit, annotation, calibration) is real but its measurement pixels are a
constant dummy, so these tests check the grid, CRS, footprint, nodata and metadata - not values.
Coarse grids (60 m, 90 m) keep each sarsen run to seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from shapely import wkt as shapely_wkt
from shapely.geometry import box

from cbmflow.card import backscatter as sarsen_bs
from cbmflow.core import storage
from cbmflow.core.cog import is_cog

pytestmark = pytest.mark.integration

PID = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371"


@pytest.fixture(scope="module")
def inputs(shared_data: Path) -> tuple[Path, Path]:
    d = shared_data / "s1" / "sarsen_grd"
    return d / f"{PID}.SAFE", d / "Rome-30m-DEM.tif"


@pytest.fixture(scope="module")
def local_run(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    safe, dem = inputs
    out = tmp_path_factory.mktemp("card") / "bs" / "2021" / "12" / "23"
    # the dummy measurement is DN 0 everywhere, which is GRD no-data by default: keep it as 0.0
    # here so that the valid/no-data pattern shows the swath and the DEM
    result = sarsen_bs.sarsen_backscatter(safe, dem, out_uri=str(out), epsg=32633, resolution=60.0,
                                          zero_is_nodata=False)
    return out, result


def _pixel_centres_lonlat(src: Any) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:src.height, 0:src.width]
    xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
    lon, lat = warp_transform(src.crs, "EPSG:4326", xs, ys)
    return np.asarray(lon).reshape(rows.shape), np.asarray(lat).reshape(rows.shape)


def test_writes_one_cog_per_band_under_deterministic_key(local_run: tuple[Path, dict[str, str]]) -> None:
    out, result = local_run
    assert result == {"VV": str(out / f"{PID}_VV.tif")}
    assert sorted(p.name for p in out.iterdir()) == [f"{PID}_VV.tif"]
    assert is_cog(result["VV"])


def test_grid_crs_dtype_nodata(local_run: tuple[Path, dict[str, str]],
                               inputs: tuple[Path, Path]) -> None:
    _, result = local_run
    with rasterio.open(result["VV"]) as src:
        assert src.crs.to_epsg() == 32633
        assert src.res == (60.0, 60.0)
        assert src.transform.e < 0  # north-up
        assert src.transform.c % 60 == 0 and src.transform.f % 60 == 0  # on the fixed AOI grid
        assert (src.count, src.dtypes[0]) == (1, "float32")
        assert np.isnan(src.nodata)
        assert src.descriptions == ("VV",)
        assert src.overviews(1) or max(src.width, src.height) <= 512
        # grid = the DEM's extent projected to UTM 33N, snapped outwards to 60 m
        with rasterio.open(inputs[1]) as dem:
            dl, db, dr, dt = transform_bounds(dem.crs, "EPSG:32633", *dem.bounds, densify_pts=21)
        b = src.bounds
        assert b.left <= dl < b.left + 60 and b.top - 60 < dt <= b.top
        assert b.right - 60 < dr <= b.right and b.bottom <= db < b.bottom + 60


def test_footprint_and_nodata(local_run: tuple[Path, dict[str, str]], inputs: tuple[Path, Path]) -> None:
    safe, dem_path = inputs
    _, result = local_run
    footprint = shapely_wkt.loads(sarsen_bs.read_safe(safe).footprint_wkt)
    with rasterio.open(dem_path) as dem:
        dem_box = box(*dem.bounds)  # EPSG:4326 (lon/lat)
    half = 30 / 111_000 * 2  # one 60 m pixel in degrees, with margin
    with rasterio.open(result["VV"]) as src:
        data = src.read(1)
        out_box = box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
        lon, lat = _pixel_centres_lonlat(src)
    assert out_box.intersects(footprint) and out_box.intersects(dem_box)
    valid = np.isfinite(data)
    assert valid.any() and (~valid).any()
    # every value lies inside both the SAFE footprint and the DEM
    assert shapely.contains_xy(footprint, lon[valid], lat[valid]).all()
    assert shapely.contains_xy(dem_box.buffer(half), lon[valid], lat[valid]).all()
    # outside the DEM there is no data ...
    assert not valid[~shapely.contains_xy(dem_box.buffer(half), lon, lat)].any()
    # ... and well inside it (which is inside the swath) every pixel has a value
    inner = shapely.contains_xy(dem_box.buffer(-half), lon, lat)
    assert inner.sum() > data.size // 2 and valid[inner].all()
    assert (data[valid] >= 0).all()  # linear backscatter, not dB


def test_provenance_tags(local_run: tuple[Path, dict[str, str]], inputs: tuple[Path, Path]) -> None:
    import sarsen

    _, result = local_run
    with rasterio.open(result["VV"]) as src:
        tags = src.tags()
    assert tags["CBMFLOW_ENGINE"] == "sarsen"
    assert tags["CBMFLOW_ENGINE_VERSION"] == sarsen.__version__
    assert tags["CBMFLOW_PRODUCT_ID"] == PID
    assert tags["CBMFLOW_POLARISATION"] == "VV"
    assert tags["CBMFLOW_CARD_TYPE"] == "bs"
    assert tags["CBMFLOW_UNITS"] == "linear"
    assert tags["CBMFLOW_CALIBRATION"].startswith("gamma0 terrain-flattened")
    assert tags["CBMFLOW_DEM"] == str(inputs[1].resolve())
    assert tags["CBMFLOW_GRID"] == "EPSG:32633 60 m"
    assert tags["CBMFLOW_ZERO_IS_NODATA"] == "false"
    assert "CBMFLOW_SIMULATED" not in tags
    assert not any(":" in k for k in tags)


def test_upload_to_s3_reads_back_through_vsis3(inputs: tuple[Path, Path], s3_bucket: str) -> None:
    safe, dem = inputs
    out_uri = f"{s3_bucket}/card/bs/2021/12/23"
    # geocoded beta0 (no radiometric terrain correction) at 90 m: the quick sarsen path
    result = sarsen_bs.sarsen_backscatter(safe, dem, out_uri=out_uri, product_id="S1B_TEST_CARD",
                                          resolution=90.0, correct_radiometry=None)
    uri = f"{out_uri}/S1B_TEST_CARD_VV.tif"
    assert result == {"VV": uri}
    assert storage.list_uris(f"{s3_bucket}/card/bs/", ".tif") == [uri]
    assert is_cog(uri)
    with storage.rasterio_env(), rasterio.open(storage.gdal_path(uri)) as src:
        assert src.name.startswith("/vsis3/")
        assert src.crs.to_epsg() == 32633  # default: UTM zone of the scene/DEM overlap
        assert src.res == (90.0, 90.0)
        assert np.isnan(src.nodata) and src.dtypes[0] == "float32"
        tags = src.tags()
        data = src.read(1)
    assert tags["CBMFLOW_PRODUCT_ID"] == "S1B_TEST_CARD"
    assert tags["CBMFLOW_SOURCE_PRODUCT"] == PID
    assert tags["CBMFLOW_CALIBRATION"].startswith("beta0 geocoded")
    # default zero_is_nodata: the dummy DN 0 -> beta0 0 -> no-data, so every pixel is NaN
    assert tags["CBMFLOW_ZERO_IS_NODATA"] == "true"
    assert data.size > 0 and np.isnan(data).all()
