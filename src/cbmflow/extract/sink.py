"""The PostGIS sink for signatures: one scene's rows replaced atomically by a binary COPY.

:func:`write_scene` runs inside the caller's transaction: it takes a transaction-scoped advisory
lock on the scene (two concurrent extractions of one scene serialise instead of double-writing),
deletes the scene's existing rows and COPYs the new ones. Commit together with
``catalogue.mark_extracted`` and a re-run replaces, never duplicates.

The COPY stream is PostgreSQL's binary format, built as one big-endian numpy structured array,
so no Python object is created per row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from cbmflow.core import bands as bands_mod
from cbmflow.core import faults as testhooks
from cbmflow.core.errors import InputError

log = logging.getLogger(__name__)

# Advisory lock namespace for scene writes ("sigs").
SCENE_LOCK = 0x73696773
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
COPY_TRAILER = np.array([-1], dtype=">i2").tobytes()
SIGNATURE_COLUMNS: tuple[str, ...] = (
    "pid", "obsid", "count", "mean", "std", "min", "max", "p25", "p50", "p75", "band", "year",
)
_FLOATS = ("mean", "std", "min", "max", "p25", "p50", "p75")


def _record_dtype() -> np.dtype:
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    kinds = {"pid": ">i4", "obsid": ">i4", "count": ">i4", "band": ">i2", "year": ">i2"}
    for col in SIGNATURE_COLUMNS:
        kind = kinds.get(col, ">f4")
        fields += [(f"len_{col}", ">i4"), (col, kind)]
    return np.dtype(fields)


RECORD_DTYPE = _record_dtype()  # 2 + 12 * 4 + 10 * 4 + 2 * 2 = 94 bytes per row on the wire


def _column(stats: Any, name: str) -> np.ndarray:
    if isinstance(stats, Mapping):
        if name not in stats:
            raise InputError(f"statistics lack column {name!r}; have {sorted(stats)}")
        return np.asarray(stats[name])
    if hasattr(stats, "columns"):  # DataFrame
        if name not in stats.columns:
            raise InputError(f"statistics lack column {name!r}; have {list(stats.columns)}")
        return np.asarray(stats[name])
    return np.asarray(getattr(stats, name))


def signature_buffer(obsid: int, year: int, stats: Mapping[str, Any]) -> tuple[bytes, int]:
    """The binary COPY stream (without header/trailer) of a scene's rows and the row count."""
    parts = []
    total = 0
    for band, st in stats.items():
        pid = _column(st, "pid")
        n = int(pid.size)
        if n == 0:
            continue
        rec = np.empty(n, dtype=RECORD_DTYPE)
        rec["nfields"] = len(SIGNATURE_COLUMNS)
        for col in SIGNATURE_COLUMNS:
            rec[f"len_{col}"] = RECORD_DTYPE[col].itemsize
        rec["pid"] = pid
        rec["obsid"] = obsid
        rec["count"] = _column(st, "count")
        for col in _FLOATS:
            rec[col] = _column(st, col)
        rec["band"] = bands_mod.code(band) if isinstance(band, str) else int(band)
        rec["year"] = year
        parts.append(rec.tobytes())
        total += n
    return b"".join(parts), total


COPY_CHUNK = 8 << 20  # bytes per write into the COPY stream


def copy_signatures(conn: Any, payload: bytes) -> None:
    """Binary-COPY a prepared payload into ``signatures``."""
    cols = ", ".join(SIGNATURE_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"COPY signatures ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(COPY_HEADER)
        if not testhooks.ARMED:  # production: plain 8 MiB writes, no hook
            for i in range(0, len(payload), COPY_CHUNK):
                cp.write(payload[i: i + COPY_CHUNK])
        else:  # fault tests: small chunks (a kill lands mid-COPY) and a hook after each
            step = COPY_CHUNK if not testhooks.COPY_PAUSE_S else RECORD_DTYPE.itemsize * 4
            for k, i in enumerate(range(0, len(payload), step)):
                cp.write(payload[i: i + step])
                conn.pgconn.flush()  # the chunk is on the server before the hook pauses or sleeps
                testhooks.copy_chunk(k)
        cp.write(COPY_TRAILER)


def write_scene(
    conn: Any,
    obsid: int,
    year: int,
    stats: Mapping[str, Any],
    scl_hist: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    aoi: str | None = None,
    parcel_year: int | None = None,
    fresh: bool = False,
) -> int:
    """Replace a scene's signatures (and SCL histograms) within the caller's transaction; returns rows written.

    ``stats`` maps band name (or code) to a table with columns pid, count, mean, std, min, max,
    p25, p50, p75 (DataFrame, dict of arrays or ``zonal.ZonalResult``); ``scl_hist`` is
    ``(pids, counts[n, 12])``. With ``aoi`` (and ``parcel_year``, default ``year``) only the rows
    of that AOI's parcels are replaced: another AOI's rows of the same scene are never touched.
    ``fresh`` says the caller holds the claim of a (scene, AOI) pair still ``pending``: no rows of it
    can exist (only the transaction that sets a done status writes them, and a pair never returns to
    ``pending``), so there is nothing to delete.
    """
    from cbmflow.core import db

    db.ensure_year_partition(conn, year)
    if aoi is None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SCENE_LOCK, int(obsid)))
        conn.execute("DELETE FROM signatures WHERE obsid = %s AND year = %s", (int(obsid), int(year)))
        conn.execute("DELETE FROM scl_histograms WHERE obsid = %s", (int(obsid),))
    elif not fresh:
        py = int(parcel_year if parcel_year is not None else year)
        mine = "pid IN (SELECT pid FROM parcels WHERE aoi = %s AND year = %s)"
        conn.execute(f"DELETE FROM signatures WHERE obsid = %s AND year = %s AND {mine}",
                     (int(obsid), int(year), aoi, py))
        conn.execute(f"DELETE FROM scl_histograms WHERE obsid = %s AND {mine}", (int(obsid), aoi, py))
    payload, n = signature_buffer(int(obsid), int(year), stats)
    if n:
        copy_signatures(conn, payload)
    if scl_hist is not None:
        pids, counts = scl_hist
        if len(pids):
            with conn.cursor() as cur, cur.copy("COPY scl_histograms (pid, obsid, counts) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "int4", "int4[]"])
                for p, c in zip(np.asarray(pids).tolist(), np.asarray(counts).tolist(), strict=True):
                    cp.write_row((p, int(obsid), c))
    log.debug("scene %s: wrote %d signature rows%s", obsid, n,
             f" and {len(scl_hist[0])} SCL histograms" if scl_hist is not None else "")
    return n
