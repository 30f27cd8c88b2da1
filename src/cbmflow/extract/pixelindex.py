"""Pixel-to-parcel indexes: which pixels of a raster grid belong to which parcel, built once per grid.

A pixel belongs to a parcel when its centre lies inside the parcel (GDAL's rasterisation with
``all_touched=False``, the rule rasterstats uses). Overlapping parcels are rasterised in separate
passes, so a pixel whose centre lies in two parcels counts for both (as rasterstats, which treats
each feature on its own). The index is stored in pixel order (flat row-major pixel number and
the parcel's position), so a scene is read in row strips and each strip is one slice of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STRIP_ROWS = 1024  # rows per read/rasterise window (a multiple of the COGs' 512-pixel blocks)
# Pixels per read/rasterise window: an S2 tile's 10980 columns x 764 rows; a raster 500,000 px wide
# is read and rasterised 16 rows at a time. Windows never span more than the parcels' extent.
WINDOW_PIXELS = 2**23
DEFAULT_MEMORY_MB = 1536
# Peak bytes per indexed pixel of an extraction: the index (8: pixel number + label, 16 while its
# parts are concatenated), one band's values (4-8) and validity (1), and the statistics' sort working
# set (~30, measured). The guard budgets 48.
BYTES_PER_INDEXED_PIXEL = 48


def memory_ceiling_bytes() -> int:
    """The extraction memory ceiling: ``CBMFLOW_EXTRACT_MEMORY_MB`` (default 1536) in bytes."""
    raw = os.environ.get("CBMFLOW_EXTRACT_MEMORY_MB") or str(DEFAULT_MEMORY_MB)
    try:
        mb = float(raw)
    except ValueError:
        from cbmflow.core.errors import ConfigError

        raise ConfigError(f"CBMFLOW_EXTRACT_MEMORY_MB={raw!r} is not a number of megabytes") from None
    return int(mb * 2**20)


def rss_bytes() -> int:
    """The resident memory of this process now (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_fits(n_pixels: int, what: str, per_pixel: int = BYTES_PER_INDEXED_PIXEL) -> None:
    """Raise ProcessingError, before allocating, when ``n_pixels`` indexed pixels cannot fit the ceiling."""
    ceiling = memory_ceiling_bytes()
    used = rss_bytes()
    need = int(n_pixels) * per_pixel
    if used + need > ceiling:
        from cbmflow.core.errors import ProcessingError

        mb = 2**20
        raise ProcessingError(
            f"{what}: {n_pixels:,} parcel pixels need ~{need // mb:,} MB on top of the {used // mb:,} MB in use, "
            f"more than CBMFLOW_EXTRACT_MEMORY_MB={ceiling // mb:,} allows; raise the limit or extract fewer or "
            "smaller parcels at a time (a tile or part of the AOI)"
        )


def _window_rows(width: int, rows: int = STRIP_ROWS) -> int:
    """Rows per window so that rows x width stays within WINDOW_PIXELS (whole 512-row blocks when possible)."""
    fit = max(1, WINDOW_PIXELS // max(1, width))
    if fit >= rows:
        return rows
    return (fit // 512) * 512 if fit >= 512 else fit


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS (WKT), affine transform (6 coefficients) and shape (rows, cols)."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int

    @classmethod
    def of(cls, src: Any) -> Grid:
        """The grid of an open rasterio dataset."""
        t = src.transform
        return cls(src.crs.to_wkt() if src.crs else "", (t.a, t.b, t.c, t.d, t.e, t.f), src.height, src.width)

    @property
    def affine(self) -> Any:
        """The transform as an ``affine.Affine``."""
        from affine import Affine

        return Affine(*self.transform)

    def key(self) -> str:
        """A short stable hash identifying the grid."""
        text = f"{self.crs_wkt}|{self.transform}|{self.height}|{self.width}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PixelIndex:
    """Pixels of one grid covered by a parcel set, in pixel order.

    ``pix`` holds flat pixel numbers (row * width + col), ascending (a pixel covered by two
    overlapping parcels appears twice); ``lab`` the position of the owning parcel in ``pids``.
    """

    grid: Grid
    pids: np.ndarray  # int64 parcel ids, position = label
    pix: np.ndarray  # flat pixel numbers (uint32, or int64 for huge grids), ascending
    lab: np.ndarray  # int32 labels (positions in pids)
    passes: int = 1

    @property
    def n_parcels(self) -> int:
        """Number of parcels in the set (with or without pixels)."""
        return int(self.pids.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return int(self.pids.nbytes + self.pix.nbytes + self.lab.nbytes)

    @cached_property
    def label_counts(self) -> np.ndarray:
        """Indexed pixels per parcel label, computed once per index."""
        return np.bincount(self.lab, minlength=self.n_parcels)

    @cached_property
    def default_strips(self) -> list[tuple[int, int, int, int, int, int]]:
        """:meth:`strips` with the default strip height, computed once per index."""
        return self.strips(STRIP_ROWS)

    def strips(self, rows: int = STRIP_ROWS) -> list[tuple[int, int, int, int, int, int]]:
        """Non-empty read windows as (row0, row1, col0, col1, start, stop) slices of the index."""
        if rows == STRIP_ROWS and "default_strips" in self.__dict__:
            return self.__dict__["default_strips"]  # type: ignore[no-any-return]
        out: list[tuple[int, int, int, int, int, int]] = []
        w = self.grid.width
        pending = [(r0, min(r0 + rows, self.grid.height)) for r0 in range(0, self.grid.height, rows)]
        while pending:
            r0, r1 = pending.pop(0)
            a, b = (int(v) for v in np.searchsorted(self.pix, [r0 * w, r1 * w]))
            if b <= a:
                continue
            first, last = int(self.pix[a]) // w, int(self.pix[b - 1]) // w
            r0, r1 = first, last + 1  # rows that hold indexed pixels
            if r1 - r0 == 1:
                c0, c1 = int(self.pix[a]) % w, int(self.pix[b - 1]) % w + 1
            else:
                c0, c1 = 0, w
                if (b - a) * 4 < WINDOW_PIXELS:  # cheap enough to find the exact column range
                    cols = self.pix[a:b] % w
                    c0, c1 = int(cols.min()), int(cols.max()) + 1
            fit = _window_rows(c1 - c0, r1 - r0)
            if fit < r1 - r0:  # too wide for one window: split into row bands that fit
                pending[:0] = [(r, min(r + fit, r1)) for r in range(r0, r1, fit)]
                continue
            out.append((r0, r1, c0, c1, a, b))
        return out


def _inverse_geotransform(grid: Grid) -> tuple[float, float, float, float, float, float]:
    """GDAL's ``GDALInvGeoTransform`` of the grid, in GDAL order (what GDAL's rasteriser applies)."""
    a, b, c, d, e, f = grid.transform  # affine order: x = a*col + b*row + c, y = d*col + e*row + f
    gt = (c, a, b, f, d, e)
    if gt[2] == 0.0 and gt[4] == 0.0 and gt[1] != 0.0 and gt[5] != 0.0:
        return (-gt[0] / gt[1], 1.0 / gt[1], 0.0, -gt[3] / gt[5], 0.0, 1.0 / gt[5])
    det = gt[1] * gt[5] - gt[2] * gt[4]
    magnitude = max(abs(gt[1]), abs(gt[2]), abs(gt[4]), abs(gt[5]))
    if abs(det) <= 1e-10 * magnitude * magnitude:
        raise ValueError(f"grid transform {grid.transform} is not invertible")
    inv = 1.0 / det
    return ((gt[2] * gt[3] - gt[0] * gt[5]) * inv, gt[5] * inv, -gt[2] * inv,
            (-gt[1] * gt[3] + gt[0] * gt[4]) * inv, -gt[4] * inv, gt[1] * inv)


def _extent_guard(grid: Grid, geoms: np.ndarray) -> np.ndarray:
    """Which parcels can cover grid pixels; raises ProcessingError when their pixels cannot fit the ceiling."""
    import shapely

    n = geoms.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    bounds = shapely.bounds(geoms)
    inv = ~grid.affine
    xs = np.stack([bounds[:, 0], bounds[:, 2], bounds[:, 0], bounds[:, 2]])
    ys = np.stack([bounds[:, 1], bounds[:, 1], bounds[:, 3], bounds[:, 3]])
    cols = inv.a * xs + inv.b * ys + inv.c
    rows = inv.d * xs + inv.e * ys + inv.f
    rmin, rmax = rows.min(axis=0), rows.max(axis=0)
    cmin, cmax = cols.min(axis=0), cols.max(axis=0)
    usable = ~shapely.is_empty(geoms) & (rmax >= 0) & (rmin <= grid.height) & (cmax >= 0) & (cmin <= grid.width)
    if usable.any():
        px_area = abs(grid.affine.a * grid.affine.e - grid.affine.b * grid.affine.d)
        bbox_px = ((np.clip(rmax, 0, grid.height) - np.clip(rmin, 0, grid.height) + 1)
                   * (np.clip(cmax, 0, grid.width) - np.clip(cmin, 0, grid.width) + 1))
        est = np.minimum(shapely.area(geoms) / px_area if px_area > 0 else bbox_px, bbox_px)
        expected = int(np.ceil(est[usable].sum()))
        check_fits(expected, f"pixel index of {int(usable.sum()):,} parcels on a {grid.height}x{grid.width} grid")
    return usable  # type: ignore[no-any-return]


def _first_row_at_or_above(v: np.ndarray) -> np.ndarray:
    """The smallest integer row r with r + 0.5 >= v (exact, as GDAL's scanline test)."""
    r = np.ceil(v - 0.5)
    r += r + 0.5 < v
    r -= r - 0.5 >= v
    return r


def _scanline_spans(grid: Grid, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Pixel-centre spans (geometry position, row, first col, end col) of polygonal geometries, vectorised.

    The arithmetic is GDAL's ``GDALdllImageFilledPolygon`` (what ``rasterize(all_touched=False)`` runs):
    vertices through the grid's inverse geotransform, one crossing per non-horizontal edge and pixel
    row with ``y1 <= row + 0.5 < y2``, the crossings of all rings of a geometry sorted and paired
    (even-odd), ``floor(x + 0.5)`` as the span limits; a horizontal edge lying exactly on a row
    centre adds its own span when it runs leftwards with every ring (holes too) turned clockwise in
    map coordinates (GDAL 3.10's behaviour, measured). None when a row has an odd number of
    crossings (an unclosed ring: the caller falls back to GDAL).
    """
    import shapely

    H, W = grid.height, grid.width
    _, coords, offsets = shapely.to_ragged_array(geoms, include_z=False)
    ring_off, poly_off = offsets[0], offsets[1]
    multi_off = offsets[2] if len(offsets) == 3 else np.arange(geoms.size + 1)
    ring_geom = np.repeat(np.repeat(np.arange(geoms.size, dtype=np.int64), np.diff(multi_off)), np.diff(poly_off))
    t = _inverse_geotransform(grid)
    X, Y = coords[:, 0], coords[:, 1]
    py = t[3] + X * t[4] + Y * t[5]
    # edge v runs from vertex v to v + 1; the last vertex of a ring closes it and starts no edge
    y1, y2 = py[:-1], py[1:]
    closing = np.zeros(y1.size, dtype=bool)
    closing[ring_off[1:-1] - 1] = True
    ly, hy = np.minimum(y1, y2), np.maximum(y1, y2)
    r0 = np.clip(_first_row_at_or_above(ly), 0, H)
    r1 = np.clip(_first_row_at_or_above(hy), 0, H)  # exclusive: row + 0.5 < hy
    crossing = (r1 > r0) & ~closing
    horizontal = np.flatnonzero((y1 == y2) & ~closing)
    del ly, hy, closing
    ev = np.flatnonzero(crossing)
    del crossing
    ring_of_vertex = np.repeat(np.arange(ring_off.size - 1), np.diff(ring_off))
    # crossing edges, oriented upwards (dy1 < dy2) as GDAL does
    a_y, b_y = y1[ev], y2[ev]
    a_x = t[0] + X[ev] * t[1] + Y[ev] * t[2]
    b_x = t[0] + X[ev + 1] * t[1] + Y[ev + 1] * t[2]
    flip = a_y > b_y
    lx, ly = np.where(flip, b_x, a_x), np.where(flip, b_y, a_y)
    hx, hy = np.where(flip, a_x, b_x), np.where(flip, a_y, b_y)
    del a_y, b_y, a_x, b_x, flip
    g = ring_geom[ring_of_vertex[ev]]
    e_r0 = r0[ev].astype(np.int64)
    nrows = r1[ev].astype(np.int64) - e_r0
    del r0, r1, ev
    total = int(nrows.sum())
    e = np.repeat(np.arange(nrows.size, dtype=np.int64), nrows)
    first = np.cumsum(nrows) - nrows
    row = np.arange(total, dtype=np.int64) - np.repeat(first - e_r0, nrows)
    del first, nrows, e_r0
    ly_e, lx_e = ly[e], lx[e]
    cross = (row + 0.5 - ly_e) * (hx[e] - lx_e) / (hy[e] - ly_e) + lx_e
    del ly_e, lx_e, lx, ly, hx, hy
    np.floor(cross + 0.5, out=cross)
    np.clip(cross, 0, W, out=cross)
    # one sort of (geometry, row, x) keys, then pairs: (group, x) with group = geometry * H + row
    group = g[e]
    del e, g
    group *= H
    group += row
    del row
    if int(group[-1] if group.size else 0) * (W + 1) + W < 2**63 - 1 and geoms.size * H * (W + 1) < 2**62:
        key = group
        key *= W + 1
        key += cross.astype(np.int64)
        del cross
        key.sort()
        group, xi = np.divmod(key, W + 1)
        del key
    else:
        order = np.lexsort((cross, group))
        group, xi = group[order], cross[order].astype(np.int64)
        del order, cross
    if group.size % 2 or np.any(group[0::2] != group[1::2]):
        return None
    sg, sr = np.divmod(group[0::2], H)
    sa, sb = xi[0::2], xi[1::2]
    del group, xi
    if horizontal.size:  # horizontal edges exactly on a row centre
        hrow = y1[horizontal] - 0.5
        centre = (hrow == np.floor(hrow)) & (hrow >= 0) & (hrow < H)
        hv = horizontal[centre]
        if hv.size:
            rings = np.unique(ring_of_vertex[hv])
            # orientation of those rings in map coordinates (shoelace over their vertices)
            area2 = np.zeros(ring_off.size - 1)
            for r in rings.tolist():  # few rings: only those with such an edge
                s, e2 = int(ring_off[r]), int(ring_off[r + 1])
                xs, ys = X[s:e2], Y[s:e2]
                area2[r] = float(np.dot(xs[:-1], ys[1:]) - np.dot(xs[1:], ys[:-1]))
            hx1 = t[0] + X[hv] * t[1] + Y[hv] * t[2]
            hx2 = t[0] + X[hv + 1] * t[1] + Y[hv + 1] * t[2]
            ccw = area2[ring_of_vertex[hv]] > 0
            left = np.where(ccw, hx2 > hx1, hx1 > hx2)
            hv, hx1, hx2 = hv[left], hx1[left], hx2[left]
            lo = np.clip(np.floor(np.minimum(hx1, hx2) + 0.5), 0, W).astype(np.int64)
            hi = np.clip(np.floor(np.maximum(hx1, hx2) + 0.5), 0, W).astype(np.int64)
            sg = np.concatenate([sg, ring_geom[ring_of_vertex[hv]]])
            sr = np.concatenate([sr, (y1[hv] - 0.5).astype(np.int64)])
            sa, sb = np.concatenate([sa, lo]), np.concatenate([sb, hi])
    nonempty = sb > sa
    return sg[nonempty], sr[nonempty], sa[nonempty], sb[nonempty]


def build_index(
    grid: Grid,
    geoms: np.ndarray,
    pids: np.ndarray,
    *,
    strip_rows: int = STRIP_ROWS,
) -> PixelIndex:
    """Rasterise parcel geometries (already in the grid's CRS) onto a grid by the pixel-centre rule.

    Polygons and multipolygons go through a vectorised scanline (:func:`_scanline_spans`, GDAL's
    arithmetic on shapely's coordinate arrays: no GeoJSON, no Python object per parcel or pixel);
    any other geometry type sends the whole set through :func:`build_index_gdal`. Overlapping
    parcels each get their pixels; ``passes`` is the largest number of parcels covering one pixel.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    pids = np.asarray(pids, dtype=np.int64)
    n = geoms.size
    if n >= 2**31 - 2:
        raise ValueError("too many parcels for one index")
    pix_dtype = np.uint32 if grid.height * grid.width < 2**32 else np.int64
    empty = PixelIndex(grid=grid, pids=pids, pix=np.zeros(0, dtype=pix_dtype), lab=np.zeros(0, dtype=np.int32))
    if n == 0:
        return empty
    kinds = shapely.get_type_id(geoms)
    missing = shapely.is_missing(geoms)
    if not np.all(np.isin(kinds[~missing], (3, 6))):  # not only (multi)polygons: GDAL's own rasterisation
        return build_index_gdal(grid, geoms, pids, strip_rows=strip_rows)
    usable = np.zeros(n, dtype=bool)
    usable[~missing] = _extent_guard(grid, geoms[~missing])
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        return empty
    spans = _scanline_spans(grid, geoms[idx])
    if spans is None:
        log.warning("a parcel ring is not closed: rasterising with GDAL")
        return build_index_gdal(grid, geoms, pids, strip_rows=strip_rows)
    sg, sr, sa, sb = spans
    w = grid.width
    start = sr * w + sa
    order = np.lexsort((sg, start))  # pixel order, ties by label
    start, length, sg = start[order], (sb - sa)[order], sg[order]
    del order, sr, sa, sb
    total = int(length.sum())
    if total == 0:
        return empty
    # pixel numbers by one cumulative sum in the index's own dtype: +1 inside a span, a jump between spans
    step = np.ones(total, dtype=pix_dtype)
    pos = np.cumsum(length) - length
    jumps = start.copy()
    jumps[1:] -= start[:-1] + length[:-1] - 1
    step[pos] = jumps.astype(pix_dtype)  # modular for uint32: the running sum stays exact
    pix: np.ndarray = np.cumsum(step, dtype=pix_dtype)
    del step, jumps, pos
    lab = np.repeat(idx[sg].astype(np.int32), length)
    del start, length, sg
    passes = 1
    if pix.size > 1 and not np.all(pix[1:] > pix[:-1]):  # overlapping parcels share pixels
        order = np.lexsort((lab, pix))
        pix, lab = pix[order], lab[order]
        del order
        dup = (pix[1:] == pix[:-1]) & (lab[1:] == lab[:-1])  # a pixel twice for one parcel counts once
        if dup.any():
            keep = np.concatenate([[True], ~dup])
            pix, lab = pix[keep], lab[keep]
        edges = np.flatnonzero(np.concatenate([[True], pix[1:] != pix[:-1], [True]]))
        passes = int(np.diff(edges).max())
    return PixelIndex(grid=grid, pids=pids, pix=pix, lab=lab, passes=passes)

def build_index_gdal(
    grid: Grid,
    geoms: np.ndarray,
    pids: np.ndarray,
    *,
    strip_rows: int = STRIP_ROWS,
) -> PixelIndex:
    """The index rasterised by GDAL (``rasterio.features.rasterize``), one pass per overlap layer.

    The reference implementation (and the path for non-polygonal geometries): :func:`build_index`
    gives the same index for polygons without the GeoJSON round trip.
    """
    import shapely
    from rasterio.features import rasterize

    geoms = np.asarray(geoms, dtype=object)
    pids = np.asarray(pids, dtype=np.int64)
    n = geoms.size
    if n >= 2**31 - 2:
        raise ValueError("too many parcels for one index")
    layers = _overlap_layers(geoms)
    n_layers = int(layers.max()) + 1 if n else 1
    bounds = shapely.bounds(geoms) if n else np.zeros((0, 4))
    inv = ~grid.affine
    # Row range of each parcel's bbox (y decreases with rows for north-up grids; take both corners).
    if n:
        ia, ib, ic, id_, ie, if_ = inv.a, inv.b, inv.c, inv.d, inv.e, inv.f
        xs = np.stack([bounds[:, 0], bounds[:, 2], bounds[:, 0], bounds[:, 2]])
        ys = np.stack([bounds[:, 1], bounds[:, 1], bounds[:, 3], bounds[:, 3]])
        cols = ia * xs + ib * ys + ic
        rows = id_ * xs + ie * ys + if_
        rmin, rmax = rows.min(axis=0), rows.max(axis=0)
        cmin, cmax = cols.min(axis=0), cols.max(axis=0)
        usable = ~shapely.is_empty(geoms) & (rmax >= 0) & (rmin <= grid.height) & (cmax >= 0) & (cmin <= grid.width)
    else:
        rmin = rmax = cmin = cmax = np.zeros(0)
        usable = np.zeros(0, dtype=bool)
    # flat pixel numbers fit uint32 for grids up to 65536 x 65536 (an S2 tile is 10980 x 10980)
    pix_dtype = np.uint32 if grid.height * grid.width < 2**32 else np.int64
    w = grid.width
    pix_parts: list[np.ndarray] = []
    lab_parts: list[np.ndarray] = []
    if usable.any():
        # The window: the parcels' extent on the grid, never the whole raster.
        R0 = max(0, int(np.floor(rmin[usable].min())))
        R1 = min(grid.height, int(np.ceil(rmax[usable].max())) + 1)
        C0 = max(0, int(np.floor(cmin[usable].min())))
        C1 = min(grid.width, int(np.ceil(cmax[usable].max())) + 1)
        # Guard before allocating: each parcel covers at most min(its area, its bbox on the grid) in pixels.
        px_area = abs(grid.affine.a * grid.affine.e - grid.affine.b * grid.affine.d)
        bbox_px = ((np.clip(rmax, 0, grid.height) - np.clip(rmin, 0, grid.height) + 1)
                   * (np.clip(cmax, 0, grid.width) - np.clip(cmin, 0, grid.width) + 1))
        est = np.minimum(shapely.area(geoms) / px_area if px_area > 0 else bbox_px, bbox_px)
        expected = int(np.ceil(est[usable].sum()))
        check_fits(expected, f"pixel index of {int(usable.sum()):,} parcels on a {grid.height}x{grid.width} grid")
        rows_per = max(1, min(strip_rows, _window_rows(C1 - C0)))
        shapes = _geojson(geoms)
        for r0 in range(R0, R1, rows_per):
            r1 = min(r0 + rows_per, R1)
            in_strip = usable & (rmax >= r0) & (rmin <= r1)
            if not in_strip.any():
                continue
            t = grid.affine @ grid.affine.translation(C0, r0)
            for layer in range(n_layers):
                sel = np.flatnonzero(in_strip & (layers == layer))
                if sel.size == 0:
                    continue
                burned = rasterize(
                    zip([shapes[i] for i in sel.tolist()], (sel + 1).tolist(), strict=True),
                    out_shape=(r1 - r0, C1 - C0),
                    transform=t,
                    fill=0,
                    all_touched=False,
                    dtype="int32",
                )
                rr, cc = np.nonzero(burned)
                flat_rows: np.ndarray = (rr + r0).astype(pix_dtype)
                flat_rows *= w
                flat_rows += (cc + C0).astype(pix_dtype)
                pix_parts.append(flat_rows)
                lab_parts.append(burned[rr, cc] - 1)
                del burned, rr, cc
    if pix_parts:
        pix = np.concatenate(pix_parts)
        del pix_parts
        lab = np.concatenate(lab_parts).astype(np.int32, copy=False)
        del lab_parts
        if n_layers > 1 or not np.all(pix[1:] > pix[:-1]):
            order = np.lexsort((lab, pix))
            pix, lab = pix[order], lab[order]
    else:
        pix = np.zeros(0, dtype=pix_dtype)
        lab = np.zeros(0, dtype=np.int32)
    return PixelIndex(grid=grid, pids=pids, pix=pix, lab=lab, passes=n_layers)


def _geojson(geoms: np.ndarray) -> list[Any]:
    """GeoJSON-like mappings of polygonal geometries, built in bulk (what ``rasterize`` consumes).

    shapely's per-geometry ``__geo_interface__`` costs ~19 us a parcel (0.38 s of a 20,000-parcel
    index build); one ``to_ragged_array`` plus list slicing is ~10x cheaper. Anything that is not
    (multi)polygonal is passed through unchanged for rasterio to convert.
    """
    import shapely

    if geoms.size == 0:
        return []
    kinds = shapely.get_type_id(geoms)
    polygonal = np.isin(kinds, (3, 6))  # Polygon, MultiPolygon
    out: list[Any] = list(geoms)
    idx = np.flatnonzero(polygonal & ~shapely.is_empty(geoms))
    if idx.size == 0:
        return out
    # Polygon-only input comes back as (rings, polygons); anything with a MultiPolygon as
    # (rings, polygons, multipolygons). Polygons are one-part multipolygons here.
    _, coords, offsets = shapely.to_ragged_array(geoms[idx])
    xy = coords.tolist()
    ring_off, poly_off = offsets[0].tolist(), offsets[1].tolist()
    multi_off = offsets[2].tolist() if len(offsets) == 3 else list(range(idx.size + 1))
    for k, i in enumerate(idx.tolist()):
        polys = [
            [xy[ring_off[r]:ring_off[r + 1]] for r in range(poly_off[q], poly_off[q + 1])]
            for q in range(multi_off[k], multi_off[k + 1])
        ]
        out[i] = {"type": "MultiPolygon", "coordinates": polys}
    return out


def _overlap_layers(geoms: np.ndarray) -> np.ndarray:
    """Assign each parcel a rasterisation pass so that no two parcels of a pass overlap."""
    import shapely

    n = geoms.size
    layers = np.zeros(n, dtype=np.int32)
    if n < 2:
        return layers
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if left.size == 0:
        return layers
    # Neighbours that only touch share a boundary; overlap means the interiors intersect.
    inner = shapely.relate_pattern(geoms[left], geoms[right], "T********")
    left, right = left[inner], right[inner]
    if left.size == 0:
        return layers
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    for node in sorted(neighbours):  # greedy colouring; parcels without overlap stay in pass 0
        used = {int(layers[m]) for m in neighbours[node] if m < node}
        c = 0
        while c in used:
            c += 1
        layers[node] = c
    return layers


class IndexCache:
    """An LRU cache of pixel indexes in memory, optionally backed by ``.npz`` files on disk."""

    def __init__(self, max_items: int = 8, directory: str | os.PathLike[str] | None = None) -> None:
        self.max_items = max_items
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, PixelIndex] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, grid: Grid) -> PixelIndex | None:
        """The cached index for a key, from memory or disk; None when absent."""
        full = f"{grid.key()}-{key}"
        if full in self._items:
            self._items.move_to_end(full)
            self.hits += 1
            return self._items[full]
        if self.directory is not None:
            path = self.directory / f"{full}.npz"
            if path.exists():
                try:
                    with np.load(path) as z:
                        idx = PixelIndex(grid=grid, pids=z["pids"], pix=z["pix"], lab=z["lab"], passes=int(z["passes"]))
                    self._remember(full, idx)
                    self.hits += 1
                    return idx
                except Exception as exc:  # noqa: BLE001 - a damaged cache file is rebuilt
                    log.warning("pixel index cache file %s unreadable (%s); rebuilding", path, exc)
        self.misses += 1
        return None

    def put(self, key: str, index: PixelIndex) -> None:
        """Remember an index (and write it to the cache folder, if any)."""
        full = f"{index.grid.key()}-{key}"
        self._remember(full, index)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{full}.{os.getpid()}.npz"
            np.savez(tmp, pids=index.pids, pix=index.pix, lab=index.lab, passes=index.passes)
            os.replace(tmp, self.directory / f"{full}.npz")

    def _remember(self, full: str, index: PixelIndex) -> None:
        self._items[full] = index
        self._items.move_to_end(full)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every in-memory index."""
        self._items.clear()


_DEFAULT_CACHE: IndexCache | None = None


def default_cache() -> IndexCache:
    """The process-wide index cache (folder from ``$CBMFLOW_INDEX_CACHE`` if set)."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = IndexCache(directory=os.environ.get("CBMFLOW_INDEX_CACHE") or None)
    return _DEFAULT_CACHE
