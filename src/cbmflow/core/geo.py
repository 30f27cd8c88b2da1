"""Small geodesy helpers shared by every stage: the UTM zone of a point."""

from __future__ import annotations

import math

from cbmflow.core.errors import InputError


def utm_zone(lon: float) -> int:
    """The WGS 84 UTM zone number (1-60) of a longitude in degrees; 180 degrees is zone 60."""
    if not math.isfinite(lon):
        raise InputError(f"longitude {lon!r} is not a finite number")
    if lon < -180.0 or lon > 180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    return min(60, int(math.floor((lon + 180.0) / 6.0)) + 1)


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS 84 / UTM zone (326xx north, 327xx south) containing a lon/lat point."""
    if not math.isfinite(lat) or abs(lat) > 90.0:
        raise InputError(f"latitude {lat!r} is not between -90 and 90 degrees")
    return (32600 if lat >= 0 else 32700) + utm_zone(lon)
