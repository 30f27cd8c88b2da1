"""Explicit "no evidence" markers: periods without a usable observation longer than a threshold.

A missing mowing in a cloudy July is not evidence that nobody mowed: such periods are stored as
``no_evidence`` markers, per sensor, so rules can answer "not enough evidence" instead of
"not compliant".
"""

from __future__ import annotations

import numpy as np

from cbmflow.markers.params import MarkerParams
from cbmflow.markers.signals import Marker, ParcelSignals, iso, season_day


def evidence_gaps(days: np.ndarray, start: float, end: float, min_gap_days: int, sensor: str) -> list[Marker]:
    """``no_evidence`` markers for every stretch of more than ``min_gap_days`` between usable observations.

    The season's first and last day bound the series, so a season that starts or ends without
    observations has a gap there too; a season with none at all is one gap.
    """
    d = np.asarray(days, dtype=float)
    obs = np.unique(d[(d >= start) & (d <= end)])
    points = np.concatenate([[start], obs, [end]])
    out = []
    for a, b in zip(points[:-1], points[1:], strict=True):
        if b - a > min_gap_days:
            out.append(Marker("no_evidence", None, iso(a), iso(b), 1.0, (sensor,),
                              {"sensor": sensor, "days": int(round(b - a))}))
    return out


def detect_gaps(sig: ParcelSignals, params: MarkerParams) -> list[Marker]:
    """S2 and S1 ``no_evidence`` markers of a parcel's season."""
    p = params.gaps
    start, end = float(season_day(sig.year, p.season_start)), float(season_day(sig.year, p.season_end))
    if sig.s2 is not None:
        ok = sig.s2.usable(params.s2.cloud_classes, params.s2.cloud_max, params.s2.min_count)
        s2_days = sig.s2.days[ok]
    else:
        s2_days = np.zeros(0)
    s1_parts = [o.days for o in sig.s1] + [o.coh_days for o in sig.s1 if o.coh_days is not None]
    s1_days = np.concatenate(s1_parts) if s1_parts else np.zeros(0)
    return (evidence_gaps(s2_days, start, end, p.s2_min_gap_days, "S2")
            + evidence_gaps(s1_days, start, end, p.s1_min_gap_days, "S1"))
