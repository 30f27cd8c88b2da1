"""SIMULATED Sentinel-1 parcel time series for testing the season analytics (test helper).

Crop-specific phenology drives VH/VV backscatter (dB) and 6-day coherence: a vegetation index
``veg(t)`` in 0..1 rises at green-up and falls at harvest; VH rises with biomass, VV falls (cereals)
or rises (broad-leaved crops), coherence drops over vegetation. Value ranges follow real JRC CbM
parcels (``shared/data/jrc_cbm_signatures/tsdir``: the weekly linear backscatter varies over the
season by a factor of 3-5, i.e. 5-7 dB; coherence 0.2-0.75), at the usual absolute levels of
agricultural parcels (VV about -15..-8 dB, VH about -22..-13 dB). Every parcel gets its own
phenology shift, gain, offset and per-observation noise; a fraction of periods is missing.
``mislabel`` of the parcels declare a crop other than the true one (the set is returned as truth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cbmflow.analytics.features import features_from_period_means
from cbmflow.core.bands import BAND_CODES


@dataclass(frozen=True)
class CropModel:
    share: float
    up: float  # day of year of green-up (half-way)
    down: float  # day of year of senescence / harvest (half-way)
    a_vh: float  # VH gain (dB) at full vegetation
    b_vv: float  # VV change (dB) at full vegetation
    mowing: tuple[int, ...] = ()


CROPS: dict[str, CropModel] = {
    "grassland": CropModel(0.28, 40, 330, 3.5, 0.5, mowing=(150, 195, 245)),
    "winter_wheat": CropModel(0.18, 75, 200, 5.0, -2.0),
    "maize": CropModel(0.14, 165, 270, 7.0, 2.0),
    "winter_barley": CropModel(0.08, 68, 182, 4.5, -1.5),
    "sugar_beet": CropModel(0.07, 145, 290, 6.0, 1.5),
    "rapeseed": CropModel(0.07, 60, 188, 7.0, 1.0),
    "potato": CropModel(0.06, 150, 235, 5.5, 1.0),
    "soybean": CropModel(0.06, 170, 262, 4.5, 0.5),
    "spring_barley": CropModel(0.06, 112, 205, 4.0, -1.5),
}


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _veg(model: CropModel, doy: np.ndarray, shift: np.ndarray) -> np.ndarray:
    t = doy[None, :] - shift[:, None]
    v = _sig((t - model.up) / 8.0) * _sig((model.down - t) / 8.0)
    for m in model.mowing:
        v = v * (1.0 - 0.6 * np.exp(-0.5 * ((t - m) / 6.0) ** 2))
    return v


def simulate_profiles(
    n: int, *, seed: int = 0, mislabel: float = 0.05, doy: np.ndarray,
    crops: dict[str, CropModel] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Parcels (parcel_id, crop declared, area_m2, pid) and dB/coherence arrays per band (n x len(doy))."""
    crops = crops or CROPS
    rng = np.random.default_rng(seed)
    names = list(crops)
    share = np.array([crops[c].share for c in names])
    share = share / share.sum()
    true_idx = rng.choice(len(names), size=n, p=share)
    declared_idx = true_idx.copy()
    n_wrong = int(round(mislabel * n))
    wrong = rng.choice(n, size=n_wrong, replace=False)
    for i in wrong:
        p = share.copy()
        p[true_idx[i]] = 0.0
        declared_idx[i] = rng.choice(len(names), p=p / p.sum())
    m = len(doy)
    vv = np.empty((n, m))
    vh = np.empty((n, m))
    cvv = np.empty((n, m))
    cvh = np.empty((n, m))
    shift = rng.normal(0.0, 5.0, n)
    gain = rng.normal(1.0, 0.15, n)
    vv0 = rng.normal(-11.5, 1.0, n)
    vh0 = rng.normal(-20.0, 1.0, n)
    for k, name in enumerate(names):
        rows = np.flatnonzero(true_idx == k)
        if rows.size == 0:
            continue
        model = crops[name]
        v = _veg(model, doy, shift[rows])
        g = gain[rows][:, None]
        vh[rows] = vh0[rows][:, None] + model.a_vh * g * v
        vv[rows] = vv0[rows][:, None] + model.b_vv * g * v
        cvv[rows] = 0.55 - 0.35 * v
        cvh[rows] = 0.45 - 0.28 * v
    vv += rng.normal(0.0, 0.5, (n, m))
    vh += rng.normal(0.0, 0.5, (n, m))
    cvv = np.clip(cvv + rng.normal(0.0, 0.06, (n, m)), 0.02, 0.98)
    cvh = np.clip(cvh + rng.normal(0.0, 0.06, (n, m)), 0.02, 0.98)
    parcels = pd.DataFrame(
        {
            "pid": np.arange(1, n + 1),
            "parcel_id": [f"SIM-{i:07d}" for i in range(1, n + 1)],
            "crop": np.array(names, dtype=object)[declared_idx],
            "area_m2": np.exp(rng.normal(np.log(15000.0), 0.8, n)),
        }
    )
    truth = pd.DataFrame(
        {
            "parcel_id": parcels["parcel_id"],
            "declared_crop": parcels["crop"],
            "true_crop": np.array(names, dtype=object)[true_idx],
        }
    )
    truth["mislabelled"] = truth["declared_crop"] != truth["true_crop"]
    parcels.attrs["truth"] = truth
    return parcels, {"VV": vv, "VH": vh, "COH_VV": cvv, "COH_VH": cvh}


def synthetic_features(
    n: int, *, seed: int = 0, mislabel: float = 0.05, period_days: int = 5,
    first_doy: int = 61, last_doy: int = 305, missing: float = 0.15,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SIMULATED wide feature table (via the real features code) and the truth table."""
    rng = np.random.default_rng(seed + 7)
    periods = np.arange((first_doy - 1) // period_days, (last_doy - 1) // period_days + 1)
    doy = periods * period_days + (period_days + 1) / 2.0
    parcels, bands = simulate_profiles(n, seed=seed, mislabel=mislabel, doy=doy)
    m = len(periods)
    frames = []
    s1_gap = rng.random((n, m)) < missing  # VV and VH come from the same scenes
    coh_gap = rng.random((n, m)) < missing
    for band, arr in bands.items():
        gap = s1_gap if band in ("VV", "VH") else coh_gap
        lin = 10.0 ** (arr / 10.0) if band in ("VV", "VH") else arr
        r, c = np.nonzero(~gap)
        frames.append(
            pd.DataFrame(
                {
                    "pid": parcels["pid"].to_numpy()[r],
                    "band": BAND_CODES[band],
                    "period": periods[c],
                    "period_days": period_days,
                    "mean": lin[r, c].astype(np.float32),
                }
            )
        )
    means = pd.concat(frames, ignore_index=True)
    feats = features_from_period_means(parcels[["pid", "parcel_id", "crop", "area_m2"]], means)
    return feats, parcels.attrs["truth"]
