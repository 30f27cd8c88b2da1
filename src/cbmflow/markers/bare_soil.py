"""Bare soil periods from S2 and ploughing (the entry into bare soil), checked against S1.

An observation is bare when its NDVI is at most ``ndvi_bare_max``. JRC's state classifier
(k-NN on stretched B08/B11/B04) was evaluated as the alternative and not adopted: in the shared
training file the labels do not follow the band values (docs/markers.md, "Bare soil").
"""

from __future__ import annotations

import numpy as np

from cbmflow.markers.params import BareSoilParams, MarkerParams
from cbmflow.markers.signals import Marker, ParcelSignals, iso, orbit_anomaly, season_day


def bare_observations(ndvi: np.ndarray, p: BareSoilParams) -> np.ndarray:
    """True where an observation shows bare soil."""
    v = np.asarray(ndvi, dtype=float)
    return np.isfinite(v) & (v <= p.ndvi_bare_max)


def bare_runs(days: np.ndarray, bare: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges (first, last) of consecutive bare observations."""
    runs: list[tuple[int, int]] = []
    start = -1
    for i, b in enumerate(bare):
        if b and start < 0:
            start = i
        if not b and start >= 0:
            runs.append((start, i - 1))
            start = -1
    if start >= 0:
        runs.append((start, len(bare) - 1))
    return runs


def bare_periods(days: np.ndarray, ndvi: np.ndarray, p: BareSoilParams,
                 season: tuple[float, float] | None = None) -> list[Marker]:
    """Bare soil periods: consecutive bare observations spanning at least ``min_duration_days``."""
    d = np.asarray(days, dtype=float)
    bare = bare_observations(ndvi, p)
    out = []
    for a, b in bare_runs(d, bare):
        if d[b] - d[a] < p.min_duration_days:
            continue
        if season is not None and (d[b] < season[0] or d[a] > season[1]):
            continue
        n = b - a + 1
        out.append(Marker("bare_soil", iso(d[a]), iso(d[a]), iso(d[b]), round(min(1.0, 0.4 + 0.15 * n), 4), ("S2",),
                          {"observations": n, "ndvi_max": round(float(np.max(ndvi[a:b + 1])), 4)}))
    return out


def _window_mean(d: np.ndarray, v: np.ndarray, lo: float, hi: float) -> float:
    sel = (d > lo) & (d <= hi) & np.isfinite(v)
    return float(np.mean(v[sel])) if sel.any() else float("nan")


def ploughing(days: np.ndarray, ndvi: np.ndarray, p: BareSoilParams,
              vv: tuple[np.ndarray, np.ndarray] | None = None,
              coh: tuple[np.ndarray, np.ndarray] | None = None,
              season: tuple[float, float] | None = None) -> list[Marker]:
    """Ploughing: a bare-soil period (as in :func:`bare_periods`) entered from a non-bare observation.

    Dated between the last non-bare and the first bare observation. S1 corroborates it when the
    orbit-referenced VV rises by ``plough_vv_rise_db`` across that interval (roughness) or a
    coherence pair spanning it drops by ``plough_coh_drop`` below the month before.
    """
    d = np.asarray(days, dtype=float)
    v = np.asarray(ndvi, dtype=float)
    bare = bare_observations(v, p)
    out = []
    for a, b in bare_runs(d, bare):
        if a == 0 or d[b] - d[a] < p.min_duration_days:
            continue  # no observation before it, or too short
        lo, hi = float(d[a - 1]), float(d[a])
        mid = (lo + hi) / 2.0
        if season is not None and not season[0] <= mid <= season[1]:
            continue
        sources = ["S2"]
        detail: dict[str, object] = {"ndvi_before": round(float(v[a - 1]), 4), "ndvi_after": round(float(v[a]), 4)}
        if vv is not None and len(vv[0]):
            rise = _window_mean(vv[0], vv[1], hi, hi + 12) - _window_mean(vv[0], vv[1], lo - 12, lo)
            if np.isfinite(rise):
                detail["vv_rise_db"] = round(rise, 3)
                if rise >= p.plough_vv_rise_db:
                    sources.append("S1")
        if "S1" not in sources and coh is not None and len(coh[0]):
            cd, cv = coh
            before = _window_mean(cd, cv, lo - 30, lo)
            spanning = (cd - 6 <= hi) & (cd >= lo) & np.isfinite(cv)
            if spanning.any() and np.isfinite(before):
                drop = before - float(np.min(cv[spanning]))
                detail["coh_drop"] = round(drop, 3)
                if drop >= p.plough_coh_drop:
                    sources.append("S1")
        conf = 0.85 if "S1" in sources else 0.6
        out.append(Marker("ploughing", iso(mid), iso(lo), iso(hi), conf, tuple(sources), detail))
    return out


def detect_bare_soil(sig: ParcelSignals, params: MarkerParams) -> list[Marker]:
    """Bare-soil periods and ploughing events of a parcel's season."""
    p = params.bare_soil
    if sig.s2 is None:
        return []
    season = (float(season_day(sig.year, p.season_start)), float(season_day(sig.year, p.season_end)))
    ok = sig.s2.usable(params.s2.cloud_classes, params.s2.cloud_max, params.s2.min_count)
    order = np.argsort(sig.s2.days[ok], kind="stable")
    d, v = sig.s2.days[ok][order], sig.s2.ndvi()[ok][order]
    vv_d, vv_v, _ = orbit_anomaly(sig.s1, "vv_db")
    coh_d, coh_v, _ = orbit_anomaly(sig.s1, "coh")
    return bare_periods(d, v, p, season) + ploughing(d, v, p, (vv_d, vv_v), (coh_d, coh_v), season)


# JRC's observation-state classifier (pre_processors.py): k-NN on B08/B11/B04 stretched to 0..255.
STATE_CLASSES = {1: "cloudy", 2: "hazy", 3: "shady", 4: "maintained", 5: "vegetated (O)", 6: "vegetated (Y)",
                 7: "vegetated (D)", 8: "other"}


def stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """JRC's linear stretch of a band to 0..255 (uint8)."""
    return np.clip(255.0 / (hi - lo) * (np.asarray(values, dtype=float) - lo), 0, 255).astype(np.uint8)


def check_state_file(path: str, p: BareSoilParams | None = None, seed: int = 0) -> dict[str, float]:
    """Cross-validated accuracy of JRC's k-NN state classifier on the labelled file, on its RGB columns and on its band means."""
    import pandas as pd
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    p = p or BareSoilParams()
    df = pd.read_csv(path)
    y = df["class"].to_numpy()
    groups = df["FID"].to_numpy()
    rgb = df[["red", "green", "blue"]].to_numpy()
    bands = np.column_stack([stretch(df[c].to_numpy(), lo, hi) for c, lo, hi in
                             zip(("b08_mean", "b11_mean", "b04_mean"), p.stretch_min, p.stretch_max, strict=True)])
    knn = KNeighborsClassifier(n_neighbors=p.knn_k)
    strat = StratifiedKFold(5, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two classes have 2 members: fewer than 5 folds
        out = {
            "rows": float(len(df)),
            "acc_rgb_stratified": float(cross_val_score(knn, rgb, y, cv=strat).mean()),
            "acc_rgb_grouped": float(cross_val_score(knn, rgb, y, cv=GroupKFold(5), groups=groups).mean()),
            "acc_bands_stratified": float(cross_val_score(knn, bands, y, cv=strat).mean()),
            "bare_share": float(np.mean(y == 4)),
            "acc_bands_bare_vs_rest": float(cross_val_score(knn, bands, y == 4, cv=strat).mean()),
            "stretch_reproduces_rgb": float(np.mean(bands == rgb)),
            "corr_red_b08": float(np.corrcoef(df["red"], df["b08_mean"])[0, 1]),
        }
    ndvi = (df["b08_mean"] - df["b04_mean"]) / (df["b08_mean"] + df["b04_mean"])
    out["median_ndvi_maintained"] = float(ndvi[y == 4].median())
    return out
