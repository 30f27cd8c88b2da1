"""The inspector's decisions on flagged parcels (schema 011): recorded append-only, read as history.

Writes go through their own database role ``cbmflow_decider`` (INSERT and SELECT on ``decisions``
only, see ``include/sql/011_decisions.sql``); reads use the pages' read-only connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import dict_row

from cbmflow.core.config import database_dsn
from cbmflow.core.errors import InputError, NotFound, TransientError

DECIDER_ROLE = "cbmflow_decider"
OUTCOMES: dict[str, str] = {
    "confirmed": "declaration confirmed",
    "wrong_declaration": "wrong declaration (crop found)",
    "field_visit": "field visit needed",
    "photo_requested": "geotagged photo requested",
    "not_enough_evidence": "not enough evidence",
}
NOTE_MAX = 4000


@dataclass(frozen=True)
class Decision:
    """One decision as the inspector submits it."""

    pid: int
    outcome: str
    decided_by: str
    run_id: int | None = None
    corrected_crop: str | None = None
    note: str = ""

    def checked(self) -> Decision:
        """The same decision, validated (raises InputError) with its texts trimmed."""
        if self.outcome not in OUTCOMES:
            raise InputError(f"unknown outcome {self.outcome!r}; known: {', '.join(OUTCOMES)}")
        crop = (self.corrected_crop or "").strip() or None
        if crop is not None and self.outcome != "wrong_declaration":
            raise InputError("a corrected crop goes only with the outcome wrong_declaration")
        if self.outcome == "wrong_declaration" and crop is None:
            raise InputError("wrong_declaration needs the crop found (corrected_crop)")
        if crop is not None and len(crop) > 100:
            raise InputError("corrected_crop is at most 100 characters")
        note = (self.note or "").strip()
        if len(note) > NOTE_MAX:
            raise InputError(f"the note is at most {NOTE_MAX} characters")
        if not self.decided_by.strip():
            raise InputError("a decision needs the user who records it")
        return Decision(pid=self.pid, outcome=self.outcome, decided_by=self.decided_by.strip(),
                        run_id=self.run_id, corrected_crop=crop, note=note)


def decider_dsn() -> str:
    """The DSN decisions are written with: CBMFLOW_DECISIONS_DSN, else CBMFLOW_DSN as cbmflow_decider."""
    explicit = os.environ.get("CBMFLOW_DECISIONS_DSN")
    if explicit:
        return explicit
    info = conninfo.conninfo_to_dict(database_dsn())
    info["user"] = DECIDER_ROLE
    info.pop("password", None)
    return conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def available(conn: psycopg.Connection) -> bool:
    """Whether schema 011 (the decisions table) is applied."""
    row = conn.execute("SELECT to_regclass('decisions') IS NOT NULL").fetchone()
    return bool(row and row[0])


def record(conn: psycopg.Connection, d: Decision, dsn: str | None = None) -> dict[str, Any]:
    """Look the parcel up with the reader connection, then insert the decision as the decider."""
    d = d.checked()
    key = conn.execute("SELECT aoi, year, parcel_id FROM parcels WHERE pid = %s", (d.pid,)).fetchone()
    if key is None:
        raise NotFound(f"parcel pid {d.pid} does not exist")
    if d.run_id is not None:
        run = conn.execute("SELECT aoi, year FROM classification_runs WHERE run_id = %s", (d.run_id,)).fetchone()
        if run is None:
            raise NotFound(f"classification run {d.run_id} does not exist")
    try:
        wconn = psycopg.connect(dsn or decider_dsn(), autocommit=True, connect_timeout=5,
                                options="-c statement_timeout=15000")
    except psycopg.OperationalError as exc:
        raise TransientError(f"the results database is unreachable: {str(exc).splitlines()[0]}") from exc
    with wconn, wconn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO decisions (aoi, year, parcel_id, pid, run_id, outcome, corrected_crop, note, decided_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
            (key[0], key[1], key[2], d.pid, d.run_id, d.outcome, d.corrected_crop, d.note, d.decided_by),
        ).fetchone()
    assert row is not None
    return _out(row)


_COLUMNS = ("decision_id, aoi, year, parcel_id, pid, run_id, outcome, corrected_crop, note, decided_by, "
            "decided_at")


def _out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("decided_at"), datetime):
        out["decided_at"] = out["decided_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out["outcome_label"] = OUTCOMES.get(out.get("outcome") or "", out.get("outcome"))
    return out


def history(conn: psycopg.Connection, pid: int) -> list[dict[str, Any]]:
    """Every decision on the parcel's declaration (same AOI, year and parcel id), newest first."""
    if not available(conn):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT d.decision_id, d.aoi, d.year, d.parcel_id, d.pid, d.run_id, d.outcome, d.corrected_crop, "
            "d.note, d.decided_by, to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
            "AS decided_at FROM decisions d JOIN parcels p ON (p.aoi, p.year, p.parcel_id) = (d.aoi, d.year, d.parcel_id) "
            "WHERE p.pid = %s ORDER BY d.decision_id DESC",
            (pid,),
        ).fetchall()
    return [_out(r) for r in rows]
