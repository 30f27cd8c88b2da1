"""Marker runs in PostGIS: write a run atomically (a re-run replaces its own rows), read markers back.

Tables (include/sql/006_markers.sql): ``marker_runs``, ``markers``, ``compliance``. The API and
the parcel viewer read them through :func:`load_markers` and :func:`load_compliance`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from cbmflow.markers.rules import Compliance
from cbmflow.markers.signals import Marker


@dataclass(frozen=True)
class StoredMarker:
    """A marker as stored: the parcel view draws these on its timeline."""

    run_id: str
    aoi: str
    year: int
    pid: int
    marker: str
    event_date: dt.date | None
    start_date: dt.date | None
    end_date: dt.date | None
    confidence: float | None
    sources: tuple[str, ...]
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        d = asdict(self)
        for k in ("event_date", "start_date", "end_date"):
            d[k] = d[k].isoformat() if d[k] else None
        d["sources"] = list(self.sources)
        return d


@dataclass(frozen=True)
class StoredCompliance:
    """A parcel's status under one rule in one run."""

    run_id: str
    pid: int
    rule: str
    status: str
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def save_run(conn: psycopg.Connection, run_id: str, aoi: str, year: int, params: dict[str, Any],
             results: Iterable[tuple[int, Sequence[Marker], Sequence[Compliance]]], *,
             source: str = "postgis") -> dict[str, int]:
    """Replace run ``run_id`` with these per-parcel (pid, markers, compliance) results in one transaction."""
    counts: dict[str, int] = {"parcels": 0, "markers": 0, "compliance": 0}
    with conn.transaction():
        # serialise concurrent writers of the same run: the second waits, then replaces
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cbmflow_markers:{run_id}",))
        conn.execute("DELETE FROM marker_runs WHERE run_id = %s", (run_id,))
        conn.execute(
            "INSERT INTO marker_runs (run_id, aoi, year, params, source) VALUES (%s, %s, %s, %s, %s)",
            (run_id, aoi, year, json.dumps(params), source),
        )
        with conn.cursor() as cur:
            with cur.copy("COPY markers (run_id, aoi, year, pid, marker, event_date, start_date, end_date, "
                          "confidence, sources, detail) FROM STDIN") as cp:
                comp_rows = []
                for pid, markers, comp in results:
                    counts["parcels"] += 1
                    for m in markers:
                        cp.write_row((run_id, aoi, year, pid, m.marker, m.event_date, m.start_date, m.end_date,
                                      float(m.confidence), list(m.sources), json.dumps(m.detail, default=str)))
                        counts["markers"] += 1
                    comp_rows += [(run_id, aoi, year, pid, c.rule, c.status, c.detail) for c in comp]
            if comp_rows:
                cur.executemany(
                    "INSERT INTO compliance (run_id, aoi, year, pid, rule, status, detail) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)", comp_rows)
            counts["compliance"] = len(comp_rows)
        conn.execute("UPDATE marker_runs SET n_parcels = %s WHERE run_id = %s", (counts["parcels"], run_id))
    return counts


def latest_run(conn: psycopg.Connection, aoi: str, year: int) -> str | None:
    """The newest run id of an AOI's season, or None."""
    row = conn.execute(
        "SELECT run_id FROM marker_runs WHERE aoi = %s AND year = %s ORDER BY created_at DESC, run_id DESC LIMIT 1",
        (aoi, year)).fetchone()
    return str(row[0]) if row else None


def load_markers(conn: psycopg.Connection, aoi: str, year: int, pid: int, *,
                 run_id: str | None = None) -> list[StoredMarker]:
    """A parcel's markers from one run (default: the AOI season's newest run), by date."""
    run = run_id or latest_run(conn, aoi, year)
    if run is None:
        return []
    rows = conn.execute(
        "SELECT run_id, aoi, year, pid, marker, event_date, start_date, end_date, confidence, sources, detail "
        "FROM markers WHERE run_id = %s AND aoi = %s AND year = %s AND pid = %s "
        "ORDER BY coalesce(event_date, start_date), marker",
        (run, aoi, year, pid)).fetchall()
    return [StoredMarker(r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], r[6], r[7],
                         None if r[8] is None else float(r[8]), tuple(r[9] or ()), dict(r[10] or {}))
            for r in rows]


def load_compliance(conn: psycopg.Connection, aoi: str, year: int, pid: int, *,
                    run_id: str | None = None) -> list[StoredCompliance]:
    """A parcel's compliance rows from one run (default: the newest)."""
    run = run_id or latest_run(conn, aoi, year)
    if run is None:
        return []
    rows = conn.execute(
        "SELECT run_id, pid, rule, status, detail FROM compliance WHERE run_id = %s AND aoi = %s AND year = %s "
        "AND pid = %s ORDER BY rule", (run, aoi, year, pid)).fetchall()
    return [StoredCompliance(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows]


def summary(conn: psycopg.Connection, run_id: str) -> dict[str, dict[str, int]]:
    """Counts per marker type and per compliance status of a run."""
    m: dict[Any, Any] = dict(conn.execute("SELECT marker, count(*) FROM markers WHERE run_id = %s GROUP BY 1 ORDER BY 1",
                          (run_id,)).fetchall())
    c: dict[Any, Any] = dict(conn.execute("SELECT status, count(*) FROM compliance WHERE run_id = %s GROUP BY 1 ORDER BY 1",
                          (run_id,)).fetchall())
    return {"markers": {str(k): int(v) for k, v in m.items()}, "compliance": {str(k): int(v) for k, v in c.items()}}


def parcel_summaries(conn: psycopg.Connection, aoi: str, year: int, pids: Sequence[int]) -> dict[int, str]:
    """A one-line marker summary per parcel from the season's newest run (for reports)."""
    run = latest_run(conn, aoi, year)
    if run is None or not pids:
        return {}
    rows = conn.execute(
        "SELECT pid, marker, event_date, start_date FROM markers WHERE run_id = %s AND pid = ANY(%s) "
        "AND marker <> 'no_evidence' ORDER BY pid, coalesce(event_date, start_date)",
        (run, list(pids))).fetchall()
    out: dict[int, list[str]] = {}
    for pid, marker, ev, start in rows:
        d = ev or start
        out.setdefault(int(pid), []).append(f"{marker} {d.isoformat()[5:] if d else ''}".strip())
    return {k: ", ".join(v) for k, v in out.items()}
