"""Image chips: a small PNG of a parcel and its surroundings on one scene, from the CARD COGs.

Reads only the window around the parcel (COG range reads; ``/vsis3/`` for S3 URIs), draws the
parcel outline, and keeps the PNG in an in-memory LRU (and, with ``CBMFLOW_CHIP_CACHE`` set, on
disk), so scrolling back along the timeline never reads the raster twice.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core import storage
from cbmflow.core.errors import CorruptData, NotFound

SIZE = 160  # chip edge in pixels
MARGIN_M = 150.0  # context around the parcel, metres (at least)
_OUTLINE = (255, 212, 0)


class ChipCache:
    """A thread-safe LRU of PNG bytes bounded by total size, optionally backed by a folder."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, folder: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.folder = Path(folder) if folder else None
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        """The cached PNG for a key, or None."""
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
        if self.folder is not None:
            path = self.folder / f"{key}.png"
            if path.exists():
                data = path.read_bytes()
                self._put_mem(key, data)
                with self._lock:
                    self.hits += 1
                return data
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: str, data: bytes) -> None:
        """Store a PNG under a key."""
        self._put_mem(key, data)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            tmp.replace(self.folder / f"{key}.png")

    def _put_mem(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._items:
                self._size -= len(self._items.pop(key))
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


CACHE = ChipCache(folder=os.environ.get("CBMFLOW_CHIP_CACHE") or None)


def cache_key(pid: int, obsid: int, assets: dict[str, str], size: int) -> str:
    """A key that changes when the scene's rasters change (a reprocessed scene gets new URIs)."""
    h = hashlib.sha1(repr(sorted(assets.items())).encode()).hexdigest()[:12]
    return f"{int(obsid)}-{int(pid)}-{int(size)}-{h}"


def chip_png(pid: int, obsid: int, assets: dict[str, str], card_type: str, epsg: int, wkt: str,
             *, size: int = SIZE) -> bytes:
    """The chip of a parcel on a scene as PNG bytes (cached)."""
    key = cache_key(pid, obsid, assets, size)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    data = render(assets, card_type, epsg, wkt, size=size)
    CACHE.put(key, data)
    return data


def render(assets: dict[str, str], card_type: str, epsg: int, wkt: str, *, size: int = SIZE) -> bytes:
    """Read the window around the parcel from the scene's COGs and encode an RGB PNG."""
    import shapely
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.features import rasterize
    from rasterio.transform import from_bounds
    from rasterio.warp import transform_geom
    from rasterio.windows import from_bounds as window_from_bounds

    bands = ["VV"] if card_type == "bs" else ["B04", "B03", "B02"]
    geom = shapely.from_wkt(wkt)
    layers = []
    with storage.rasterio_env():
        for band in bands:
            uri = assets.get(band)
            if not uri:
                raise NotFound(f"scene has no {band} raster")
            with storage.open_raster(uri) as src:
                g = shapely.geometry.shape(transform_geom(CRS.from_epsg(epsg), src.crs, geom.__geo_interface__))
                x0, y0, x1, y1 = g.bounds
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                half = max(x1 - x0, y1 - y0) / 2 + max(MARGIN_M, 0.5 * max(x1 - x0, y1 - y0))
                bounds = (cx - half, cy - half, cx + half, cy + half)
                win = window_from_bounds(*bounds, transform=src.transform)
                try:
                    arr = src.read(1, window=win, out_shape=(size, size), boundless=True, masked=True,
                                   resampling=Resampling.bilinear, fill_value=src.nodata or 0)
                except Exception as exc:  # noqa: BLE001 - GDAL/HTTP errors name the file
                    raise CorruptData(f"cannot read a chip window from {uri}: {exc}") from exc
                layers.append(np.ma.filled(arr.astype("float64"), np.nan))
                shape_geom = g
    rgb = _stretch(layers, card_type)
    out_transform = from_bounds(*bounds, size, size)
    edge = rasterize([(shape_geom.boundary.buffer(1.2 * (2 * half) / size), 1)], out_shape=(size, size),
                     transform=out_transform, fill=0, dtype="uint8").astype(bool)
    for i, c in enumerate(_OUTLINE):
        rgb[i][edge] = c
    return _png(rgb)


def _stretch(layers: list[np.ndarray], card_type: str) -> np.ndarray:
    if card_type == "bs":
        lin = layers[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            db = np.where(lin > 0, 10 * np.log10(lin), np.nan)
        grey = np.clip((db + 25.0) / 25.0, 0, 1)
        out = np.nan_to_num(grey * 255, nan=0).astype("uint8")
        return np.stack([out, out, out])
    stack = np.stack(layers)
    finite = stack[np.isfinite(stack)]
    if finite.size == 0:
        return np.zeros((3, *stack.shape[1:]), dtype="uint8")
    lo, hi = np.percentile(finite, [2, 98])
    scaled = np.clip((stack - lo) / ((hi - lo) or 1.0), 0, 1)
    return np.nan_to_num(scaled * 255, nan=0).astype("uint8")


def _png(rgb: np.ndarray) -> bytes:
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=rgb.shape[2], height=rgb.shape[1], count=3, dtype="uint8") as dst:
            dst.write(rgb)
        return bytes(mem.read())


def stats() -> dict[str, Any]:
    """Cache counters (for the health endpoint and tests)."""
    return {"hits": CACHE.hits, "misses": CACHE.misses, "entries": len(CACHE._items)}
