"""Mowing: S2 NDVI drops (a drop, a low after, regrowth) and S1 6-day coherence rises, fused into events.

Both detectors are pure functions on sorted day/value arrays; :func:`detect_mowing` wires them to
a parcel's signals. Parameters: :class:`cbmflow.markers.params.MowingParams`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cbmflow.markers.params import MarkerParams, MowingParams
from cbmflow.markers.signals import Candidate, Marker, ParcelSignals, iso, orbit_anomaly, season_day


def remove_spikes(days: np.ndarray, values: np.ndarray, p: MowingParams) -> np.ndarray:
    """Mask (True = keep) of observations that are not one-off dips recovered within ``spike_max_days``."""
    keep = np.ones(len(values), dtype=bool)
    for i in range(1, len(values) - 1):
        before, here, after = values[i - 1], values[i], values[i + 1]
        if (before - here >= p.min_drop and after >= before - p.spike_tolerance
                and days[i + 1] - days[i - 1] <= p.spike_max_days):
            keep[i] = False
    return keep


def fast_recoveries(days: np.ndarray, values: np.ndarray, p: MowingParams) -> np.ndarray:
    """Mask (True = keep) without dips that the next observation recovers too fast to be regrowth.

    A low whose next observation, at most ``spike_recover_days`` later, regains at least
    ``spike_recover_share`` of the fall from the observation before it is haze, undetected cloud
    or shadow: a cut sward regrows over weeks, not days (the Slovak cuts regain 0-10 % in the first
    five days). Applied repeatedly, so a two-image haze dip goes as well.
    """
    keep = np.ones(len(values), dtype=bool)
    if p.spike_recover_share <= 0:
        return keep
    idx = np.arange(len(values))
    for _ in range(2):
        k = idx[keep]
        d, v = days[k], values[k]
        for a in range(1, len(k) - 1):
            fall = v[a - 1] - v[a]
            if (fall >= p.cut_min_drop / 2 and d[a + 1] - d[a] <= p.spike_recover_days
                    and v[a + 1] - v[a] >= p.spike_recover_share * fall):
                keep[k[a]] = False
    return keep


def ndvi_drops(days: np.ndarray, ndvi: np.ndarray, p: MowingParams,
               season: tuple[float, float] | None = None) -> list[Candidate]:
    """Mowing candidates from cloud-free NDVI: a drop of at least ``min_drop``, a low, then regrowth."""
    days = np.asarray(days, dtype=float)
    ndvi = np.asarray(ndvi, dtype=float)
    keep = remove_spikes(days, ndvi, p)
    d, v = days[keep], ndvi[keep]
    out: list[Candidate] = []
    n = len(v)
    i = 1
    while i < n:
        gap = d[i] - d[i - 1]
        if not (v[i - 1] - v[i] >= p.min_drop and v[i - 1] >= p.min_ndvi_before and gap <= p.max_drop_gap_days):
            i += 1
            continue
        j = i  # the low: the fall may continue over the next observations
        while j + 1 < n and v[j + 1] < v[j] and d[j + 1] - d[j] <= p.max_drop_gap_days:
            j += 1
        later = (d > d[j]) & (d - d[j] <= p.regrowth_days)
        confirmed = bool(np.any(v[later] >= v[j] + p.regrowth_min))
        if later.any() and not confirmed:
            i = j + 1  # it fell and stayed down: senescence or harvest, not a cut
            continue
        drop = float(v[i - 1] - v[j])
        conf = min(1.0, 0.5 * drop / p.min_drop) * (1.0 if confirmed else 0.7)
        mid = (d[i - 1] + d[i]) / 2.0
        if season is None or season[0] <= mid <= season[1]:
            out.append(Candidate(day=mid, start=float(d[i - 1]), end=float(d[i]), confidence=round(conf, 4),
                                 source="S2", detail={"ndvi_before": round(float(v[i - 1]), 4),
                                                      "ndvi_low": round(float(v[j]), 4),
                                                      "regrowth": confirmed}))
        i = j + 1
    return out


def expected_level(days: np.ndarray, values: np.ndarray, weights: np.ndarray, i: int, p: MowingParams,
                   since: float = -np.inf) -> float:
    """The NDVI observation ``i`` was expected to show: weighted ``expect_quantile`` of the ``expect_days`` before it.

    Only observations after ``since`` (the last cut's low) count, so a cut is not found twice; a
    single hazy dip or a gap does not pull a median down. ``nan`` when there is no earlier observation.
    After a cloud gap (no image in the window, the one before at most ``gap_fall_days`` back) the
    window ends at the image before the gap.
    """
    win = (days < days[i]) & (days >= days[i] - p.expect_days) & (days >= since)
    if not win.any() and i > 0 and days[i] - days[i - 1] <= p.gap_fall_days and days[i - 1] >= since:
        # a cloud gap before this image: the level of the 20 days before the gap
        win = (days <= days[i - 1]) & (days >= days[i - 1] - p.expect_days) & (days >= since)
    if not win.any():
        return float("nan")
    v, w = values[win], weights[win]
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    k = int(np.searchsorted(cw, p.expect_quantile * cw[-1]))
    return float(v[order][min(k, len(v) - 1)])


def ndvi_cuts(days: np.ndarray, ndvi: np.ndarray, weights: np.ndarray, p: MowingParams,
              season: tuple[float, float] | None = None) -> list[Candidate]:
    """Cut candidates from NDVI judged against its expected curve: a sharp drop, a confirmed low, regrowth.

    ``weights`` (0..1, from the cloud share) down-weight hazy observations in the expected curve and
    in the confirmation of a low. A fall slower than ``max_fall_days`` (grazing, senescence) or a
    low that never regrows within ``regrowth_days`` is not a cut.
    """
    d = np.asarray(days, dtype=float)
    v = np.asarray(ndvi, dtype=float)
    w = np.asarray(weights, dtype=float)
    ok = np.isfinite(v) & (w >= p.min_weight)
    d, v, w = d[ok], v[ok], w[ok]
    keep = remove_spikes(d, v, p) & fast_recoveries(d, v, p)
    d, v, w = d[keep], v[keep], w[keep]
    out: list[Candidate] = []
    n = len(v)
    since = -np.inf
    i = 1
    while i < n:
        e = expected_level(d, v, w, i, p, since)
        drop = e - v[i] if np.isfinite(e) else -1.0
        if drop < p.cut_min_drop or e < p.min_ndvi_before:
            i += 1
            continue
        # the last observation still at the expected level dates the start of the fall
        h = i - 1
        while h > 0 and v[h] < e - p.cut_min_drop / 2 and d[i] - d[h - 1] <= p.max_fall_days:
            h -= 1
        if h > 0 and v[h] < e - p.cut_min_drop / 2 and d[i] - d[h - 1] <= p.gap_fall_days and e - v[i] >= p.gap_min_drop:
            h -= 1  # a deep drop across a cloud gap: the gap hides the cut, not a gradual fall
        fall_days = d[i] - d[h]
        deep = e - v[i] >= p.gap_min_drop
        if v[h] < e - p.cut_min_drop / 2 or fall_days > (p.gap_fall_days if deep else p.max_fall_days):
            i += 1  # a gradual fall (grazing, senescence) or a fall across a gap: not dated as a cut
            continue
        # sharp, not gradual: most of the fall from the window's top happens after the last high
        top = float(np.max(v[(d < d[i]) & (d >= d[h] - p.expect_days) & (d >= since)]))
        fall = float(v[h] - v[i])
        if fall < p.min_sharpness * max(top - float(v[i]), 1e-9):
            i += 1  # the sward was already falling for weeks: grazing, drought or senescence
            continue
        j = i  # the low: the fall may continue over the next observations
        while j + 1 < n and v[j + 1] < v[j] and d[j + 1] - d[j] <= p.max_drop_gap_days:
            j += 1
        low = float(v[j])
        later = (d > d[j]) & (d - d[j] <= p.regrowth_days)
        if p.regrowth_in_season and season is not None:
            later &= d <= season[1]  # a rise after the growing season (November) is not regrowth
        regrew = bool(np.any(v[later] >= low + p.regrowth_min))
        if (later.any() or p.require_regrowth) and not regrew:
            i = j + 1  # fell and stayed down (or the season ended): senescence or harvest, not a cut
            continue
        # a low seen once, on a hazy image, without a second low observation, is weak evidence
        second = (d > d[i]) & (d - d[i] <= p.confirm_days) & (v <= e - p.cut_min_drop / 2)
        support = float(w[i]) + (float(w[second].max()) if second.any() else 0.0)
        if support < p.min_support:
            i = j + 1
            continue
        depth = (e - low) / p.cut_min_drop
        conf = min(1.0, 0.35 * depth) * min(1.0, support / 1.5) * (1.0 if regrew else 0.7)
        mid = d[h] + p.date_fraction * (d[i] - d[h])
        if season is None or season[0] <= mid <= season[1]:
            out.append(Candidate(day=mid, start=float(d[h]), end=float(d[i]), confidence=round(min(conf, 1.0), 4),
                                 source="S2", detail={"ndvi_expected": round(float(e), 4),
                                                      "ndvi_low": round(low, 4), "regrowth": regrew,
                                                      "fall_days": int(d[i] - d[h])}))
        since = float(d[j])
        i = j + 1
    return out


def _trend_residual(d: np.ndarray, v: np.ndarray, x: float, sigma_min: float) -> tuple[float, float]:
    """Prediction at x of the least-squares line through (d, v), and the noise estimate."""
    n = len(v)
    mx, my = float(d.mean()), float(v.mean())
    dx = d - mx
    sxx = float(dx @ dx)
    if sxx == 0.0:
        res = v - my
        pred, dof = my, max(n - 1, 1)
    else:
        slope = float(dx @ (v - my)) / sxx
        pred = my + slope * (x - mx)
        res = v - (my + slope * dx)
        dof = max(n - 2, 1)
    sigma = max(float(np.sqrt(float(res @ res) / dof)), sigma_min)
    return pred, sigma


def coherence_rises(days: np.ndarray, coh: np.ndarray, p: MowingParams,
                    season: tuple[float, float] | None = None) -> list[Candidate]:
    """Mowing candidates from 6-day coherence rising above its local linear trend (CFAR threshold).

    A record is an alarm when it exceeds the line fitted to the previous ``coh_trend_days`` of
    records by both ``coh_min_increase`` and ``coh_k`` times the fit's residual noise. A record
    is dated by the second image of its pair, so a rise at ``t`` means the cut came before
    ``t - coh_pair_days`` and after the previous record's pair began.
    """
    d = np.asarray(days, dtype=float)
    v = np.asarray(coh, dtype=float)
    out: list[Candidate] = []
    prev_alarm = False
    for i in range(len(v)):
        win = (d < d[i]) & (d >= d[i] - p.coh_trend_days)
        if int(win.sum()) < p.coh_trend_min_points:
            prev_alarm = False
            continue
        pred, sigma = _trend_residual(d[win], v[win], d[i], p.coh_sigma_min)
        r = v[i] - pred
        alarm = r >= p.coh_min_increase and r >= p.coh_k * sigma
        if alarm and not prev_alarm:
            start = d[i - 1] - p.coh_pair_days
            end = d[i] - p.coh_pair_days
            mid = (start + end) / 2.0
            conf = min(1.0, 0.5 * r / max(p.coh_min_increase, p.coh_k * sigma))
            if season is None or season[0] <= mid <= season[1]:
                out.append(Candidate(day=mid, start=float(start), end=float(end), confidence=round(conf, 4),
                                     source="S1", detail={"coh_rise": round(float(r), 4),
                                                          "coh_sigma": round(float(sigma), 4)}))
        prev_alarm = alarm
    return out


def s2_blind(day: float, s2_days: np.ndarray | None, min_gap: int) -> bool:
    """True when the clear S2 images around ``day`` are at least ``min_gap`` days apart (S2 could miss a cut there)."""
    if s2_days is None or min_gap <= 0:
        return True
    before, after = s2_days[s2_days <= day], s2_days[s2_days > day]
    lo = float(before.max()) if len(before) else -np.inf
    hi = float(after.min()) if len(after) else np.inf
    return hi - lo >= min_gap


def fuse(s2: list[Candidate], s1: list[Candidate], p: MowingParams,
         s2_days: np.ndarray | None = None, s2_weak: list[Candidate] | None = None) -> list[Marker]:
    """S2 and S1 candidates within ``fuse_days`` become one event; then at most ``max_events``, ``min_separation_days`` apart.

    A coherence rise without S2 support becomes an event only when it is confident
    (``s1_alone_min_conf``) and S2 could not have seen the cut: its clear images ``s2_days``
    around it are ``s1_alone_s2_gap_days`` or more apart (where S2 saw the sward, S2 decides).
    ``s2_weak`` are S2 drops below the cut threshold: each becomes an event only with a coherence
    rise within ``fuse_days`` that no S2 cut has taken (one sensor confirms the other).
    """
    used: set[int] = set()
    s2 = list(s2)
    for c in s2_weak or []:
        if any(abs(c.day - o.day) < p.min_separation_days for o in s2):
            continue  # the same drop (or one next to it) is already a cut
        s2.append(Candidate(c.day, c.start, c.end, c.confidence, c.source, {**c.detail, "weak": True}))
    events: list[tuple[float, float, float, float, tuple[str, ...], dict[str, object]]] = []
    for c in sorted(s2, key=lambda c: c.day):
        best, best_dist = -1, float("inf")
        for k, o in enumerate(s1):
            dist = abs(o.day - c.day)
            if k not in used and dist <= p.fuse_days and dist < best_dist:
                best, best_dist = k, dist
        if best >= 0:
            o = s1[best]
            used.add(best)
            conf = 1.0 - (1.0 - c.confidence) * (1.0 - o.confidence)
            lo, hi = max(c.start, o.start), min(c.end, o.end)
            if lo > hi:  # the intervals do not overlap: keep the optical dating
                lo, hi = c.start, c.end
            when = c.day if p.fuse_date == "s2" else (lo + hi) / 2.0
            events.append((when, lo, hi, conf, ("S2", "S1"), {**c.detail, **o.detail}))
        elif not c.detail.get("weak"):
            events.append((c.day, c.start, c.end, c.confidence, ("S2",), dict(c.detail)))
    for k, o in enumerate(s1):
        if k not in used and o.confidence >= p.s1_alone_min_conf and s2_blind(o.day, s2_days, p.s1_alone_s2_gap_days):
            events.append((o.day, o.start, o.end, o.confidence, ("S1",), dict(o.detail)))
    chosen: list[tuple[float, float, float, float, tuple[str, ...], dict[str, object]]] = []
    for ev in sorted(events, key=lambda e: (-e[3], e[0])):
        if len(chosen) >= p.max_events:
            break
        if all(abs(ev[0] - c[0]) >= p.min_separation_days for c in chosen):
            chosen.append(ev)
    return [
        Marker("mowing", iso(e[0]), iso(e[1]), iso(e[2]), round(float(e[3]), 4), e[4], e[5])
        for e in sorted(chosen, key=lambda e: e[0])
    ]


def detect_mowing(sig: ParcelSignals, params: MarkerParams) -> list[Marker]:
    """The mowing events of a parcel's season (S2 NDVI drops fused with S1 coherence rises)."""
    p = params.mowing
    season = (float(season_day(sig.year, p.season_start)), float(season_day(sig.year, p.season_end)))
    s2c: list[Candidate] = []
    s2w: list[Candidate] = []
    s2_days: np.ndarray | None = None
    if p.use_s2 and sig.s2 is not None:
        ok = sig.s2.usable(params.s2.cloud_classes, params.s2.cloud_max, params.s2.min_count)
        d = sig.s2.days[ok]
        order = np.argsort(d, kind="stable")
        days, ndvi = d[order], sig.s2.ndvi()[ok][order]
        if p.s2_method == "expected":
            w = (1.0 - sig.s2.cloud_fraction(params.s2.cloud_classes)[ok])[order]
            s2_days = days[(w >= p.min_weight) & np.isfinite(ndvi)]
            s2c = ndvi_cuts(days, ndvi, w, p, season)
            if p.use_s1 and sig.s1 and 0 < p.s1_confirm_min_drop < p.cut_min_drop:
                s2w = ndvi_cuts(days, ndvi, w, replace(p, cut_min_drop=p.s1_confirm_min_drop), season)
        else:
            s2c = ndvi_drops(days, ndvi, p, season)
    s1c: list[Candidate] = []
    if p.use_s1 and sig.s1:
        d, v, _ = orbit_anomaly(sig.s1, "coh")
        s1c = coherence_rises(d, v, p, season)
    return fuse(s2c, s1c, p, s2_days, s2w)
