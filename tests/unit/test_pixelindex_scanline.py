"""The vectorised scanline pixel index equals GDAL's rasterisation (the reference) on real parcel shapes.

The reference is ``build_index_gdal`` (``rasterio.features.rasterize``, all_touched=False, one pass per
overlap layer) and, for single parcels, one ``rasterize`` call per parcel on the whole grid: the
definition of "a pixel belongs to a parcel when its centre lies inside it".
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.features import rasterize

from cbmflow.extract.pixelindex import Grid, build_index, build_index_gdal

DATA = Path("/work/shared/data/parcels")
FILES = ["dk_marker_2026.gpkg", "nl_brp_2023.gpkg", "at_schlaege_2025.gpkg.zip"]


def _real(name: str) -> gpd.GeoDataFrame:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    gdf = gpd.read_file(f"/vsizip/{path}" if name.endswith(".zip") else path)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    return gdf.to_crs(gdf.estimate_utm_crs())


def _compact(gdf: gpd.GeoDataFrame, spacing: float) -> np.ndarray:
    """The file's parcels moved next to each other (their shapes kept), so a fine grid stays small."""
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    cen = shapely.centroid(geoms)
    k = int(np.ceil(np.sqrt(geoms.size)))
    coords, idx = shapely.get_coordinates(geoms, return_index=True)
    pos = np.arange(geoms.size)
    coords[:, 0] += (500_000.0 + (pos % k) * spacing - shapely.get_x(cen))[idx]
    coords[:, 1] += (6_000_000.0 - (pos // k) * spacing - shapely.get_y(cen))[idx]
    return shapely.set_coordinates(geoms.copy(), coords)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize(("pixel", "shift"), [(10.0, (0.0, 0.0)), (10.0, (3.3, -7.1)), (20.0, (5.0, 5.0)),
                                             (2.5, (0.4, 1.9))])
def test_scanline_index_equals_gdal_on_real_parcels(name: str, pixel: float, shift: tuple[float, float]) -> None:
    gdf = _real(name)
    geoms = _compact(gdf, spacing=600.0)
    # holes and multipolygons must be among the shapes for the test to mean something
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    ox, oy = np.floor(x0 / pixel) * pixel - 3 * pixel + shift[0], np.ceil(y1 / pixel) * pixel + 2 * pixel + shift[1]
    grid = Grid(gdf.crs.to_wkt(), (pixel, 0.0, ox, 0.0, -pixel, oy),
                int((oy - y0) / pixel) + 5, int((x1 - ox) / pixel) + 5)
    ours = build_index(grid, geoms, np.arange(geoms.size))
    ref = build_index_gdal(grid, geoms, np.arange(geoms.size))
    assert ours.pix.size > 1000
    np.testing.assert_array_equal(ours.pix, ref.pix)
    np.testing.assert_array_equal(ours.lab, ref.lab)
    assert ours.pix.dtype == ref.pix.dtype and ours.lab.dtype == ref.lab.dtype


def test_real_shapes_include_holes_and_many_vertices() -> None:
    geoms = np.concatenate([np.asarray(_real(n).geometry.values, dtype=object) for n in FILES])
    assert (shapely.get_num_interior_rings(geoms) > 0).any() or (shapely.get_type_id(geoms) == 6).any()
    assert shapely.get_num_coordinates(geoms).max() > 50


def test_each_real_parcel_alone_equals_its_own_rasterisation() -> None:
    gdf = _real("at_schlaege_2025.gpkg.zip")
    geoms = _compact(gdf, spacing=400.0)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    grid = Grid(gdf.crs.to_wkt(), (10.0, 0.0, x0 - 31.7, 0.0, -10.0, y1 + 22.2), int((y1 - y0) / 10) + 8,
                int((x1 - x0) / 10) + 8)
    for g in geoms:
        burned = rasterize([(g, 1)], out_shape=(grid.height, grid.width), transform=grid.affine, fill=0,
                           all_touched=False, dtype="uint8")
        mine = build_index(grid, np.array([g], dtype=object), np.array([0]))
        np.testing.assert_array_equal(mine.pix.astype(np.int64), np.flatnonzero(burned.ravel()))


def test_vertices_on_pixel_centres_and_holes_of_either_orientation() -> None:
    """Edges through pixel centres (horizontal ones on a row centre, too): GDAL's tie rules, per parcel."""
    x0, y0 = 500_000.0, 5_000_000.0
    rng = np.random.default_rng(3)
    for transform in [(10.0, 0.0, x0, 0.0, -10.0, y0), (10.0, 0.0, x0, 0.0, 10.0, y0 - 3000.0)]:
        grid = Grid("EPSG:32633", transform, 300, 280)
        geoms = []
        for _ in range(60):
            cx, cy = rng.integers(0, 280), rng.integers(0, 300)
            pts = [(x0 + 5 * (2 * cx + rng.integers(-12, 12)), y0 - 5 * (2 * cy + rng.integers(-12, 12)))
                   for _ in range(int(rng.integers(3, 12)))]
            g = shapely.concave_hull(shapely.multipoints(pts), ratio=0.3)
            if g.geom_type == "Polygon":
                geoms.append(shapely.reverse(g) if rng.random() < 0.5 else g)
            outer = shapely.box(x0 + 5 * (2 * cx + 1), y0 - 5 * (2 * cy + 9), x0 + 5 * (2 * cx + 9), y0 - 5 * (2 * cy + 1))
            hole = shapely.box(x0 + 5 * (2 * cx + 3), y0 - 5 * (2 * cy + 7), x0 + 5 * (2 * cx + 7), y0 - 5 * (2 * cy + 3))
            ring = list(hole.exterior.coords)
            geoms.append(shapely.Polygon(outer.exterior.coords, [ring if rng.random() < 0.5 else ring[::-1]]))
        for g in geoms:
            burned = rasterize([(g, 1)], out_shape=(grid.height, grid.width), transform=grid.affine, fill=0,
                               all_touched=False, dtype="uint8")
            mine = build_index(grid, np.array([g], dtype=object), np.array([0]))
            np.testing.assert_array_equal(mine.pix.astype(np.int64), np.flatnonzero(burned.ravel()))


def test_overlapping_parcels_each_get_the_shared_pixels() -> None:
    grid = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 1000.0), 100, 100)
    a = shapely.box(100.0, 500.0, 300.0, 700.0)
    b = shapely.box(200.0, 600.0, 400.0, 800.0)
    idx = build_index(grid, np.array([a, b], dtype=object), np.array([1, 2]))
    assert np.bincount(idx.lab).tolist() == [400, 400]
    assert idx.passes == 2
    assert np.all(np.diff(idx.pix.astype(np.int64)) >= 0)


def test_non_polygonal_geometries_go_through_gdal() -> None:
    grid = Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 1000.0), 100, 100)
    line = shapely.LineString([(5.0, 995.0), (505.0, 995.0)])
    poly = shapely.box(100.0, 500.0, 300.0, 700.0)
    idx = build_index(grid, np.array([line, poly], dtype=object), np.array([1, 2]))
    ref = build_index_gdal(grid, np.array([line, poly], dtype=object), np.array([1, 2]))
    np.testing.assert_array_equal(idx.pix, ref.pix)
    assert (idx.lab == 0).sum() > 0
