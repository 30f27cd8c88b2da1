"""Wide per-parcel feature tables from other systems (WorldCereal extractions), for ``classify --features``.

The wide-table contract (docs/analytics.md, "Features from any source"): one row per parcel, a
``parcel_id`` column, a ``crop`` column (the declaration, any code or name), optionally
``crop_name``, ``area_m2``, ``pid``; every other numeric column is a feature. Time series columns
are named ``<GROUP>_p<NNN>`` with ``NNN`` an ordered period index (5-day periods, months, ...),
e.g. ``VV_p003`` (dB), ``VH_p003`` (dB), ``VHVV_p003`` (dB), ``B08_p003`` (reflectance 0..1),
``NDVI_p003``; the report plots the VH, VV and VH/VV groups. Missing values may stay NaN (the
estimators take NaN natively) or be filled; ``<GROUP>_missing`` holds the filled fraction.

:func:`worldcereal_table` converts WorldCereal's point extractions (long table, one row per sample
and timestamp, or the wide ``OPTICAL-B02-ts0`` layout; uint16 encodings) into that table at the
file's own time step (months, dekads, ...), never overwriting an observation; an all-empty band is
dropped with a log line. CLI ``cbmflow features worldcereal IN OUT``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.features import interpolate_rows
from cbmflow.core.errors import InputError, NotFound

log = logging.getLogger(__name__)

NODATA = 65535
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def s1_dn_to_db(dn: np.ndarray) -> np.ndarray:
    """WorldCereal's compressed S1 backscatter (uint16) to dB: 20*log10(DN) - 83; 0 and 65535 are NaN."""
    a = np.asarray(dn, dtype=np.float64)
    out = np.full(a.shape, np.nan)
    ok = (a > 0) & (a != NODATA)
    out[ok] = 20.0 * np.log10(a[ok]) - 83.0
    return out


def crop_names(classes_json: str | os.PathLike[str] | None) -> dict[str, str]:
    """WorldCereal code -> name: ``ewoc_code_names.csv`` beside the JSON (label_full), else CROPTYPE0 of the JSON.

    The CSV names every code of the legend specifically (``longterm_meadows``, ``citrus_fruit``); the
    JSON's CROPTYPE0 table covers fewer codes (``unspecified_wheat``). Empty without either file.
    """
    if classes_json is None or not Path(classes_json).exists():
        return {}
    tables = json.loads(Path(classes_json).read_text())
    names = {str(k): str(v) for k, v in tables.get("CROPTYPE0", {}).items()}
    csv = Path(classes_json).with_name("ewoc_code_names.csv")
    if csv.exists():
        table = pd.read_csv(csv, dtype=str)
        if {"code", "label_full"} <= set(table.columns):
            names.update({c: n for c, n in zip(table["code"], table["label_full"], strict=True)
                          if isinstance(n, str) and n.strip()})
    return names


def _native_periods(ts: pd.Series) -> tuple[np.ndarray, str]:
    """Period index of each timestamp at the file's own step (month, dekad, or the distinct dates) and its name."""
    t = pd.to_datetime(ts)
    days = t.dt.day.to_numpy()
    if np.all(days == 1):
        month = (t.dt.year * 12 + t.dt.month).to_numpy()
        return month - month.min(), "month"
    if np.isin(days, (1, 11, 21)).all():
        dekad = (t.dt.year * 36 + (t.dt.month - 1) * 3 + (days - 1) // 10).to_numpy()
        return dekad - dekad.min(), "dekad"
    distinct = np.sort(t.unique())
    return np.searchsorted(distinct, t.to_numpy()), "date"


def _finish(
    samples: np.ndarray, code: np.ndarray, series: dict[str, np.ndarray], *, path: str | os.PathLike[str],
    classes_json: str | os.PathLike[str] | None, fill: str, start: str, period: str, layout: str,
    n_observations: int,
) -> pd.DataFrame:
    """Drop all-empty bands (logged), add NDVI and VH/VV, fill gaps, and build the wide table."""
    for g in list(series):
        if np.isnan(series[g]).all():
            log.warning("WorldCereal %s: band %s has no valid value in any parcel; dropped", path, g)
            del series[g]
    if "B04" in series and "B08" in series:
        with np.errstate(invalid="ignore", divide="ignore"):
            series["NDVI"] = (series["B08"] - series["B04"]) / (series["B08"] + series["B04"])
    missing_frac = {g: float(np.isnan(a).mean()) for g, a in series.items()}
    n_periods = next(iter(series.values())).shape[1] if series else 0
    miss_cols: dict[str, Any] = {}
    for g, a in series.items():
        miss_cols[f"{g}_missing"] = np.isnan(a).mean(axis=1)
        if fill == "interpolate":
            series[g] = interpolate_rows(a)
    if "VH" in series and "VV" in series:
        series["VHVV"] = series["VH"] - series["VV"]
    cols: dict[str, Any] = {}
    for g, a in series.items():
        for j in range(n_periods):
            cols[f"{g}_p{j:03d}"] = a[:, j].astype(np.float32)
    names = crop_names(classes_json)
    out = pd.DataFrame({
        "parcel_id": samples,
        "crop": code,
        "crop_name": [names.get(x, f"ewoc {x}") for x in code],
        **cols,
        **miss_cols,
    })
    out.attrs.update(source=str(path), period_start=start, period=period, layout=layout,
                     n_observations=int(n_observations))
    log.info("WorldCereal %s (%s layout): %d parcels, %d %s steps at the file's own step, %d observations kept; "
             "fill %s; missing fractions %s", path, layout, len(out), n_periods, period, n_observations, fill,
             {k: round(v, 3) for k, v in missing_frac.items()})
    return out


def _read_long(long: pd.DataFrame, path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray,
                                                                           dict[str, np.ndarray], str, str, int]:
    need = ["sample_id", "timestamp", "ewoc_code", "S1-SIGMA0-VV", "S1-SIGMA0-VH"]
    missing = [c for c in need if c not in long.columns]
    if missing:
        raise InputError(f"{path} is not a WorldCereal extraction: columns {missing} missing; "
                         f"available: {', '.join(map(str, long.columns))}")
    codes = long.groupby("sample_id")["ewoc_code"].nunique()
    if (codes > 1).any():
        raise InputError(f"sample {codes[codes > 1].index[0]!r} has more than one ewoc_code")
    period_idx, period = _native_periods(long["timestamp"])
    samples = np.sort(long["sample_id"].astype(str).unique())
    row_of = {s: i for i, s in enumerate(samples)}
    r = np.array([row_of[s] for s in long["sample_id"].astype(str)])
    c = np.asarray(period_idx, dtype=np.int64)
    n_periods = int(c.max()) + 1 if len(c) else 0
    dup = pd.DataFrame({"r": r, "c": c}).duplicated().to_numpy()
    if dup.any():
        log.warning("WorldCereal %s: %d rows share a (sample, %s) cell with another row; their valid values are "
                    "averaged, none is overwritten", path, int(dup.sum()), period)

    def grid(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        total = np.zeros((len(samples), n_periods))
        count = np.zeros((len(samples), n_periods))
        np.add.at(total, (r[ok], c[ok]), v[ok])
        np.add.at(count, (r[ok], c[ok]), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    series: dict[str, np.ndarray] = {
        "VV": grid(s1_dn_to_db(long["S1-SIGMA0-VV"].to_numpy())),
        "VH": grid(s1_dn_to_db(long["S1-SIGMA0-VH"].to_numpy())),
    }
    for b in S2_BANDS:
        col = f"S2-L2A-{b}"
        if col in long.columns:
            series[b] = grid(_s2_reflectance(long[col].to_numpy()))
    first = long.drop_duplicates("sample_id")
    first = first.set_index(first["sample_id"].astype(str))
    code = first.loc[samples, "ewoc_code"].astype(str).to_numpy()
    start = str(pd.to_datetime(long["timestamp"]).min().date())
    return samples, code, series, period, start, int(len(long))


def _s2_reflectance(dn: np.ndarray) -> np.ndarray:
    """uint16 S2 reflectance x 10^4 to 0..1; 65535 and <= 0 are NaN."""
    v = np.asarray(dn, dtype=np.float64).copy()
    v[(v == NODATA) | (v <= 0) | ~np.isfinite(v)] = np.nan
    return v / 10_000.0


_WIDE = re.compile(r"^(OPTICAL|SAR)-([A-Z0-9]+)-ts(\d+)(?:-\d+m)?$")


def _read_wide(wide: pd.DataFrame, path: str | os.PathLike[str], label_col: str | None) -> tuple[
        np.ndarray, np.ndarray, dict[str, np.ndarray], str, str, int]:
    found: dict[str, dict[int, str]] = {}
    for col in wide.columns:
        m = _WIDE.match(str(col))
        if m:
            found.setdefault(m.group(2), {})[int(m.group(3))] = str(col)
    if "VV" not in found or "VH" not in found:
        raise InputError(f"{path}: no SAR-VV-ts*/SAR-VH-ts* columns of WorldCereal's wide layout; "
                         f"available: {', '.join(map(str, wide.columns[:30]))} ...")
    label = label_col or next((c for c in ("ewoc_code", "CROPTYPE_LABEL") if c in wide.columns), None)
    if label is None or label not in wide.columns:
        raise InputError(f"{path}: no label column (ewoc_code or CROPTYPE_LABEL); pass label_col")
    n_periods = max(max(d) for d in found.values()) + 1
    id_col = "sample_id" if "sample_id" in wide.columns else None
    samples = (wide[id_col].astype(str).to_numpy() if id_col else wide.index.astype(str).to_numpy())
    if pd.Series(samples).duplicated().any():
        raise InputError(f"{path}: duplicate sample ids in the wide layout")
    series: dict[str, np.ndarray] = {}
    n_obs = 0
    for band, steps in found.items():
        g = np.full((len(wide), n_periods), np.nan)
        for j, col in steps.items():
            raw = wide[col].to_numpy()
            g[:, j] = s1_dn_to_db(raw) if band in ("VV", "VH") else _s2_reflectance(raw)
        n_obs += int(np.isfinite(g).sum())
        series[band] = g
    order = ["VV", "VH"] + [b for b in S2_BANDS if b in series] + [b for b in series if b not in S2_BANDS
                                                                   and b not in ("VV", "VH")]
    series = {b: series[b] for b in order}
    start = str(pd.to_datetime(wide["start_date"]).min().date()) if "start_date" in wide.columns else ""
    code = wide[label].astype(str).to_numpy()
    return samples, code, series, _wide_step(wide, n_periods), start, n_obs


def _wide_step(wide: pd.DataFrame, n_periods: int) -> str:
    """The step of the wide layout's ``ts<i>`` columns from ``start_date``/``end_date`` (month, dekad), else dekad."""
    if n_periods < 2 or not {"start_date", "end_date"} <= set(wide.columns):
        return "dekad"  # WorldCereal's wide training layout is dekadal unless the dates say otherwise
    span = (pd.to_datetime(wide["end_date"]) - pd.to_datetime(wide["start_date"])).dt.days
    step = float(np.nanmedian(span.to_numpy(np.float64))) / (n_periods - 1)
    return "month" if step > 20 else "dekad" if step > 7 else "date"


def worldcereal_table(
    path: str | os.PathLike[str],
    *,
    classes_json: str | os.PathLike[str] | None = None,
    fill: str = "interpolate",
    label_col: str | None = None,
) -> pd.DataFrame:
    """A wide table (parcel_id, crop, crop_name, VV/VH/VHVV/S2/NDVI per step) from a WorldCereal extraction.

    Long layout (one row per sample and timestamp): each observation goes to its own step at the
    file's native resolution (months when every timestamp is a month start, dekads when the days
    are 1/11/21, else the distinct dates); rows sharing a cell are averaged, never overwritten.
    Wide layout (``OPTICAL-<band>-ts<i>``, ``SAR-VV-ts<i>`` columns): step ``i`` is kept as is.
    A band without any valid value is dropped with a log line.
    """
    if fill not in ("interpolate", "none"):
        raise InputError(f"fill must be 'interpolate' or 'none', got {fill!r}")
    if not Path(path).exists():
        raise NotFound(f"file {path} does not exist")
    table = pd.read_parquet(path)
    if "timestamp" in table.columns:
        samples, code, series, period, start, n_obs = _read_long(table, path)
        layout = "long"
    else:
        samples, code, series, period, start, n_obs = _read_wide(table, path, label_col)
        layout = "wide"
    return _finish(samples, code, series, path=path, classes_json=classes_json, fill=fill, start=start,
                   period=period, layout=layout, n_observations=n_obs)


def worldcereal_monthly(
    path: str | os.PathLike[str],
    *,
    classes_json: str | os.PathLike[str] | None = None,
    fill: str = "interpolate",
) -> pd.DataFrame:
    """The former name of :func:`worldcereal_table` (which works at the file's own step, not only monthly)."""
    return worldcereal_table(path, classes_json=classes_json, fill=fill)


def flanders(shared: str | os.PathLike[str] | None = None, *, fill: str = "interpolate") -> pd.DataFrame:
    """The shared real Flanders LPIS 2021 set (100 parcels, WorldCereal monthly S1+S2) as a wide table."""
    from cbmflow.core.config import shared_data_dir

    base = Path(shared) if shared else Path(shared_data_dir()) / "timeseries"
    return worldcereal_monthly(base / "wc_flanders_lpis2021_s1s2_monthly.parquet",
                               classes_json=base / "wc_croptype_classes.json", fill=fill)
