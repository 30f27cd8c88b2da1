"""Marker input as one long table (CSV or Parquet): a row per parcel, acquisition and band.

Columns (names case-insensitive): ``parcel`` (parcel id, any text), ``date`` (ISO date or
date-time), ``band``, ``mean``, ``count`` (pixels), optional ``orbit`` (S1: relative orbit or pass)
and ``cloud_fraction`` (S2: share 0..1 of the parcel's pixels that are cloudy). Bands: S2 ``B04``
(red), ``B08`` (NIR), ``B11`` as reflectance 0..1; S1 ``VV``, ``VH`` linear backscatter and
``COH_VV``, ``COH_VH`` 6-day coherence (dated by the pair's second image). GEE, openEO or
Sen4CAP exports map onto it with a rename. Every bad row fails with the file, row and column.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core.errors import CorruptData, InputError
from cbmflow.markers.signals import ParcelSignals, S1Orbit, S2Series

REQUIRED = ("parcel", "date", "band", "mean", "count")
OPTIONAL = ("orbit", "cloud_fraction")
ALIASES = {"parcel_id": "parcel", "id": "parcel", "time": "date", "datetime": "date", "cloud": "cloud_fraction"}
S2_BANDS = {"B04": "b04", "B4": "b04", "RED": "b04", "B08": "b08", "B8": "b08", "NIR": "b08", "B11": "b11"}
S1_BANDS = {"VV": "vv", "VH": "vh", "COH_VV": "coh_vv", "COH_VH": "coh_vh"}


def _columns(df: Any) -> dict[str, str]:
    """{canonical name: the file's column} for the known columns."""
    out: dict[str, str] = {}
    for c in df.columns:
        k = str(c).strip().lower()
        k = ALIASES.get(k, k)
        if k in REQUIRED + OPTIONAL and k not in out:
            out[k] = str(c)
    return out


def is_long_table(path: str | Path) -> bool:
    """True when the file is a Parquet file or a CSV whose header has the long-table columns."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() in (".parquet", ".pq"):
        return True
    if p.suffix.lower() != ".csv":
        return False
    with open(p, encoding="utf-8", errors="replace") as fh:
        head = fh.readline()
    names = {ALIASES.get(h.strip().strip('"').lower(), h.strip().strip('"').lower()) for h in head.split(",")}
    return set(REQUIRED) <= names


def _bad(path: Path, row: int, col: str, what: str) -> InputError:
    return InputError(f"{path}: row {row}, column {col!r}: {what}")


def _read(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser error names the file
        raise CorruptData(f"cannot read {path}: {exc}") from exc


def _date(text: Any) -> dt.date:
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    s = str(text).strip()
    if hasattr(text, "to_pydatetime"):
        return text.to_pydatetime().date()
    if len(s) >= 15 and s[8] == "T" and s[:8].isdigit():  # 20200617T105031 (JRC, S1 product ids)
        return dt.datetime.strptime(s[:15], "%Y%m%dT%H%M%S").date()
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).date() if len(s) > 10 else dt.date.fromisoformat(s)


def _number(value: Any) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("empty")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def read_long_table(path: str | Path, *, year: int | None = None) -> list[ParcelSignals]:
    """Every parcel's signals, one per parcel and year (or only ``year``), from a long table."""
    p = Path(path)
    df = _read(p)
    cols = _columns(df)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise InputError(f"{p}: missing column(s) {missing}; a long table needs {list(REQUIRED)} "
                         f"(optional {list(OPTIONAL)})")
    if len(df) == 0:
        raise InputError(f"{p}: no rows")
    s2: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
    s1: dict[tuple[str, int], dict[str, dict[str, dict[int, float]]]] = {}
    records = df[[cols[c] for c in REQUIRED + OPTIONAL if c in cols]].to_dict("records")
    for n, rec in enumerate(records, start=2 if p.suffix.lower() == ".csv" else 1):
        r = {c: rec[cols[c]] for c in cols}
        parcel = str(r["parcel"]).strip()
        if not parcel or parcel.lower() in ("nan", "none"):
            raise _bad(p, n, cols["parcel"], "empty parcel id")
        try:
            d = _date(r["date"])
        except (ValueError, TypeError):
            raise _bad(p, n, cols["date"], f"{r['date']!r} is not an ISO date or date-time") from None
        if year is not None and d.year != year:
            continue
        band = str(r["band"]).strip().upper()
        if band not in S2_BANDS and band not in S1_BANDS:
            raise _bad(p, n, cols["band"], f"unknown band {r['band']!r} (known: B04, B08, B11, VV, VH, "
                                           "COH_VV, COH_VH)")
        try:
            mean = _number(r["mean"])
        except (ValueError, TypeError):
            raise _bad(p, n, cols["mean"], f"{r['mean']!r} is not a finite number") from None
        try:
            count = _number(r["count"])
            if count < 0 or count != int(count):
                raise ValueError
        except (ValueError, TypeError):
            raise _bad(p, n, cols["count"], f"{r['count']!r} is not a pixel count (integer >= 0)") from None
        key = (parcel, d.year)
        o = d.toordinal()
        if band in S2_BANDS:
            if S2_BANDS[band] != "b11" and not -0.2 <= mean <= 2.0:
                raise _bad(p, n, cols["mean"], f"{mean} is not a reflectance (0..1; divide DN by 10000)")
            acq = s2.setdefault(key, {}).setdefault(o, {"count": 0.0, "cloud": math.nan})
            acq[S2_BANDS[band]] = mean
            acq["count"] = max(acq["count"], count)
            cf = r.get("cloud_fraction")
            if cf is not None and str(cf).strip() not in ("", "nan", "None"):
                try:
                    c = _number(cf)
                    if not 0.0 <= c <= 1.0:
                        raise ValueError
                except (ValueError, TypeError):
                    raise _bad(p, n, cols["cloud_fraction"], f"{cf!r} is not a fraction 0..1") from None
                acq["cloud"] = c if math.isnan(acq["cloud"]) else max(acq["cloud"], c)
        else:
            orbit = str(r.get("orbit", "") or "").strip() or "all"
            if orbit.endswith(".0") and orbit[:-2].isdigit():
                orbit = orbit[:-2]
            s1.setdefault(key, {}).setdefault(orbit, {}).setdefault(S1_BANDS[band], {})[o] = mean
    out = []
    for key in sorted(set(s2) | set(s1)):
        series = None
        if key in s2:
            acqs = s2[key]
            days = sorted(acqs)

            def col(name: str, acqs: dict[int, dict[str, float]] = acqs, days: list[int] = days) -> np.ndarray:
                return np.array([acqs[k].get(name, np.nan) for k in days], dtype=float)

            cloud = col("cloud")
            b11 = col("b11")
            series = S2Series(days=np.array(days, dtype=float), b04=col("b04"), b08=col("b08"), scl=None,
                              count=col("count"), b11=b11 if np.isfinite(b11).any() else None,
                              cloud=cloud if np.isfinite(cloud).any() else None)
        orbits = []
        for orbit, q in sorted(s1.get(key, {}).items()):
            bs = sorted(set(q.get("vv", {})) | set(q.get("vh", {})))
            ch = sorted(set(q.get("coh_vv", {})) | set(q.get("coh_vh", {})))

            def arr(name: str, dd: list[int], q: dict[str, dict[int, float]] = q) -> np.ndarray | None:
                return np.array([q[name].get(k, np.nan) for k in dd], dtype=float) if name in q and dd else None

            orbits.append(S1Orbit(orbit=orbit, days=np.array(bs, dtype=float), vv=arr("vv", bs), vh=arr("vh", bs),
                                  coh_days=np.array(ch, dtype=float) if ch else None,
                                  coh_vv=arr("coh_vv", ch), coh_vh=arr("coh_vh", ch)))
        out.append(ParcelSignals(parcel=key[0], year=key[1], s2=series, s1=tuple(orbits)))
    if not out:
        raise InputError(f"{p}: no rows for {year}")
    return out
