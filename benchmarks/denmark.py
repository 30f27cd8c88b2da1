"""Scale benchmark: a 1/20-scale Danish S1 season through the real engine and sink, projected to Denmark.

Usage (from the project root):

    .venv/bin/python benchmarks/denmark.py           # 28,000 parcels x 200 dates x VV/VH (1/20 of DK)
    .venv/bin/python benchmarks/denmark.py --quick   # 2,800 parcels x 10 dates

What runs is the production path: parcels and catalogue rows in a fresh PostGIS database,
``cbmflow.extract.run.extract_scenes`` claiming each scene, computing every band with the cached pixel
index, writing through ``cbmflow.extract.sink`` and marking it extracted. The rasters are float32 10 m
CARD-BS-like COGs on one UTM grid around the parcels, which are packed at Denmark's density
(~770 10 m pixels of land per parcel: 43,000 km² / 560,000); to keep the disk footprint small a pool of
distinct rasters is cycled through the dates (decode cost is real; the OS file cache is warm).
The projection scales the measured wall time linearly with the number of parcels (all costs -
index build, pixel gather, sort, COPY - are linear in parcel pixels or rows).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

FULL_PARCELS = 560_000
FULL_DATES = 200
BANDS = ("VV", "VH")


def main(argv: list[str] | None = None) -> int:
    """Run the scale benchmark and print the projection."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--parcels", type=int, default=None)
    ap.add_argument("--dates", type=int, default=None)
    ap.add_argument("--pool", type=int, default=None, help="distinct rasters cycled through the dates")
    ap.add_argument("--compress", choices=["deflate", "zstd"], default="zstd",
                    help="COG compression (cbmflow.core.cog writes ZSTD; DEFLATE for comparison)")
    ap.add_argument("--px-per-parcel", type=float, default=800.0,
                    help="grid pixels per parcel (Denmark: ~770 px of land per parcel)")
    a = ap.parse_args(argv)
    n = a.parcels or (2_800 if a.quick else 28_000)
    dates = a.dates or (10 if a.quick else 200)
    pool = a.pool or (2 if a.quick else 8)
    warnings.filterwarnings("ignore")

    import psycopg
    import rasterio
    import shapely
    from affine import Affine

    from cbmflow.catalogue import store as catalogue
    from cbmflow.catalogue.store import Scene
    from cbmflow.core import cog
    from cbmflow.extract import run as extract
    from cbmflow.extract.pixelindex import IndexCache

    work = C.workdir("denmark")
    gdf = C.packed_parcels(n, px_per_parcel=a.px_per_parcel)  # Danish parcel density on the grid
    x0, y0, x1, y1 = gdf.total_bounds
    ox, oy = np.floor(x0 / 10) * 10 - 200, np.ceil(y1 / 10) * 10 + 200
    w, h = int((x1 - ox) / 10) + 40, int((oy - y0) / 10) + 40
    rng = np.random.default_rng(1)
    files = []
    with C.Timer() as t_gen:
        for i in range(pool):
            data = rng.lognormal(-2.5 if i % 2 == 0 else -4.0, 0.6, size=(h, w)).astype(np.float32)
            data[rng.random((h, w)) < 0.01] = np.nan
            tmp = work / f"tmp_{i}.tif"
            with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=C.CRS,
                               transform=Affine(10, 0, ox, 0, -10, oy), nodata=float("nan")) as dst:
                dst.write(data, 1)
                dst.update_tags(CBMFLOW_SIMULATED="true")
            files.append(cog.to_cog(tmp, str(work / f"SIM_pool_{i}.tif"), compress=a.compress.upper()))
            tmp.unlink()
    print(f"# {n:,} parcels (1-5 ha rectangles, {a.px_per_parcel:.0f} px of grid per parcel) on a {w}x{h} px grid, {dates} dates x {len(BANDS)} bands; "
          f"{pool} pooled {a.compress.upper()} COGs written in {t_gen.s:.1f} s ({work})")

    with C.bench_db() as dsn:
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES ('dk_bench', 32632, 1)")
            with conn.cursor() as cur, cur.copy(
                "COPY parcels (pid, aoi, year, parcel_id, crop_code, area_m2, geom, source) FROM STDIN"
            ) as cp:
                for pid, pcode, crop, g in zip(gdf["pid"], gdf["parcel_id"], gdf["crop_code"], gdf.geometry, strict=True):
                    cp.write_row((int(pid), "dk_bench", 2025, pcode, crop, float(g.area),
                                  "SRID=32632;" + shapely.to_wkt(shapely.multipolygons([g])), "benchmark"))
            start = datetime(2025, 3, 1, 5, 30, tzinfo=UTC)
            scenes = []
            for d in range(dates):
                assets = {b: files[(2 * d + k) % pool] for k, b in enumerate(BANDS)}
                scenes.append(Scene(product_id=f"SIM_S1_CARD_BS_DK_{d:03d}", mission="S1A", product_type="CARD-BS",
                                    card_type="bs", sensing_time=start + timedelta(days=d * 6 / 5),
                                    tile="DK", assets=assets, simulated=True, status="ready"))
            ids = list(catalogue.upsert(conn, scenes).values())
            conn.commit()
        cache = IndexCache()
        with C.Timer() as t_run:
            summary = extract.extract_scenes(ids, aoi="dk_bench", year=2025, dsn=dsn, index_cache=cache)
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM signatures").fetchone()[0]
            size = conn.execute("SELECT pg_total_relation_size('signatures_2025')").fetchone()[0]
    rows = summary["rows"]
    assert not summary["failed"], summary["failed"]
    assert stored == rows
    scale = FULL_PARCELS / n
    full_rows = FULL_PARCELS * FULL_DATES * len(BANDS)
    measured_rate = rows / t_run.s
    projected_h = t_run.s * scale * (FULL_DATES / dates) / 3600
    print(C.table([
        ("measured", f"{n:,}", f"{dates}", f"{rows:,}", f"{t_run.s:.1f} s", f"{measured_rate:,.0f}"),
        ("projected Denmark", f"{FULL_PARCELS:,}", f"{FULL_DATES}", f"{full_rows:,}", f"{projected_h:.2f} h",
         f"{measured_rate:,.0f}"),
    ], ("run", "parcels", "dates", "band-records", "wall time", "records/s")))
    print(f"per scene: {t_run.s / dates:.3f} s (2 bands, index built {cache.misses}x, reused {cache.hits}x); "
          f"stored {size / max(stored, 1):.0f} B/record incl. indexes; target <= 1 h projected: "
          f"{'met' if projected_h <= 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
