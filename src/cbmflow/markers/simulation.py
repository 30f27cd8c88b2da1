"""Simulated activity events with recorded truth: ploughing for the simulator, and the event table.

:mod:`cbmflow.simulate` already cuts grassland and fallow (``_Model.cuts``) and harvests arable
crops (``_Model.harvest``); this module adds ploughing after harvest, applies it to the signal
state, and writes the truth of all three (``events.parquet``) so markers can be scored. It also
offers a signature-level season (:func:`simulate_signals`: the same signal model, no rasters) for
measuring detectors on thousands of events quickly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from cbmflow.markers.signals import ParcelSignals, S1Orbit, S2Series

PLOUGHED_GROUPS = frozenset({"winter_cereal", "spring_cereal", "rapeseed", "maize", "sugar_beet", "potato",
                             "legumes"})
PLOUGH_SHARE = 0.6  # share of harvested parcels ploughed in the season
PLOUGH_DELAY = (7.0, 40.0)  # days after harvest
BARE_DAYS = (25.0, 60.0)  # the ploughed soil stays bare this long
PLOUGH_VV_DB = 1.5  # roughness: VV up by this much while bare
LAST_DOY = 300.0


def plough_days(groups: np.ndarray, harvest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(day of year, bare days) of each parcel's ploughing; NaN where it is not ploughed."""
    n = len(groups)
    out = np.full((n, 2), np.nan)
    u = rng.random(n)
    delay = rng.uniform(*PLOUGH_DELAY, n)
    bare = rng.uniform(*BARE_DAYS, n)
    for i, g in enumerate(groups):
        if g in PLOUGHED_GROUPS and np.isfinite(harvest[i]) and u[i] < PLOUGH_SHARE:
            d = harvest[i] + delay[i]
            if d < LAST_DOY:
                out[i] = (d, bare[i])
    return out


def apply_ploughing(plough: np.ndarray, doy: float, green: np.ndarray, brown: np.ndarray, vv: np.ndarray,
                    vh: np.ndarray, event_in_pair: np.ndarray) -> None:
    """Bare, rough soil from each ploughing day for its bare days (in place); the 6-day pair across it decorrelates."""
    age = doy - plough[:, 0]
    on = np.isfinite(age) & (age >= 0) & (age < plough[:, 1])
    green[on] = np.minimum(green[on], 0.02)
    brown[on] = 0.0
    vv[on] += PLOUGH_VV_DB
    vh[on] += 0.5 * PLOUGH_VV_DB
    event_in_pair |= np.isfinite(age) & (age >= 0) & (age < 6)


# Freshly ploughed soil is rough and moist: darker, most of all in the NIR (B02, B03, B04, B08, B11).
PLOUGHED_SOIL = np.array([0.9, 0.9, 0.9, 0.7, 0.85])


def soil_factor(plough: np.ndarray, doy: float) -> np.ndarray:
    """(n, 5) factors on the soil spectrum of each parcel on a day: PLOUGHED_SOIL while freshly ploughed."""
    age = doy - plough[:, 0]
    on = np.isfinite(age) & (age >= 0) & (age < plough[:, 1])
    out = np.ones((len(plough), 5))
    out[on] = PLOUGHED_SOIL
    return out


def events_table(parcel_ids: Any, groups: np.ndarray, cuts: list[np.ndarray], harvest: np.ndarray,
                 plough: np.ndarray, season: int) -> Any:
    """The true events (parcel_id, event, date) of a simulated season as a DataFrame."""
    import pandas as pd

    def date(doy: float) -> str:
        return (dt.date(season, 1, 1) + dt.timedelta(days=float(doy) - 1.0)).isoformat()

    rows = []
    for i, pid in enumerate(parcel_ids):
        for c in cuts[i]:
            rows.append((str(pid), str(groups[i]), "mowing", date(c)))
        if np.isfinite(harvest[i]):
            rows.append((str(pid), str(groups[i]), "harvest", date(harvest[i])))
        if np.isfinite(plough[i, 0]):
            rows.append((str(pid), str(groups[i]), "ploughing", date(plough[i, 0])))
    return pd.DataFrame(rows, columns=["parcel_id", "group", "event", "date"])


def simulate_signals(groups: list[str] | np.ndarray, *, season: int = 2025, seed: int = 0,
                     start: str = "03-01", end: str = "10-31", cloud_share: float = 0.5) -> tuple[list[ParcelSignals], Any]:
    """A season of per-parcel signatures (S2 B04/B08 + SCL histogram, two S1 orbits) and its true events.

    Signal levels come from :class:`cbmflow.simulate._Model` (the raster simulator's model);
    the per-parcel noise follows the spread of the JRC samples: S2 +-2 % per date, S1 0.6/0.8 dB,
    coherence +-0.03 with rain decorrelation on 30 % of pairs; ``cloud_share`` of S2 dates are
    cloudy over a parcel.
    """
    from cbmflow.simulate import BROWN, GREEN, SOIL, _Model, _rng

    g = np.asarray(groups)
    n = len(g)
    model = _Model(g, season, _rng(seed, "parcels"))
    rng = _rng(seed, "marker-signals")
    t0 = dt.date.fromisoformat(f"{season}-{start}").toordinal()
    t1 = dt.date.fromisoformat(f"{season}-{end}").toordinal()
    jan1 = dt.date(season, 1, 1).toordinal()
    s2_days = np.arange(t0 + 1, t1 + 1, 5, dtype=float)
    m = len(s2_days)
    b04 = np.zeros((n, m))
    b08 = np.zeros((n, m))
    scl = np.zeros((n, m, 12))
    for k, d in enumerate(s2_days):
        st = model.state(d - jan1 + 1)
        gr, br = st["green"], st["brown"]
        soil = SOIL[None, :] * model.soil[:, None] * soil_factor(model.plough, d - jan1 + 1)
        spec = (1 - gr - br)[:, None] * soil + gr[:, None] * GREEN + br[:, None] * BROWN
        spec *= rng.normal(1.0, 0.02, (n, 1))
        b04[:, k], b08[:, k] = spec[:, 2], spec[:, 3]
        cloudy = rng.random(n) < cloud_share
        frac = np.where(cloudy, rng.uniform(0.05, 1.0, n), 0.0)
        px = 100
        scl[:, k, 4] = np.round(px * (1 - frac))
        scl[:, k, 9] = px - scl[:, k, 4]
        b04[cloudy, k] = b04[cloudy, k] * (1 - frac[cloudy]) + 0.6 * frac[cloudy]
        b08[cloudy, k] = b08[cloudy, k] * (1 - frac[cloudy]) + 0.5 * frac[cloudy]
    orbits: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for name, offset, orbit_off in (("73A", 0, 0.0), ("22D", 2, -0.4)):
        days = np.arange(t0 + offset, t1 + 1, 6, dtype=float)
        vv = np.zeros((n, len(days)))
        vh = np.zeros((n, len(days)))
        cv = np.zeros((n, len(days)))
        ch = np.zeros((n, len(days)))
        for k, d in enumerate(days):
            st = model.state(d - jan1 + 1)
            wet = rng.normal(0.0, 0.6) + (1.5 if rng.random() < 0.12 else 0.0)
            bare = 1.0 - np.clip(st["green"] + st["brown"], 0, 1)
            vv[:, k] = 10 ** ((st["vv"] + orbit_off + wet * (0.7 + 0.3 * bare) + rng.normal(0, 0.6, n)) / 10)
            vh[:, k] = 10 ** ((st["vh"] + orbit_off + wet * (0.7 + 0.3 * bare) + rng.normal(0, 0.8, n)) / 10)
            rain = rng.uniform(0.75, 1.0) if rng.random() < 0.3 else 1.0
            cv[:, k] = np.clip(st["coh_vv"] * rain + rng.normal(0, 0.03, n), 0.01, 0.99)
            ch[:, k] = np.clip(st["coh_vh"] * rain + rng.normal(0, 0.03, n), 0.01, 0.99)
        orbits.append((name, days, vv, vh, cv, ch))
    ids = [f"sim{i:05d}" for i in range(n)]
    signals = []
    for i in range(n):
        s2 = S2Series(days=s2_days, b04=b04[i], b08=b08[i], scl=scl[i], count=np.full(m, 100.0))
        s1 = tuple(S1Orbit(orbit=o[0], days=o[1], vv=o[2][i], vh=o[3][i], coh_days=o[1], coh_vv=o[4][i],
                           coh_vh=o[5][i]) for o in orbits)
        signals.append(ParcelSignals(parcel=ids[i], year=season, s2=s2, s1=s1, crop_group=str(g[i])))
    truth = events_table(ids, g, model.cuts, model.harvest, model.plough, season)
    return signals, truth
