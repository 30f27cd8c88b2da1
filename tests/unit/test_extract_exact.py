"""Exact answers, worked out by hand, for the extraction engine on a tiny 6x6 raster.

Grid: EPSG:32633, 10 m pixels, top-left corner (500000, 5000000); pixel (row r, col c) has its
centre at x = 500005 + 10c, y = 4999995 - 10r and the value 6r + c (0..35).
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import MultiPolygon, Polygon, box

from cbmflow.core.errors import InputError
from cbmflow.extract import zonal
from cbmflow.extract.pixelindex import IndexCache

X0, Y0 = 500000.0, 5000000.0
CRS = "EPSG:32633"


def write(path: Path, data: np.ndarray, nodata: float | None) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs=CRS, transform=Affine(10, 0, X0, 0, -10, Y0),
                       nodata=nodata) as dst:
        dst.write(data, 1)
    return str(path)


def centre_box(r: int, c: int, half: float = 4.0) -> Polygon:
    x, y = X0 + 5 + 10 * c, Y0 - 5 - 10 * r
    return box(x - half, y - half, x + half, y + half)


PARCELS = {
    # rows 0-1, cols 0-1: values 0, 1, 6, 7
    "A": box(X0, Y0 - 20, X0 + 20, Y0),
    # sticks out of the raster's left edge: pixels (4,0), (5,0) -> 24, 30
    "edge": box(X0 - 50, Y0 - 60, X0 + 12, Y0 - 40),
    # 3x3 block rows 0-2, cols 3-5 with a hole over pixel (1,4) -> 3,4,5,9,11,15,16,17
    "hole": Polygon(
        [(X0 + 30, Y0 - 30), (X0 + 60, Y0 - 30), (X0 + 60, Y0), (X0 + 30, Y0)],
        [[(X0 + 41, Y0 - 19), (X0 + 49, Y0 - 19), (X0 + 49, Y0 - 11), (X0 + 41, Y0 - 11)]],
    ),
    # two parts: pixels (3,3) and (5,5) -> 21, 35
    "multi": MultiPolygon([centre_box(3, 3), centre_box(5, 5)]),
    # smaller than a pixel, holds the centre of (2,1) -> 13
    "tiny_centre": centre_box(2, 1, half=2.0),
    # smaller than a pixel, holds no centre -> no row
    "tiny_none": box(X0 + 21, Y0 - 29, X0 + 23, Y0 - 27),
    # entirely outside the raster -> no row
    "outside": box(X0 + 1000, Y0, X0 + 1020, Y0 + 20),
}


def gdf(parcels: dict[str, object], crs: str = CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"fid": list(parcels)}, geometry=list(parcels.values()), crs=crs)


def as_dict(df) -> dict[str, dict[str, float]]:
    return {r["parcel_id"]: r for r in df.to_dict("records")}


@pytest.fixture()
def ramp(tmp_path: Path) -> str:
    return write(tmp_path / "ramp.tif", np.arange(36, dtype=np.float32).reshape(6, 6), nodata=None)


def check(row: dict, count: int, mean: float, std: float, mn: float, mx: float, p25: float, p50: float, p75: float) -> None:
    assert row["count"] == count
    got = [row[k] for k in ("mean", "std", "min", "max", "p25", "p50", "p75")]
    assert got == pytest.approx([mean, std, mn, mx, p25, p50, p75], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int32"])
def test_hand_worked_statistics(tmp_path: Path, dtype: str) -> None:
    path = write(tmp_path / f"r_{dtype}.tif", np.arange(36).reshape(6, 6).astype(dtype), nodata=None)
    rows = as_dict(zonal.extract_stats(path, gdf(PARCELS), id_col="fid"))
    assert set(rows) == {"A", "edge", "hole", "multi", "tiny_centre"}
    check(rows["A"], 4, 3.5, math.sqrt(9.25), 0, 7, 0.75, 3.5, 6.25)
    check(rows["edge"], 2, 27, 3, 24, 30, 25.5, 27, 28.5)
    check(rows["hole"], 8, 10, math.sqrt(27.75), 3, 17, 4.75, 10, 15.25)
    check(rows["multi"], 2, 28, 7, 21, 35, 24.5, 28, 31.5)
    check(rows["tiny_centre"], 1, 13, 0, 13, 13, 13, 13, 13)


def test_nan_and_nodata_pixels_are_excluded(tmp_path: Path) -> None:
    data = np.arange(36, dtype=np.float32).reshape(6, 6)
    data[0, 0] = np.nan
    data[0, 1] = -9999
    path = write(tmp_path / "nd.tif", data, nodata=-9999)
    rows = as_dict(zonal.extract_stats(path, gdf({"A": PARCELS["A"]}), id_col="fid"))
    check(rows["A"], 2, 6.5, 0.5, 6, 7, 6.25, 6.5, 6.75)


def test_all_nodata_and_missed_raster_give_zero_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "empty.tif", np.zeros((6, 6), dtype=np.uint16), nodata=0)
    assert len(zonal.extract_stats(path, gdf(PARCELS), id_col="fid")) == 0
    ramp = write(tmp_path / "ramp.tif", np.arange(36, dtype=np.float32).reshape(6, 6), nodata=None)
    df = zonal.extract_stats(ramp, gdf({"outside": PARCELS["outside"]}), id_col="fid")
    assert len(df) == 0
    assert list(df.columns) == ["parcel_id", "count", "mean", "std", "min", "max", "p25", "p50", "p75"]
    assert "covers none of the 1 parcels" in caplog.text


def test_crs_mismatch_reprojects(ramp: str) -> None:
    parcels = gdf({"A": PARCELS["A"], "hole": PARCELS["hole"]}).to_crs("EPSG:4326")
    rows = as_dict(zonal.extract_stats(ramp, parcels, id_col="fid"))
    check(rows["A"], 4, 3.5, math.sqrt(9.25), 0, 7, 0.75, 3.5, 6.25)
    check(rows["hole"], 8, 10, math.sqrt(27.75), 3, 17, 4.75, 10, 15.25)


def test_overlapping_parcels_both_count_shared_pixels(ramp: str) -> None:
    over = {"A": PARCELS["A"], "B": box(X0 + 10, Y0 - 20, X0 + 30, Y0)}  # B: 1, 2, 7, 8
    cache = IndexCache()
    rows = as_dict(zonal.extract_stats(ramp, gdf(over), id_col="fid", index_cache=cache))
    check(rows["A"], 4, 3.5, math.sqrt(9.25), 0, 7, 0.75, 3.5, 6.25)
    check(rows["B"], 4, 4.5, math.sqrt(9.25), 1, 8, 1.75, 4.5, 7.25)


def test_inward_buffer_and_min_area(ramp: str) -> None:
    block = {"block": box(X0 + 30, Y0 - 30, X0 + 60, Y0), "tiny_centre": PARCELS["tiny_centre"]}
    rows = as_dict(zonal.extract_stats(ramp, gdf(block), id_col="fid", buffer=6.0))
    assert set(rows) == {"block"}  # the 4 m tiny parcel vanishes under a 6 m inward buffer
    check(rows["block"], 1, 10, 0, 10, 10, 10, 10, 10)
    rows = as_dict(zonal.extract_stats(ramp, gdf(block), id_col="fid", min_area=50))
    assert set(rows) == {"block"}  # 16 m² < 50 m²
    assert rows["block"]["count"] == 9


def test_boolean_mask_and_index_reuse(tmp_path: Path, ramp: str) -> None:
    cache = IndexCache()
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, :] = True  # row 0 masked (e.g. cloud)
    rows = as_dict(zonal.extract_stats(ramp, gdf(PARCELS), id_col="fid", mask=mask, index_cache=cache))
    check(rows["A"], 2, 6.5, 0.5, 6, 7, 6.25, 6.5, 6.75)
    assert cache.misses == 1
    doubled = write(tmp_path / "x2.tif", 2 * np.arange(36, dtype=np.float32).reshape(6, 6), nodata=None)
    rows = as_dict(zonal.extract_stats(doubled, gdf(PARCELS), id_col="fid", index_cache=cache))
    check(rows["A"], 4, 7, 2 * math.sqrt(9.25), 0, 14, 1.5, 7, 12.5)
    assert (cache.hits, cache.misses) == (1, 1)  # same grid, same parcels: the index is reused


def test_scl_histogram_counts_classes() -> None:
    from cbmflow.extract.pixelindex import Grid, build_index

    grid = Grid(CRS, (10, 0, X0, 0, -10, Y0), 6, 6)
    idx = build_index(grid, np.array([PARCELS["A"], PARCELS["tiny_none"]], dtype=object), np.array([7, 8]))
    scl = np.zeros(36, dtype=np.uint8)
    scl[[0, 1, 6, 7]] = [4, 4, 9, 0]
    pids, counts = zonal.scl_histogram(idx, scl[idx.pix])
    assert pids.tolist() == [7]
    assert counts[0].tolist() == [1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0]


def test_unknown_id_column_lists_available(ramp: str) -> None:
    with pytest.raises(InputError, match="no column 'nope'; available: fid, geometry"):
        zonal.extract_stats(ramp, gdf(PARCELS), id_col="nope")


def test_cli_writes_csv_and_parquet(tmp_path: Path, ramp: str) -> None:
    from cbmflow import cli

    parcels = tmp_path / "p.geojson"
    gdf(PARCELS).to_file(parcels)
    out = tmp_path / "out.csv"
    assert cli.main(["extract", "--raster", ramp, "--band", "VV", "--parcels", str(parcels), "--id-col", "fid",
                     "--out", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df.columns) == ["parcel_id", "band", "count", "mean", "std", "min", "max", "p25", "p50", "p75"]
    assert df.set_index("parcel_id").loc["hole", "count"] == 8
    assert set(df["band"]) == {"VV"}
    assert cli.main(["extract", "--raster", ramp, "--parcels", str(parcels), "--id-col", "fid",
                     "--out", str(tmp_path / "o.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 5


def test_sort_keys_order_negative_zero_and_infinities() -> None:
    v = np.array([3.5, -0.0, 0.0, -2.25, np.inf, -np.inf, 1e-30, -1e-30, 7.0], dtype=np.float32)
    keys = zonal._float32_sort_keys(v.copy())
    back = zonal._float32_from_keys(np.sort(keys))
    assert back.tolist() == sorted(v.tolist())
    assert zonal._float32_from_keys(zonal._float32_sort_keys(v.copy())).tobytes() == v.tobytes()


def test_index_cache_on_disk_is_shared_between_caches(tmp_path: Path, ramp: str) -> None:
    first = IndexCache(directory=tmp_path / "idx")
    a = zonal.extract_stats(ramp, gdf(PARCELS), id_col="fid", index_cache=first)
    assert len(list((tmp_path / "idx").glob("*.npz"))) == 1
    second = IndexCache(directory=tmp_path / "idx")  # e.g. another task process on the same worker
    b = zonal.extract_stats(ramp, gdf(PARCELS), id_col="fid", index_cache=second)
    assert (second.hits, second.misses) == (1, 0)
    assert a.equals(b)


def test_bands_run_in_parallel_only_within_the_memory_budget(monkeypatch) -> None:
    from cbmflow.extract import run as extract

    monkeypatch.delenv("CBMFLOW_EXTRACT_THREADS", raising=False)
    budget = extract._PARALLEL_BUDGET
    per_px = extract._BYTES_PER_INDEXED_PIXEL
    assert extract.parallel_bands(1_000_000) == 2
    assert extract.parallel_bands(budget // per_px // 2) == 2  # two working sets fit exactly
    assert extract.parallel_bands(budget // per_px) == 1  # a full S2 tile's worth: one at a time
    monkeypatch.setenv("CBMFLOW_EXTRACT_THREADS", "1")
    assert extract.parallel_bands(1000) == 1


@pytest.mark.parametrize("invalid_share", [0.0, 0.05, 0.5, 0.97])
@pytest.mark.parametrize("slice_pixels", [64, 1 << 20])
def test_statistics_equal_numpy_per_parcel(monkeypatch, invalid_share: float, slice_pixels: int) -> None:
    """Both sort paths (invalid pixels dropped, or keyed to sort last) and any slicing give numpy's answers."""
    from cbmflow.extract.pixelindex import Grid, PixelIndex

    monkeypatch.setattr(zonal, "_SLICE", slice_pixels)
    rng = np.random.default_rng(int(invalid_share * 100) + slice_pixels)
    n_parcels, n_pix = 300, 20_000
    lab = np.sort(rng.integers(0, n_parcels - 20, n_pix)).astype(np.int32)  # the last 20 parcels: no pixel
    lab[::7] = rng.integers(0, n_parcels - 20, lab[::7].size)  # not in label order (pixel order)
    pix = np.arange(n_pix, dtype=np.uint32)
    grid = Grid(crs_wkt=CRS, transform=(10.0, 0.0, X0, 0.0, -10.0, Y0), height=200, width=100)
    index = PixelIndex(grid=grid, pids=np.arange(1000, 1000 + n_parcels, dtype=np.int64), pix=pix, lab=lab)
    values = rng.normal(-12.0, 4.0, n_pix).astype(np.float32)  # negative and positive values
    values[rng.random(n_pix) < 0.02] = -0.0
    valid = rng.random(n_pix) >= invalid_share
    values[~valid & (rng.random(n_pix) < 0.5)] = np.nan
    res = zonal.zonal_from_values(index, values, valid)
    expect = {}
    for p in range(n_parcels):
        x = values[(lab == p) & valid].astype(np.float64)
        if x.size:
            expect[1000 + p] = (x.size, x.mean(), x.std(), x.min(), x.max(), *np.percentile(x, [25, 50, 75]))
    assert res.pid.tolist() == sorted(expect)
    got = np.column_stack([res.count, res.mean, res.std, res.min, res.max, res.p25, res.p50, res.p75])
    want = np.array([expect[p] for p in res.pid.tolist()])
    np.testing.assert_array_equal(got[:, [0, 3, 4]], want[:, [0, 3, 4]])  # counts and extremes exactly
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
