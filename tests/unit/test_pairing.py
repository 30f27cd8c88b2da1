"""COH6 pairing: same relative orbit and direction, 6 days apart, else 12 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cbmflow.card.pairing import Pair, find_reference, pair_scenes
from cbmflow.catalogue.store import Scene

BOX = "POLYGON((15 48, 16 48, 16 49, 15 49, 15 48))"
FAR = "POLYGON((25 60, 26 60, 26 61, 25 61, 25 60))"


def slc(i: int, when: datetime, orbit: int = 117, direction: str = "ascending", mission: str = "S1A",
        footprint: str | None = BOX) -> Scene:
    return Scene(product_id=f"{mission}_IW_SLC__1SDV_{when:%Y%m%dT%H%M%S}_{i}", mission=mission,
                 product_type="SLC", card_type="c6", sensing_time=when, relative_orbit=orbit,
                 orbit_direction=direction, footprint_wkt=footprint, id=i)


T0 = datetime(2021, 6, 1, 16, 50, 12, tzinfo=UTC)


def test_six_day_partner_preferred_over_twelve() -> None:
    ref12 = slc(1, T0 - timedelta(days=12), mission="S1A")
    ref6 = slc(2, T0 - timedelta(days=6, seconds=-4), mission="S1B")  # repeat pass 4 s later in the day
    sec = slc(3, T0, mission="S1A")
    pairs, unpaired = pair_scenes([sec], [ref12, ref6, sec])
    assert unpaired == []
    assert pairs == [Pair(2, 3, ref6.product_id, sec.product_id, 117, "ascending", 6, T0)]


def test_twelve_day_fallback_after_s1b_failure() -> None:
    t = datetime(2022, 3, 10, 5, 11, 22, tzinfo=UTC)  # S1A only: no 6-day partner
    ref = slc(10, t - timedelta(days=12))
    sec = slc(11, t)
    assert find_reference(sec, [ref, sec]) == (ref, 12)
    pairs, _ = pair_scenes([sec], [ref, sec])
    assert pairs[0].days == 12 and pairs[0].reference_id == 10
    assert pairs[0].product_id == "S1_COH12_20220310T051122_R117_ASC_S1AS1A"


def test_orbit_direction_footprint_and_gap_must_match() -> None:
    sec = slc(20, T0)
    other_orbit = slc(21, T0 - timedelta(days=6), orbit=44)
    other_direction = slc(22, T0 - timedelta(days=6), direction="descending")
    elsewhere = slc(23, T0 - timedelta(days=6), footprint=FAR)
    seven_days = slc(24, T0 - timedelta(days=7))
    three_hours_off = slc(25, T0 - timedelta(days=6, hours=3))
    pairs, unpaired = pair_scenes([sec], [sec, other_orbit, other_direction, elsewhere, seven_days, three_hours_off])
    assert pairs == [] and unpaired == [sec]


def test_each_secondary_gets_its_own_reference_in_a_series() -> None:
    scenes = [slc(30 + k, T0 + timedelta(days=6 * k)) for k in range(4)]
    pairs, unpaired = pair_scenes(scenes, scenes)
    assert unpaired == [scenes[0]]  # the first has no predecessor in the catalogue
    assert [(p.reference_id, p.secondary_id, p.days) for p in pairs] == [(30, 31, 6), (31, 32, 6), (32, 33, 6)]


def test_scene_without_orbit_is_unpaired() -> None:
    sec = Scene(product_id="S1A_X", mission="S1A", product_type="SLC", card_type="c6", sensing_time=T0, id=40)
    assert pair_scenes([sec], [sec]) == ([], [sec])
