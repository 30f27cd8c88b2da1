"""A signature-level SIMULATED season for the markers: the archive's signal model, no rasters.

Used to measure detectors on thousands of events quickly (``benchmarks/markers.py``, tests).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from cbmflow.markers.signals import ParcelSignals, S1Orbit, S2Series
from cbmflow_sim.archive import BROWN, GREEN, SOIL, _Model, _rng
from cbmflow_sim.events import events_table, soil_factor


def simulate_signals(groups: list[str] | np.ndarray, *, season: int = 2025, seed: int = 0,
                     start: str = "03-01", end: str = "10-31", cloud_share: float = 0.5) -> tuple[list[ParcelSignals], Any]:
    """A season of per-parcel signatures (S2 B04/B08 + SCL histogram, two S1 orbits) and its true events.

    Signal levels come from :class:`cbmflow_sim.archive._Model` (the raster simulator's model);
    the per-parcel noise follows the spread of the JRC samples: S2 +-2 % per date, S1 0.6/0.8 dB,
    coherence +-0.03 with rain decorrelation on 30 % of pairs; ``cloud_share`` of S2 dates are
    cloudy over a parcel.
    """
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
