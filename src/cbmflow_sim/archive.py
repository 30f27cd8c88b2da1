"""Simulated CARD archive: a season of SIMULATED S1 CARD-BS/COH6 and S2 L2A COGs for an AOI's parcels.

Everything written here is labelled simulated (product ids contain ``SIM``, GDAL tag
``CBMFLOW_SIMULATED=true``, STAC property ``cbmflow:simulated``). See docs/simulation.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core import cog, storage
from cbmflow.core.bands import CARD_BANDS
from cbmflow.core.crops import GROUPS, PROFILES, crop_group
from cbmflow.core.errors import InputError
from cbmflow.core.geo import utm_epsg
from cbmflow_sim import events as sim_events

log = logging.getLogger(__name__)

PIXEL = 10.0
MARGIN = 200.0
LOOKS = {"VV": 6.0, "VH": 3.0}  # equivalent number of looks of the gamma speckle (JRC within-parcel CV)
PRODUCT_TYPES = {"bs": "CARD-BS", "c6": "CARD-COH6", "s2": "CARD-2A"}

# Background land covers between parcels: name -> (VV dB, VH dB, COH_VV, COH_VH, spectrum B02..B11).
BACKGROUND: dict[str, tuple[float, float, float, float, tuple[float, ...]]] = {
    "forest": (-7.5, -13.0, 0.12, 0.10, (0.025, 0.045, 0.025, 0.30, 0.14)),
    "urban": (-4.0, -11.0, 0.75, 0.60, (0.10, 0.11, 0.12, 0.18, 0.22)),
    "water": (-21.0, -27.0, 0.05, 0.05, (0.05, 0.045, 0.03, 0.015, 0.005)),
    "verge": (-11.0, -17.5, 0.30, 0.25, (0.035, 0.07, 0.04, 0.32, 0.17)),
}
_BG_SHARE = {"forest": 0.35, "urban": 0.15, "water": 0.05, "verge": 0.45}
# Endmember spectra (B02, B03, B04, B08, B11) of bare soil, green and senescent canopy.
SOIL = np.array([0.06, 0.085, 0.11, 0.20, 0.28])
GREEN = np.array([0.025, 0.06, 0.028, 0.36, 0.16])
BROWN = np.array([0.06, 0.08, 0.10, 0.28, 0.33])
CLOUD = np.array([0.62, 0.61, 0.60, 0.50, 0.36])  # cloud core (JRC cloud-class median B04 ~0.61)
S2_BANDS = ("B02", "B03", "B04", "B08", "B11")
COH_BARE = (0.68, 0.52)  # COH_VV, COH_VH of bare / stubble fields
COH_VEG = (0.27, 0.26)  # under a full canopy


@dataclass(frozen=True)
class SimulationResult:
    """Where a simulated season was written and on which grid."""

    root: str
    items_uri: str
    parcels_uri: str
    truth_uri: str
    n_scenes: int
    n_rasters: int
    epsg: int
    transform: tuple[float, ...]
    shape: tuple[int, int]
    events_uri: str = ""  # true mowing / harvest / ploughing dates (cbmflow_sim.events)


@dataclass(frozen=True)
class _Acq:
    product_id: str
    card_type: str
    platform: str
    time: dt.datetime
    relative_orbit: int
    orbit_state: str


# ----------------------------------------------------------------------------- grid helpers

def mgrs_tile(epsg: int, x: float, y: float) -> str:
    """The MGRS tile id (e.g. 33UWP) of a UTM point given in EPSG:326xx/327xx."""
    from pyproj import Transformer

    zone = epsg % 100
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    bands = "CDEFGHJKLMNPQRSTUVWXX"
    band = bands[min(20, max(0, int(math.floor((lat + 80) / 8))))]
    col_sets = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
    col = col_sets[(zone - 1) % 3][max(0, min(7, int(x // 100000) - 1))]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    row = rows[(int(y // 100000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{col}{row}"


def _grid(bounds: Sequence[float], margin: float = MARGIN) -> tuple[tuple[float, ...], tuple[int, int]]:
    minx, miny, maxx, maxy = bounds
    x0 = math.floor((minx - margin) / PIXEL) * PIXEL
    y1 = math.ceil((maxy + margin) / PIXEL) * PIXEL
    cols = int(math.ceil((maxx + margin - x0) / PIXEL))
    rows = int(math.ceil((y1 - (miny - margin)) / PIXEL))
    return (PIXEL, 0.0, x0, 0.0, -PIXEL, y1), (rows, cols)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Spatially correlated noise (zero mean, unit std) with features ~scale pixels wide."""
    from scipy.ndimage import gaussian_filter, zoom

    rows, cols = shape
    cr, cc = rows // scale + 3, cols // scale + 3
    coarse = gaussian_filter(rng.standard_normal((cr, cc)), sigma=1.0, mode="wrap")
    fine = zoom(coarse, (rows / (cr - 2) * 1.0, cols / (cc - 2) * 1.0), order=1)[:rows, :cols]
    if fine.shape != (rows, cols):  # zoom rounding
        fine = np.pad(fine, ((0, rows - fine.shape[0]), (0, cols - fine.shape[1])), mode="edge")
    fine = fine - fine.mean()
    sd = fine.std()
    return (fine / sd if sd > 0 else fine).astype(np.float32)


# ----------------------------------------------------------------------------- JRC reference values

def jrc_reference(folder: str | os.PathLike[str] | None = None) -> dict[str, float]:
    """Reference statistics derived from the JRC CbM signature samples (grassland parcels, 2020)."""
    import pandas as pd

    from cbmflow.core.config import shared_data_dir

    base = Path(folder) if folder else Path(shared_data_dir()) / "jrc_cbm_signatures"
    tsdir = base / "tsdir"
    if not tsdir.is_dir():
        raise InputError(f"JRC signature folder {tsdir} does not exist")

    def load(pattern: str) -> Any:
        files = sorted(tsdir.glob(pattern))
        if not files:
            raise InputError(f"no {pattern} files in {tsdir}")
        return pd.concat([pd.read_csv(f).assign(parcel=f.name.split("_")[0]) for f in files])

    ref: dict[str, float] = {}
    bs = load("*_s1_bs_ts.csv")
    for band, key in (("s1_bs_rAD", "vv"), ("s1_bs_VH_rAD", "vh")):
        b = bs[bs["band"] == band]
        ref[f"{key}_cv_p05"], ref[f"{key}_cv_p50"], ref[f"{key}_cv_p95"] = (
            float(v) for v in np.percentile(b["COEF.VAR"], [5, 50, 95]))
        db = 10 * np.log10(b["MEAN"].to_numpy())
        spread = pd.Series(db).groupby(b["parcel"].to_numpy()).agg(lambda x: np.percentile(x, 90) - np.percentile(x, 10))
        ref[f"{key}_db_spread_min"], ref[f"{key}_db_spread_max"] = float(spread.min()), float(spread.max())
        ref[f"{key}_lin_p01"], ref[f"{key}_lin_p99"] = (float(v) for v in np.percentile(b["MEAN"], [1, 99]))
    coh = load("*_s1_coh6_ts.csv")
    month = coh["date"].astype(str).str[4:6].astype(int)
    for band, key in (("s1_coh6_VV", "coh_vv"), ("s1_coh6_VH", "coh_vh")):
        c = coh[coh["band"] == band]
        summer = c[(month[coh["band"] == band] >= 5) & (month[coh["band"] == band] <= 9)]
        ref[f"{key}_p01"], ref[f"{key}_p99"] = (float(v) for v in np.percentile(c["MEAN"], [1, 99]))
        ref[f"{key}_summer_p05"], ref[f"{key}_summer_p95"] = (
            float(v) for v in np.percentile(summer["MEAN"], [5, 95]))
    s2 = load("*_s2_ts.csv")
    clear = s2[(s2["hist.4"] + s2["hist.5"]) >= 0.9 * s2["count"]]
    cloudy = s2[(s2["hist.8"] + s2["hist.9"]) >= 0.9 * s2["count"]]
    for band in ("B04", "B08"):
        v = clear.loc[clear["band"] == band, "MEAN"]
        ref[f"{band}_clear_p01"], ref[f"{band}_clear_p99"] = (float(x) for x in np.percentile(v, [1, 99]))
        ref[f"{band}_cloud_p50"] = float(np.median(cloudy.loc[cloudy["band"] == band, "MEAN"]))
    return ref


# ----------------------------------------------------------------------------- parcels

def _read_parcels(parcels: Any) -> Any:
    import geopandas as gpd

    if isinstance(parcels, gpd.GeoDataFrame):
        return parcels.copy()
    path = str(parcels)
    if path.startswith("s3://"):
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="cbmflow-sim-")) / Path(path).name
        storage.download(path, tmp)
        path = str(tmp)
    if not Path(path).exists():
        raise InputError(f"parcel file {path} does not exist")
    if path.endswith(".parquet"):
        return gpd.read_parquet(path)
    return gpd.read_file(path)


def _check_columns(gdf: Any, cols: Sequence[str | None], source: str) -> None:
    for c in cols:
        if c is not None and c not in gdf.columns:
            avail = ", ".join(str(x) for x in gdf.columns if x != gdf.geometry.name)
            raise InputError(f"column {c!r} not in {source}; available columns: {avail}")


def _id_text(values: Any) -> np.ndarray:
    """Parcel ids as text; integral floats (e.g. 106806021.0 read from a GeoPackage) lose the '.0'."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values) and bool(np.all(np.mod(values.dropna(), 1) == 0)):
        return values.astype("Int64").astype(str).to_numpy()
    return values.astype(str).to_numpy()


def _mislabel(gdf: Any, groups: np.ndarray, crop_cols: list[str], fraction: float,
              rng: np.random.Generator, id_col: str) -> np.ndarray:
    """Reassign declared crops of round(fraction*n) parcels in place; returns the boolean mask."""
    n = len(gdf)
    mask = np.zeros(n, dtype=bool)
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"--mislabel must be a fraction between 0 and 1, got {fraction}")
    k = int(round(fraction * n))
    if k == 0:
        return mask
    keys = gdf[crop_cols].astype(str).agg("\x1f".join, axis=1).to_numpy()
    uniq_keys = np.unique(keys)
    if len(uniq_keys) < 2:
        raise InputError(f"cannot mislabel: all {n} parcels declare the same crop {uniq_keys[0]!r}")
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    first_row = {key: int(np.flatnonzero(keys == key)[0]) for key in uniq_keys}
    key_group = {key: groups[first_row[key]] for key in uniq_keys}
    new_rows = []
    for i in chosen:
        other_group = [key for key in uniq_keys if key_group[key] != groups[i]]
        candidates = other_group or [key for key in uniq_keys if key != keys[i]]
        donor = first_row[candidates[int(rng.integers(len(candidates)))]]
        new_rows.append(donor)
    original = gdf[crop_cols].copy()
    for i, donor in zip(chosen, new_rows, strict=True):
        for col in crop_cols:
            gdf.iloc[int(i), gdf.columns.get_loc(col)] = original.iloc[int(donor)][col]
    mask[chosen] = True
    log.info("mislabelled %d of %d parcels (%s)", k, n, id_col)
    return mask


# ----------------------------------------------------------------------------- schedule

def _schedule(season: int, start: str, end: str, card_types: Sequence[str], revisit: int,
              s2_revisit: int, tile: str, aoi: str) -> list[_Acq]:
    # Simulated archives are per AOI, so the AOI is part of every product id: two AOIs simulated
    # for the same dates must never share (and overwrite) catalogue rows.
    tag = aoi.upper()
    t0 = dt.date.fromisoformat(f"{season}-{start}")
    t1 = dt.date.fromisoformat(f"{season}-{end}")
    if t1 < t0:
        raise InputError(f"season end {end} is before start {start}")
    out: list[_Acq] = []
    s1_types = [c for c in ("bs", "c6") if c in card_types]
    # ascending evening pass and descending morning pass, offset by 2 days
    for orbit, state, hhmm, offset in ((73, "ascending", (16, 50, 30), 0), (22, "descending", (5, 12, 10), 2)):
        d = t0 + dt.timedelta(days=offset)
        while d <= t1:
            t = dt.datetime(d.year, d.month, d.day, *hhmm, tzinfo=dt.UTC)
            stamp = t.strftime("%Y%m%dT%H%M%S")
            for c in s1_types:
                kind = "BS" if c == "bs" else "COH6"
                pid = f"S1A_SIM_{tag}_{kind}_{stamp}_R{orbit:03d}_{'ASC' if state == 'ascending' else 'DSC'}"
                out.append(_Acq(pid, c, "sentinel-1a", t, orbit, state))
            d += dt.timedelta(days=revisit)
    if "s2" in card_types:
        d, i = t0 + dt.timedelta(days=1), 0
        while d <= t1:
            plat = ("sentinel-2a", "sentinel-2b")[i % 2]
            t = dt.datetime(d.year, d.month, d.day, 10, 0, 31, tzinfo=dt.UTC)
            pid = f"{'S2A' if i % 2 == 0 else 'S2B'}_SIM_{tag}_L2A_{t.strftime('%Y%m%dT%H%M%S')}_R122_T{tile}"
            out.append(_Acq(pid, "s2", plat, t, 122, "descending"))
            d += dt.timedelta(days=s2_revisit)
            i += 1
    return sorted(out, key=lambda a: (a.time, a.card_type))


# ----------------------------------------------------------------------------- per-unit signal model

class _Model:
    """Per-unit (background class or parcel) signal state over the season."""

    def __init__(self, groups: np.ndarray, season: int, rng: np.random.Generator) -> None:
        self.n_bg = len(BACKGROUND)
        self.groups = groups
        n = len(groups)
        self.shift = rng.normal(0.0, 7.0, n)  # phenology shift, days
        self.vv_off = rng.normal(0.0, 0.7, n)  # roughness / moisture offsets, dB
        self.vh_off = rng.normal(0.0, 0.7, n)
        self.green_scale = np.clip(rng.normal(1.0, 0.06, n), 0.8, 1.15)
        self.soil = np.clip(rng.normal(1.0, 0.12, n), 0.7, 1.35)
        self.cuts: list[np.ndarray] = []
        for g in groups:
            lo, hi = PROFILES[g].cuts
            k = int(rng.integers(lo, hi + 1)) if hi > 0 else 0
            if k == 0:
                self.cuts.append(np.zeros(0))
                continue
            if g == "fallow":
                first = rng.uniform(180, 230)
                self.cuts.append(np.array([first]))
                continue
            first = rng.uniform(135, 175)
            days = [first]
            for _ in range(k - 1):
                days.append(days[-1] + rng.uniform(35, 55))
            self.cuts.append(np.array([d for d in days if d < 285]))
        self.harvest = np.array([
            (PROFILES[g].harvest_doy + s) if PROFILES[g].harvest_doy is not None else np.nan
            for g, s in zip(groups, self.shift, strict=True)
        ])
        self.group_index = {g: np.flatnonzero(groups == g) for g in GROUPS}
        self.plough = sim_events.plough_days(groups, self.harvest, rng)  # drawn last: earlier draws unchanged

    def state(self, doy: float) -> dict[str, np.ndarray]:
        """Green and brown cover, VV/VH dB and coherence of every parcel on a day of year."""
        n = len(self.groups)
        green, brown = np.zeros(n), np.zeros(n)
        vv, vh = np.zeros(n), np.zeros(n)
        for g, idx in self.group_index.items():
            if len(idx) == 0:
                continue
            v = PROFILES[g].at(doy - self.shift[idx])
            green[idx], brown[idx], vv[idx], vh[idx] = v["green"], v["brown"], v["vv_db"], v["vh_db"]
        event_in_pair = np.zeros(n, dtype=bool)
        recent = np.full(n, np.inf)
        for i, cuts in enumerate(self.cuts):
            if len(cuts) == 0:
                continue
            past = cuts[cuts <= doy]
            if len(past):
                age = doy - past[-1]
                recent[i] = age
                event_in_pair[i] = age < 6
        mowed = np.isfinite(recent) & (recent < 30)
        rec = np.clip(recent[mowed] / 30.0, 0, 1)
        green[mowed] = green[mowed] * (0.4 + 0.6 * rec)
        brown[mowed] = brown[mowed] + 0.15 * (1 - rec)
        vh[mowed] -= 2.5 * (1 - rec)
        vv[mowed] -= 1.0 * (1 - rec)
        event_in_pair |= np.isfinite(self.harvest) & (doy - self.harvest >= 0) & (doy - self.harvest < 6)
        sim_events.apply_ploughing(self.plough, doy, green, brown, vv, vh, event_in_pair)
        green = np.clip(green * self.green_scale, 0, 1)
        cover = np.clip(green + brown, 0, 1)
        struct = np.clip(cover * 1.15, 0, 1)
        coh_vv = COH_BARE[0] - (COH_BARE[0] - COH_VEG[0]) * struct
        coh_vh = COH_BARE[1] - (COH_BARE[1] - COH_VEG[1]) * struct
        coh_vv[event_in_pair] = 0.22
        coh_vh[event_in_pair] = 0.18
        return {"green": green, "brown": np.clip(brown, 0, 1 - green), "vv": vv + self.vv_off,
                "vh": vh + self.vh_off, "coh_vv": coh_vv, "coh_vh": coh_vh}


# ----------------------------------------------------------------------------- main

def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    parts = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(parts)


def simulate_season(
    parcels: Any,
    *,
    aoi: str,
    season: int,
    out: str,
    id_col: str,
    crop_col: str,
    crop_name_col: str | None = None,
    seed: int = 0,
    mislabel: float = 0.0,
    start: str = "03-01",
    end: str = "10-31",
    card_types: Sequence[str] = ("bs", "c6", "s2"),
    revisit_days: int = 6,
    s2_revisit_days: int = 5,
    epsg: int | None = None,
    bands: Sequence[str] | None = None,
    s2_clouds: bool | Sequence[float] = True,
    workers: int = 2,
) -> SimulationResult:
    """Write a SIMULATED season of CARD COGs, a STAC ItemCollection, declared parcels and truth for an AOI."""
    import geopandas as gpd
    import pandas as pd
    import pystac
    from rasterio.features import rasterize
    from rasterio.transform import Affine
    from shapely import make_valid

    source = str(parcels) if not isinstance(parcels, gpd.GeoDataFrame) else "the parcels GeoDataFrame"
    gdf = _read_parcels(parcels)
    _check_columns(gdf, [id_col, crop_col, crop_name_col], source)
    unknown = [c for c in card_types if c not in CARD_BANDS]
    if unknown:
        raise InputError(f"unknown CARD type(s) {unknown}; known: {', '.join(CARD_BANDS)}")
    if bands is not None:
        known = {b for c in card_types for b in CARD_BANDS[c]}
        bad = [b for b in bands if b not in known]
        if bad:
            raise InputError(f"band(s) {bad} not in the selected CARD types; available: {sorted(known)}")
    if len(gdf) == 0:
        raise InputError(f"{source} holds no parcels")
    if gdf.crs is None:
        raise InputError(f"{source} has no CRS")
    bad_geom = gdf.geometry.isna() | gdf.geometry.is_empty
    if bad_geom.any():
        ids = ", ".join(map(str, gdf.loc[bad_geom, id_col].head(10)))
        raise InputError(f"{int(bad_geom.sum())} parcels in {source} have no geometry: {ids}")
    dup = gdf[id_col].duplicated()
    if dup.any():
        raise InputError(f"duplicate parcel ids in {source} column {id_col!r}: "
                         f"{', '.join(map(str, gdf.loc[dup, id_col].head(10)))}")
    fixed_clouds: list[float] | None = None
    if not isinstance(s2_clouds, bool):
        fixed_clouds = [float(v) for v in s2_clouds]
        if not fixed_clouds or any(not 0.0 <= v <= 1.0 for v in fixed_clouds):
            raise InputError(f"s2_clouds fractions must be between 0 and 1, got {s2_clouds}")
    if revisit_days < 1 or s2_revisit_days < 1:
        raise InputError("revisit days must be at least 1")

    if epsg is None:
        c = gdf.to_crs(4326).geometry.union_all().centroid if len(gdf) < 5000 else None
        if c is None:
            b = gdf.to_crs(4326).total_bounds
            lon, lat = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        else:
            lon, lat = c.x, c.y
        epsg = utm_epsg(lon, lat)
    gdf = gdf.to_crs(epsg).reset_index(drop=True)
    gdf["geometry"] = make_valid(gdf.geometry.to_numpy())
    transform_t, shape = _grid(gdf.total_bounds)
    transform = Affine(*transform_t)
    rows, cols = shape
    cx, cy = transform @ (cols / 2, rows / 2)
    tile = mgrs_tile(epsg, cx, cy) if 32601 <= epsg <= 32760 else f"E{epsg}"

    # true crops and groups, then the declared (possibly wrong) crops
    name_col = crop_name_col or crop_col
    true_crop = gdf[crop_col].astype(str).to_numpy()
    true_group = np.array([crop_group(str(v)) for v in gdf[name_col]])
    declared = gdf.copy()
    crop_cols = [crop_col] + ([crop_name_col] if crop_name_col and crop_name_col != crop_col else [])
    mask = _mislabel(declared, true_group, crop_cols, mislabel, _rng(seed, "mislabel"), id_col)

    # unit raster: 0..n_bg-1 background classes, n_bg + i parcel i
    n_bg = len(BACKGROUND)
    rng0 = _rng(seed, "layout", aoi)
    field = _smooth_field(rng0, shape, 25)
    cuts = np.quantile(field, np.cumsum(list(_BG_SHARE.values()))[:-1])
    units = np.digitize(field, cuts).astype(np.int32)
    shapes = ((geom, n_bg + i) for i, geom in enumerate(gdf.geometry))
    units = rasterize(shapes, out=units, transform=transform, dtype="int32")
    tex_s1 = (10 ** (rng0.normal(0.0, 0.5, shape) / 10)).astype(np.float32)  # static texture, ~0.5 dB
    tex_s1_vh = (10 ** (rng0.normal(0.0, 0.5, shape) / 10)).astype(np.float32)
    tex_s2 = rng0.normal(1.0, 0.03, shape).astype(np.float32)
    model = _Model(true_group, season, _rng(seed, "parcels"))
    bg_names = list(BACKGROUND)
    bg = np.array([BACKGROUND[k][:4] for k in bg_names])
    bg_spec = np.array([BACKGROUND[k][4] for k in bg_names])

    acqs = _schedule(season, start, end, card_types, revisit_days, s2_revisit_days, tile, aoi)
    if not acqs:
        raise InputError(f"no acquisitions between {season}-{start} and {season}-{end}")
    root = storage.join(out, aoi, str(season))
    crs = f"EPSG:{epsg}"
    footprint = _footprint(transform, shape, epsg)
    items: list[Any] = []
    n_rasters = 0
    n_s2 = 0
    pending: list[Future[str]] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))

    def submit(uri: str, arr: np.ndarray, nodata: float | int, band: str, pid: str) -> None:
        tags = {"CBMFLOW_SIMULATED": "true", "CBMFLOW_PRODUCT_ID": pid, "CBMFLOW_BAND": band,
                "CBMFLOW_SEED": str(seed)}
        pending.append(pool.submit(cog.write_cog, uri, arr, level=1, crs=crs, transform=transform, nodata=nodata,
                                   band_names=[band], tags=tags))
        while len(pending) > 2 * max(1, workers):
            pending.pop(0).result()

    try:
        for acq in acqs:
            doy = float(acq.time.timetuple().tm_yday)
            st = model.state(doy)
            rng = _rng(seed, acq.product_id)
            wanted = [b for b in CARD_BANDS[acq.card_type] if bands is None or b in bands]
            if not wanted:
                continue
            assets: dict[str, str] = {}
            props: dict[str, Any] = {}
            if acq.card_type == "bs":
                # date-wide soil/canopy moisture (rain on ~12 % of dates), per parcel-date noise (JRC spread)
                wet = rng.normal(0.0, 0.6) + (1.5 if rng.random() < 0.12 else 0.0)
                orbit_off = 0.0 if acq.orbit_state == "ascending" else -0.4
                bare = 1.0 - np.clip(st["green"] + st["brown"], 0, 1)
                for band, key, tex, col, sd in (("VV", "vv", tex_s1, 0, 0.6), ("VH", "vh", tex_s1_vh, 1, 0.8)):
                    if band not in wanted:
                        continue
                    db = st[key] + orbit_off + wet * (0.7 + 0.3 * bare) + rng.normal(0.0, sd, len(bare))
                    lut = np.concatenate([10 ** ((bg[:, col] + orbit_off + rng.normal(0, 0.3, n_bg)) / 10),
                                          10 ** (db / 10)]).astype(np.float32)
                    speckle = rng.gamma(LOOKS[band], 1.0 / LOOKS[band], shape).astype(np.float32)
                    arr = lut[units] * tex * speckle
                    uri = storage.join(root, "bs", f"{acq.product_id}_{band}.tif")
                    submit(uri, arr, float("nan"), band, acq.product_id)
                    assets[band] = uri
            elif acq.card_type == "c6":
                rain = rng.uniform(0.75, 1.0) if rng.random() < 0.3 else 1.0
                for band, key, col in (("COH_VV", "coh_vv", 2), ("COH_VH", "coh_vh", 3)):
                    if band not in wanted:
                        continue
                    lut = np.concatenate([bg[:, col], st[key] * rain]).astype(np.float32)
                    noise = rng.standard_normal(shape, dtype=np.float32)
                    mean = lut[units]
                    arr = np.clip(mean + noise * (0.04 + 0.12 * mean * (1 - mean)), 0.005, 0.995).astype(np.float32)
                    uri = storage.join(root, "c6", f"{acq.product_id}_{band}.tif")
                    submit(uri, arr, float("nan"), band, acq.product_id)
                    assets[band] = uri
            else:
                g = st["green"][:, None]
                b = st["brown"][:, None]
                soil = SOIL[None, :] * model.soil[:, None] * sim_events.soil_factor(model.plough, doy)
                spec = (1 - g - b) * soil + g * GREEN[None, :] + b * BROWN[None, :]
                lut = np.concatenate([bg_spec, spec]).astype(np.float32)  # (units, 5)
                refl = lut[units]  # rows, cols, 5
                refl *= tex_s2[..., None]
                refl *= rng.normal(1.0, 0.02, (1, 1, 5)).astype(np.float32)  # date-wide atmosphere residual
                red, nir = refl[..., 2], refl[..., 3]
                ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
                scl = np.where(ndvi > 0.4, 4, 5).astype(np.uint8)
                scl[(ndvi < 0.0) & (nir < 0.06)] = 6
                cloud_pct = 0.0
                if fixed_clouds is not None:
                    frac = fixed_clouds[n_s2 % len(fixed_clouds)]
                    refl, scl, cloud_pct = _clouds(rng, refl, scl, shape, frac, cirrus=False)
                elif s2_clouds:
                    refl, scl, cloud_pct = _clouds(rng, refl, scl, shape)
                n_s2 += 1
                props["eo:cloud_cover"] = round(cloud_pct, 2)
                for k, band in enumerate(S2_BANDS):
                    if band not in wanted:
                        continue
                    dn = np.clip(np.rint(refl[..., k] * 10000), 1, 65535).astype(np.uint16)
                    uri = storage.join(root, "s2", f"{acq.product_id}_{band}.tif")
                    submit(uri, dn, 0, band, acq.product_id)
                    assets[band] = uri
                if "SCL" in wanted:
                    uri = storage.join(root, "s2", f"{acq.product_id}_SCL.tif")
                    submit(uri, scl, 0, "SCL", acq.product_id)
                    assets["SCL"] = uri
            n_rasters += len(assets)
            items.append(_item(pystac, acq, assets, props, footprint, epsg, transform_t, shape, tile, aoi, seed))
        for f in pending:
            f.result()
    finally:
        pool.shutdown(wait=True)

    coll = pystac.ItemCollection(items)
    items_uri = storage.join(root, "items.json")
    storage.write_bytes(items_uri, json.dumps(coll.to_dict(), indent=1).encode(), "application/geo+json")

    parcels_uri = storage.join(root, "parcels_declared.gpkg")
    truth_uri = storage.join(root, "truth.parquet")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cbmflow-sim-") as tmp:
        gp = os.path.join(tmp, "parcels_declared.gpkg")
        declared.to_file(gp, driver="GPKG", layer="parcels")
        storage.upload(gp, parcels_uri)
        truth = pd.DataFrame({
            "parcel_id": _id_text(gdf[id_col]),
            "declared_crop": declared[crop_col].astype(str).to_numpy(),
            "true_crop": true_crop,
            "mislabelled": mask,
            "true_group": true_group,
            "declared_group": [crop_group(str(v)) for v in declared[name_col]],
        })
        tp = os.path.join(tmp, "truth.parquet")
        truth.to_parquet(tp, index=False)
        storage.upload(tp, truth_uri)
        events_uri = storage.join(root, "events.parquet")
        ep = os.path.join(tmp, "events.parquet")
        sim_events.events_table(truth["parcel_id"], true_group, model.cuts, model.harvest, model.plough,
                                season).to_parquet(ep, index=False)
        storage.upload(ep, events_uri)
    return SimulationResult(root=root, items_uri=items_uri, parcels_uri=parcels_uri, truth_uri=truth_uri,
                            n_scenes=len(items), n_rasters=n_rasters, epsg=int(epsg),
                            transform=tuple(float(v) for v in transform_t), shape=(rows, cols),
                            events_uri=events_uri)


def _clouds(rng: np.random.Generator, refl: np.ndarray, scl: np.ndarray, shape: tuple[int, int],
            fraction: float | None = None, cirrus: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Overlay spatially correlated clouds, their shadows and cirrus; returns reflectance, SCL, cloud %."""
    u = rng.random()
    frac = rng.uniform(0.0, 0.02) if u < 0.35 else (rng.uniform(0.05, 0.5) if u < 0.7 else rng.uniform(0.6, 1.0))
    if fraction is not None:
        frac = fraction
    rows, cols = shape
    if frac > 0.005:
        f = _smooth_field(rng, shape, max(4, min(rows, cols) // 6))
        sample = f.ravel()[::7]
        thr = float(np.quantile(sample, 1 - frac))
        cloud = f >= thr
        core_thr = float(np.quantile(sample, 1 - frac * 0.6))
        opacity = np.clip((f - thr) / max(float(f.max() - thr), 1e-6) * 3 + 0.35, 0, 1)
        op = np.where(cloud, opacity, 0.0).astype(np.float32)[..., None]
        # shadow: the cloud mask shifted north-west (sun in the south-east at 10:00)
        dy, dx = int(rng.integers(8, 25)), int(rng.integers(8, 25))
        shadow = np.zeros_like(cloud)
        shadow[: rows - dy, : cols - dx] = cloud[dy:, dx:]
        shadow &= ~cloud
        refl = np.where(shadow[..., None], refl * 0.35, refl)
        refl = refl * (1 - op) + CLOUD[None, None, :].astype(np.float32) * op
        scl = scl.copy()
        scl[shadow] = 3
        scl[cloud] = 8
        scl[f >= core_thr] = 9
    if rng.random() < 0.25 and cirrus:  # thin cirrus veil on some dates
        c = _smooth_field(rng, shape, max(4, min(rows, cols) // 4))
        veil = (c > np.quantile(c.ravel()[::7], 0.7)) & (scl != 8) & (scl != 9)
        refl = np.where(veil[..., None], refl + np.float32(0.06), refl)
        scl = scl.copy()
        scl[veil] = 10
    cloud_pct = float(np.isin(scl, (8, 9, 10)).mean() * 100)
    return refl.astype(np.float32), scl, cloud_pct


def _footprint(transform: Any, shape: tuple[int, int], epsg: int) -> dict[str, Any]:
    from pyproj import Transformer
    from shapely.geometry import box, mapping
    from shapely.ops import transform as shp_transform

    rows, cols = shape
    x0, y1 = transform @ (0, 0)
    x1, y0 = transform @ (cols, rows)
    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    geom = shp_transform(tr.transform, box(x0, y0, x1, y1).segmentize(max(x1 - x0, y1 - y0) / 8))
    return {"geometry": mapping(geom), "bbox": list(geom.bounds)}


def _item(pystac: Any, acq: _Acq, assets: dict[str, str], props: dict[str, Any], footprint: dict[str, Any],
          epsg: int, transform: tuple[float, ...], shape: tuple[int, int], tile: str, aoi: str,
          seed: int) -> Any:
    properties = {
        "platform": acq.platform,
        "constellation": "sentinel-1" if acq.card_type in ("bs", "c6") else "sentinel-2",
        "sat:relative_orbit": acq.relative_orbit,
        "sat:orbit_state": acq.orbit_state,
        "cbmflow:card_type": acq.card_type,
        "cbmflow:product_type": PRODUCT_TYPES[acq.card_type],
        "cbmflow:simulated": True,
        "cbmflow:tile": tile,
        "cbmflow:aoi": aoi,
        "cbmflow:seed": seed,
        "proj:epsg": epsg,
        "proj:transform": list(transform),
        "proj:shape": list(shape),
        **props,
    }
    if acq.card_type == "bs":
        properties["sar:polarizations"] = ["VV", "VH"]
        properties["cbmflow:backscatter"] = "gamma0 linear (simulated)"
    item = pystac.Item(id=acq.product_id, geometry=footprint["geometry"], bbox=footprint["bbox"],
                       datetime=acq.time, properties=properties)
    for band, href in assets.items():
        item.add_asset(band, pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"],
                                          title=f"{band} (SIMULATED)"))
    return item


# ----------------------------------------------------------------------------- synthetic parcels

# DK-like crop mix: (code, name, share)
DEFAULT_CROPS: tuple[tuple[str, str, float], ...] = (
    ("252", "Permanent græs, normalt udbytte", 0.30),
    ("11", "Vinterhvede", 0.17), ("14", "Vinterrug", 0.08),
    ("1", "Vårbyg", 0.20), ("216", "Silomajs", 0.08), ("22", "Vinterraps", 0.07),
    ("160", "Sukkerroer til fabrik", 0.03), ("151", "Kartofler, stivelses-", 0.02),
    ("30", "Hestebønner", 0.02), ("310", "Brak, slåning", 0.03),
)


def synthetic_parcels(
    n: int,
    *,
    seed: int = 0,
    min_ha: float = 1.0,
    max_ha: float = 5.0,
    epsg: int = 32632,
    origin: tuple[float, float] = (500000.0, 6200000.0),
    crops: Sequence[tuple[str, str, float]] | None = None,
) -> Any:
    """A synthetic layout of n non-overlapping quadrilateral parcels with a realistic crop mix."""
    import geopandas as gpd
    import shapely

    if n < 1:
        raise InputError(f"number of parcels must be positive, got {n}")
    if not 0 < min_ha <= max_ha:
        raise InputError(f"need 0 < min_ha <= max_ha, got {min_ha}, {max_ha}")
    rng = np.random.default_rng([int(seed), 7])
    area = rng.uniform(min_ha, max_ha, n) * 10000.0
    gap = 4.0  # metres between neighbouring parcels (tracks, ditches)
    depth = float(np.clip(np.sqrt(max_ha * 10000.0) * 0.9, 40.0, 400.0))  # field depth of a row
    width = area / depth
    row_len = max(float(np.sqrt(area.sum() * 1.2)), float(width.max()) * 2)
    # lay parcels left to right in rows; a parcel starting in row r stays there (rows may overhang)
    # each slot leaves room for the <= 4.5 % growth of the area-preserving rescale below
    start = np.concatenate([[0.0], np.cumsum(width * 1.05 + 2 * gap)[:-1]])
    row = np.floor(start / row_len).astype(np.int64)
    x_off = start - row * row_len
    pitch = depth * 1.12 + 2 * gap
    road = 30.0
    x0 = origin[0] + x_off + gap + 0.025 * width
    y0 = origin[1] + row * pitch + (row // 8) * road + gap + 0.03 * depth
    # irregular quads: move corners inward by up to 8 % of the side, then rescale to the drawn area
    jit = rng.uniform(0, 0.08, (n, 4))
    pw, ph = width, np.full(n, depth)
    xs = np.stack([x0 + jit[:, 0] * pw, x0 + pw, x0 + pw - jit[:, 1] * pw, x0], axis=1)
    ys = np.stack([y0, y0 + jit[:, 2] * ph, y0 + ph, y0 + ph - jit[:, 3] * ph], axis=1)
    coords = np.stack([xs, ys], axis=2)
    coords = np.concatenate([coords, coords[:, :1]], axis=1)
    geoms = shapely.polygons(coords)
    actual = shapely.area(geoms)
    k = np.sqrt(area / actual)  # <= 1.045: stays inside the gaps
    cen = shapely.centroid(geoms)
    cx, cy = shapely.get_x(cen), shapely.get_y(cen)
    coords = np.stack([cx[:, None] + (coords[..., 0] - cx[:, None]) * k[:, None],
                       cy[:, None] + (coords[..., 1] - cy[:, None]) * k[:, None]], axis=2)
    geoms = shapely.polygons(coords)
    mix = list(crops or DEFAULT_CROPS)
    shares = np.array([m[2] for m in mix], dtype=float)
    pick = rng.choice(len(mix), size=n, p=shares / shares.sum())
    return gpd.GeoDataFrame({
        "parcel_id": [f"S{j:07d}" for j in range(n)],
        "crop_code": [mix[p][0] for p in pick],
        "crop_name": [mix[p][1] for p in pick],
    }, geometry=geoms, crs=f"EPSG:{epsg}")


# ----------------------------------------------------------------------------- CLI

def _clouds_arg(text: str) -> bool | tuple[float, ...]:
    if text == "realistic":
        return True
    if text == "none":
        return False
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--s2-clouds must be realistic, none or comma-separated fractions, got {text!r}") from None


def _cli_season(args: argparse.Namespace) -> int:
    missing = [f"--{k.replace('_', '-')}" for k in ("aoi", "season", "parcels", "id_col", "crop_col", "out")
               if getattr(args, k) is None]
    if missing:
        raise InputError(f"cbmflow simulate needs {', '.join(missing)}")
    res = simulate_season(
        args.parcels, aoi=args.aoi, season=args.season, out=args.out, id_col=args.id_col,
        crop_col=args.crop_col, crop_name_col=args.crop_name_col, seed=args.seed, mislabel=args.mislabel,
        start=args.start, end=args.end, card_types=tuple(args.card_types.split(",")),
        revisit_days=args.revisit_days, s2_revisit_days=args.s2_revisit_days, epsg=args.epsg,
        bands=tuple(args.bands.split(",")) if args.bands else None, s2_clouds=_clouds_arg(args.s2_clouds),
    )
    print(f"SIMULATED season {args.season} for AOI {args.aoi}: {res.n_scenes} scenes, {res.n_rasters} COGs "
          f"on a {res.shape[1]}x{res.shape[0]} px 10 m grid in EPSG:{res.epsg}")
    print(f"items: {res.items_uri}\nparcels: {res.parcels_uri}\ntruth: {res.truth_uri}")
    return 0


def _cli_parcels(args: argparse.Namespace) -> int:
    origin = tuple(float(v) for v in args.origin.split(",")) if args.origin else (500000.0, 6200000.0)
    if len(origin) != 2:
        raise InputError(f"--origin must be x,y, got {args.origin!r}")
    gdf = synthetic_parcels(args.n, seed=args.seed, min_ha=args.min_ha, max_ha=args.max_ha, epsg=args.epsg,
                            origin=(origin[0], origin[1]))
    out = str(args.out)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cbmflow-sim-") as tmp:
        local = os.path.join(tmp, Path(storage.parse(out).key).name)
        if out.endswith(".parquet"):
            gdf.to_parquet(local)
        else:
            gdf.to_file(local, driver="GPKG" if out.endswith(".gpkg") else None)
        storage.upload(local, out)
    print(f"{len(gdf)} synthetic parcels (id col parcel_id, crop cols crop_code/crop_name) -> {out}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``cbmflow simulate`` (a season of SIMULATED CARD COGs) and ``cbmflow simulate parcels``."""
    p = subparsers.add_parser("simulate", help="write a SIMULATED CARD archive for an AOI's parcels")
    p.add_argument("--aoi")
    p.add_argument("--season", type=int)
    p.add_argument("--parcels", help="parcel file (GeoPackage, GeoParquet, zipped Shapefile, GeoJSON)")
    p.add_argument("--id-col")
    p.add_argument("--crop-col")
    p.add_argument("--crop-name-col", default=None)
    p.add_argument("--out", help="output folder or s3:// prefix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mislabel", type=float, default=0.0, help="fraction of parcels given a wrong declared crop")
    p.add_argument("--start", default="03-01")
    p.add_argument("--end", default="10-31")
    p.add_argument("--card-types", default="bs,c6,s2")
    p.add_argument("--bands", default=None, help="comma-separated subset of bands to write")
    p.add_argument("--revisit-days", type=int, default=6)
    p.add_argument("--s2-revisit-days", type=int, default=5)
    p.add_argument("--epsg", type=int, default=None)
    p.add_argument("--s2-clouds", default="realistic",
                   help="realistic (random per date), none, or cloud fractions per S2 date, cycled (e.g. 0,0.8)")
    p.set_defaults(func=_cli_season)
    sub = p.add_subparsers(dest="simulate_command", required=False)
    q = sub.add_parser("parcels", help="write a synthetic parcel layout")
    q.add_argument("--n", type=int, required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-ha", type=float, default=1.0)
    q.add_argument("--max-ha", type=float, default=5.0)
    q.add_argument("--epsg", type=int, default=32632)
    q.add_argument("--origin", default=None, help="x,y of the layout's lower-left corner")
    q.set_defaults(func=_cli_parcels)
