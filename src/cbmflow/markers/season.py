"""Season evidence of mowing: per parcel and season the cuts (dates, confidence) and a verdict.

``mown`` when at least one cut was detected; ``not_mown`` only when the season had enough clear
S2 observations, without a long gap, to have seen a cut (``SeasonParams``); otherwise
``not_enough_evidence``, so that a compliance rule never reads "no cut found" as "not mown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cbmflow.markers.params import MarkerParams
from cbmflow.markers.signals import Marker, ParcelSignals, season_day

STATUSES = ("mown", "not_mown", "not_enough_evidence")


@dataclass(frozen=True)
class SeasonEvidence:
    """One parcel's mowing season: the cuts, the clear observations behind the verdict, the verdict."""

    parcel: str
    year: int
    status: str
    cuts: tuple[tuple[str, float], ...]
    clear_observations: int
    longest_gap_days: int

    def as_row(self) -> dict[str, object]:
        """A flat dict (CSV)."""
        return {"parcel": self.parcel, "year": self.year, "status": self.status, "n_cuts": len(self.cuts),
                "cut_dates": ";".join(d for d, _ in self.cuts),
                "cut_confidence": ";".join(f"{c:.2f}" for _, c in self.cuts),
                "clear_observations": self.clear_observations, "longest_gap_days": self.longest_gap_days}


def clear_days(sig: ParcelSignals, params: MarkerParams) -> np.ndarray:
    """Sorted days of the S2 observations clear enough for the mowing detector, within the mowing season."""
    if sig.s2 is None:
        return np.zeros(0)
    p = params.mowing
    ok = sig.s2.usable(params.s2.cloud_classes, params.s2.cloud_max, params.s2.min_count)
    ok &= (1.0 - sig.s2.cloud_fraction(params.s2.cloud_classes)) >= p.min_weight
    d = np.sort(sig.s2.days[ok])
    lo, hi = season_day(sig.year, p.season_start), season_day(sig.year, p.season_end)
    return d[(d >= lo) & (d <= hi)]


def _weak_cut(sig: ParcelSignals, params: MarkerParams) -> bool:
    """True when a more sensitive S2 detector (drop ``weak_drop_factor`` x the cut threshold) sees a cut."""
    from dataclasses import replace

    from cbmflow.markers.mowing import detect_mowing

    m = params.mowing
    weak = replace(params, mowing=replace(m, cut_min_drop=m.cut_min_drop * params.season.weak_drop_factor,
                                          use_s1=False))
    return bool(detect_mowing(sig, weak))


def season_evidence(sig: ParcelSignals, markers: Sequence[Marker], params: MarkerParams) -> SeasonEvidence:
    """The season verdict of one parcel from its mowing markers and its clear S2 observations."""
    sp = params.season
    cuts = tuple((m.event_date, round(float(m.confidence), 3)) for m in markers
                 if m.marker == "mowing" and m.event_date and m.confidence >= sp.min_cut_confidence)
    d = clear_days(sig, params)
    lo = season_day(sig.year, params.mowing.season_start)
    hi = season_day(sig.year, params.mowing.season_end)
    edges = np.concatenate([[lo], d, [hi]])
    gap = int(np.max(np.diff(edges))) if len(edges) > 1 else hi - lo
    if cuts:
        status = "mown"
    elif len(d) >= sp.min_clear_observations and gap <= sp.max_gap_days and not _weak_cut(sig, params):
        status = "not_mown"
    else:
        status = "not_enough_evidence"
    return SeasonEvidence(sig.parcel, sig.year, status, cuts, int(len(d)), gap)


def summary_line(ev: SeasonEvidence) -> str:
    """A one-line human summary."""
    dates = ", ".join(f"{d} ({c:.2f})" for d, c in ev.cuts) or "-"
    return f"{ev.parcel} {ev.year}: {ev.status}, {len(ev.cuts)} cut(s) {dates}; {ev.clear_observations} clear obs"

