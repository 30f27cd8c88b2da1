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


def build_index(
    grid: Grid,
    geoms: np.ndarray,
    pids: np.ndarray,
    *,
    strip_rows: int = STRIP_ROWS,
) -> PixelIndex:
    """Rasterise parcel geometries (already in the grid's CRS) onto a grid by the pixel-centre rule."""
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
