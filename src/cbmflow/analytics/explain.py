"""Why a parcel is flagged: the periods and bands where it contradicts the parcels declaring the same crop.

For a flagged parcel declared as crop *d* with best other crop *o*, every time-series feature
``<BAND>_p<NNN>`` (see :mod:`cbmflow.analytics.readers`) is compared with the other parcels that
declare *d* (its peers; in a class under 50 parcels the flagged parcel itself is left out): their 25th/50th/75th percentiles and a robust spread (the interquartile
range / 1.349, the standard deviation of a normal distribution with that IQR, never below a small
floor per band so that a flat band cannot give an infinite z). ``z = (value - peer median) / spread``:
how many standard deviations the parcel is from what its declared crop usually shows then.
The evidence is the list of the largest ``|z|`` (at most two per band, so one band's neighbouring
periods do not fill the list), each with the median of the parcels declaring *o* for comparison:

    {"period": "2022-06-01", "band": "VH", "value": -19.2, "declared_p25": -14.1, "declared_p75": -12.9,
     "predicted_median": -18.8, "z": -4.7}

``period`` is the first day of the period when the features know their dates (WorldCereal files:
``attrs["period_start"]`` and ``attrs["period"]``; cbmflow's own: ``attrs["year"]`` and
``attrs["period_days"]``), else the column's period label (``p012``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.features import feature_groups

MAX_ITEMS = 5
MAX_PER_BAND = 2
MIN_PEERS = 2
LEAVE_OUT_BELOW = 50  # classes smaller than this: the flagged parcel is left out of its peers
# the spread never goes below this (same unit as the band): dB for S1, index/reflectance for S2
_FLOOR = {"VV": 0.3, "VH": 0.3, "VHVV": 0.3}
_FLOOR_DEFAULT = 0.01
_SKIP = {"COH_VV", "COH_VH"}  # coherence is noisy per period: shown in the charts, not as evidence


def period_labeller(attrs: dict[str, Any]) -> Callable[[int], str]:
    """A function from a period index to its first day (YYYY-MM-DD) from a feature table's attrs, else ``pNNN``."""
    start = str(attrs.get("period_start") or "")
    step = str(attrs.get("period") or "")
    if start and step in ("month", "dekad"):
        d0 = dt.date.fromisoformat(start[:10])

        def label(k: int) -> str:
            if step == "month":
                m = d0.month - 1 + int(k)
                return dt.date(d0.year + m // 12, m % 12 + 1, 1).isoformat()
            dek = (d0.day - 1) // 10 + int(k)
            m = d0.month - 1 + dek // 3
            return dt.date(d0.year + m // 12, m % 12 + 1, 1 + 10 * (dek % 3)).isoformat()

        return label
    year, days = attrs.get("year"), attrs.get("period_days")
    if year and days:
        jan1 = dt.date(int(year), 1, 1)
        return lambda k: (jan1 + dt.timedelta(days=int(k) * int(days))).isoformat()
    return lambda k: f"p{int(k):03d}"


def flag_evidence(
    features: pd.DataFrame,
    peer_class: Sequence[Any] | np.ndarray,
    targets: Sequence[int] | np.ndarray,
    declared: Sequence[Any] | np.ndarray,
    other: Sequence[Any] | np.ndarray,
    *,
    label: Callable[[int], str] | None = None,
    max_items: int = MAX_ITEMS,
) -> dict[int, list[dict[str, Any]]]:
    """The evidence list of each target row: the periods and bands most unlike the declared crop's peers.

    ``features``: the rows of the classified parcels (same order as ``peer_class``); ``peer_class``:
    the declared class of every row (the peers of a row are the other rows of its class);
    ``targets``: row positions to explain; ``declared[i]``/``other[i]`` the declared and the best
    other class of target ``i``. A target whose declared class has fewer than ``MIN_PEERS`` other
    parcels gets an empty list (no peers to compare with).
    """
    label = label or (lambda k: f"p{int(k):03d}")
    groups = {g: cols for g, cols in feature_groups(list(map(str, features.columns))).items()
              if g not in _SKIP and not g.endswith("_missing")}
    if not groups or not len(targets):
        return {int(t): [] for t in targets}
    bands = list(groups)
    cols = [c for g in bands for c in groups[g]]
    band_of = np.array([g for g in bands for _ in groups[g]])
    period_of = [int(c.rpartition("_p")[2]) for c in cols]
    floor = np.array([_FLOOR.get(g, _FLOOR_DEFAULT) for g in band_of])
    X = features[cols].to_numpy(dtype=np.float64)
    cls = np.asarray([str(c) for c in peer_class], dtype=object)
    stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def of(c: str, leave_out: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        if c in stats:
            return stats[c]
        members = np.flatnonzero(cls == c)
        shared = len(members) >= LEAVE_OUT_BELOW  # one parcel hardly moves a large class's percentiles
        if leave_out is not None and not shared:
            members = members[members != leave_out]
        if len(members) < MIN_PEERS:
            return None
        q25, q50, q75 = np.nanpercentile(X[members], [25, 50, 75], axis=0)
        spread = np.maximum((q75 - q25) / 1.349, floor)
        out = (q25, q50, q75, spread)
        if shared:
            stats[c] = out
        return out

    result: dict[int, list[dict[str, Any]]] = {}
    for t, d, o in zip(targets, declared, other, strict=True):
        t = int(t)
        ref = of(str(d), t)
        if ref is None:
            result[t] = []
            continue
        q25, q50, q75, spread = ref
        pred = of(str(o), t)
        z = (X[t] - q50) / spread
        order = np.argsort(-np.nan_to_num(np.abs(z), nan=-1.0), kind="stable")
        items: list[dict[str, Any]] = []
        per_band: dict[str, int] = {}
        for j in order:
            if len(items) >= max_items or not np.isfinite(z[j]) or abs(z[j]) < 1e-9:
                break
            b = str(band_of[j])
            if per_band.get(b, 0) >= MAX_PER_BAND:
                continue
            per_band[b] = per_band.get(b, 0) + 1
            pm = pred[1][j] if pred is not None else np.nan
            items.append({
                "period": label(period_of[j]), "band": b, "value": round(float(X[t, j]), 4),
                "declared_p25": round(float(q25[j]), 4), "declared_p75": round(float(q75[j]), 4),
                "predicted_median": round(float(pm), 4) if np.isfinite(pm) else None,
                "z": round(float(z[j]), 2),
            })
        result[t] = items
    return result


def evidence_words(items: list[dict[str, Any]], declared_name: str, n: int = 2) -> str:
    """The first ``n`` evidence items in words, e.g. 'VH on 2022-06-01 is 4.7 sd below the declared crop's parcels'."""
    parts = []
    for it in items[:n]:
        z = float(it["z"])
        where = "below" if z < 0 else "above"
        parts.append(f"{it['band']} on {it['period']} is {abs(z):.1f} sd {where} the {declared_name} parcels")
    return "; ".join(parts)
