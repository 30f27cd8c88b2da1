"""Zonal statistics: count, mean, std, min, max, p25, p50, p75 of a raster band per parcel.

The engine rasterises each parcel set once per raster grid (:mod:`cbmflow.extract.pixelindex`) and
reuses that index for every scene on the grid: a scene's statistics are then one windowed read
per row strip, one gather of the parcel pixels and one sort of (parcel, value) keys, from which
counts, sums, minima, maxima and percentiles fall out as segment operations.

Definitions (identical to rasterstats ``zonal_stats`` with ``all_touched=False``):

* a pixel belongs to a parcel when its centre lies inside the parcel (after the inward buffer);
* nodata and NaN pixels are excluded; a parcel with no valid pixel yields no row;
* ``std`` is the population standard deviation (ddof=0);
* ``p25/p50/p75`` are numpy's default (linear) percentiles of the valid pixel values.

Statistics are computed in float64 and stored as float32.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cbmflow.core import bands as bands_mod
from cbmflow.core.errors import CorruptData, InputError
from cbmflow.extract.pixelindex import (
    BYTES_PER_INDEXED_PIXEL,
    Grid,
    IndexCache,
    PixelIndex,
    build_index,
    check_fits,
    default_cache,
)
from cbmflow.parcels.vector import Shapes

log = logging.getLogger(__name__)

STAT_COLUMNS: tuple[str, ...] = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")
PERCENTILES: tuple[float, ...] = (25.0, 50.0, 75.0)
SCL_N_CLASSES = 12
S1_TILE_M = 20_000.0  # fixed tiling of an AOI's UTM grid for S1 CARD units
# Raster dtypes whose values are exact in float32 (the fast single-sort path applies).
_F32_EXACT = {"uint8", "int8", "uint16", "int16", "float32"}
# Decode compressed blocks on every core (GDAL >= 3.6 decodes a multi-block window in parallel),
# or on $CBMFLOW_GDAL_THREADS threads: where as many extractions run at once as there are cores,
# 1 thread each spends ~17 % less CPU per band than ALL_CPUS (docs/performance.md, section 3).
# Every block is read once per scene, so GDAL's block cache (default 5 % of RAM) only costs memory.
READ_ENV: dict[str, Any] = {"GDAL_NUM_THREADS": os.environ.get("CBMFLOW_GDAL_THREADS") or "ALL_CPUS",
                            "GDAL_CACHEMAX": 128 * 2**20}


# --------------------------------------------------------------------------------------------
# Statistics on an index
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZonalResult:
    """Statistics of the parcels with at least one valid pixel (arrays aligned by position)."""

    pid: np.ndarray  # int64 parcel ids (index labels mapped to ids)
    count: np.ndarray  # int32
    mean: np.ndarray  # float64
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    p25: np.ndarray
    p50: np.ndarray
    p75: np.ndarray

    def __len__(self) -> int:
        return int(self.pid.size)

    def to_frame(self, id_name: str = "pid") -> Any:
        """The result as a pandas DataFrame (statistics as float32, as stored)."""
        import pandas as pd

        data: dict[str, Any] = {id_name: self.pid, "count": self.count.astype(np.int32)}
        for col in STAT_COLUMNS[1:]:
            data[col] = getattr(self, col).astype(np.float32)
        return pd.DataFrame(data)


def _float32_sort_keys(v: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (no NaN), computed in place when v is float32."""
    u = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
    m = u >> np.uint32(31)  # 1 for negative values
    np.negative(m, out=m)  # 0xFFFFFFFF for negative, 0 otherwise
    m |= np.uint32(0x80000000)
    u ^= m  # negative: all bits flipped; positive: sign bit set
    return u


def _float32_from_keys(k: np.ndarray) -> np.ndarray:
    """Invert :func:`_float32_sort_keys` in place on a uint32 array."""
    m = k >> np.uint32(31)  # 1 where the value was positive
    m *= np.uint32(0x7FFFFFFF)
    np.subtract(np.uint32(0xFFFFFFFF), m, out=m)  # positive: 0x80000000, negative: 0xFFFFFFFF
    k ^= m
    return k.view(np.float32)


# Work in slices of ~1 M pixels (8 MiB of keys): the per-pixel temporaries stay in cache and are
# never page-faulted in as whole-index arrays. With the index's cached label counts and no
# compaction when few pixels are invalid, one band's statistics at 16.8 M pixels take 0.39 s
# instead of 0.57 s (docs/performance.md, section 3).
_SLICE = 1 << 20
# Below this share of valid pixels the invalid ones are dropped before the sort; above it they are
# keyed to sort last within their parcel (no compaction of labels and values).
_COMPACT_BELOW = 0.8
_INVALID_KEY = np.uint64(0xFFFFFFFF)  # low word of an invalid pixel's key: after every valid value
_INVALID_BITS = 0x7FFFFFFF  # the float32 bits _float32_from_keys gives that low word (a NaN)
_LOW_WORD = 0 if sys.byteorder == "little" else 1  # the uint32 half of a uint64 holding its low bits


def zonal_from_values(index: PixelIndex, values: np.ndarray, valid: np.ndarray) -> ZonalResult:
    """Per-parcel statistics from the index-aligned pixel values and their validity."""
    if values.dtype.name not in _F32_EXACT:
        return _zonal_lexsort(index, values, valid)
    n = index.n_parcels
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        return _no_rows(index)
    bad: np.ndarray | None = None
    if n_valid < _COMPACT_BELOW * values.size:
        lab, v = index.lab[valid], values[valid]
        total = np.bincount(lab, minlength=n)
    else:
        lab, v, total = index.lab, values, index.label_counts
        if n_valid < values.size:
            bad = np.flatnonzero(~valid)
    m = v.size
    keys = np.empty(m, dtype=np.uint64)  # (label << 32) | order-preserving bits of the value
    for a in range(0, m, _SLICE):
        k = keys[a: a + _SLICE]
        np.left_shift(lab[a: a + _SLICE], 32, out=k, dtype=np.uint64, casting="unsafe")
        k |= _float32_sort_keys(v[a: a + _SLICE].astype(np.float32))  # a copy: the input is not modified
    del lab, v
    if bad is not None:
        keys[bad] |= _INVALID_KEY
    keys.sort()
    low = keys.view(np.uint32)[_LOW_WORD::2]  # sorted values' keys, parcel by parcel
    cnt = total - np.bincount(index.lab[bad], minlength=n) if bad is not None else total
    has = total > 0  # parcels with a segment in the sorted keys (valid or not)
    seg, c = total[has], cnt[has]
    ends = np.cumsum(seg)
    starts = ends - seg
    mean, std = _segment_moments(low, starts, ends, seg, c, masked=bad is not None)
    present = c > 0
    c, starts = c[present], starts[present]

    def at(pos: np.ndarray) -> np.ndarray:
        return _float32_from_keys(low[pos]).astype(np.float64)  # fancy indexing copies

    pct = [_percentile(at, starts, c, q) for q in PERCENTILES]
    return ZonalResult(
        pid=index.pids[has][present], count=c.astype(np.int32), mean=mean[present], std=std[present],
        min=at(starts), max=at(starts + c - 1), p25=pct[0], p50=pct[1], p75=pct[2],
    )


def _segment_moments(low: np.ndarray, starts: np.ndarray, ends: np.ndarray, seg: np.ndarray, c: np.ndarray,
                     *, masked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each segment's valid values (the first ``c`` of ``seg``), slice by slice."""
    k = starts.size
    mean, std = np.empty(k), np.empty(k)
    cuts = np.searchsorted(ends, np.arange(_SLICE, int(ends[-1]), _SLICE), side="left") + 1
    edges = np.unique(np.concatenate(([0], cuts, [k])))
    for q0, q1 in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        a, b = int(starts[q0]), int(ends[q1 - 1])
        bits = low[a:b].copy()
        x = _float32_from_keys(bits).astype(np.float64)
        invalid = bits == _INVALID_BITS if masked else None
        if invalid is not None:
            x[invalid] = 0.0
        loc = starts[q0:q1] - a
        cc = np.maximum(c[q0:q1], 1)
        mu = np.add.reduceat(x, loc) / cc
        dev = np.repeat(mu, seg[q0:q1])
        np.subtract(x, dev, out=dev)
        if invalid is not None:
            dev[invalid] = 0.0
        np.square(dev, out=dev)
        mean[q0:q1] = mu
        std[q0:q1] = np.sqrt(np.add.reduceat(dev, loc) / cc)
    return mean, std


def _percentile(at: Callable[[np.ndarray], np.ndarray], starts: np.ndarray, c: np.ndarray, q: float) -> np.ndarray:
    """numpy's default ('linear') percentile q of each sorted segment of ``c`` values from ``starts``."""
    qq = q / 100.0
    vi = c * qq + (1.0 - qq) - 1.0  # alpha = beta = 1
    prev = np.floor(vi)
    gamma = vi - prev
    lo = np.clip(prev.astype(np.int64), 0, c - 1)
    hi = np.clip(prev.astype(np.int64) + 1, 0, c - 1)
    a, b = at(starts + lo), at(starts + hi)
    diff = b - a
    r = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1.0 - gamma), r)


def _no_rows(index: PixelIndex) -> ZonalResult:
    empty = np.zeros(0)
    return ZonalResult(index.pids[:0], np.zeros(0, dtype=np.int32), empty, empty, empty, empty, empty, empty, empty)


def _zonal_lexsort(index: PixelIndex, values: np.ndarray, valid: np.ndarray) -> ZonalResult:
    """:func:`zonal_from_values` for float64 and 32-bit integers: an exact two-key sort."""
    lab = index.lab[valid]
    v = values[valid]
    if v.size == 0:
        return _no_rows(index)
    cnt = np.bincount(lab, minlength=index.n_parcels)
    present = cnt > 0
    c = cnt[present]
    order = np.lexsort((v, lab))
    s = v[order].astype(np.float64)
    del order, v, lab
    ends = np.cumsum(c)
    starts = ends - c
    mean = np.add.reduceat(s, starts) / c
    dev = np.repeat(mean, c)
    np.subtract(s, dev, out=dev)
    np.square(dev, out=dev)
    std = np.sqrt(np.add.reduceat(dev, starts) / c)
    del dev
    pct = [_percentile(lambda pos: s[pos], starts, c, q) for q in PERCENTILES]
    return ZonalResult(
        pid=index.pids[present], count=c.astype(np.int32), mean=mean, std=std,
        min=s[starts], max=s[ends - 1], p25=pct[0], p50=pct[1], p75=pct[2],
    )


def gather(src: Any, band: int, index: PixelIndex, uri: str = "") -> np.ndarray:
    """The values of the index's pixels in one band, read strip by strip (bounded memory)."""
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    out = np.empty(index.pix.size, dtype=src.dtypes[band - 1])
    w = index.grid.width
    for r0, r1, c0, c1, a, b in index.default_strips:
        try:
            arr = src.read(band, window=Window(c0, r0, c1 - c0, r1 - r0))
        except RasterioIOError as exc:
            raise CorruptData(f"raster {uri or src.name} cannot be read (rows {r0}-{r1}): {exc}") from exc
        p = index.pix[a:b]
        if c0 == 0 and c1 == w:  # a full-width window: the offset is the flat pixel number
            out[a:b] = arr.ravel()[p - p.dtype.type(r0 * w)]
        else:
            rows, cols = np.divmod(p, w)
            out[a:b] = arr.ravel()[(rows - r0) * (c1 - c0) + (cols - c0)]
    return out


def valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where a value is neither nodata nor NaN."""
    ok = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        ok &= ~np.isnan(values)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        ok &= values != nodata
    return ok


def scl_histogram(index: PixelIndex, scl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-parcel counts of SCL classes 0..11: (pids, counts[n, 12]) of parcels with any class 1..11."""
    cls = scl.astype(np.int64)
    ok = (cls >= 0) & (cls < SCL_N_CLASSES)
    flat = index.lab[ok].astype(np.int64) * SCL_N_CLASSES + cls[ok]
    hist = np.bincount(flat, minlength=index.n_parcels * SCL_N_CLASSES).reshape(index.n_parcels, SCL_N_CLASSES)
    keep = hist[:, 1:].sum(axis=1) > 0
    return index.pids[keep], hist[keep].astype(np.int32)


# --------------------------------------------------------------------------------------------
# Parcels and indexes
# --------------------------------------------------------------------------------------------


def prepare_parcels(
    parcels: Any, crs: Any, *, buffer: float = 0.0, min_area: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Geometries in the raster CRS after the minimum area filter and inward buffer, and their row positions.

    ``parcels`` is a GeoDataFrame or :class:`cbmflow.parcels.vector.Shapes`; shapes already in the
    raster's CRS (and metric when buffered) need neither pyproj nor geopandas.
    """
    if parcels.crs is None:  # both a GeoDataFrame and Shapes carry .crs
        raise InputError("the parcels have no CRS; set one before extracting")
    if isinstance(parcels, Shapes):
        from rasterio.crs import CRS

        own = CRS.from_user_input(parcels.crs)
        if ((buffer or min_area) and not own.is_projected) or (crs is not None and own != crs):
            import geopandas as gpd

            parcels = gpd.GeoDataFrame(geometry=list(parcels.geoms), crs=parcels.crs)  # reprojection below
        else:
            return _filter_buffer(parcels.geoms, buffer=buffer, min_area=min_area)
    gdf = parcels
    work = gdf
    if buffer or min_area:
        # Area and buffer are metric: use the parcels' CRS when projected, else their UTM zone.
        if not gdf.crs.is_projected:
            work = gdf.to_crs(gdf.estimate_utm_crs())
    geoms, pos = _filter_buffer(np.asarray(work.geometry.values, dtype=object), buffer=buffer, min_area=min_area)
    import geopandas as gpd

    series = gpd.GeoSeries(geoms, crs=work.crs)
    if crs is not None and not series.crs.equals(crs):
        series = series.to_crs(crs)
    return np.asarray(series.values, dtype=object), pos


def _filter_buffer(geoms: np.ndarray, *, buffer: float, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """The present geometries of at least ``min_area`` (metric CRS), buffered inward, and their positions."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    keep = ~shapely.is_missing(geoms)
    if min_area:
        keep &= shapely.area(geoms) >= float(min_area)
    if buffer:
        geoms = shapely.buffer(geoms, -abs(float(buffer)))
    pos = np.flatnonzero(keep)
    return geoms[pos], pos


def _parcel_hash(shapes: Shapes, buffer: float, min_area: float) -> str:
    import shapely

    h = hashlib.sha1()
    h.update(str(shapes.crs or "").encode())
    h.update(f"{buffer}|{min_area}".encode())
    h.update(np.asarray(shapes.ids).astype(str).astype("U").tobytes())
    for wkb in shapely.to_wkb(shapes.geoms):
        h.update(wkb or b"")
    return h.hexdigest()[:20]


def index_for(
    grid: Grid,
    key: str,
    make: Callable[[], tuple[np.ndarray, np.ndarray]],
    cache: IndexCache | None,
) -> PixelIndex:
    """The cached index of a parcel set on a grid, built with ``make() -> (geoms, pids)`` on a miss."""
    cache = cache if cache is not None else default_cache()
    idx = cache.get(key, grid)
    if idx is None:
        geoms, pids = make()
        idx = build_index(grid, geoms, pids)
        cache.put(key, idx)
        log.info("built pixel index %s on grid %s: %d parcels, %d pixels, %d pass(es)",
                 key, grid.key(), idx.n_parcels, idx.pix.size, idx.passes)
    # the statistics still need values, validity and the sort working set per pixel (memory guard)
    check_fits(idx.pix.size, f"statistics over pixel index {key}", per_pixel=BYTES_PER_INDEXED_PIXEL - 8)
    return idx


# --------------------------------------------------------------------------------------------
# Ad-hoc extraction
# --------------------------------------------------------------------------------------------


def open_raster(uri: str) -> Any:
    """The raster at a local path or object-storage URI, opened for reading."""
    from cbmflow.core import storage

    return storage.open_raster(uri)


def _band_number(src: Any, band: int | str, uri: str) -> int:
    if isinstance(band, int) or (isinstance(band, str) and band.isdigit()):
        b = int(band)
        if not 1 <= b <= src.count:
            raise InputError(f"raster {uri} has {src.count} band(s); band {b} does not exist")
        return b
    names = [d or "" for d in src.descriptions]
    if band in names:
        return names.index(band) + 1
    if src.count == 1:
        return 1  # a single-band CARD COG named by its band code
    raise InputError(f"raster {uri} has no band {band!r}; bands: {', '.join(n or str(i + 1) for i, n in enumerate(names))}")


def _cloud_valid(mask: Any, src: Any, index: PixelIndex, uri: str) -> np.ndarray:
    """True where the pixel is not masked (mask: SCL raster URI or boolean array, True = masked)."""
    if isinstance(mask, np.ndarray):
        if mask.shape != (src.height, src.width):
            raise InputError(f"mask shape {mask.shape} differs from raster {uri} shape {(src.height, src.width)}")
        return ~mask.ravel()[index.pix]
    scl = scl_on_grid(str(mask), index)
    return ~np.isin(scl, list(bands_mod.SCL_CLOUDY))


def scl_on_grid(scl_uri: str, index: PixelIndex) -> np.ndarray:
    """SCL values at the index's pixels; resampled (nearest) when SCL is on another grid."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with open_raster(scl_uri) as scl:
        if Grid.of(scl) == index.grid:
            return gather(scl, 1, index, scl_uri)
        with WarpedVRT(scl, crs=index.grid.crs_wkt, transform=index.grid.affine, width=index.grid.width,
                       height=index.grid.height, resampling=Resampling.nearest, nodata=0) as vrt:
            return gather(vrt, 1, index, scl_uri)


def extract_stats(
    raster_uri: str,
    parcels: Any,
    *,
    id_col: str = "pid",
    band: int | str = 1,
    buffer: float = 0.0,
    min_area: float = 0.0,
    mask: Any = None,
    index_cache: IndexCache | None = None,
) -> Any:
    """Per-parcel statistics of one raster band: DataFrame parcel_id, count, mean, std, min, max, p25, p50, p75."""
    res, ids = extract_result(raster_uri, parcels, id_col=id_col, band=band, buffer=buffer, min_area=min_area,
                              mask=mask, index_cache=index_cache)
    frame = res.to_frame("parcel_id")
    frame["parcel_id"] = ids
    return frame


def extract_result(
    raster_uri: str,
    parcels: Any,
    *,
    id_col: str = "pid",
    band: int | str = 1,
    buffer: float = 0.0,
    min_area: float = 0.0,
    mask: Any = None,
    index_cache: IndexCache | None = None,
    parcel_key: str | None = None,
) -> tuple[ZonalResult, np.ndarray]:
    """Per-parcel statistics of one raster band and the parcel ids of its rows (GeoDataFrame or Shapes in).

    ``parcel_key`` names the parcel set in ``index_cache`` when the caller knows it is fixed (e.g. one
    command's parcels); by default the key is a hash of the ids, shapes, CRS, buffer and minimum area.
    """
    from cbmflow.core import storage

    shapes = parcels if isinstance(parcels, Shapes) else Shapes.of_frame(parcels, id_col)
    with storage.rasterio_env(None, **READ_ENV), open_raster(raster_uri) as src:
        grid = Grid.of(src)
        if src.crs is None:
            raise InputError(f"raster {raster_uri} has no CRS")
        b = _band_number(src, band, raster_uri)
        key = parcel_key or _parcel_hash(shapes, buffer, min_area)

        def make() -> tuple[np.ndarray, np.ndarray]:
            geoms, pos = prepare_parcels(shapes if isinstance(parcels, Shapes) else parcels, src.crs,
                                         buffer=buffer, min_area=min_area)
            return geoms, pos.astype(np.int64)

        index = index_for(grid, key, make, index_cache)
        if index.pix.size == 0:
            log.warning("raster %s covers none of the %d parcels: no statistics", raster_uri, len(shapes))
        values = gather(src, b, index, raster_uri)
        ok = valid_mask(values, src.nodatavals[b - 1])
        if mask is not None:
            ok &= _cloud_valid(mask, src, index, raster_uri)
        res = zonal_from_values(index, values, ok)
    return res, (shapes.ids[res.pid] if len(res) else shapes.ids[:0])
