"""Parity with rasterstats (``zonal_stats``, all_touched=False) on the real parcel files.

Counts, minima and maxima must be equal; mean, std and percentiles equal within float32 rounding
(rasterstats computes them in the raster's float32, cbmflow in float64 and stores float32).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterstats import zonal_stats
from shapely import affinity

from cbmflow.extract import zonal as extract

RS_STATS = ["count", "mean", "std", "min", "max", "percentile_25", "percentile_50", "percentile_75"]
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
OURS = ["count", "mean", "std", "min", "max", "p25", "p50", "p75"]


def compare(ours, theirs: list[dict], ids: list[str]) -> int:
    """Assert parity; returns the number of parcels with statistics."""
    by_id = {r["parcel_id"]: r for r in ours.to_dict("records")}
    n = 0
    for pid, rs in zip(ids, theirs, strict=True):
        if not rs["count"]:
            assert pid not in by_id, f"parcel {pid}: rasterstats finds no pixel, cbmflow has a row"
            continue
        n += 1
        row = by_id[pid]
        assert row["count"] == rs["count"], pid
        assert np.float32(row["min"]) == np.float32(rs["min"]), pid
        assert np.float32(row["max"]) == np.float32(rs["max"]), pid
        for o, t in zip(OURS[1:], RS_STATS[1:], strict=True):
            if o in ("min", "max"):
                continue
            assert row[o] == pytest.approx(rs[t], rel=2e-6, abs=1e-7), (pid, o, row[o], rs[t])
    assert len(by_id) == n
    return n


def test_parity_austrian_parcels_on_their_utm_grid(shared_data: Path, tmp_path: Path) -> None:
    parcels = gpd.read_file(shared_data / "parcels" / "at_schlaege_2025.gpkg.zip")
    parcels["pid"] = [f"AT{i}" for i in range(len(parcels))]
    utm = parcels.to_crs("EPSG:32633")
    x0, y0, x1, y1 = utm.total_bounds
    ox, oy = np.floor(x0 / 10) * 10 - 100, np.ceil(y1 / 10) * 10 + 100
    w, h = int((x1 - ox) / 10) + 20, int((oy - y0) / 10) + 20
    rng = np.random.default_rng(42)
    data = rng.lognormal(-2.5, 0.6, size=(h, w)).astype(np.float32)  # linear backscatter-like
    data[rng.random((h, w)) < 0.03] = np.nan
    data[rng.random((h, w)) < 0.02] = -9999.0
    data[: h // 3, : w // 3] = -9999.0  # a block of nodata: some parcels lose pixels or all of them
    path = tmp_path / "at.tif"
    transform = Affine(10, 0, ox, 0, -10, oy)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs="EPSG:32633", transform=transform, nodata=-9999.0, tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        dst.write(data, 1)
    # cbmflow gets the parcels in their own CRS (EPSG:31287) and reprojects; rasterstats needs them in the raster's
    ours = extract.extract_stats(str(path), parcels, id_col="pid")
    theirs = zonal_stats(utm, str(path), stats=RS_STATS, all_touched=False, nodata=-9999.0)
    assert compare(ours, theirs, list(parcels["pid"])) >= 60


def test_parity_real_s1_chip_with_parcels_placed_over_it(shared_data: Path) -> None:
    chip = shared_data / "s1" / "S1A_20150309_VV_grd_geo_db.tif"
    with rasterio.open(chip) as src:
        left, bottom, right, top = src.bounds
    parcels = gpd.read_file(shared_data / "parcels" / "dk_marker_2026.gpkg")
    # Real Danish field shapes, moved as a group onto the chip (some fall partly off its edge).
    shapes = gpd.GeoSeries(parcels.geometry.values, crs=parcels.crs)
    placed = []
    rng = np.random.default_rng(7)
    for g in shapes:
        c = g.centroid
        tx = rng.uniform(left - 100, right + 100) - c.x
        ty = rng.uniform(bottom - 100, top + 100) - c.y
        placed.append(affinity.translate(g, tx, ty))
    gdf = gpd.GeoDataFrame({"pid": [f"DK{i}" for i in range(len(placed))]}, geometry=placed, crs="EPSG:32631")
    ours = extract.extract_stats(str(chip), gdf, id_col="pid")
    theirs = zonal_stats(gdf, str(chip), stats=RS_STATS, all_touched=False)
    assert compare(ours, theirs, list(gdf["pid"])) >= 50
