"""Memory guard: the pixel index and the reads work in bounded windows; what cannot fit fails clearly.

Peak memory itself is measured by benchmarks/memory.py (``/usr/bin/time -v``), never asserted here.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import Polygon, box

from cbmflow import cli
from cbmflow.core.errors import ProcessingError
from cbmflow.extract import pixelindex
from cbmflow.extract import zonal as extract
from cbmflow.extract.pixelindex import WINDOW_PIXELS, Grid, build_index, build_index_gdal

X0, Y0 = 300000.0, 5100000.0


def _grid(width: int, height: int) -> Grid:
    return Grid("EPSG:32633", (10.0, 0.0, X0, 0.0, -10.0, Y0), height, width)


def _px_box(r: int, c: int, n: int = 10) -> Polygon:
    """A square of n x n pixels with its top-left pixel at (row r, col c)."""
    return box(X0 + 10 * c, Y0 - 10 * (r + n), X0 + 10 * (c + n), Y0 - 10 * r)


def test_a_raster_500000_px_wide_is_rasterised_and_read_in_bounded_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = _grid(500_000, 1_200)
    geoms = np.array([_px_box(5, 0), _px_box(600, 250_000), _px_box(1_190, 499_990), _px_box(3, 499_990)],
                     dtype=object)
    shapes: list[tuple[int, int]] = []

    def spy(*args, **kwargs):  # the real rasterize, recording the size of each window
        shapes.append(kwargs["out_shape"])
        return rasterize(*args, **kwargs)

    monkeypatch.setattr("rasterio.features.rasterize", spy)
    idx = build_index(grid, geoms, np.arange(4))  # the scanline: no raster buffer at all
    assert np.bincount(idx.lab, minlength=4).tolist() == [100, 100, 100, 100]
    assert not shapes
    ref = build_index_gdal(grid, geoms, np.arange(4))  # GDAL's path: rasterised in bounded windows
    assert shapes and max(r * c for r, c in shapes) <= WINDOW_PIXELS
    np.testing.assert_array_equal(ref.pix, idx.pix)
    np.testing.assert_array_equal(ref.lab, idx.lab)
    # the read windows: the parcels' rows only, each within the window budget
    strips = idx.default_strips
    assert sum(b - a for *_, a, b in strips) == idx.pix.size
    assert all((r1 - r0) * (c1 - c0) <= WINDOW_PIXELS for r0, r1, c0, c1, _, _ in strips)
    assert {r0 for r0, *_ in strips} >= {3, 600, 1190}
    assert sum(r1 - r0 for r0, r1, *_ in strips) < 60  # not 1,200 rows of 500,000 px


def test_windowed_index_equals_a_full_grid_rasterisation() -> None:
    rng = np.random.default_rng(7)
    grid = _grid(700, 650)
    geoms = []
    for _ in range(120):
        r, c = rng.integers(-20, 640), rng.integers(-20, 690)
        h, w = rng.integers(1, 40, size=2)
        geoms.append(box(X0 + 10 * c + 3, Y0 - 10 * (r + h), X0 + 10 * (c + w) - 2, Y0 - 10 * r - 4))
    geoms_a = np.array(geoms, dtype=object)
    idx = build_index(grid, geoms_a, np.arange(len(geoms)))
    expected_pix, expected_lab = [], []
    for i, g in enumerate(geoms):  # one parcel at a time on the whole grid: the definition
        burned = rasterize([(g, 1)], out_shape=(grid.height, grid.width), transform=grid.affine, fill=0,
                           all_touched=False, dtype="uint8")
        flat = np.flatnonzero(burned.ravel())
        expected_pix.append(flat)
        expected_lab.append(np.full(flat.size, i))
    pix, lab = np.concatenate(expected_pix), np.concatenate(expected_lab)
    order = np.lexsort((lab, pix))
    assert idx.passes > 1
    np.testing.assert_array_equal(idx.pix.astype(np.int64), pix[order])
    np.testing.assert_array_equal(idx.lab, lab[order])


def test_one_polygon_over_a_full_s2_tile_fails_clearly_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBMFLOW_EXTRACT_MEMORY_MB", "1536")
    grid = _grid(10_980, 10_980)
    before = pixelindex.rss_bytes()
    with pytest.raises(ProcessingError) as err:
        build_index(grid, np.array([_px_box(0, 0, 10_980)], dtype=object), np.array([1]))
    msg = str(err.value)
    assert "120,560,400 parcel pixels need ~5,518 MB" in msg
    assert "more than CBMFLOW_EXTRACT_MEMORY_MB=1,536 allows" in msg
    assert pixelindex.rss_bytes() - before < 100 * 2**20
    # with a ceiling it fits under, the same polygon is indexed (counted, not measured, here)
    monkeypatch.setenv("CBMFLOW_EXTRACT_MEMORY_MB", "8192")
    idx = build_index(_grid(3_000, 2_000), np.array([_px_box(0, 0, 3_000)], dtype=object), np.array([1]))
    assert idx.pix.size == 6_000_000


def test_cli_extract_of_a_tile_sized_polygon_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    raster = tmp_path / "tile.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=10_980, height=10_980, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10, 0, X0, 0, -10, Y0), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", sparse_ok=True) as dst:
        dst.write(np.ones((1, 512, 512), dtype=np.uint16), window=((0, 512), (0, 512)))
    parcels = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"code": ["all"]}, geometry=[_px_box(0, 0, 10_980)], crs=32633).to_file(parcels)
    monkeypatch.setenv("CBMFLOW_EXTRACT_MEMORY_MB", "1024")
    code = cli.main(["extract", "--raster", str(raster), "--parcels", str(parcels), "--id-col", "fid",
                     "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "CBMFLOW_EXTRACT_MEMORY_MB=1,024" in err[0] and "120,560,400 parcel pixels" in err[0]


def test_a_wide_raster_gives_exact_statistics(tmp_path: Path) -> None:
    width, height = 200_000, 40
    raster = tmp_path / "wide.tif"
    cols = np.arange(width, dtype=np.int64)
    with rasterio.open(raster, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10, 0, X0, 0, -10, Y0), tiled=True, blockxsize=512,
                       blockysize=16, compress="deflate") as dst:
        dst.write(np.broadcast_to((cols // 4).astype(np.uint16), (1, height, width)))
    starts = [0, 77_777, 199_990]
    gdf = gpd.GeoDataFrame({"id": ["a", "b", "c"]}, geometry=[_px_box(2, c) for c in starts], crs=32633)
    got = extract.extract_stats(str(raster), gdf, id_col="id").set_index("parcel_id")
    for pid, c in zip(["a", "b", "c"], starts, strict=True):
        values = np.tile(cols[c:c + 10] // 4, 10)
        assert got.loc[pid, "count"] == 100
        assert got.loc[pid, "mean"] == pytest.approx(values.mean())
        assert got.loc[pid, "p50"] == pytest.approx(np.percentile(values, 50))
