"""Native S1 CARD-BS: terrain-corrected backscatter from a GRD SAFE and a DEM with sarsen.

The SNAP graph path (``include/graphs/``) needs SNAP; this engine runs anywhere the venv runs.
It writes the same layout as the SNAP path: one float32 LINEAR single-band COG per polarisation,
nodata NaN, at ``<out_uri>/<product_id>_<BAND>.tif``, on the AOI's projected grid.

How it works (see ``docs/sarsen-vs-snap.md`` for the differences to the SNAP graph):

1. the DEM is warped (bilinear) onto the target grid first - the output CRS (``epsg``, default the
   UTM zone of the scene/DEM overlap) at ``resolution`` metres, origin snapped to multiples of
   ``resolution`` so every scene of an AOI lands on one fixed grid. sarsen computes its output on
   the DEM's grid, so this yields the CARD grid without a second resampling of the backscatter;
2. ``sarsen.terrain_correction`` geocodes beta0 onto that grid and, by default, divides by the
   area-integrated simulated beta0 (``gamma_bilinear``): gamma0 terrain-flattened (RTC). It writes
   a GeoTIFF (its returned array is lazy: reading it would recompute everything);
3. that GeoTIFF is read once, flipped north-up, masked (NaN where the DEM had no data) and written
   as a COG with overviews and provenance tags through :func:`cbmflow.core.cog.write_cog`.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core import storage
from cbmflow.core.errors import CbmError, InputError, NotFound, ProcessingError
from cbmflow.core.geo import utm_epsg

log = logging.getLogger(__name__)

ENGINE = "sarsen"
CORRECT_RADIOMETRY = (None, "gamma_bilinear", "gamma_nearest")

_PRODUCT_ID = re.compile(
    r"^(?P<mission>S1[A-D])_(?P<mode>IW|EW|SM|S[1-6]|WV)_(?P<ptype>GRD|SLC|RAW|OCN)(?P<res>[FHM_])_"
    r"(?P<level>[012])(?P<pclass>[SA])(?P<pol>SH|SV|DH|DV|HH|HV|VV|VH)_"
    r"(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<orbit>\d{6})_(?P<datatake>[0-9A-F]{6})_"
    r"(?P<uid>[0-9A-F]{4})$"
)
_POLS_OF_CODE = {
    "SH": ("HH",), "SV": ("VV",), "DH": ("HH", "HV"), "DV": ("VV", "VH"),
    "HH": ("HH",), "HV": ("HV",), "VV": ("VV",), "VH": ("VH",),
}
# Relative orbit = (absolute - offset) mod 175 + 1 (ESA Sentinel-1 product specification).
_RELATIVE_ORBIT_OFFSET = {"S1A": 73, "S1B": 27}

_NS = {
    "safe": "http://www.esa.int/safe/sentinel-1.0",
    "s1sarl1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1",
    "gml": "http://www.opengis.net/gml",
    "s1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1",
}


@dataclass(frozen=True)
class S1ProductId:
    """The fields encoded in a Sentinel-1 product identifier."""

    product_id: str
    mission: str  # S1A, S1B, S1C, S1D
    mode: str  # IW, EW, SM, WV
    product_type: str  # GRD, SLC, RAW, OCN
    resolution: str  # F, H, M or "_" (SLC)
    level: int
    polarisations: tuple[str, ...]
    start: datetime  # UTC
    stop: datetime  # UTC
    absolute_orbit: int
    datatake: str
    unique_id: str

    @property
    def relative_orbit(self) -> int | None:
        """Relative orbit number (track) for S1A/S1B; None where the offset is not known here."""
        offset = _RELATIVE_ORBIT_OFFSET.get(self.mission)
        return None if offset is None else (self.absolute_orbit - offset) % 175 + 1


@dataclass(frozen=True)
class SafeInfo:
    """What the manifest of a Sentinel-1 SAFE says about the product."""

    path: Path
    product_id: str
    product_type: str
    mode: str
    polarisations: tuple[str, ...]  # as listed in the manifest (measurement files may be fewer)
    footprint_wkt: str  # EPSG:4326 lon/lat polygon
    start_time: str
    relative_orbit: int | None
    orbit_direction: str | None  # "ascending" | "descending"


def parse_product_id(product_id: str) -> S1ProductId:
    """Parse a Sentinel-1 product id (with or without ``.SAFE``/``.zip``) into its fields."""
    name = re.sub(r"\.(SAFE|zip)$", "", product_id.strip().rstrip("/"), flags=re.IGNORECASE)
    m = _PRODUCT_ID.match(name)
    if not m:
        raise InputError(f"{product_id!r} is not a Sentinel-1 product id "
                         "(expected e.g. S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371)")
    g = m.groupdict()

    def ts(text: str) -> datetime:
        return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)

    return S1ProductId(
        product_id=name, mission=g["mission"], mode=g["mode"], product_type=g["ptype"],
        resolution=g["res"], level=int(g["level"]), polarisations=_POLS_OF_CODE[g["pol"]],
        start=ts(g["start"]), stop=ts(g["stop"]), absolute_orbit=int(g["orbit"]),
        datatake=g["datatake"], unique_id=g["uid"],
    )


def output_uri(out_uri: str, product_id: str, band: str) -> str:
    """The deterministic URI of one CARD-BS band COG: ``<out_uri>/<product_id>_<BAND>.tif``."""
    if not product_id or "/" in product_id:
        raise InputError(f"product id {product_id!r} cannot be part of an object key")
    return storage.join(out_uri, f"{product_id}_{band.upper()}.tif")


def read_safe(safe_path: str | Path) -> SafeInfo:
    """Read a Sentinel-1 SAFE folder's manifest; NotFound if absent, InputError if not a SAFE."""
    path = Path(safe_path)
    if not path.exists():
        raise NotFound(f"Sentinel-1 SAFE {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{path} is not a SAFE folder (a zipped SAFE must be unzipped first)")
    manifest = path / "manifest.safe"
    if not manifest.is_file():
        raise InputError(f"{path} is not a Sentinel-1 SAFE: no manifest.safe in it")
    try:
        root = ET.parse(manifest).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{manifest} is not a readable SAFE manifest: {exc}") from exc

    def text(xpath: str) -> str | None:
        el = root.find(xpath, _NS)
        return el.text.strip() if el is not None and el.text else None

    product_type = text(".//s1sarl1:productType")
    mode = text(".//s1sarl1:instrumentMode/s1sarl1:mode")
    if product_type is None:
        raise InputError(f"{path} is not a Sentinel-1 SAFE: its manifest names no s1sarl1:productType")
    coords = text(".//gml:coordinates")
    if coords is None:
        raise InputError(f"{manifest} has no footprint (gml:coordinates)")
    try:
        pairs = [tuple(float(v) for v in p.split(",")) for p in coords.split()]
        ring = [(lon, lat) for lat, lon in pairs]
    except ValueError as exc:
        raise InputError(f"{manifest}: footprint gml:coordinates {coords!r} unreadable") from exc
    ring.append(ring[0])
    wkt = "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"
    pols = tuple(
        el.text.strip() for el in root.iterfind(".//s1sarl1:transmitterReceiverPolarisation", _NS)
        if el.text
    )
    rel = text(".//safe:relativeOrbitNumber")
    direction = text(".//s1:pass")
    return SafeInfo(
        path=path, product_id=re.sub(r"\.SAFE$", "", path.name, flags=re.IGNORECASE),
        product_type=product_type, mode=mode or "", polarisations=pols, footprint_wkt=wkt,
        start_time=text(".//safe:startTime") or "", relative_orbit=int(rel) if rel else None,
        orbit_direction=direction.lower() if direction else None,
    )


def available_polarisations(safe_path: str | Path) -> dict[str, str]:
    """Polarisation -> measurement group (e.g. ``"VV": "IW/VV"``) whose files exist in the SAFE."""
    import xarray as xr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_dataset(str(safe_path), engine="sentinel-1", check_files_exist=True)
    except Exception as exc:  # xarray-sentinel raises assorted errors on broken SAFEs
        raise InputError(f"{safe_path} is not a readable Sentinel-1 SAFE: {exc}") from exc
    groups = [g for g in ds.attrs.get("subgroups", []) if g.count("/") == 1]
    # xarray-sentinel checks the annotation files; the measurement TIFF must exist too
    measurements = [f.name.lower() for f in (Path(safe_path) / "measurement").glob("*.tif*")]
    return {
        g.split("/")[1].upper(): g for g in groups
        if any(f"-{g.split('/')[1].lower()}-" in m for m in measurements)
    }


def _dem_footprint(dem_path: Path) -> tuple[Any, Any]:
    """The DEM's bounds as an EPSG:4326 polygon and its CRS."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    try:
        with rasterio.open(dem_path) as src:
            if src.crs is None:
                raise InputError(f"DEM {dem_path} has no CRS")
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            return box(*bounds), src.crs
    except RasterioIOError as exc:
        raise InputError(f"DEM {dem_path} is not a readable raster: {exc}") from exc


def target_grid(
    footprint_wkt: str, dem_path: str | Path, *, epsg: int | None, resolution: float
) -> tuple[int, Any, int, int]:
    """The output grid (epsg, transform, width, height) over the scene footprint covered by the DEM."""
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds
    from shapely import wkt as shapely_wkt

    if resolution <= 0:
        raise InputError(f"resolution must be positive, got {resolution}")
    dem = Path(dem_path)
    if not dem.exists():
        raise NotFound(f"DEM {dem} does not exist")
    scene = shapely_wkt.loads(footprint_wkt)
    dem_poly, _ = _dem_footprint(dem)
    overlap = scene.intersection(dem_poly)
    if overlap.is_empty or overlap.area == 0:
        raise InputError(
            f"DEM {dem} (lon/lat bounds {tuple(round(v, 4) for v in dem_poly.bounds)}) does not cover "
            f"the scene footprint {tuple(round(v, 4) for v in scene.bounds)}"
        )
    if epsg is None:
        c = overlap.centroid
        epsg = utm_epsg(c.x, c.y)
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *overlap.bounds,
                                                densify_pts=21)
    left = np.floor(left / resolution) * resolution
    bottom = np.floor(bottom / resolution) * resolution
    right = np.ceil(right / resolution) * resolution
    top = np.ceil(top / resolution) * resolution
    width = int(round((right - left) / resolution))
    height = int(round((top - bottom) / resolution))
    return epsg, from_origin(left, top, resolution, resolution), width, height


def _warp_dem(dem_path: Path, out_path: Path, epsg: int, transform: Any, width: int,
              height: int) -> np.ndarray:
    """Warp the DEM onto the target grid; writes a gap-free DEM, returns its no-data mask."""
    import rasterio
    from rasterio.warp import Resampling, reproject
    from scipy import ndimage

    dem = np.full((height, width), np.nan, dtype=np.float32)
    with rasterio.open(dem_path) as src:
        reproject(rasterio.band(src, 1), dem, dst_transform=transform, dst_crs=f"EPSG:{epsg}",
                  dst_nodata=np.nan, resampling=Resampling.bilinear)
    missing = ~np.isfinite(dem)
    if missing.all():
        raise InputError(f"DEM {dem_path} has no valid heights over the scene footprint")
    if missing.any():
        # sarsen treats every value as a height: fill gaps with the nearest height and mask later
        idx = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        dem = dem[tuple(idx)]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": "float32", "crs": f"EPSG:{epsg}", "transform": transform,
               "tiled": True, "blockxsize": 512, "blockysize": 512}
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(dem, 1)
    return missing


def _read_north_up(path: Path) -> tuple[np.ndarray, Any]:
    """Read sarsen's single-band GeoTIFF as a north-up float32 array and its transform."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path) as src:
        arr = src.read(1).astype(np.float32, copy=False)
        t = src.transform
    if t.e > 0:  # sarsen writes the DEM's ascending-y order: bottom-up rows
        arr = arr[::-1].copy()
        return arr, from_origin(t.c, t.f + t.e * arr.shape[0], t.a, t.e)
    return arr, t


def _calibration_label(correct_radiometry: str | None) -> str:
    if correct_radiometry is None:
        return "beta0 geocoded, no radiometric terrain correction (sarsen GTC)"
    return f"gamma0 terrain-flattened (sarsen RTC, area integration {correct_radiometry})"



def _chunk_size(width: int, height: int, base: int = 1024, min_tail: int = 256) -> int:
    """A dask chunk size (a multiple of 16) whose last chunk in each dimension is empty or >= min_tail.

    sarsen's geocoding uses overlapping blocks, so a tiny remainder chunk (e.g. 111 rows after
    1024-row chunks) fails with "Overlap depth is larger than smallest chunksize"; sarsen also
    uses the chunk size as the GeoTIFF block size, which must be a multiple of 16.
    """
    longest = max(width, height, 1)
    if longest <= 2 * base:
        return -(-longest // 16) * 16
    for size in range(base, 2 * base + 1, 16):
        if all(n % size == 0 or n % size >= min_tail for n in (width, height)):
            return size
    return 2 * base


def sarsen_backscatter(
    safe_path: str | Path,
    dem_path: str | Path,
    *,
    out_uri: str,
    product_id: str | None = None,
    polarisations: tuple[str, ...] = ("VV",),
    epsg: int | None = None,
    resolution: float = 10.0,
    correct_radiometry: str | None = "gamma_bilinear",
    measurement_group: str | None = None,
    zero_is_nodata: bool = True,
) -> dict[str, str]:
    """Terrain-correct a Sentinel-1 GRD SAFE with sarsen into CARD-BS COGs; returns band -> URI."""
    import dask
    import sarsen
    import xarray_sentinel
    from rasterio.crs import CRS

    from cbmflow.core.cog import write_cog

    info = read_safe(safe_path)
    if info.product_type != "GRD":
        raise InputError(f"{info.path.name} is a Sentinel-1 {info.product_type} product; "
                         "the sarsen CARD-BS engine needs a GRD")
    if correct_radiometry not in CORRECT_RADIOMETRY:
        raise InputError(f"correct_radiometry={correct_radiometry!r}; choose one of {CORRECT_RADIOMETRY}")
    pid = product_id or info.product_id
    bands = tuple(p.upper() for p in polarisations)
    if not bands:
        raise InputError("no polarisation requested")
    available = available_polarisations(info.path)
    if measurement_group is not None:
        group_pol = measurement_group.rsplit("/", 1)[-1].upper()
        if "/" not in measurement_group or bands != (group_pol,):
            raise InputError(f"measurement_group {measurement_group!r} must be '<swath>/<POL>' and "
                             f"match the single requested polarisation, got {bands}")
        groups = {group_pol: measurement_group}
    else:
        missing_pols = [b for b in bands if b not in available]
        if missing_pols:
            raise InputError(f"polarisation(s) {', '.join(missing_pols)} not in {info.path.name}; "
                             f"available: {', '.join(sorted(available)) or 'none'}")
        groups = {b: available[b] for b in bands}
    dem = Path(dem_path)
    if not dem.exists():
        raise NotFound(f"DEM {dem} does not exist")
    grid_epsg, transform, width, height = target_grid(info.footprint_wkt, dem, epsg=epsg,
                                                      resolution=resolution)
    log.info("sarsen %s: grid EPSG:%s %sx%s at %s m", pid, grid_epsg, width, height, resolution)

    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cbmflow-sarsen-") as tmp:
        dem_grid = Path(tmp) / "dem.tif"
        no_dem = _warp_dem(dem, dem_grid, grid_epsg, transform, width, height)
        for band, group in groups.items():
            raw = Path(tmp) / f"{band}.tif"
            try:
                # Outer dask graph runs synchronously: sarsen 0.9.6's radiometry task patches
                # xarray's interp `_localize` away process-wide (mock.patch) while the GRD
                # geocoding task may run in another thread; that thread then interpolates the
                # WHOLE measurement (measured: 12 s / 0.75 GB -> 170-290 s / 5 GB, at random).
                # The geocoding task still reads the measurement with its own thread pool.
                product = sarsen.Sentinel1SarProduct(str(info.path), measurement_group=group)
                with dask.config.set(scheduler="synchronous"):
                    sarsen.terrain_correction(
                        product, str(dem_grid), output_urlpath=str(raw),
                        correct_radiometry=correct_radiometry, chunks=_chunk_size(width, height),
                    )
            except CbmError:
                raise
            except (FileNotFoundError, KeyError) as exc:
                raise InputError(f"{info.path.name} group {group}: {exc}") from exc
            except Exception as exc:
                raise ProcessingError(f"sarsen failed on {info.path.name} {band}: "
                                      f"{type(exc).__name__}: {exc}") from exc
            arr, out_transform = _read_north_up(raw)
            if arr.shape != no_dem.shape or not out_transform.almost_equals(transform):
                raise ProcessingError(f"sarsen output grid {arr.shape} {out_transform} differs "
                                      f"from the target grid {no_dem.shape} {transform}")
            # NaN: no DEM, outside the swath, radar shadow (simulated area 0 -> inf) and, by
            # default, DN 0 - the no-data border of a GRD (SNAP's border-noise removal + TC do
            # the same); sarsen itself keeps DN 0 as backscatter 0.0.
            invalid = no_dem | ~np.isfinite(arr)
            if zero_is_nodata:
                invalid |= arr == 0
            arr[invalid] = np.nan
            if invalid.all():
                log.warning("sarsen %s %s: no valid pixel on the grid (DEM outside the swath, "
                            "or only GRD border no-data)", pid, band)
            tags = {
                "CBMFLOW_ENGINE": ENGINE,
                "CBMFLOW_ENGINE_VERSION": sarsen.__version__,
                "CBMFLOW_XARRAY_SENTINEL_VERSION": xarray_sentinel.__version__,
                "CBMFLOW_CARD_TYPE": "bs",
                "CBMFLOW_PRODUCT_ID": pid,
                "CBMFLOW_SOURCE_PRODUCT": info.product_id,
                "CBMFLOW_POLARISATION": band,
                "CBMFLOW_MEASUREMENT_GROUP": group,
                "CBMFLOW_CALIBRATION": _calibration_label(correct_radiometry),
                "CBMFLOW_CORRECT_RADIOMETRY": str(correct_radiometry),
                "CBMFLOW_UNITS": "linear",
                "CBMFLOW_ORBIT": "annotation state vectors (no precise orbit file)",
                "CBMFLOW_NOISE_REMOVAL": "none (no thermal or border noise removal)",
                "CBMFLOW_ZERO_IS_NODATA": "true" if zero_is_nodata else "false",
                "CBMFLOW_DEM": str(dem.resolve()),
                "CBMFLOW_DEM_RESAMPLING": "bilinear onto the output grid",
                "CBMFLOW_SENSING_START": info.start_time,
                "CBMFLOW_GRID": f"EPSG:{grid_epsg} {resolution:g} m",
                "CBMFLOW_PROCESSED_AT": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            uri = output_uri(out_uri, pid, band)
            with storage.rasterio_env():
                write_cog(uri, arr, crs=CRS.from_epsg(grid_epsg), transform=transform,
                          nodata=float("nan"), band_names=[band], tags=tags)
            log.info("sarsen %s %s -> %s", pid, band, uri)
            results[band] = uri
    return results
