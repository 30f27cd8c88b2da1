"""Parcel time series read back from PostGIS (or the season archive): what the API, the viewer and the demo show.

A parcel's attributes and its lookup by declared id are in `cbmflow.web.queries` (one copy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cbmflow.core.bands import BAND_CODES
from cbmflow.core.errors import InputError


@dataclass(frozen=True)
class Observation:
    """One scene's statistics of one band for one parcel."""

    date: str
    obsid: int
    product_id: str
    card_type: str
    band: str
    count: int
    mean: float
    std: float
    min: float
    max: float
    p25: float
    p50: float
    p75: float

    def as_dict(self) -> dict[str, Any]:
        """The observation as a JSON-ready dict."""
        return asdict(self)


def list_parcels(conn: psycopg.Connection, aoi: str, year: int, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Parcels of an AOI and year, with the number of signature records of each."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(
            "SELECT p.pid, p.parcel_id, p.crop_code, p.crop_name, round(p.area_m2) AS area_m2 "
            "FROM parcels p WHERE p.aoi = %s AND p.year = %s ORDER BY p.pid LIMIT %s OFFSET %s",
            (aoi, year, limit, offset),
        ))


def list_aois(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """AOIs with their CRS, parcel counts per year and parcel-set version."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(
            "SELECT a.name, a.epsg, a.parcels_version, p.year, count(p.pid) AS parcels "
            "FROM aois a LEFT JOIN parcels p ON p.aoi = a.name GROUP BY 1, 2, 3, 4 ORDER BY 1, 4"
        ))


def series(
    conn: psycopg.Connection, pid: int, *, bands: list[str] | None = None, card_type: str | None = None
) -> list[Observation]:
    """All observations of a parcel, by date then band (optionally only some bands / one CARD type)."""
    codes = None
    if bands:
        unknown = [b for b in bands if b not in BAND_CODES]
        if unknown:
            raise InputError(f"unknown band(s) {unknown}; known: {', '.join(BAND_CODES)}")
        codes = [BAND_CODES[b] for b in bands]
    where = ["s.pid = %s"]
    params: list[Any] = [pid]
    if codes:
        where.append("s.band = ANY(%s)")
        params.append(codes)
    if card_type:
        where.append("c.card_type = %s")
        params.append(card_type)
    rows = conn.execute(
        "SELECT to_char(c.sensing_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "c.id, c.product_id, c.card_type, b.name, s.count, s.mean, s.std, s.min, s.max, "
        "s.p25, s.p50, s.p75 FROM signatures s JOIN catalogue c ON c.id = s.obsid "
        "JOIN bands b ON b.code = s.band WHERE " + " AND ".join(where) +
        " ORDER BY c.sensing_time, s.band",
        params,
    ).fetchall()
    if not rows:  # PostGIS keeps the recent window: older seasons come from the season archive
        rows = _archived(conn, pid, bands, card_type)
    return [Observation(*r) for r in rows]


def _archived(conn: psycopg.Connection, pid: int, bands: list[str] | None, card_type: str | None) -> list[Any]:
    """The parcel's observations from the season archive (issue 20), when one is configured."""
    from cbmflow.extract import archive

    if not archive.configured():
        return []
    row = conn.execute("SELECT aoi, year FROM parcels WHERE pid = %s", (pid,)).fetchone()
    if row is None:
        return []
    return archive.parcel_observations(row[0], int(row[1]), pid, bands, card_type=card_type)
