"""Marker inputs: JRC CbM time-series CSVs as they are (``tsdir``) and cbmflow signatures in PostGIS.

JRC files per parcel ``<id>``: ``<id>_s2_ts.csv`` (per acquisition, bands B04/B08 [B11], columns
``date``, ``band``, ``count``, ``MEAN``, SCL histogram ``hist.0..hist.11``), ``<id>_s1_bs_ts.csv``
(``s1_bs_rAD`` = VV, ``s1_bs_VH_rAD`` = VH, linear) and ``<id>_s1_coh6_ts.csv`` (``s1_coh6_VV``,
``s1_coh6_VH``), both with ``date`` as ``YYYYMMDDTHHMMSS``. S1 orbits are told apart by the
acquisition time of day (passes of one relative orbit repeat within a minute).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core.errors import CorruptData, InputError, NotFound
from cbmflow.markers.signals import ParcelSignals, S1Orbit, S2Series

_TS_RE = re.compile(r"^(?P<id>.+?)_(?P<kind>s2|s1_bs|s1_coh6)_ts\.csv$")
S2_BANDS = ("B04", "B08", "B11")
BS_BANDS = {"s1_bs_rAD": "vv", "s1_bs_VH_rAD": "vh"}
COH_BANDS = {"s1_coh6_VV": "coh_vv", "s1_coh6_VH": "coh_vh"}


def tsdir_files(path: str | Path) -> dict[str, dict[str, Path]]:
    """The JRC time-series files under a folder (or of one file's parcel) as {parcel id: {kind: path}}."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"signatures {p} do not exist")
    if p.is_file():
        m = _TS_RE.match(p.name)
        if not m:
            raise InputError(f"{p} is not a JRC CbM time-series CSV (<id>_s2_ts.csv, <id>_s1_bs_ts.csv, "
                             f"<id>_s1_coh6_ts.csv)")
        candidates: Iterable[Path] = p.parent.glob(f"{m.group('id')}_*_ts.csv")
    else:
        candidates = p.glob("*_ts.csv")
    out: dict[str, dict[str, Path]] = {}
    for f in sorted(candidates):
        m = _TS_RE.match(f.name)
        if m:
            out.setdefault(m.group("id"), {})[m.group("kind")] = f
    if not out:
        raise InputError(f"no JRC CbM time-series CSVs (<id>_s2_ts.csv, <id>_s1_bs_ts.csv, <id>_s1_coh6_ts.csv) in {p}")
    return out


def _sort_key(pid: str) -> tuple[int, Any]:
    return (0, int(pid)) if pid.isdigit() else (1, pid)


def _read_csv(path: Path, required: tuple[str, ...]) -> Any:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parser error names the file
        raise CorruptData(f"cannot read {path}: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CorruptData(f"{path} lacks column(s) {missing}")
    return df


def _s1_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(str(text)[:15], "%Y%m%dT%H%M%S")


def orbit_key(t: dt.datetime) -> str:
    """A stable orbit label from the acquisition time of day (nearest 5 minutes), e.g. ``t1650``."""
    minutes = int(round((t.hour * 60 + t.minute + t.second / 60.0) / 5.0)) * 5
    return f"t{minutes // 60 % 24:02d}{minutes % 60:02d}"


def _read_s2(path: Path) -> S2Series:
    df = _read_csv(path, ("date", "band", "count", "MEAN"))
    hist_cols = [f"hist.{k}" for k in range(12)]
    has_hist = all(c in df.columns for c in hist_cols)
    dates = sorted(df["date"].astype(str).str[:10].unique())
    idx = {d: k for k, d in enumerate(dates)}
    n = len(dates)
    vals = {b: np.full(n, np.nan) for b in S2_BANDS}
    count = np.zeros(n)
    scl = np.zeros((n, 12)) if has_hist else None
    for r in df.itertuples(index=False):
        k = idx[str(r.date)[:10]]
        band = str(r.band)
        if band in vals:
            vals[band][k] = float(r.MEAN)
            count[k] = max(count[k], float(r.count))
    if scl is not None:
        first = df.assign(_d=df["date"].astype(str).str[:10]).drop_duplicates("_d")
        for d, h in zip(first["_d"], first[hist_cols].to_numpy(dtype=float), strict=True):
            scl[idx[d]] = h
    days = np.array([dt.date.fromisoformat(d).toordinal() for d in dates], dtype=float)
    b11 = vals["B11"] if np.isfinite(vals["B11"]).any() else None
    return S2Series(days=days, b04=vals["B04"], b08=vals["B08"], scl=scl, count=count, b11=b11)


def _read_s1(bs: Path | None, coh: Path | None) -> tuple[S1Orbit, ...]:
    per: dict[str, dict[str, dict[float, float]]] = {}
    for path, bands in ((bs, BS_BANDS), (coh, COH_BANDS)):
        if path is None:
            continue
        df = _read_csv(path, ("date", "band", "MEAN"))
        for r in df.itertuples(index=False):
            key = bands.get(str(r.band))
            if key is None:
                continue
            t = _s1_time(str(r.date))
            per.setdefault(orbit_key(t), {}).setdefault(key, {})[float(t.date().toordinal())] = float(r.MEAN)
    out = []
    for orbit in sorted(per):
        q = per[orbit]

        def series(key: str, days: list[float], q: dict[str, dict[float, float]] = q) -> np.ndarray | None:
            if key not in q:
                return None
            return np.array([q[key].get(d, np.nan) for d in days])

        bs_days = sorted(set(q.get("vv", {})) | set(q.get("vh", {})))
        coh_days = sorted(set(q.get("coh_vv", {})) | set(q.get("coh_vh", {})))
        out.append(S1Orbit(
            orbit=orbit, days=np.array(bs_days, dtype=float),
            vv=series("vv", bs_days) if bs_days else None, vh=series("vh", bs_days) if bs_days else None,
            coh_days=np.array(coh_days, dtype=float) if coh_days else None,
            coh_vv=series("coh_vv", coh_days) if coh_days else None,
            coh_vh=series("coh_vh", coh_days) if coh_days else None,
        ))
    return tuple(out)


def read_tsdir(path: str | Path, *, year: int | None = None) -> list[ParcelSignals]:
    """Every parcel's signals from JRC CbM ``tsdir`` CSVs (a folder, or one file and its siblings)."""
    files = tsdir_files(path)
    out = []
    for pid in sorted(files, key=_sort_key):
        f = files[pid]
        s2 = _read_s2(f["s2"]) if "s2" in f else None
        s1 = _read_s1(f.get("s1_bs"), f.get("s1_coh6"))
        y = year
        if y is None:
            days: list[float] = []
            if s2 is not None:
                days += list(s2.days)
            for o in s1:
                days += list(o.days) + (list(o.coh_days) if o.coh_days is not None else [])
            if not days:
                raise InputError(f"parcel {pid}: its time-series files hold no dates")
            y = Counter(dt.date.fromordinal(int(d)).year for d in days).most_common(1)[0][0]
        out.append(ParcelSignals(parcel=pid, year=int(y), s2=s2, s1=s1))
    return out


# ----------------------------------------------------------------------------- PostGIS

_DB_BANDS = {"VV": "vv", "VH": "vh", "COH_VV": "coh_vv", "COH_VH": "coh_vh", "B04": "b04", "B08": "b08",
             "B11": "b11"}


def _archive_rows(aoi: str, year: int, pids: list[int] | None) -> list[tuple[Any, ...]]:
    """Rows shaped like :func:`read_db`'s signatures query, from the season archive (empty when none)."""
    from cbmflow.core.bands import BAND_CODES
    from cbmflow.extract import archive

    if not archive.configured():
        return []
    out: list[tuple[Any, ...]] = []
    for _obsid, band, card, when, orbit, rows in archive.read_season(aoi, year, list(_DB_BANDS), pids=pids):
        day = dt.date.fromisoformat(when[:10])
        if day.year != int(year):
            continue
        code = BAND_CODES[band]
        means = [float(str(m)) for m in rows["mean"]]  # float4 as PostgreSQL's text output gives it
        out += [(int(p), card, day, orbit, code, m, int(c))
                for p, m, c in zip(rows["pid"].tolist(), means, rows["count"].tolist(), strict=True)]
    out.sort(key=lambda r: (r[0], r[2]))
    return out


def read_db(conn: Any, aoi: str, year: int, *, pids: list[int] | None = None) -> list[ParcelSignals]:
    """Every parcel's signals of an AOI and season from the ``signatures`` and ``scl_histograms`` tables.

    S2 reflectances are stored as DN (x 10^4) by the extraction: they are scaled to 0..1 here.
    S1 orbits are the catalogue's ``relative_orbit`` (with the pass direction).
    """
    from cbmflow.core.bands import BAND_CODES
    from cbmflow.core.crops import crop_group

    parcels = conn.execute(
        "SELECT pid, parcel_id, crop_code, crop_name FROM parcels WHERE aoi = %s AND year = %s"
        + (" AND pid = ANY(%s)" if pids else "") + " ORDER BY pid",
        (aoi, year, pids) if pids else (aoi, year),
    ).fetchall()
    if not parcels:
        raise NotFound(f"no parcels for AOI {aoi!r} {year}")
    codes = [BAND_CODES[b] for b in _DB_BANDS]
    names = {BAND_CODES[b]: k for b, k in _DB_BANDS.items()}
    where = "p.aoi = %s AND p.year = %s" + (" AND p.pid = ANY(%s)" if pids else "")
    args: tuple[Any, ...] = (aoi, year, pids) if pids else (aoi, year)
    rows = conn.execute(
        "SELECT s.pid, c.card_type, (c.sensing_time AT TIME ZONE 'UTC')::date, "
        "coalesce(c.relative_orbit::text, '') || coalesce(left(c.orbit_direction, 1), ''), "
        "s.band, s.mean, s.count FROM signatures s JOIN parcels p ON p.pid = s.pid "
        "JOIN catalogue c ON c.id = s.obsid WHERE " + where + " AND s.band = ANY(%s) "
        "AND extract(year FROM c.sensing_time AT TIME ZONE 'UTC') = %s ORDER BY s.pid, c.sensing_time",
        (*args, codes, year),
    ).fetchall()
    if not rows:  # PostGIS holds only the recent window: the season from the archive, when there is one
        rows = _archive_rows(aoi, year, pids)
    hist = conn.execute(
        "SELECT h.pid, (c.sensing_time AT TIME ZONE 'UTC')::date, h.counts FROM scl_histograms h "
        "JOIN parcels p ON p.pid = h.pid JOIN catalogue c ON c.id = h.obsid WHERE " + where +
        " AND extract(year FROM c.sensing_time AT TIME ZONE 'UTC') = %s",
        (*args, year),
    ).fetchall()
    s2: dict[int, dict[int, dict[str, float]]] = {}
    s1: dict[int, dict[str, dict[str, dict[int, float]]]] = {}
    for pid, card, d, orbit, band, mean, count in rows:
        o = d.toordinal()
        key = names[band]
        if card == "s2":
            rec = s2.setdefault(pid, {}).setdefault(o, {"count": 0.0})
            rec[key] = float(mean) / 10000.0
            rec["count"] = max(rec["count"], float(count))
        else:
            s1.setdefault(pid, {}).setdefault(orbit or "?", {}).setdefault(key, {})[o] = float(mean)
    scl: dict[int, dict[int, list[int]]] = {}
    for pid, d, counts in hist:
        scl.setdefault(pid, {})[d.toordinal()] = list(counts)
    out = []
    for pid, parcel_id, crop_code, crop_name in parcels:
        series = None
        recs = s2.get(pid)
        if recs:
            days = sorted(recs)
            h = scl.get(pid, {})
            get = lambda k, days=days, recs=recs: np.array([recs[d].get(k, np.nan) for d in days])  # noqa: E731
            b11 = get("b11")
            series = S2Series(
                days=np.array(days, dtype=float), b04=get("b04"), b08=get("b08"),
                scl=np.array([h.get(d, [0] * 12) for d in days], dtype=float) if h else None,
                count=get("count"), b11=b11 if np.isfinite(b11).any() else None,
            )
        orbits = []
        for orbit, q in sorted(s1.get(pid, {}).items()):
            bs_days = sorted(set(q.get("vv", {})) | set(q.get("vh", {})))
            coh_days = sorted(set(q.get("coh_vv", {})) | set(q.get("coh_vh", {})))

            def arr(key: str, dd: list[int], q: dict[str, dict[int, float]] = q) -> np.ndarray | None:
                return np.array([q[key].get(x, np.nan) for x in dd]) if key in q and dd else None

            orbits.append(S1Orbit(
                orbit=orbit, days=np.array(bs_days, dtype=float), vv=arr("vv", bs_days), vh=arr("vh", bs_days),
                coh_days=np.array(coh_days, dtype=float) if coh_days else None,
                coh_vv=arr("coh_vv", coh_days), coh_vh=arr("coh_vh", coh_days),
            ))
        out.append(ParcelSignals(parcel=str(parcel_id), year=year, s2=series, s1=tuple(orbits), pid=int(pid),
                                 crop_code=crop_code, crop_group=crop_group(str(crop_name or crop_code or ""))))
    return out


def read_foi_info(path: str | Path) -> dict[str, list[str]]:
    """JRC ground truth ``gtdir/FOIinfo.csv``: {parcel id: [ISO event dates]} (dates are DD/MM/YYYY)."""
    df = _read_csv(Path(path), ("ID", "Event_date"))
    out: dict[str, list[str]] = {}
    for pid, text in zip(df["ID"], df["Event_date"], strict=True):
        d = dt.datetime.strptime(str(text).strip(), "%d/%m/%Y").date()
        out.setdefault(str(pid), []).append(d.isoformat())
    return {k: sorted(v) for k, v in out.items()}
