"""Per-parcel input time series of the marker detectors, and the marker record they produce.

Days are proleptic ordinals (``date.toordinal()``), so detectors do plain arithmetic on them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MARKER_TYPES = ("mowing", "bare_soil", "ploughing", "harvest", "no_evidence")


def day(value: str | dt.date) -> int:
    """The ordinal of an ISO date string or a date."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    return value.toordinal()


def iso(ordinal: float) -> str:
    """The ISO date of an ordinal (rounded to the nearest day, halves up)."""
    return dt.date.fromordinal(int(math.floor(ordinal + 0.5))).isoformat()


def season_day(year: int, mmdd: str) -> int:
    """The ordinal of MM-DD in a year."""
    return dt.date.fromisoformat(f"{year}-{mmdd}").toordinal()


@dataclass(frozen=True, eq=False)
class S2Series:
    """Sentinel-2 parcel means per acquisition (reflectance 0..1) with the parcel's SCL histogram."""

    days: np.ndarray
    b04: np.ndarray
    b08: np.ndarray
    scl: np.ndarray | None  # (n, 12) pixel counts of SCL classes 0..11; None = no cloud information
    count: np.ndarray  # pixels per acquisition
    b11: np.ndarray | None = None
    cloud: np.ndarray | None = None  # cloud fraction 0..1 per acquisition when given directly (long tables)

    def cloud_fraction(self, classes: tuple[int, ...]) -> np.ndarray:
        """Fraction of each acquisition's parcel pixels in the given (cloudy) SCL classes."""
        if self.scl is None:
            if self.cloud is not None:
                return np.where(np.isfinite(self.cloud), self.cloud, 0.0)
            return np.zeros(len(self.days))
        total = self.scl.sum(axis=1)
        cloudy = self.scl[:, list(classes)].sum(axis=1)
        return np.where(total > 0, cloudy / np.maximum(total, 1), 1.0)

    def usable(self, classes: tuple[int, ...], cloud_max: float, min_count: int = 1) -> np.ndarray:
        """Mask of the acquisitions that count as observations (cloud-free by the SCL histogram)."""
        ok = (self.cloud_fraction(classes) <= cloud_max + 1e-12) & (self.count >= min_count)
        ok &= np.isfinite(self.b04) & np.isfinite(self.b08) & ((self.b04 + self.b08) > 0)
        return ok

    def ndvi(self) -> np.ndarray:
        """NDVI of every acquisition."""
        s = self.b08 + self.b04
        return np.where(s > 0, (self.b08 - self.b04) / np.where(s > 0, s, 1.0), np.nan)


@dataclass(frozen=True, eq=False)
class S1Orbit:
    """Sentinel-1 parcel means of one orbit: backscatter (linear) and/or 6-day coherence."""

    orbit: str
    days: np.ndarray
    vv: np.ndarray | None = None
    vh: np.ndarray | None = None
    coh_days: np.ndarray | None = None
    coh_vv: np.ndarray | None = None
    coh_vh: np.ndarray | None = None

    def coherence(self) -> np.ndarray | None:
        """The combined coherence sqrt((VV^2 + VH^2) / 2) of each record (JRC combines both)."""
        if self.coh_vv is None and self.coh_vh is None:
            return None
        if self.coh_vv is None or self.coh_vh is None:
            return self.coh_vv if self.coh_vv is not None else self.coh_vh
        return np.sqrt((self.coh_vv ** 2 + self.coh_vh ** 2) / 2.0)


@dataclass(frozen=True, eq=False)
class ParcelSignals:
    """Everything the detectors know about one parcel in one season."""

    parcel: str  # the declared / file id
    year: int
    s2: S2Series | None = None
    s1: tuple[S1Orbit, ...] = ()
    pid: int | None = None
    crop_code: str | None = None
    crop_group: str | None = None


@dataclass(frozen=True)
class Marker:
    """One detected marker: an activity event, a bare-soil period or a period with no evidence."""

    marker: str
    event_date: str | None
    start_date: str | None
    end_date: str | None
    confidence: float
    sources: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def as_row(self) -> dict[str, Any]:
        """The marker as a flat dict (CSV, JSON)."""
        return {"marker": self.marker, "event_date": self.event_date, "start_date": self.start_date,
                "end_date": self.end_date, "confidence": round(float(self.confidence), 3),
                "sources": "+".join(self.sources), "detail": self.detail}


@dataclass(frozen=True)
class Candidate:
    """A single-sensor detection before fusion: an event dated within [start, end]."""

    day: float
    start: float
    end: float
    confidence: float
    source: str
    detail: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def orbit_anomaly(orbits: tuple[S1Orbit, ...], attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days, values minus their orbit's median, and orbit index of a quantity merged over orbits.

    Each orbit is referenced to itself (S1 "per orbit"): incidence angle and look direction
    shift levels, so values of different orbits are compared only as departures from their own
    orbit's median.
    """
    ds, vs, os_ = [], [], []
    for k, o in enumerate(orbits):
        if attr == "coh":
            vals, dd = o.coherence(), o.coh_days
        elif attr == "ratio_db":
            if o.vv is None or o.vh is None:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                vals = 10 * np.log10(o.vh / o.vv)
            dd = o.days
        elif attr == "vv_db":
            if o.vv is None:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                vals = 10 * np.log10(o.vv)
            dd = o.days
        else:
            raise ValueError(attr)
        if vals is None or dd is None or len(vals) == 0:
            continue
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        ds.append(np.asarray(dd)[ok])
        vs.append(vals[ok] - np.median(vals[ok]))
        os_.append(np.full(int(ok.sum()), k))
    if not ds:
        e = np.zeros(0)
        return e, e, e.astype(int)
    days, vals_all, idx = np.concatenate(ds), np.concatenate(vs), np.concatenate(os_)
    order = np.argsort(days, kind="stable")
    return days[order].astype(float), vals_all[order], idx[order]
