"""Simulated activity events with recorded truth: ploughing for the simulator, and the event table.

:mod:`cbmflow_sim.archive` already cuts grassland and fallow (``_Model.cuts``) and harvests arable
crops (``_Model.harvest``); this module adds ploughing after harvest, applies it to the signal
state, and writes the truth of all three (``events.parquet``) so markers can be scored.
The signature-level season for the markers is :mod:`cbmflow_sim.marker_signals`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

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
