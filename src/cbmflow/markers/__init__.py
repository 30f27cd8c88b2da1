"""Activity markers per parcel: mowing, bare soil and ploughing, harvest, and explicit "no evidence" gaps.

The pipeline stage after signature extraction: :mod:`.io` reads signals (JRC CbM CSVs or
PostGIS), the detector modules (:mod:`.mowing`, :mod:`.bare_soil`, :mod:`.harvest`,
:mod:`.gaps`) are pure functions whose parameters live in :mod:`.params`, :mod:`.rules` turns
markers into compliance per crop, :mod:`.store` keeps runs in PostGIS, :mod:`.evaluate` scores
dated events. See docs/markers.md.
"""

from __future__ import annotations

from cbmflow.markers.params import DEFAULTS, MarkerParams
from cbmflow.markers.signals import MARKER_TYPES, Marker, ParcelSignals

__all__ = ["DEFAULTS", "MARKER_TYPES", "Marker", "MarkerParams", "ParcelSignals", "detect_parcel"]


def detect_parcel(sig: ParcelSignals, params: MarkerParams = DEFAULTS) -> list[Marker]:
    """All markers of one parcel's season, ordered by marker type then date."""
    from cbmflow.markers.bare_soil import detect_bare_soil
    from cbmflow.markers.gaps import detect_gaps
    from cbmflow.markers.harvest import detect_harvest
    from cbmflow.markers.mowing import detect_mowing

    found = detect_mowing(sig, params) + detect_bare_soil(sig, params) + detect_harvest(sig, params)
    found += detect_gaps(sig, params)
    order = {m: k for k, m in enumerate(MARKER_TYPES)}
    return sorted(found, key=lambda m: (order[m.marker], m.event_date or m.start_date or ""))
