"""CARD-COH6 pairing of Sentinel-1 SLC acquisitions.

Rule: a scene (the *secondary*) is paired with the *reference* acquired on the same relative orbit
and orbit direction 6 days earlier (Sentinel-1A + 1B, or 1A + 1C from 2025, together give a 6-day
repeat). Where no 6-day partner exists (Sentinel-1B failed on 2021-12-23; Sentinel-1C only flies
from 2025) the 12-day predecessor of the same satellite is used instead and the pair says
``days=12``. Acquisition times of repeat passes agree to a few seconds; ``tolerance_s`` absorbs
that. Where both footprints are known they must intersect (different frames of the same orbit on
the same day are different products).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cbmflow.catalogue.store import Scene

PAIR_DAYS: tuple[int, ...] = (6, 12)  # preferred first
DEFAULT_TOLERANCE_S = 3600.0


@dataclass(frozen=True)
class Pair:
    """A COH6 pair: the earlier reference and the later secondary scene (catalogue ids)."""

    reference_id: int
    secondary_id: int
    reference_product_id: str
    secondary_product_id: str
    relative_orbit: int
    orbit_direction: str
    days: int
    sensing_time: datetime  # of the secondary: the date the coherence is attributed to

    @property
    def product_id(self) -> str:
        """Deterministic name of the coherence product (reference and secondary dates, orbit)."""
        return (f"S1_COH{self.days}_{self.sensing_time:%Y%m%dT%H%M%S}_R{self.relative_orbit:03d}_"
                f"{self.orbit_direction[:3].upper()}_{self.reference_product_id[:3]}"
                f"{self.secondary_product_id[:3]}")


def _overlap(a: Scene, b: Scene) -> bool:
    if not a.footprint_wkt or not b.footprint_wkt:
        return True
    from shapely import wkt

    return bool(wkt.loads(a.footprint_wkt).intersects(wkt.loads(b.footprint_wkt)))


def find_reference(secondary: Scene, candidates: Sequence[Scene], *,
                   tolerance_s: float = DEFAULT_TOLERANCE_S) -> tuple[Scene, int] | None:
    """The reference for a secondary scene and the day gap (6 preferred, else 12), or None."""
    for days in PAIR_DAYS:
        target = secondary.sensing_time - timedelta(days=days)
        best: tuple[float, Scene] | None = None
        for c in candidates:
            if (c.id == secondary.id or c.relative_orbit != secondary.relative_orbit
                    or c.orbit_direction != secondary.orbit_direction):
                continue
            gap = abs((c.sensing_time - target).total_seconds())
            if gap <= tolerance_s and _overlap(c, secondary) and (best is None or gap < best[0]):
                best = (gap, c)
        if best is not None:
            return best[1], days
    return None


def pair_scenes(secondaries: Sequence[Scene], candidates: Sequence[Scene], *,
                tolerance_s: float = DEFAULT_TOLERANCE_S) -> tuple[list[Pair], list[Scene]]:
    """Pairs for the secondaries (references from candidates) and the secondaries without a partner."""
    pairs: list[Pair] = []
    unpaired: list[Scene] = []
    for s in secondaries:
        if s.id is None or s.relative_orbit is None or s.orbit_direction is None:
            unpaired.append(s)
            continue
        found = find_reference(s, candidates, tolerance_s=tolerance_s)
        if found is None:
            unpaired.append(s)
            continue
        ref, days = found
        assert ref.id is not None
        pairs.append(Pair(ref.id, s.id, ref.product_id, s.product_id, s.relative_orbit,
                          s.orbit_direction, days, s.sensing_time))
    return pairs, unpaired
