"""The wide per-parcel feature table for crop classification, from the period averages.

For every parcel of an AOI and year, one row: ``pid, parcel_id, crop`` (the declared crop code,
else name), ``crop_name``, ``area_m2``, then per period of the season the columns

* ``VV_pNNN``, ``VH_pNNN``: Sentinel-1 backscatter in dB (10*log10 of the linear period mean),
* ``VHVV_pNNN``: the cross-ratio VH/VV in dB (VH_dB - VV_dB),
* ``COH_VV_pNNN``, ``COH_VH_pNNN``: 6-day coherence (0..1),

where ``NNN`` is the period index (see :mod:`cbmflow.analytics.periods`). Periods without an observation are
filled by linear interpolation along time between the parcel's nearest observed periods (held
constant before the first and after the last one); ``<GROUP>_missing`` holds the fraction of the
season's periods that were filled, per feature group. The season is every period from the first
to the last one observed in the AOI (or ``first_period..last_period`` when given).

Parcels without a single valid VV or VH observation are excluded and counted in
``df.attrs["excluded"]["no_valid_observations"]``. A group with no observation at all in the AOI
(no coherence processed, say) is left out; a parcel missing only that group gets the group's
per-period median over all parcels, with ``_missing`` = 1.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg

from cbmflow.core.bands import BAND_CODES
from cbmflow.core.errors import InputError, NothingToDo

log = logging.getLogger(__name__)

S1_BANDS: tuple[str, ...] = ("VV", "VH", "COH_VV", "COH_VH")
_DB_BANDS = ("VV", "VH")  # converted to dB
_REQUIRED = ("VV", "VH")  # a parcel without any of these is excluded


def interpolate_rows(values: np.ndarray) -> np.ndarray:
    """Fill NaNs of each row by linear interpolation along the columns (edges held constant)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"expected a 2-d array, got shape {a.shape}")
    n, m = a.shape
    if m == 0 or n == 0:
        return a.copy()
    valid = ~np.isnan(a)
    cols = np.arange(m)
    # index of the previous / next valid column per cell (-1 / m where none)
    prev_idx = np.where(valid, cols, -1)
    np.maximum.accumulate(prev_idx, axis=1, out=prev_idx)
    next_idx = np.where(valid, cols, m)
    next_idx = np.minimum.accumulate(next_idx[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n)[:, None]
    has_prev = prev_idx >= 0
    has_next = next_idx < m
    pv = a[rows, np.clip(prev_idx, 0, m - 1)]
    nv = a[rows, np.clip(next_idx, 0, m - 1)]
    span = (next_idx - prev_idx).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(span > 0, (cols[None, :] - prev_idx) / span, 0.0)
        both = pv + w * (nv - pv)
    out = np.where(has_prev & has_next, both, np.where(has_prev, pv, nv))
    out[valid] = a[valid]
    return out


def feature_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """Feature columns by group (VV, VH, VHVV, COH_VV, COH_VH), in period order."""
    groups: dict[str, list[str]] = {}
    for c in columns:
        if "_p" not in c:
            continue
        head, _, tail = c.rpartition("_p")
        if tail.isdigit():
            groups.setdefault(head, []).append(c)
    return groups


def _load(conn: psycopg.Connection, aoi: str, year: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    parcels = pd.DataFrame(
        conn.execute(
            "SELECT pid, parcel_id, coalesce(crop_code, crop_name) AS crop, crop_name, area_m2 "
            "FROM parcels WHERE aoi = %s AND year = %s ORDER BY pid",
            (aoi, int(year)),
        ).fetchall(),
        columns=["pid", "parcel_id", "crop", "crop_name", "area_m2"],
    )
    codes = [BAND_CODES[b] for b in S1_BANDS]
    means = pd.DataFrame(
        conn.execute(
            "SELECT pid, band, period, period_days, mean FROM period_means "
            "WHERE aoi = %s AND year = %s AND band = ANY(%s)",
            (aoi, int(year), codes),
        ).fetchall(),
        columns=["pid", "band", "period", "period_days", "mean"],
    )
    return parcels, means


def build_features(
    conn: psycopg.Connection,
    aoi: str,
    year: int,
    *,
    first_period: int | None = None,
    last_period: int | None = None,
) -> pd.DataFrame:
    """The wide feature table (pid, parcel_id, crop, area_m2, features) of an AOI and year."""
    parcels, means = _load(conn, aoi, year)
    if means.empty:
        raise NothingToDo(
            f"no period means for aoi {aoi} year {year}: run `cbmflow season periods` first "
            "(or there are no signatures for that season)"
        )
    if parcels.empty:
        raise NothingToDo(f"no parcels for aoi {aoi} year {year}")
    out = features_from_period_means(
        parcels, means, first_period=first_period, last_period=last_period
    )
    out.attrs["year"] = int(year)  # with period_days: the dates of the periods (flag evidence)
    return out


def features_from_period_means(
    parcels: pd.DataFrame,
    means: pd.DataFrame,
    *,
    first_period: int | None = None,
    last_period: int | None = None,
) -> pd.DataFrame:
    """The wide feature table from parcel rows and long period means (pid, band, period, mean)."""
    pds = sorted(set(means["period_days"].astype(int))) if "period_days" in means else [0]
    if len(pds) > 1:
        raise InputError(f"period means mix period lengths {pds}; recompute the season")
    lo = int(means["period"].min()) if first_period is None else int(first_period)
    hi = int(means["period"].max()) if last_period is None else int(last_period)
    if hi < lo:
        raise InputError(f"empty season: first period {lo} > last period {hi}")
    periods = np.arange(lo, hi + 1)
    means = means[(means["period"] >= lo) & (means["period"] <= hi)]
    pid_index = pd.Index(parcels["pid"].to_numpy())
    n = len(pid_index)
    raw: dict[str, np.ndarray] = {}
    for band in S1_BANDS:
        sub = means[means["band"] == BAND_CODES[band]]
        if sub.empty:
            continue
        arr = np.full((n, len(periods)), np.nan)
        r = pid_index.get_indexer(sub["pid"].to_numpy())
        keep = r >= 0
        vals = sub["mean"].to_numpy(dtype=np.float64)[keep]
        if band in _DB_BANDS:
            with np.errstate(divide="ignore", invalid="ignore"):
                vals = np.where(vals > 0, 10.0 * np.log10(vals), np.nan)
        arr[r[keep], sub["period"].to_numpy()[keep] - lo] = vals
        raw[band] = arr
    missing_required = [b for b in _REQUIRED if b not in raw]
    if missing_required:
        raise NothingToDo(f"no {'/'.join(missing_required)} observations in the season")
    no_obs = np.zeros(n, dtype=bool)
    for b in _REQUIRED:
        no_obs |= np.isnan(raw[b]).all(axis=1)
    keep_rows = ~no_obs
    if not keep_rows.any():
        raise NothingToDo("no parcel has a valid VV/VH observation in the season")
    if "VV" in raw and "VH" in raw:
        raw["VHVV"] = raw["VH"] - raw["VV"]  # NaN where either is missing
    order = ["VV", "VH", "VHVV", "COH_VV", "COH_VH"]
    cols: dict[str, np.ndarray] = {}
    missing_cols: dict[str, np.ndarray] = {}
    for g in order:
        if g not in raw:
            continue
        a = raw[g][keep_rows]
        miss = np.isnan(a)
        missing_cols[f"{g}_missing"] = miss.mean(axis=1)
        if g == "VHVV":
            filled = cols_from(cols, "VH", periods) - cols_from(cols, "VV", periods)
        else:
            filled = interpolate_rows(a)
            empty_rows = np.isnan(filled).all(axis=1)
            if empty_rows.any():
                med = np.nanmedian(filled[~empty_rows], axis=0)
                filled[empty_rows] = med
        for j, p in enumerate(periods):
            cols[f"{g}_p{p:03d}"] = filled[:, j].astype(np.float32)
    id_cols = [c for c in ("pid", "parcel_id", "crop", "crop_name", "area_m2") if c in parcels.columns]
    out = parcels.loc[keep_rows, id_cols].reset_index(drop=True)
    feat = pd.DataFrame({**cols, **{k: v.astype(np.float32) for k, v in missing_cols.items()}})
    out = pd.concat([out, feat], axis=1)
    out.attrs["excluded"] = {"no_valid_observations": int(no_obs.sum())}
    out.attrs["excluded_parcels"] = parcels.loc[no_obs, "parcel_id"].astype(str).tolist()[:1000]
    out.attrs["periods"] = [int(p) for p in periods]
    out.attrs["period_days"] = pds[0]
    if no_obs.any():
        log.warning("%d parcels without a valid VV/VH observation excluded", int(no_obs.sum()))
    return out


def cols_from(cols: dict[str, np.ndarray], group: str, periods: np.ndarray) -> np.ndarray:
    """The (already filled) columns of a group as a 2-d float array."""
    return np.column_stack([cols[f"{group}_p{p:03d}"] for p in periods]).astype(np.float64)


PHENOLOGY_GROUPS: tuple[str, ...] = ("NDVI", "VH", "VV", "VHVV")


def _smooth(a: np.ndarray) -> np.ndarray:
    """Gap-aware 3-step running mean along time: each step the mean of its valid neighbours (NaN where none)."""
    pad = np.pad(a, ((0, 0), (1, 1)), constant_values=np.nan)
    stack = np.stack([pad[:, :-2], pad[:, 1:-1], pad[:, 2:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def phenology_features(df: pd.DataFrame, groups: Sequence[str] = PHENOLOGY_GROUPS) -> pd.DataFrame:
    """Per-parcel phenology metrics of the time-series groups, from the gap-aware smoothed series.

    Per group ``G`` (NDVI, VH, VV, VH/VV when present): ``G_mean``, ``G_std``, ``G_min``, ``G_max``,
    ``G_amp`` (max - min), ``G_tmax``/``G_tmin`` (step of the maximum/minimum, as a fraction of the
    season), ``G_rise``/``G_drop`` (steepest increase/decrease between steps) and their steps
    ``G_trise``/``G_tdrop``; for NDVI also green-up ``NDVI_tup`` and senescence ``NDVI_tdown`` (first
    and last step above half the amplitude) and ``NDVI_len`` (their distance): peak, green-up and
    harvest timing. NaN where a group has no value.
    """
    found = feature_groups(list(map(str, df.columns)))
    out: dict[str, np.ndarray] = {}
    for g in groups:
        cols = found.get(g)
        if not cols or len(cols) < 3:
            continue
        a = _smooth(df[cols].to_numpy(dtype=np.float64))
        m = a.shape[1]
        valid = ~np.isnan(a).all(axis=1)
        filled_hi = np.where(np.isnan(a), -np.inf, a)
        filled_lo = np.where(np.isnan(a), np.inf, a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[f"{g}_mean"] = np.nanmean(a, axis=1)
            out[f"{g}_std"] = np.nanstd(a, axis=1)
            mx, mn = np.nanmax(a, axis=1), np.nanmin(a, axis=1)
            d = np.diff(a, axis=1)
            rise, drop = np.nanmax(d, axis=1), np.nanmin(d, axis=1)
        out[f"{g}_min"], out[f"{g}_max"], out[f"{g}_amp"] = mn, mx, mx - mn
        out[f"{g}_tmax"] = np.where(valid, filled_hi.argmax(axis=1) / (m - 1), np.nan)
        out[f"{g}_tmin"] = np.where(valid, filled_lo.argmin(axis=1) / (m - 1), np.nan)
        dd = np.where(np.isnan(d), 0.0, d)
        out[f"{g}_rise"], out[f"{g}_drop"] = rise, drop
        out[f"{g}_trise"] = np.where(valid, dd.argmax(axis=1) / (m - 1), np.nan)
        out[f"{g}_tdrop"] = np.where(valid, dd.argmin(axis=1) / (m - 1), np.nan)
        if g == "NDVI":
            half = mn + 0.5 * (mx - mn)
            above = a >= half[:, None]
            anyab = above.any(axis=1) & valid
            first = np.where(anyab, above.argmax(axis=1), 0)
            last = np.where(anyab, m - 1 - above[:, ::-1].argmax(axis=1), 0)
            out["NDVI_tup"] = np.where(anyab, first / (m - 1), np.nan)
            out["NDVI_tdown"] = np.where(anyab, last / (m - 1), np.nan)
            out["NDVI_len"] = np.where(anyab, (last - first) / (m - 1), np.nan)
    return pd.DataFrame({k: v.astype(np.float32) for k, v in out.items()}, index=df.index)


def with_phenology(df: pd.DataFrame) -> pd.DataFrame:
    """The table with :func:`phenology_features` appended (columns already present are replaced); attrs kept."""
    ph = phenology_features(df)
    out = pd.concat([df.drop(columns=[c for c in ph.columns if c in df.columns]), ph], axis=1)
    out.attrs.update(df.attrs)
    return out
