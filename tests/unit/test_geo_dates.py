"""The one UTM-zone function and the one ISO-date parser, at their edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from cbmflow.core.dates import to_utc
from cbmflow.core.errors import InputError
from cbmflow.core.geo import utm_epsg, utm_zone


@pytest.mark.parametrize(("lon", "zone"), [(-180.0, 1), (-174.0001, 1), (-174.0, 2), (0.0, 31),
                                           (-0.0001, 30), (15.0, 33), (179.99, 60), (180.0, 60),
                                           (181.0, 1), (-181.0, 60)])
def test_utm_zone_edges(lon: float, zone: int) -> None:
    assert utm_zone(lon) == zone


def test_utm_epsg_hemispheres_and_bad_input() -> None:
    assert utm_epsg(15.0, 48.3) == 32633
    assert utm_epsg(-70.6, -33.4) == 32719
    assert utm_epsg(180.0, 0.0) == 32660
    with pytest.raises(InputError):
        utm_epsg(float("nan"), 10)
    with pytest.raises(InputError):
        utm_epsg(10, 91)


def test_to_utc_forms() -> None:
    midnight = datetime(2025, 3, 1, tzinfo=UTC)
    assert to_utc("2025-03-01") == midnight
    assert to_utc("2025-03-01", end=True) == midnight + timedelta(days=1)
    assert to_utc(date(2025, 3, 1)) == midnight
    assert to_utc("2025-03-01T10:00:00Z") == midnight.replace(hour=10)
    assert to_utc("2025-03-01T10:00:00") == midnight.replace(hour=10)
    assert to_utc("2025-03-01T12:00:00+02:00") == midnight.replace(hour=10)
    assert to_utc(datetime(2025, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))).tzinfo == UTC
    assert to_utc(None) is None and to_utc("") is None


def test_to_utc_names_the_bad_value() -> None:
    with pytest.raises(InputError, match="start '2025-13-01'"):
        to_utc("2025-13-01", what="start")
