"""Period averages: per-parcel, per-band means over day-of-year bins, from the signatures table.

A period is a bin of ``period_days`` days of the year: period ``k`` covers day-of-year
``k*period_days + 1 .. (k+1)*period_days`` (UTC), so the same period means the same dates in every
year and each period is its own, non-overlapping window. The last period of a year may be shorter.

The value of a period is the mean of the per-scene parcel means of the LINEAR values (every
acquisition in the period weighs the same, however many pixels of the parcel it saw: a scene that
clips a parcel must not count less as evidence of the crop's state, and pixel-weighting would let
one scene dominate). ``n_obs`` counts the scenes, ``n_pixels`` the pixels behind them.
Scenes with a parcel mean that is NaN or a pixel count of 0 are skipped.

With ``cloud_max`` set, Sentinel-2 observations (card type ``s2``) count only where the parcel's
SCL histogram says that at most ``cloud_max`` of its pixels are cloudy (SCL classes in
:data:`cbmflow.core.bands.SCL_CLOUDY` except 0/no-data, over all pixels with data); S2 observations
without an SCL histogram are then left out. Sentinel-1 bands are never filtered.
"""

from __future__ import annotations

import logging

import psycopg

from cbmflow.core.bands import SCL_CLOUDY
from cbmflow.core.errors import InputError, NotFound, NothingToDo

log = logging.getLogger(__name__)

# SCL classes that make an S2 observation cloudy (no-data, class 0, is not counted at all).
_CLOUDY_IDX = sorted(c + 1 for c in SCL_CLOUDY if c != 0)  # 1-based positions in counts[]

_INSERT = """
INSERT INTO period_means (aoi, year, pid, band, period, period_days, mean, n_obs, n_pixels)
SELECT p.aoi, p.year, s.pid, s.band,
       ((extract(doy FROM c.sensing_time AT TIME ZONE 'UTC')::int - 1) / %(pd)s)::smallint,
       %(pd)s, avg(s.mean), count(*), sum(s.count)
FROM {table} s
JOIN parcels p ON p.pid = s.pid
JOIN catalogue c ON c.id = s.obsid
{cloud_join}
WHERE p.aoi = %(aoi)s AND p.year = %(year)s AND s.year = %(year)s
  AND s.count > 0 AND s.mean <> 'NaN'::real
  AND extract(year FROM c.sensing_time AT TIME ZONE 'UTC') = %(year)s
  {cloud_where}
GROUP BY 1, 2, 3, 4, 5
"""

_CLOUD_JOIN = "LEFT JOIN scl_histograms h ON h.pid = s.pid AND h.obsid = s.obsid"
_CLOUD_WHERE = """
  AND (c.card_type <> 's2' OR (
        h.pid IS NOT NULL
        AND (SELECT sum(v) FROM unnest(h.counts[2:12]) v) > 0
        AND (SELECT sum(h.counts[i]) FROM unnest(%(cloudy)s::int[]) i)::float8
            / (SELECT sum(v) FROM unnest(h.counts[2:12]) v) <= %(cloud_max)s))
"""


def compute_period_means(
    conn: psycopg.Connection,
    aoi: str,
    year: int,
    *,
    period_days: int = 5,
    cloud_max: float | None = None,
) -> int:
    """Recompute the period averages of one AOI and year; returns the number of rows written."""
    if not 1 <= int(period_days) <= 366:
        raise InputError(f"period_days must be 1..366, got {period_days}")
    if cloud_max is not None and not 0.0 <= float(cloud_max) <= 1.0:
        raise InputError(f"cloud_max must be a fraction 0..1, got {cloud_max}")
    if conn.execute("SELECT 1 FROM aois WHERE name = %s", (aoi,)).fetchone() is None:
        known = [r[0] for r in conn.execute("SELECT name FROM aois ORDER BY name")]
        raise NotFound(f"AOI {aoi!r} does not exist (known: {', '.join(known) or 'none'})")
    params = {
        "aoi": aoi,
        "year": int(year),
        "pd": int(period_days),
        "cloud_max": None if cloud_max is None else float(cloud_max),
        "cloudy": _CLOUDY_IDX,
    }
    table = "signatures"
    if conn.execute("SELECT 1 FROM signatures s JOIN parcels p ON p.pid = s.pid WHERE p.aoi = %s AND p.year = %s "
                    "AND s.year = %s LIMIT 1", (aoi, int(year), int(year))).fetchone() is None:
        from cbmflow.extract import archive

        if archive.configured():  # PostGIS keeps the recent window: an older season from the archive
            n = archive.load_into_temp_table(conn, aoi, int(year))
            log.info("period means %s %s: no signatures in PostGIS, %d rows read from the season archive", aoi,
                     year, n)
            table = "archived_signatures"
    query = _INSERT.format(
        table=table,
        cloud_join=_CLOUD_JOIN if cloud_max is not None else "",
        cloud_where=_CLOUD_WHERE if cloud_max is not None else "",
    )
    with conn.transaction():
        conn.execute("DELETE FROM period_means WHERE aoi = %s AND year = %s", (aoi, int(year)))
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        written = cur.rowcount
        if written <= 0:
            # Rolls back the delete as well: an empty season never wipes earlier results.
            raise NothingToDo(f"no signatures for aoi {aoi} year {year}")
    log.info("period means %s %s (%d-day periods): %d rows", aoi, year, period_days, written)
    return int(written)


def period_bounds(period: int, period_days: int) -> tuple[int, int]:
    """First and last day-of-year of a period."""
    first = int(period) * int(period_days) + 1
    return first, min(first + int(period_days) - 1, 366)
