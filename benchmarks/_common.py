"""Shared helpers of the extraction benchmarks: synthetic parcels and rasters, a private database, timing."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

CRS = "EPSG:32632"
PIXEL = 10.0
ORIGIN = (500000.0, 6200000.0)  # top-left corner of the benchmark grid


def parcels(n: int, size: int, *, layout: str = "spread", seed: int = 0) -> Any:
    """n synthetic parcels of 1-5 ha (cbmflow_sim.archive.synthetic_parcels) placed on a size x size px grid.

    ``dense``: the generator's contiguous farmland block in the grid's bottom-left corner;
    ``spread``: the same parcels with their cells spread evenly over the whole grid (the raster
    must then be read completely, the worst case for windowed reading).
    """
    import shapely

    from cbmflow_sim.archive import synthetic_parcels

    top = ORIGIN[1]
    gdf = synthetic_parcels(n, seed=seed, min_ha=1.0, max_ha=5.0, epsg=32632, origin=(ORIGIN[0] + 50, top - size * PIXEL + 50))
    x0, y0, x1, y1 = gdf.total_bounds
    extent = size * PIXEL - 200
    if layout == "spread" and max(x1 - x0, y1 - y0) < extent:
        geoms = np.asarray(gdf.geometry.values, dtype=object)
        cen = shapely.centroid(geoms)
        cx, cy = shapely.get_x(cen), shapely.get_y(cen)
        kx, ky = extent / (x1 - x0), extent / (y1 - y0)
        dx, dy = (cx - x0) * (kx - 1), (cy - y0) * (ky - 1)
        coords, idx = shapely.get_coordinates(geoms, return_index=True)
        coords[:, 0] += dx[idx]
        coords[:, 1] += dy[idx]
        gdf = gdf.set_geometry(shapely.set_coordinates(geoms.copy(), coords), crs=gdf.crs)
    gdf["pid"] = np.arange(1, len(gdf) + 1)
    return gdf


def packed_parcels(n: int, *, px_per_parcel: float = 800.0, seed: int = 0) -> Any:
    """n rectangular parcels of 1-5 ha packed in rows, with px_per_parcel 10 m pixels of grid per parcel.

    Denmark has ~560,000 parcels on ~43,000 km² of land: ~770 pixels of land per parcel; the
    default 800 reproduces that density (``synthetic_parcels`` leaves ~1,900 per parcel).
    """
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng([seed, 11])
    area = rng.uniform(1.0, 5.0, n) * 10000.0
    height = 150.0
    width = area / height
    gap = 4.0
    side = float(np.sqrt(n * px_per_parcel * PIXEL * PIXEL))
    x = np.empty(n)
    row = np.empty(n, dtype=np.int64)
    cx, r = 0.0, 0
    for i, wi in enumerate(width):
        if cx + wi > side:
            cx, r = 0.0, r + 1
        x[i], row[i] = cx, r
        cx += wi + gap
    pitch = max(height + gap, side / (r + 1))
    x0 = ORIGIN[0] + 100 + x
    y1 = ORIGIN[1] - 100 - row * pitch
    geoms = shapely.box(x0, y1 - height, x0 + width, y1)
    return gpd.GeoDataFrame({"pid": np.arange(1, n + 1), "parcel_id": [f"S{j:07d}" for j in range(n)],
                             "crop_code": "X"}, geometry=geoms, crs=CRS)


def write_raster(path: str | os.PathLike[str], size: int, *, seed: int, dtype: str = "float32",
                 compress: str = "DEFLATE") -> str:
    """A size x size float32 tiled, compressed (predictor 3) GeoTIFF of lognormal 'backscatter' with 1 % NaN."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": dtype, "crs": CRS,
               "transform": Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]), "nodata": float("nan"),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": compress.upper(), "predictor": 3,
               "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 1024):
            h = min(1024, size - r0)
            a = rng.lognormal(-2.5, 0.6, size=(h, size)).astype(np.float32)
            a[rng.random((h, size)) < 0.01] = np.nan
            dst.write(a, 1, window=Window(0, r0, size, h))
    return str(path)


class Timer:
    """Wall-clock seconds of a block: ``with Timer() as t: ...; t.s``."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t0


@contextmanager
def bench_db() -> Iterator[str]:
    """A fresh migrated PostGIS database for the run (dropped afterwards); yields its DSN."""
    from cbmflow.core import db

    admin = os.environ.get("CBMFLOW_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    dsn = admin.rsplit("/", 1)[0] + f"/cbmflow_bench_{uuid.uuid4().hex[:8]}"
    db.create_database(dsn)
    try:
        db.upgrade(dsn)
        yield dsn
    finally:
        db.drop_database(dsn)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A plain-text table."""
    cols = list(zip(header, *rows, strict=False))
    widths = [max(len(str(v)) for v in c) for c in cols]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def workdir(name: str) -> Path:
    """A scratch folder for generated rasters ($CBMFLOW_BENCH_DIR or /tmp)."""
    root = Path(os.environ.get("CBMFLOW_BENCH_DIR", "/tmp")) / f"cbmflow-bench-{name}-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    return root


REAL_PARCEL_FILES = ("dk_marker_2026.gpkg", "nl_brp_2023.gpkg", "at_schlaege_2025.gpkg.zip")


def real_shapes(folder: str | os.PathLike[str] = "/work/shared/data/parcels") -> np.ndarray:
    """The real parcel polygons of the sample files, each in its UTM zone and centred on (0, 0)."""
    import geopandas as gpd
    import shapely

    out = []
    for name in REAL_PARCEL_FILES:
        path = Path(folder) / name
        if not path.exists():
            continue
        gdf = gpd.read_file(f"/vsizip/{path}" if name.endswith(".zip") else path)
        gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
        gdf = gdf.to_crs(gdf.estimate_utm_crs())
        geoms = np.asarray(gdf.geometry.values, dtype=object)
        cen = shapely.centroid(geoms)
        coords, idx = shapely.get_coordinates(geoms, return_index=True)
        coords[:, 0] -= shapely.get_x(cen)[idx]
        coords[:, 1] -= shapely.get_y(cen)[idx]
        out.append(shapely.set_coordinates(geoms.copy(), coords))
    if not out:
        raise FileNotFoundError(f"no real parcel file in {folder}")
    return np.concatenate(out)


def real_parcels(n: int, size: int, *, seed: int = 0) -> Any:
    """n parcels of real shapes (the sample LPIS files' polygons, translated) spread over a size x size px grid.

    The grid is cut into n cells; each cell gets a random real polygon (one that fits the cell,
    with a random 90-degree turn and mirror) at a random offset, so every block of the raster holds
    parcel pixels (the worst case for windowed reading) and the shapes, holes and vertex counts are real.
    """
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng([seed, 20])
    shapes = real_shapes()
    side = size * PIXEL - 200.0
    k = int(np.ceil(np.sqrt(n)))
    pitch = side / k
    b = shapely.bounds(shapes)
    fits = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) <= 0.9 * pitch
    area = shapely.area(shapes)
    pool = shapes[fits & (area >= 2000.0)]  # a parcel of >= 0.2 ha (ditch strips are not what we index)
    pick = pool[rng.integers(0, pool.size, n)]
    turn = rng.integers(0, 4, n)
    mirror = rng.random(n) < 0.5
    coords, idx = shapely.get_coordinates(pick, return_index=True)
    x, y = coords[:, 0].copy(), coords[:, 1].copy()
    t = turn[idx]
    for q in (1, 2, 3):  # quarter turns
        m = t == q
        for _ in range(q):
            x[m], y[m] = -y[m], x[m].copy()
    x[mirror[idx]] *= -1
    cell = np.arange(n)
    cx = ORIGIN[0] + 100 + (cell % k + 0.5) * pitch + rng.uniform(-0.05, 0.05, n) * pitch
    cy = ORIGIN[1] - 100 - (cell // k + 0.5) * pitch + rng.uniform(-0.05, 0.05, n) * pitch
    coords[:, 0] = x + cx[idx]
    coords[:, 1] = y + cy[idx]
    geoms = shapely.make_valid(shapely.set_coordinates(pick.copy(), coords))
    geoms = shapely.orient_polygons(geoms) if hasattr(shapely, "orient_polygons") else geoms
    return gpd.GeoDataFrame({"pid": np.arange(1, n + 1)}, geometry=geoms, crs=CRS)
