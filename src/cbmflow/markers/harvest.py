"""Harvest of arable crops, week by week: NDVI falls from the season's peak, VH/VV falls, coherence rises.

Each week of the season gets three pieces of evidence: S2 (the best cloud-free NDVI of the week
is at most ``max_ndvi_after`` and at least ``min_ndvi_drop`` below the season's peak), S1 ratio
(orbit-referenced VH/VV in dB at least ``ratio_drop_db`` below the three weeks before) and S1
coherence (at least ``coh_rise`` above the three weeks before). The harvest is the first week
after the peak with S2 evidence, or with both S1 pieces; S1 in the same or the next week raises
the confidence.
"""

from __future__ import annotations

import numpy as np

from cbmflow.markers.params import HarvestParams, MarkerParams
from cbmflow.markers.signals import Marker, ParcelSignals, iso, orbit_anomaly, season_day

NOT_HARVESTED = frozenset({"grassland", "fallow"})  # managed by mowing; harvest markers are not run


def _weekly(d: np.ndarray, v: np.ndarray, w0: float, n: int, how: str) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(d) == 0:
        return out
    k = np.floor((d - w0) / 7.0).astype(int)
    for w in range(n):
        sel = (k == w) & np.isfinite(v)
        if sel.any():
            out[w] = np.max(v[sel]) if how == "max" else np.mean(v[sel])
    return out


def harvest_weeks(s2: tuple[np.ndarray, np.ndarray], ratio: tuple[np.ndarray, np.ndarray],
                  coh: tuple[np.ndarray, np.ndarray], p: HarvestParams,
                  season: tuple[float, float]) -> list[Marker]:
    """The harvest (at most one) from NDVI, VH/VV (dB, orbit-referenced) and coherence series."""
    w0, w1 = season
    n = int(np.ceil((w1 - w0 + 1) / 7.0))
    sd, sv = (np.asarray(a, dtype=float) for a in s2)
    ndvi = _weekly(sd, sv, w0, n, "max")
    rat = _weekly(np.asarray(ratio[0], dtype=float), np.asarray(ratio[1], dtype=float), w0, n, "mean")
    co = _weekly(np.asarray(coh[0], dtype=float), np.asarray(coh[1], dtype=float), w0, n, "mean")
    have_s2 = bool(np.isfinite(ndvi).any())
    peak_week = int(np.nanargmax(ndvi)) if have_s2 else -1
    peak = float(ndvi[peak_week]) if have_s2 else float("nan")
    if have_s2 and peak < p.min_peak_ndvi:
        return []  # no crop canopy this season: nothing to harvest

    def prior(a: np.ndarray, w: int) -> float:
        x = a[max(0, w - 3):w]
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

    def s1_evidence(w: int) -> tuple[bool, bool]:
        r = rat[w] - prior(rat, w) if w < n else np.nan
        c = co[w] - prior(co, w) if w < n else np.nan
        return bool(np.isfinite(r) and r <= -p.ratio_drop_db), bool(np.isfinite(c) and c >= p.coh_rise)

    for w in range(max(peak_week + 1, 1), n):
        s2_ev = bool(np.isfinite(ndvi[w]) and ndvi[w] <= p.max_ndvi_after and peak - ndvi[w] >= p.min_ndvi_drop)
        r_ev, c_ev = s1_evidence(w)
        r_next, c_next = s1_evidence(w + 1) if w + 1 < n else (False, False)
        if s2_ev:
            # date it between the last cloud-free observation still above the threshold and the first below
            week_obs = (sd >= w0 + 7 * w) & (sd < w0 + 7 * (w + 1)) & (sv <= p.max_ndvi_after)
            first = float(sd[week_obs].min())
            before = sd[(sd < first) & (sv > p.max_ndvi_after)]
            lo = float(before.max()) if len(before) else w0 + 7 * w
            s1_any = r_ev or c_ev or r_next or c_next
            sources: tuple[str, ...] = ("S2", "S1") if s1_any else ("S2",)
            conf = 0.9 if s1_any else 0.6
            return [Marker("harvest", iso((lo + first) / 2), iso(lo), iso(first), conf, sources,
                           {"week": w, "ndvi_peak": round(peak, 4), "ndvi_after": round(float(ndvi[w]), 4),
                            "vhvv_drop": r_ev or r_next, "coh_rise": c_ev or c_next})]
        if r_ev and c_ev and p.min_sources <= 1:
            lo, hi = w0 + 7 * w, w0 + 7 * w + 6
            return [Marker("harvest", iso((lo + hi) / 2), iso(lo), iso(hi), 0.5, ("S1",),
                           {"week": w, "vhvv_drop": True, "coh_rise": True})]
    return []


def detect_harvest(sig: ParcelSignals, params: MarkerParams) -> list[Marker]:
    """The harvest of a parcel's season (none for grassland and fallow)."""
    if sig.crop_group in NOT_HARVESTED:
        return []
    p = params.harvest
    season = (float(season_day(sig.year, p.season_start)), float(season_day(sig.year, p.season_end)))
    if sig.s2 is not None:
        ok = sig.s2.usable(params.s2.cloud_classes, params.s2.cloud_max, params.s2.min_count)
        s2 = (sig.s2.days[ok], sig.s2.ndvi()[ok])
    else:
        s2 = (np.zeros(0), np.zeros(0))
    rd, rv, _ = orbit_anomaly(sig.s1, "ratio_db")
    cd, cv, _ = orbit_anomaly(sig.s1, "coh")
    return harvest_weeks(s2, (rd, rv), (cd, cv), p, season)
