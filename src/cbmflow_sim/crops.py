"""A harder SIMULATED crop season: per-parcel S1/S2 features as real declarations make them.

Where :mod:`cbmflow_sim.archive` paints clean crop-group profiles into rasters, this model produces
the wide per-parcel feature table directly (the same columns as :mod:`cbmflow.analytics.features`, plus
``NDVI_pNNN``), with what makes real declarations hard to check:

* **within-crop spread**: green-up and harvest dates vary per parcel by 1-3 weeks (sd), mowing
  dates by ~2 weeks, canopy density and soil roughness / moisture offsets per parcel;
* **overlapping crops**: winter wheat, winter barley, winter rye and triticale differ by days of
  phenology; permanent grass, temporary grass and grass-clover differ by cover and mowing rhythm;
* **mixed edge pixels**: a parcel mean contains its border pixels, mixed with a neighbouring
  parcel's signal; the share grows as the parcel shrinks (perimeter / area);
* **missing acquisitions and clouds**: S1 dates lost (orbit gaps, ~8 %), S2 dates cloudy with a
  date-wide cloud cover (Belgian/Dutch rates: ~60 % of S2 observations unusable), residual haze;
* **date effects**: rain and soil moisture shift VV/VH of all parcels on the same date;
* **imbalance**: a few dominant crops and a long tail (21 crops, shares from 22 % to 0.3 %).

Everything here is SIMULATED (parcel ids ``SIMH-...``). docs/simulation.md compares its class
curves and spreads with the real Flanders and JRC series.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.features import interpolate_rows
from cbmflow.core.errors import InputError

log = logging.getLogger(__name__)

# Endmember spectra (B04, B08, B11) of bare soil, green and senescent canopy (as cbmflow_sim.archive).
_SOIL = np.array([0.11, 0.20, 0.28])
_GREEN = np.array([0.028, 0.36, 0.16])
_BROWN = np.array([0.10, 0.28, 0.33])
_CLOUD = np.array([0.60, 0.50, 0.36])


@dataclass(frozen=True)
class CropSpec:
    """One crop's phenology and backscatter response (days of year, dB)."""

    code: str
    name: str
    share: float
    up: float  # day of year of half green-up
    down: float  # day of year of half senescence / harvest
    up_sd: float = 10.0
    down_sd: float = 10.0
    winter: float = 0.0  # cover over winter (autumn-sown crops)
    base: float = 0.0  # permanent cover (grass)
    mowing: tuple[float, ...] = ()
    vh_gain: float = 5.0  # VH increase (dB) from bare soil to full cover
    vv_change: float = 0.0  # VV change (dB) at full cover (negative: cereals' vertical stems)
    cover_max: float = 0.95
    catch_crop: float = 0.0  # probability of a green catch crop after harvest


CROPS: tuple[CropSpec, ...] = (
    CropSpec("GRP", "permanent grassland", 0.22, 80, 320, 15, 15, base=0.75, mowing=(140, 185, 235, 285),
             vh_gain=3.0, vv_change=0.5),
    CropSpec("MAI", "maize", 0.17, 165, 262, 12, 14, vh_gain=7.0, vv_change=2.0, catch_crop=0.3),
    CropSpec("WWH", "winter wheat", 0.13, 82, 205, 12, 8, winter=0.3, vh_gain=5.0, vv_change=-2.0,
             catch_crop=0.4),
    CropSpec("GRT", "temporary grassland", 0.08, 75, 315, 15, 15, base=0.65, mowing=(130, 175, 225, 275),
             vh_gain=3.5, vv_change=0.5),
    CropSpec("POT", "potatoes", 0.06, 150, 238, 14, 20, vh_gain=5.5, vv_change=1.0, catch_crop=0.2),
    CropSpec("WBA", "winter barley", 0.05, 74, 188, 12, 8, winter=0.3, vh_gain=4.5, vv_change=-1.5,
             catch_crop=0.5),
    CropSpec("SBT", "sugar beet", 0.04, 148, 290, 12, 20, vh_gain=6.0, vv_change=1.5),
    CropSpec("GCL", "grass-clover", 0.03, 85, 310, 15, 15, base=0.6, mowing=(145, 200, 255),
             vh_gain=3.8, vv_change=0.8),
    CropSpec("SBA", "spring barley", 0.025, 118, 208, 10, 8, vh_gain=4.0, vv_change=-1.5, catch_crop=0.4),
    CropSpec("FOD", "fodder beet", 0.015, 145, 285, 12, 20, vh_gain=6.0, vv_change=1.5),
    CropSpec("RAP", "winter rapeseed", 0.012, 62, 190, 10, 8, winter=0.45, vh_gain=7.0, vv_change=1.0),
    CropSpec("WRY", "winter rye", 0.01, 70, 198, 12, 8, winter=0.3, vh_gain=5.5, vv_change=-2.2),
    CropSpec("TRI", "triticale", 0.01, 78, 203, 12, 8, winter=0.3, vh_gain=5.0, vv_change=-2.0),
    CropSpec("FAL", "fallow", 0.01, 120, 300, 20, 25, base=0.35, vh_gain=3.0, vv_change=0.0),
    CropSpec("PEA", "peas", 0.008, 120, 192, 10, 10, vh_gain=4.0, vv_change=0.5, catch_crop=0.5),
    CropSpec("BEA", "field beans", 0.006, 118, 215, 10, 12, vh_gain=5.0, vv_change=1.0),
    CropSpec("FLX", "flax", 0.005, 115, 200, 10, 8, vh_gain=3.5, vv_change=-1.0),
    CropSpec("ONI", "onions", 0.005, 125, 235, 12, 12, vh_gain=2.5, vv_change=0.5, cover_max=0.6),
    CropSpec("CAR", "carrots", 0.004, 150, 280, 15, 20, vh_gain=4.0, vv_change=0.5, cover_max=0.8),
    CropSpec("CHI", "chicory", 0.004, 150, 295, 12, 15, vh_gain=5.0, vv_change=1.0),
    CropSpec("SPI", "spinach", 0.003, 105, 160, 10, 8, vh_gain=3.5, vv_change=0.5, catch_crop=0.8),
)


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _cover(crop: CropSpec, doy: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Green cover (0..1) of n parcels of one crop on the given days (n x len(doy))."""
    up = crop.up + rng.normal(0, crop.up_sd, n)
    down = np.maximum(crop.down + rng.normal(0, crop.down_sd, n), up + 30)
    peak = np.clip(crop.cover_max * rng.uniform(0.8, 1.05, n), 0.2, 1.0)
    t = doy[None, :]
    grow = _sig((t - up[:, None]) / 7.0) * _sig((down[:, None] - t) / 6.0)
    if crop.base > 0:  # grass: permanent cover, growth in spring, cuts
        base = np.clip(crop.base * rng.uniform(0.75, 1.15, n), 0.2, 0.95)
        cov = base[:, None] + (peak - base)[:, None].clip(0) * grow
        for m in crop.mowing:
            day = m + rng.normal(0, 14, n)
            done = rng.random(n) < 0.85  # not every cut happens everywhere
            dt = t - day[:, None]
            cut = np.where(dt >= 0, 0.55 * np.exp(-dt / 18.0), 0.0) * done[:, None]
            cov = cov * (1.0 - cut)
        return np.clip(cov, 0.0, 1.0)
    cov = peak[:, None] * grow
    if crop.winter > 0:  # autumn-sown: partial cover until green-up
        w = crop.winter * rng.uniform(0.6, 1.3, n)
        cov = np.maximum(cov, w[:, None] * _sig((up[:, None] - t) / 10.0))
    if crop.catch_crop > 0:
        has = rng.random(n) < crop.catch_crop
        start = down + rng.uniform(20, 45, n)
        catch = 0.45 * _sig((t - start[:, None]) / 8.0) * has[:, None]
        cov = np.maximum(cov, catch)
    return np.clip(cov, 0.0, 1.0)


def _crop_table(crops: tuple[CropSpec, ...]) -> tuple[list[CropSpec], np.ndarray]:
    specs = list(crops)
    share = np.array([c.share for c in specs], dtype=np.float64)
    if (share <= 0).any():
        raise InputError("every crop share must be > 0")
    return specs, share / share.sum()


def simulate_crop_features(
    n: int,
    *,
    seed: int = 0,
    mislabel: float = 0.0,
    period_days: int = 5,
    s1_revisit: int = 6,
    s2_revisit: int = 5,
    s1_missing: float = 0.08,
    cloud_rate: float = 0.6,
    haze_rate: float = 0.05,
    edge_mixing: bool = True,
    s2: bool = True,
    crops: tuple[CropSpec, ...] = CROPS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SIMULATED wide features (parcel_id, crop, crop_name, area_m2, VV/VH/VHVV[/NDVI]_pNNN) and truth."""
    if n < 10:
        raise InputError(f"n must be >= 10, got {n}")
    if not 0 <= mislabel < 1 or not 0 <= cloud_rate < 1 or not 0 <= s1_missing < 1:
        raise InputError("mislabel, cloud_rate and s1_missing must be within [0, 1)")
    rng = np.random.default_rng(seed)
    specs, share = _crop_table(crops)
    true_idx = rng.choice(len(specs), size=n, p=share)
    area = np.exp(rng.normal(np.log(20_000), 0.9, n)).clip(1_000, 400_000)  # median 2 ha
    s1_days = np.arange(1 + rng.integers(0, s1_revisit), 366, s1_revisit, dtype=np.float64)
    s2_days = np.arange(1 + rng.integers(0, s2_revisit), 366, s2_revisit, dtype=np.float64)

    cov1 = np.empty((n, len(s1_days)))
    cov2 = np.empty((n, len(s2_days)))
    vh_gain = np.empty(n)
    vv_change = np.empty(n)
    for k, c in enumerate(specs):
        members = np.flatnonzero(true_idx == k)
        if len(members) == 0:
            continue
        state = int(rng.integers(0, 2**31))
        cov1[members] = _cover(c, s1_days, np.random.default_rng(state), len(members))
        cov2[members] = _cover(c, s2_days, np.random.default_rng(state), len(members))  # same parcels
        vh_gain[members] = c.vh_gain * rng.uniform(0.8, 1.2, len(members))
        vv_change[members] = c.vv_change * rng.uniform(0.7, 1.3, len(members))
    senesc = np.clip(np.diff(cov2, axis=1, prepend=cov2[:, :1]) * -8.0, 0, 1)  # brown after a drop

    # S1 (dB): soil level + crop response + parcel offsets + date effects (rain) + speckle
    # levels, per-parcel offsets and the 0.75 damping of the crop gains are calibrated on the real
    # Flanders monthly series (docs/simulation.md): VV about -10, VH about -17 dB, within-class
    # IQR about 2 dB, maize's seasonal VH amplitude about 4 dB
    vv = (-10.0 + rng.normal(0, 1.6, n)[:, None] + 0.75 * vv_change[:, None] * cov1
          + rng.normal(0, 0.9, len(s1_days))[None, :])
    vh = (-19.0 + rng.normal(0, 1.6, n)[:, None] + 0.75 * vh_gain[:, None] * cov1
          + rng.normal(0, 0.6, len(s1_days))[None, :])
    n_eff = np.maximum(area / 100.0 / 4.0, 4.0)  # independent looks over the parcel's pixels
    for a, looks in ((vv, 4.5), (vh, 4.5)):
        a += rng.normal(0, 1, a.shape) * (4.34 / np.sqrt(looks * n_eff))[:, None]
        a += rng.normal(0, 0.6, a.shape)  # within-field heterogeneity, incidence angle, wind
    refl = (cov2[..., None] * (1 - senesc[..., None]) * _GREEN + cov2[..., None] * senesc[..., None] * _BROWN
            + (1 - cov2[..., None]) * _SOIL)
    refl *= rng.uniform(0.85, 1.15, (n, 1, 1))
    refl += rng.normal(0, 0.01, refl.shape)

    # mixed edge pixels: a share of the mean comes from a neighbour (another parcel's signal)
    if edge_mixing:
        edge = np.clip(4 * np.sqrt(area) * 10.0 / area * 0.5, 0.0, 0.45)
        nb = rng.permutation(n)
        lin = lambda d: 10 ** (d / 10.0)  # noqa: E731
        vv = 10 * np.log10((1 - edge)[:, None] * lin(vv) + edge[:, None] * lin(vv[nb]))
        vh = 10 * np.log10((1 - edge)[:, None] * lin(vh) + edge[:, None] * lin(vh[nb]))
        refl = (1 - edge)[:, None, None] * refl + edge[:, None, None] * refl[nb]

    # missing S1 acquisitions (whole dates, plus a few per parcel)
    lost = (rng.random(len(s1_days)) < s1_missing)[None, :] | (rng.random((n, len(s1_days))) < 0.02)
    vv[lost] = np.nan
    vh[lost] = np.nan
    # clouds: a date-wide cloud cover, each parcel cloudy with that probability; residual haze
    a_, b_ = 2 * cloud_rate / (1 - cloud_rate + 1e-9), 2.0
    cover_frac = rng.beta(max(a_, 0.05), b_, len(s2_days))
    cloudy = rng.random((n, len(s2_days))) < cover_frac[None, :]
    haze = ~cloudy & (rng.random((n, len(s2_days))) < haze_rate)
    refl[haze] = 0.6 * refl[haze] + 0.4 * _CLOUD
    refl[cloudy] = np.nan

    n_periods = int(np.ceil(365 / period_days))
    p1 = ((s1_days - 1) // period_days).astype(int)
    p2 = ((s2_days - 1) // period_days).astype(int)

    def to_periods(values: np.ndarray, per: np.ndarray, linear: bool) -> np.ndarray:
        v = 10 ** (values / 10.0) if linear else values
        out = np.full((n, n_periods), np.nan)
        for p in np.unique(per):
            with np.errstate(all="ignore"):
                block = v[:, per == p]
                cnt = (~np.isnan(block)).sum(axis=1)
                s = np.nansum(block, axis=1)
                out[:, p] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
        return 10 * np.log10(out) if linear else out

    groups: dict[str, np.ndarray] = {"VV": to_periods(vv, p1, True), "VH": to_periods(vh, p1, True)}
    if s2:
        red, nir = refl[..., 0], refl[..., 1]
        groups["NDVI"] = to_periods((nir - red) / (nir + red), p2, False)
    cols: dict[str, Any] = {}
    missing: dict[str, Any] = {}
    for g in list(groups):
        missing[f"{g}_missing"] = np.isnan(groups[g]).mean(axis=1).astype(np.float32)
        groups[g] = interpolate_rows(groups[g])
    groups["VHVV"] = groups["VH"] - groups["VV"]
    for g, a in groups.items():
        for j in range(n_periods):
            cols[f"{g}_p{j:03d}"] = a[:, j].astype(np.float32)
    codes = np.array([c.code for c in specs])
    names = np.array([c.name for c in specs])
    ids = np.array([f"SIMH-{i:07d}" for i in range(n)])
    df = pd.DataFrame({"parcel_id": ids, "crop": codes[true_idx], "crop_name": names[true_idx],
                       "area_m2": area.round(1), **cols, **missing})
    df.attrs["simulated"] = True
    truth = pd.DataFrame({"parcel_id": ids, "mislabelled": np.zeros(n, dtype=bool),
                          "true_crop": codes[true_idx], "declared": codes[true_idx]})
    if mislabel > 0:
        from cbmflow.analytics.evaluation import swap_declarations

        df, truth = swap_declarations(df, mislabel, seed + 7919)
    log.info("simulated %d parcels (harder profile), %d crops, %d swapped declarations",
             n, len(specs), int(truth["mislabelled"].sum()))
    return df, truth


def _cmd(args: argparse.Namespace) -> int:
    from cbmflow.analytics.season import write_parquet

    df, truth = simulate_crop_features(args.n, seed=args.seed, mislabel=args.mislabel,
                                       period_days=args.period_days, s2=not args.no_s2,
                                       cloud_rate=args.cloud_rate)
    write_parquet(df, args.out)
    if args.truth:
        write_parquet(truth, args.truth)
    print(f"SIMULATED (harder profile): {len(df)} parcels, {df['crop'].nunique()} crops, "
          f"{int(truth['mislabelled'].sum())} swapped declarations -> {args.out}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add `simulate-crops` (the harder per-parcel feature simulator) to the cbmflow command."""
    p = subparsers.add_parser("simulate-crops", help="SIMULATED wide per-parcel features, harder crop model")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--out", required=True, help="features parquet")
    p.add_argument("--truth", default=None, help="truth parquet (parcel_id, mislabelled, true_crop, declared)")
    p.add_argument("--mislabel", type=float, default=0.05)
    p.add_argument("--period-days", type=int, default=5)
    p.add_argument("--cloud-rate", type=float, default=0.6)
    p.add_argument("--no-s2", action="store_true", help="S1 features only (as the season pipeline builds them)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd)
