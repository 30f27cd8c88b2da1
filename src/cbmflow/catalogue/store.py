"""The scene catalogue in PostGIS: scene records, idempotent upsert, and the status queue.

Status moves ``discovered -> processing -> ready -> extracted``; any step may go to ``failed``
(with the attempt count and the last error), from where the scene can be retried. ``processing``
is backed by a session-level advisory lock of the worker (:func:`hold_claim`), so the claim of a
worker that died is released at once (:func:`release_orphans`). ``extracted`` means "extracted for
at least one AOI"; the extraction status per (scene, AOI) is the table ``extractions``
(:func:`claim_extraction`, :func:`finish_extraction`, :func:`problem_scenes`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from cbmflow.core.errors import InputError, NotFound

CardType = Literal["bs", "c6", "s2"]
Status = Literal["discovered", "processing", "ready", "extracted", "failed"]
STATUSES: tuple[str, ...] = ("discovered", "processing", "ready", "extracted", "failed")
CARD_TYPES: tuple[str, ...] = ("bs", "c6", "s2")


@dataclass(frozen=True)
class Scene:
    """One catalogued product: a raw scene to process or a CARD product to extract."""

    product_id: str
    mission: str
    product_type: str
    card_type: str
    sensing_time: datetime
    relative_orbit: int | None = None
    orbit_direction: str | None = None
    tile: str | None = None
    footprint_wkt: str | None = None  # EPSG:4326
    collection: str | None = None
    source_assets: dict[str, str] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    simulated: bool = False
    status: str = "discovered"
    id: int | None = None
    attempts: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        if self.card_type not in CARD_TYPES:
            raise InputError(f"scene {self.product_id}: card_type {self.card_type!r} not in {CARD_TYPES}")
        if self.status not in STATUSES:
            raise InputError(f"scene {self.product_id}: status {self.status!r} not in {STATUSES}")
        if self.sensing_time.tzinfo is None:
            raise InputError(f"scene {self.product_id}: sensing_time must be timezone-aware")

    @property
    def year(self) -> int:
        """The sensing year (the signatures partition)."""
        return self.sensing_time.year


_COLUMNS = (
    "product_id, collection, mission, product_type, card_type, sensing_time, relative_orbit, "
    "orbit_direction, tile, footprint, source_assets, assets, properties, simulated, status"
)


def upsert(conn: psycopg.Connection, scenes: Iterable[Scene]) -> dict[str, int]:
    """Insert new scenes and refresh metadata of known ones; returns product_id -> id.

    Running it twice adds nothing. The status of a known scene is kept (its place in the
    queue is not reset by re-discovery), except that CARD assets supplied for a scene that
    was not yet ready make it ready.
    """
    ids: dict[str, int] = {}
    with conn.cursor() as cur:
        for s in scenes:
            cur.execute(
                f"""
                INSERT INTO catalogue ({_COLUMNS})
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
                        ST_Multi(ST_GeomFromText(%s, 4326)), %s, %s, %s, %s, %s)
                ON CONFLICT (product_id) DO UPDATE SET
                    collection = EXCLUDED.collection,
                    mission = EXCLUDED.mission,
                    product_type = EXCLUDED.product_type,
                    relative_orbit = EXCLUDED.relative_orbit,
                    orbit_direction = EXCLUDED.orbit_direction,
                    tile = EXCLUDED.tile,
                    footprint = COALESCE(EXCLUDED.footprint, catalogue.footprint),
                    source_assets = catalogue.source_assets || EXCLUDED.source_assets,
                    assets = catalogue.assets || EXCLUDED.assets,
                    properties = catalogue.properties || EXCLUDED.properties,
                    updated_at = CASE WHEN (catalogue.source_assets, catalogue.assets, catalogue.properties)
                                      IS DISTINCT FROM
                                      (catalogue.source_assets || EXCLUDED.source_assets,
                                       catalogue.assets || EXCLUDED.assets,
                                       catalogue.properties || EXCLUDED.properties)
                                 THEN now() ELSE catalogue.updated_at END
                RETURNING id
                """,
                (
                    s.product_id, s.collection, s.mission, s.product_type, s.card_type,
                    s.sensing_time, s.relative_orbit, s.orbit_direction, s.tile, s.footprint_wkt,
                    json.dumps(s.source_assets), json.dumps(s.assets), json.dumps(s.properties),
                    s.simulated, s.status,
                ),
            )
            row = cur.fetchone()
            assert row is not None
            ids[s.product_id] = int(row[0])
    return ids


def _row_to_scene(row: dict[str, Any]) -> Scene:
    return Scene(
        id=row["id"],
        product_id=row["product_id"],
        collection=row["collection"],
        mission=row["mission"],
        product_type=row["product_type"],
        card_type=row["card_type"],
        sensing_time=row["sensing_time"],
        relative_orbit=row["relative_orbit"],
        orbit_direction=row["orbit_direction"],
        tile=row["tile"],
        footprint_wkt=row["footprint_wkt"],
        source_assets=row["source_assets"],
        assets=row["assets"],
        properties=row["properties"],
        simulated=row["simulated"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


_SELECT = (
    "SELECT id, product_id, collection, mission, product_type, card_type, sensing_time, "
    "relative_orbit, orbit_direction, tile, ST_AsText(footprint) AS footprint_wkt, "
    "source_assets, assets, properties, simulated, status, attempts, last_error FROM catalogue"
)


def get(conn: psycopg.Connection, scene_id: int) -> Scene:
    """The scene with this catalogue id."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE id = %s", (scene_id,)).fetchone()
    if row is None:
        raise NotFound(f"scene id {scene_id} is not in the catalogue")
    return _row_to_scene(row)


def get_by_product_id(conn: psycopg.Connection, product_id: str) -> Scene:
    """The scene with this product id."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE product_id = %s", (product_id,)).fetchone()
    if row is None:
        raise NotFound(f"scene {product_id} is not in the catalogue")
    return _row_to_scene(row)


def find(
    conn: psycopg.Connection,
    *,
    card_type: str | None = None,
    statuses: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    product_types: Sequence[str] | None = None,
    aoi_wkt: str | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[Scene]:
    """Scenes matching all given filters, oldest first (end is exclusive)."""
    where: list[str] = []
    params: list[Any] = []
    if card_type:
        where.append("card_type = %s")
        params.append(card_type)
    if statuses:
        bad = set(statuses) - set(STATUSES)
        if bad:
            raise InputError(f"unknown status {sorted(bad)}; known: {STATUSES}")
        where.append("status = ANY(%s)")
        params.append(list(statuses))
    if start:
        where.append("sensing_time >= %s")
        params.append(start)
    if end:
        where.append("sensing_time < %s")
        params.append(end)
    if product_types:
        where.append("product_type = ANY(%s)")
        params.append(list(product_types))
    if aoi_wkt:
        where.append("ST_Intersects(footprint, ST_GeomFromText(%s, 4326))")
        params.append(aoi_wkt)
    if ids is not None:
        where.append("id = ANY(%s)")
        params.append(list(ids))
    query = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY sensing_time, id"
    if limit:
        query += f" LIMIT {int(limit)}"
    with conn.cursor(row_factory=dict_row) as cur:
        return [_row_to_scene(r) for r in cur.execute(query, params)]  # type: ignore[arg-type]


def claim(conn: psycopg.Connection, scene_id: int, from_statuses: Sequence[str]) -> bool:
    """Move a scene to ``processing`` if it is in one of from_statuses; False if someone else has it."""
    row = conn.execute(
        "UPDATE catalogue SET status = 'processing', attempts = attempts + 1, updated_at = now() "
        "WHERE id = %s AND status = ANY(%s) RETURNING id",
        (scene_id, list(from_statuses)),
    ).fetchone()
    return row is not None


def mark_ready(conn: psycopg.Connection, scene_id: int, assets: dict[str, str] | None = None) -> None:
    """Record CARD assets (band -> URI) and mark the scene ``ready`` for extraction."""
    conn.execute(
        "UPDATE catalogue SET status = 'ready', last_error = NULL, updated_at = now(), "
        "assets = assets || %s::jsonb WHERE id = %s",
        (json.dumps(assets or {}), scene_id),
    )


def mark_extracted(conn: psycopg.Connection, scene_id: int) -> None:
    """Mark the scene's signatures as written (call in the transaction that wrote them)."""
    conn.execute(
        "UPDATE catalogue SET status = 'extracted', last_error = NULL, updated_at = now() WHERE id = %s",
        (scene_id,),
    )


def mark_failed(conn: psycopg.Connection, scene_id: int, error: str) -> None:
    """Mark the scene ``failed`` with the error (truncated to 4000 characters)."""
    conn.execute(
        "UPDATE catalogue SET status = 'failed', last_error = %s, updated_at = now() WHERE id = %s",
        (error[-4000:], scene_id),
    )


def set_status(conn: psycopg.Connection, scene_id: int, status: str) -> None:
    """Set a scene's status directly (operators' reset, e.g. back to ``ready`` for reprocessing)."""
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}; known: {STATUSES}")
    conn.execute(
        "UPDATE catalogue SET status = %s, updated_at = now() WHERE id = %s", (status, scene_id)
    )


# Advisory lock namespace of CARD claims ("card"): a worker holds pg_advisory_lock(CLAIM_LOCK, id) on
# a session of its own while it processes a claimed scene; the lock dies with the worker's session.
CLAIM_LOCK = 0x63617264


def hold_claim(conn: psycopg.Connection, scene_id: int) -> bool:
    """Take the session-level claim lock of a scene on ``conn`` (keep it open while working); False if held."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (CLAIM_LOCK, int(scene_id))).fetchone()
    return bool(row and row[0])


def release_orphans(
    conn: psycopg.Connection, *, card_type: str | None = None, ids: Sequence[int] | None = None
) -> list[int]:
    """Release ``processing`` scenes whose claiming session is gone (killed worker): at once, no timer.

    A live worker holds its scene's claim lock (:func:`hold_claim`); a claim without a live lock
    holder is an orphan. A scene with CARD assets goes back to ``ready``, one without to ``failed``.
    """
    rows = conn.execute(
        "UPDATE catalogue SET status = CASE WHEN assets <> '{}'::jsonb THEN 'ready' ELSE 'failed' END, "
        "updated_at = now(), last_error = 'claim released: the worker that had it in processing since ' "
        "|| to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC is gone' "
        "WHERE status = 'processing' AND (%s::text IS NULL OR card_type = %s) "
        "AND (%s::int[] IS NULL OR id = ANY(%s::int[])) "
        "AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "  AND l.classid = %s::bigint::oid AND l.objid = catalogue.id::bigint::oid AND l.objsubid = 2) "
        "RETURNING id",
        (card_type, card_type, list(ids) if ids is not None else None, list(ids) if ids is not None else None,
         CLAIM_LOCK),
    ).fetchall()
    return [int(r[0]) for r in rows]


STALE_AFTER = timedelta(hours=6)


def release_stale(
    conn: psycopg.Connection, *, card_type: str | None = None, older_than: timedelta = STALE_AFTER
) -> list[int]:
    """Release scenes stuck in ``processing`` longer than older_than so the next run retries them.

    A worker killed mid-task (OOM, node loss) leaves its claim behind, and no run would ever claim
    the scene again. A scene that already has CARD assets goes back to ``ready`` (extraction
    retries it); one without goes to ``failed`` (CARD processing retries it). Nothing is lost.
    """
    rows = conn.execute(
        "UPDATE catalogue SET status = CASE WHEN assets <> '{}'::jsonb THEN 'ready' ELSE 'failed' END, "
        "updated_at = now(), "
        "last_error = 'stale claim: in processing since ' || to_char(updated_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI') || ' UTC (worker lost?); released for retry' "
        "WHERE status = 'processing' AND updated_at < now() - %s "
        "AND (%s::text IS NULL OR card_type = %s) RETURNING id",
        (older_than, card_type, card_type),
    ).fetchall()
    return [int(r[0]) for r in rows]


def counts(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    """Number of scenes per (card_type, status)."""
    return {
        (r[0], r[1]): int(r[2])
        for r in conn.execute("SELECT card_type, status, count(*) FROM catalogue GROUP BY 1, 2")
    }


# --------------------------------------------------------------------------------------------
# Extraction status per (scene, AOI, parcel year): the table ``extractions`` (schema 005)
# --------------------------------------------------------------------------------------------

ExtractionStatus = Literal["pending", "extracted", "no_data", "failed"]
EXTRACTION_STATUSES: tuple[str, ...] = ("pending", "extracted", "no_data", "failed")
DONE_STATUSES: tuple[str, ...] = ("extracted", "no_data")


@dataclass(frozen=True)
class Extraction:
    """One scene's extraction state for one AOI and parcel year."""

    obsid: int
    aoi: str
    year: int
    status: str
    attempts: int = 0
    last_error: str | None = None
    band: str | None = None
    rows: int = 0
    run_id: str | None = None
    updated_at: datetime | None = None
    parcels_version: int = 0
    product_id: str | None = None
    card_type: str | None = None
    sensing_time: datetime | None = None


_EXT_SELECT = (
    "SELECT e.obsid, e.aoi, e.year, e.status, e.attempts, e.last_error, e.band, e.rows, e.run_id, "
    "e.updated_at, e.parcels_version, c.product_id, c.card_type, c.sensing_time FROM extractions e "
    "JOIN catalogue c ON c.id = e.obsid"
)


def register_extractions(conn: psycopg.Connection, obsids: Sequence[int], aoi: str, year: int) -> None:
    """Record (scene, AOI, year) pairs as ``pending`` work unless they already have a status."""
    if not obsids:
        return
    conn.execute(
        "INSERT INTO extractions (obsid, aoi, year) SELECT unnest(%s::int[]), %s, %s "
        "ON CONFLICT (obsid, aoi, year) DO NOTHING",
        (list(map(int, obsids)), aoi, int(year)),
    )


@dataclass(frozen=True)
class Claim:
    """A held extraction claim: the row lock lives as long as the caller's transaction."""

    status: str
    run_id: str | None
    updated_at: datetime
    contended: bool  # another live session held it first (we waited for it to finish)
    parcels_version: int = 0  # the AOI parcel set the current rows were computed for


def claim_extraction(conn: psycopg.Connection, obsid: int, aoi: str, year: int) -> Claim:
    """Lock a scene's extraction row for this AOI inside the caller's transaction (waiting for a live holder).

    The claim is the row lock: it ends with the transaction, so a worker that dies (kill -9, lost
    node) leaves nothing behind and the next attempt claims the scene at once.
    """
    import psycopg.errors

    register_extractions(conn, [obsid], aoi, year)
    q = ("SELECT status, run_id, updated_at, parcels_version FROM extractions "
         "WHERE obsid = %s AND aoi = %s AND year = %s FOR UPDATE")
    args = (int(obsid), aoi, int(year))
    contended = False
    try:
        with conn.transaction():  # a savepoint: NOWAIT's error must not abort the caller's transaction
            row = conn.execute(q + " NOWAIT", args).fetchone()
    except psycopg.errors.LockNotAvailable:
        contended = True
        row = conn.execute(q, args).fetchone()
    assert row is not None
    return Claim(status=row[0], run_id=row[1], updated_at=row[2], contended=contended, parcels_version=int(row[3]))


def finish_extraction(
    conn: psycopg.Connection, obsid: int, aoi: str, year: int, status: str, *, rows: int = 0,
    run_id: str | None = None, error: str | None = None, band: str | None = None,
    parcels_version: int | None = None,
) -> None:
    """Set the outcome of one try (in the write transaction for extracted/no_data)."""
    if status not in EXTRACTION_STATUSES:
        raise InputError(f"unknown extraction status {status!r}; known: {EXTRACTION_STATUSES}")
    conn.execute(
        "UPDATE extractions SET status = %s, rows = %s, run_id = %s, last_error = %s, band = %s, "
        "parcels_version = coalesce(%s, parcels_version), "
        "attempts = attempts + 1, updated_at = now() WHERE obsid = %s AND aoi = %s AND year = %s",
        (status, int(rows), run_id, (error or None) and error[-4000:], band, parcels_version,
         int(obsid), aoi, int(year)),
    )
    if status in DONE_STATUSES:  # the catalogue says "extracted for at least one AOI"
        # a waiver covers one failure: once the pair is done it is void (a later failure counts again)
        conn.execute("DELETE FROM extraction_waivers WHERE obsid = %s AND aoi = %s AND year = %s",
                     (int(obsid), aoi, int(year)))
        conn.execute("UPDATE catalogue SET status = 'extracted', last_error = NULL, updated_at = now() "
                     "WHERE id = %s AND status = 'ready'", (int(obsid),))


def note_interrupted(conn: psycopg.Connection, obsid: int, aoi: str, year: int, error: str) -> None:
    """Record an outage that interrupted a try; the status stays as it was (the retry redoes it)."""
    conn.execute(
        "UPDATE extractions SET attempts = attempts + 1, last_error = %s, "
        "updated_at = now() WHERE obsid = %s AND aoi = %s AND year = %s",
        (f"interrupted, will retry: {error}"[-4000:], int(obsid), aoi, int(year)),
    )


def get_extractions(conn: psycopg.Connection, keys: Iterable[tuple[int, str, int]]) -> dict[tuple[int, str, int], Extraction]:
    """The extraction rows of the given (obsid, aoi, year) keys (missing keys are absent)."""
    keys = list(keys)
    if not keys:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _EXT_SELECT + " JOIN unnest(%s::int[], %s::text[], %s::int[]) AS k(obsid, aoi, year) "
            "ON k.obsid = e.obsid AND k.aoi = e.aoi AND k.year = e.year",
            ([int(k[0]) for k in keys], [k[1] for k in keys], [int(k[2]) for k in keys]),
        ).fetchall()
    out = {}
    for r in rows:
        x = Extraction(**r)
        out[(x.obsid, x.aoi, x.year)] = x
    return out


def problem_scenes(
    conn: psycopg.Connection, aoi: str | None = None, since: datetime | None = None,
    *, statuses: Sequence[str] = ("failed", "no_data"), year: int | None = None,
) -> list[Extraction]:
    """Scenes whose extraction failed or found no data, per AOI, newest sensing day first, with their error."""
    bad = set(statuses) - set(EXTRACTION_STATUSES)
    if bad:
        raise InputError(f"unknown extraction status {sorted(bad)}; known: {EXTRACTION_STATUSES}")
    where = ["e.status = ANY(%s)"]
    params: list[Any] = [list(statuses)]
    if aoi:
        where.append("e.aoi = %s")
        params.append(aoi)
    if since is not None:
        where.append("e.updated_at >= %s")
        params.append(since)
    if year is not None:
        where.append("e.year = %s")
        params.append(int(year))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _EXT_SELECT + " WHERE " + " AND ".join(where)
            + " ORDER BY e.aoi, c.sensing_time DESC, c.product_id", params).fetchall()  # type: ignore[arg-type]
    return [Extraction(**r) for r in rows]


def extraction_counts(conn: psycopg.Connection) -> dict[tuple[str, int, str], int]:
    """Number of (scene, AOI) extractions per (aoi, year, status)."""
    return {
        (r[0], int(r[1]), r[2]): int(r[3])
        for r in conn.execute("SELECT aoi, year, status, count(*) FROM extractions GROUP BY 1, 2, 3")
    }


# --------------------------------------------------------------------------------------------
# Waivers of failed extractions: the table ``extraction_waivers`` (schema 010)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiver:
    """An operator's recorded decision that a failed (scene, AOI, year) may stay without rows."""

    obsid: int
    aoi: str
    year: int
    reason: str
    waived_by: str
    waived_at: datetime
    error: str | None
    product_id: str
    status: str


def waive_extraction(conn: psycopg.Connection, obsid: int, aoi: str, year: int, reason: str, by: str) -> Waiver:
    """Record a waiver of a failed extraction (replacing an earlier one); NotFound/InputError otherwise."""
    if not reason or not reason.strip():
        raise InputError("a waiver needs a reason (--reason)")
    row = conn.execute("SELECT status, last_error FROM extractions WHERE obsid = %s AND aoi = %s AND year = %s",
                       (int(obsid), aoi, int(year))).fetchone()
    if row is None:
        raise NotFound(f"no extraction of scene id {obsid} for AOI {aoi} {year}")
    if row[0] != "failed":
        raise InputError(f"scene id {obsid} for AOI {aoi} {year} is {row[0]}, not failed: only a failed "
                         "extraction can be waived")
    conn.execute(
        "INSERT INTO extraction_waivers (obsid, aoi, year, reason, waived_by, error) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (obsid, aoi, year) DO UPDATE SET reason = excluded.reason, waived_by = excluded.waived_by, "
        "waived_at = now(), error = excluded.error",
        (int(obsid), aoi, int(year), reason.strip(), by, row[1]))
    return waivers(conn, keys=[(int(obsid), aoi, int(year))])[0]


def unwaive_extraction(conn: psycopg.Connection, obsid: int, aoi: str, year: int) -> bool:
    """Delete a waiver; True when there was one."""
    cur = conn.execute("DELETE FROM extraction_waivers WHERE obsid = %s AND aoi = %s AND year = %s",
                       (int(obsid), aoi, int(year)))
    return bool(cur.rowcount)


def waivers(
    conn: psycopg.Connection, *, keys: Iterable[tuple[int, str, int]] | None = None, aois: Sequence[str] | None = None,
    year: int | None = None, start: datetime | None = None, end: datetime | None = None,
    card_types: Sequence[str] | None = None,
) -> list[Waiver]:
    """Waivers of still-failed extractions, by keys or by scope (AOIs, year, sensing window, card types)."""
    where = ["e.status = 'failed'"]
    params: list[Any] = []
    if keys is not None:
        ks = list(keys)
        where.append("(w.obsid, w.aoi, w.year) IN (SELECT * FROM unnest(%s::int[], %s::text[], %s::int[]))")
        params += [[int(k[0]) for k in ks], [k[1] for k in ks], [int(k[2]) for k in ks]]
    if aois is not None:
        where.append("w.aoi = ANY(%s)")
        params.append(list(aois))
    if year is not None:
        where.append("w.year = %s")
        params.append(int(year))
    if start is not None:
        where.append("c.sensing_time >= %s")
        params.append(start)
    if end is not None:
        where.append("c.sensing_time < %s")
        params.append(end)
    if card_types is not None:
        where.append("c.card_type = ANY(%s)")
        params.append(list(card_types))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT w.obsid, w.aoi, w.year, w.reason, w.waived_by, w.waived_at, w.error, c.product_id, e.status "
            "FROM extraction_waivers w JOIN extractions e USING (obsid, aoi, year) JOIN catalogue c ON c.id = w.obsid "
            "WHERE " + " AND ".join(where) + " ORDER BY w.aoi, c.sensing_time, c.product_id",
            params).fetchall()  # type: ignore[arg-type]
    return [Waiver(**r) for r in rows]
