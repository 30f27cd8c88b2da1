"""Read-only queries behind the web pages: parcels, flags, chart series, peers, markers, scenes.

Every function takes an open (read-only) connection and returns JSON-ready dicts. Optional
tables written by other parts of cbmflow (``markers``, per-scene extraction status, extra flag
columns) are read when they exist and skipped when they do not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from cbmflow.core.bands import BAND_CODES, SCL_CLOUDY
from cbmflow.core.errors import InputError, NotFound
from cbmflow.web.decisions import OUTCOMES
from cbmflow.web.decisions import available as decisions_available

# 1-based positions of the cloudy SCL classes in scl_histograms.counts (class 0 = no data: not counted).
CLOUDY_IDX = sorted(c + 1 for c in SCL_CLOUDY if c != 0)
DEFAULT_CLOUD_MAX = 0.1
PEER_SAMPLE = 60  # peers per crop used for the median and spread: the nearest parcels of that crop
FLAG_SORT_COLUMNS = (
    "parcel_id", "declared", "crop_name", "predicted", "probability", "declared_probability",
    "agree_count", "flag", "area_m2",
)
# Columns schema 009 (flag evidence) adds to parcel_flags; read when present.
_FLAG_OPTIONAL = ("declared_name", "best_other", "best_other_probability", "score", "suspicion_rank", "reason",
                  "predicted_name", "evidence")  # 009, then 012 (issue 16)
_FLAG_ORDER = "CASE f.flag WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 ELSE 2 END"


def db_now(conn: psycopg.Connection) -> None:
    """Fail fast if the connection is unusable (raises psycopg.OperationalError)."""
    conn.execute("SELECT 1")


def table_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether a table (or view) of that name exists in the search path."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def table_columns(conn: psycopg.Connection, name: str) -> set[str]:
    """The column names of a table (empty if it does not exist)."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped", (name,),
    ).fetchall()
    return {r[0] for r in rows}


def to_db(x: float | None) -> float | None:
    """Linear backscatter to decibels (None for non-positive or missing values)."""
    if x is None or not math.isfinite(x) or x <= 0:
        return None
    return round(10.0 * math.log10(x), 3)


def _num(x: Any, nd: int = 4) -> float | None:
    if x is None:
        return None
    v = float(x)
    return round(v, nd) if math.isfinite(v) else None


# --- parcels ---------------------------------------------------------------------------------

def parcel(conn: psycopg.Connection, pid: int) -> dict[str, Any]:
    """A parcel's attributes, its geometry (GeoJSON, EPSG:4326) and bounding box."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT pid, aoi, year, parcel_id, crop_code, crop_name, area_m2, source, "
            "ST_AsGeoJSON(ST_Transform(geom, 4326), 7)::json AS geometry, "
            "ST_AsGeoJSON(ST_Envelope(ST_Transform(geom, 4326)))::json AS envelope "
            "FROM parcels WHERE pid = %s",
            (pid,),
        ).fetchone()
    if row is None:
        raise NotFound(f"parcel pid {pid} does not exist")
    out = dict(row)
    ring = out.pop("envelope")["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    out["bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    out["area_m2"] = _num(out["area_m2"], 1)
    return out


def find_parcel(conn: psycopg.Connection, aoi: str, year: int, parcel_id: str) -> int:
    """The internal pid of a declared parcel id."""
    row = conn.execute(
        "SELECT pid FROM parcels WHERE aoi = %s AND year = %s AND parcel_id = %s", (aoi, year, parcel_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"parcel {parcel_id!r} not found in AOI {aoi!r} {year}")
    return int(row[0])


def search_parcels(conn: psycopg.Connection, q: str, *, aoi: str | None = None, year: int | None = None,
                   limit: int = 20, allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Parcels whose declared id starts with ``q`` (or whose pid is ``q``), exact matches first."""
    where = ["(p.parcel_id ILIKE %(prefix)s ESCAPE '\\' OR p.pid::text = %(q)s)"]
    params: dict[str, Any] = {"q": q, "prefix": _like_escape(q) + "%", "limit": limit}
    if allowed is not None:
        where.append("p.aoi = ANY(%(allowed)s)")
        params["allowed"] = sorted(allowed)
    if aoi:
        where.append("p.aoi = %(aoi)s")
        params["aoi"] = aoi
    if year:
        where.append("p.year = %(year)s")
        params["year"] = year
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(
            "SELECT p.pid, p.aoi, p.year, p.parcel_id, p.crop_code, p.crop_name FROM parcels p WHERE "
            + " AND ".join(where)
            + " ORDER BY (p.parcel_id = %(q)s) DESC, length(p.parcel_id), p.parcel_id LIMIT %(limit)s",
            params,
        ))


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def aoi_epsg(conn: psycopg.Connection, aoi: str) -> int:
    """The working EPSG code of an AOI."""
    row = conn.execute("SELECT epsg FROM aois WHERE name = %s", (aoi,)).fetchone()
    if row is None:
        raise NotFound(f"AOI {aoi!r} does not exist")
    return int(row[0])


def parcels_geojson(
    conn: psycopg.Connection, aoi: str, year: int, *, run_id: int | None = None,
    bbox: tuple[float, float, float, float] | None = None, limit: int = 5000,
) -> dict[str, Any]:
    """The AOI's parcels (simplified to 1 m, EPSG:4326) with their flag in a run, as GeoJSON."""
    epsg = aoi_epsg(conn, aoi)
    if run_id is None:
        run_id = latest_run(conn, aoi, year)
    params: dict[str, Any] = {"aoi": aoi, "year": year, "run": run_id, "epsg": epsg, "limit": limit + 1}
    where = "p.aoi = %(aoi)s AND p.year = %(year)s"
    if bbox:
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
        where += " AND p.geom && ST_Transform(ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326), %(epsg)s)"
    dec = ("(SELECT x.outcome FROM decisions x WHERE x.aoi = p.aoi AND x.year = p.year AND x.parcel_id = p.parcel_id "
           "ORDER BY x.decision_id DESC LIMIT 1)" if decisions_available(conn) else "NULL::text")
    rows = conn.execute(
        "SELECT p.pid, p.parcel_id, p.crop_code, p.crop_name, f.flag, "
        "ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(p.geom, 1.0), 4326), 6), "
        f"{dec} AS decision "
        "FROM parcels p LEFT JOIN parcel_flags f ON f.pid = p.pid AND f.run_id = %(run)s "
        f"WHERE {where} ORDER BY p.pid LIMIT %(limit)s",
        params,
    ).fetchall()
    import json

    feats = [
        {"type": "Feature", "id": r[0], "geometry": json.loads(r[5]),
         "properties": {"pid": r[0], "parcel_id": r[1], "crop_code": r[2], "crop_name": r[3],
                        "flag": r[4] or "nodata", "decision": r[6]}}
        for r in rows[:limit]
    ]
    return {"type": "FeatureCollection", "run_id": run_id, "truncated": len(rows) > limit, "features": feats}


# --- classification runs and flags -------------------------------------------------------------

def list_runs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Classification runs, newest first, with their flag counts."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = list(cur.execute(
            "SELECT r.run_id, r.aoi, r.year, to_char(r.created_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD HH24:MI') AS created_at, "
            "count(*) FILTER (WHERE f.flag = 'red') AS red, "
            "count(*) FILTER (WHERE f.flag = 'yellow') AS yellow, "
            "count(*) FILTER (WHERE f.flag = 'green') AS green "
            "FROM classification_runs r LEFT JOIN parcel_flags f ON f.run_id = r.run_id "
            "GROUP BY r.run_id ORDER BY r.run_id DESC LIMIT 200"
        ))
    return rows


def latest_run(conn: psycopg.Connection, aoi: str, year: int) -> int | None:
    """The newest classification run of an AOI and year, if any."""
    row = conn.execute(
        "SELECT max(run_id) FROM classification_runs WHERE aoi = %s AND year = %s", (aoi, year)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def get_run(conn: psycopg.Connection, run_id: int) -> dict[str, Any]:
    """One classification run (without its metrics blob)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT run_id, aoi, year, params, to_char(created_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD HH24:MI') AS created_at FROM classification_runs WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"classification run {run_id} does not exist")
    return dict(row)


SCORE_SCALE = ("Suspicion score on 0–1: 0 = the declared crop is certain, 0.5 = a tie between the declared "
               "crop and the most probable other crop, 1 = another crop is certain; it grows with the other "
               "crop's out-of-fold probability and falls with the declared crop's.")
DECISION_FILTERS = ("undecided", "decided")


@dataclass(frozen=True)
class FlagFilter:
    """The flag list's filters (also the queue's and the exports')."""

    flags: tuple[str, ...] = ("red", "yellow")
    crop: str | None = None
    predicted: str | None = None
    min_prob: float | None = None
    max_prob: float | None = None
    max_declared_prob: float | None = None
    q: str | None = None
    decision: str | None = None  # undecided, decided or one outcome


def crop_names(conn: psycopg.Connection, aoi: str | None, year: int | None) -> dict[str, str]:
    """Crop code -> crop name of an AOI and year's declarations (for reasons in words)."""
    if aoi is None or year is None:
        return {}
    return {str(code): str(name) for code, name in conn.execute(
        "SELECT DISTINCT ON (crop_code) crop_code, crop_name FROM parcels WHERE aoi = %s AND year = %s "
        "AND crop_code IS NOT NULL AND crop_name IS NOT NULL ORDER BY crop_code, crop_name", (aoi, year),
    ).fetchall()}


def _crop_label(code: Any, names: dict[str, str] | None) -> str:
    if code is None:
        return "?"
    name = (names or {}).get(str(code))
    return f"{name} ({code})" if name and name != str(code) else str(code)


def flag_reason(f: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """Why a parcel got its flag, in one sentence (the stored reason when the run has one)."""
    if f.get("reason"):
        return str(f["reason"])
    n, agree = int(f.get("n_predictions") or 0), int(f.get("agree_count") or 0)
    pred = _crop_label(f.get("predicted"), names)
    decl = _crop_label(f.get("declared_class") or f.get("declared"), names)
    p, dp = float(f.get("probability") or 0), float(f.get("declared_probability") or 0)
    if f.get("flag") == "red":
        return (f"{agree} of {n} independent out-of-fold predictions say {pred} (mean probability "
                f"{p:.0%}); the declared crop {decl} gets only {dp:.0%}.")
    if f.get("flag") == "yellow":
        if f.get("predicted") != (f.get("declared_class") or f.get("declared")):
            return (f"Uncertain: the model prefers {pred} ({p:.0%}, {agree} of {n} predictions) "
                    f"over the declared crop {decl} ({dp:.0%}), not confidently enough for red.")
        return (f"Uncertain: the declared crop {decl} is predicted, but only with {dp:.0%} or not by "
                f"every one of the {n} predictions.")
    return f"The evidence agrees with the declaration: {decl} predicted with {dp:.0%}."


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()}


def parcel_flag(conn: psycopg.Connection, pid: int, run_id: int | None) -> dict[str, Any] | None:
    """The flag of a parcel in a run (default: the newest run of its AOI and year), with its reason."""
    with conn.cursor(row_factory=dict_row) as cur:
        if run_id is None:
            row = cur.execute(
                "SELECT f.* FROM parcel_flags f JOIN parcels p ON p.pid = f.pid "
                "JOIN classification_runs r ON r.run_id = f.run_id AND r.aoi = p.aoi AND r.year = p.year "
                "WHERE f.pid = %s ORDER BY f.run_id DESC LIMIT 1", (pid,),
            ).fetchone()
        else:
            row = cur.execute("SELECT f.* FROM parcel_flags f WHERE f.pid = %s AND f.run_id = %s",
                              (pid, run_id)).fetchone()
        if row is None:
            return None
        place = cur.execute("SELECT aoi, year FROM parcels WHERE pid = %s", (pid,)).fetchone()
    out = _clean(row)
    names = crop_names(conn, place["aoi"], place["year"]) if place else {}
    out["reason"] = flag_reason(out, names)
    stored_other_name = out.get("predicted_name")  # schema 012: the best other crop's name (NULL before)
    out["predicted_name"] = (stored_other_name if out.get("best_other") in (None, out.get("predicted")) else None) or \
        names.get(str(out.get("predicted")))
    out["declared_name"] = out.get("declared_name") or names.get(str(out.get("declared")))
    if out.get("best_other"):
        out["best_other_name"] = names.get(str(out["best_other"])) or stored_other_name
    out["rank"] = _rank_of(conn, int(out["run_id"]), pid)
    out["score_scale"] = SCORE_SCALE
    return out


def _rank_expr(cols: set[str]) -> sql.Composable:
    """The suspicion order of a run: the stored rank, else red before yellow by score and probabilities."""
    keys = []
    if "suspicion_rank" in cols:
        keys.append("f.suspicion_rank ASC NULLS LAST")
    keys.append(_FLAG_ORDER)
    if "score" in cols:
        keys.append("f.score DESC NULLS LAST")
    keys += ["f.declared_probability ASC NULLS LAST", "f.probability DESC NULLS LAST", "f.pid"]
    return sql.SQL(", ".join(keys))


def _rank_of(conn: psycopg.Connection, run_id: int, pid: int) -> int | None:
    cols = table_columns(conn, "parcel_flags")
    row = conn.execute(sql.SQL(
        "SELECT rank FROM (SELECT f.pid, row_number() OVER (ORDER BY {}) AS rank FROM parcel_flags f "
        "WHERE f.run_id = %s) r WHERE r.pid = %s").format(_rank_expr(cols)), (run_id, pid)).fetchone()
    return int(row[0]) if row else None


def _flag_filters(flt: FlagFilter, has_decisions: bool) -> tuple[sql.Composable, dict[str, Any]]:
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {}
    if flt.flags:
        bad = [f for f in flt.flags if f not in ("red", "yellow", "green")]
        if bad:
            raise InputError(f"unknown flag(s) {bad}; known: red, yellow, green")
        where.append(sql.SQL("q.flag = ANY(%(flags)s)"))
        params["flags"] = list(flt.flags)
    if flt.crop:
        where.append(sql.SQL("(q.declared = %(crop)s OR q.crop_name = %(crop)s)"))
        params["crop"] = flt.crop
    if flt.predicted:
        where.append(sql.SQL("q.predicted = %(pred)s"))
        params["pred"] = flt.predicted
    if flt.min_prob is not None:
        where.append(sql.SQL("q.probability >= %(pmin)s"))
        params["pmin"] = flt.min_prob
    if flt.max_prob is not None:
        where.append(sql.SQL("q.probability <= %(pmax)s"))
        params["pmax"] = flt.max_prob
    if flt.max_declared_prob is not None:
        where.append(sql.SQL("q.declared_probability <= %(dpmax)s"))
        params["dpmax"] = flt.max_declared_prob
    if flt.q:
        where.append(sql.SQL("q.parcel_id ILIKE %(q)s ESCAPE '\\'"))
        params["q"] = _like_escape(flt.q) + "%"
    if flt.decision:
        if flt.decision not in DECISION_FILTERS and flt.decision not in OUTCOMES:
            raise InputError(f"unknown decision filter {flt.decision!r}; known: "
                             f"{', '.join(DECISION_FILTERS + tuple(OUTCOMES))}")
        if flt.decision == "undecided":
            where.append(sql.SQL("q.decision IS NULL"))
        elif flt.decision == "decided":
            where.append(sql.SQL("q.decision IS NOT NULL"))
        else:
            where.append(sql.SQL("q.decision = %(decision)s"))
            params["decision"] = flt.decision
    return sql.SQL(" AND ").join(where), params


def _queue_cte(conn: psycopg.Connection, *, geometry_epsg: int | None = None) -> tuple[sql.Composable, list[str], bool]:
    """The run's flags with parcel attributes, suspicion rank and latest decision (CTE ``q``)."""
    cols = table_columns(conn, "parcel_flags")
    extra = [c for c in _FLAG_OPTIONAL if c in cols]
    has_dec = decisions_available(conn)
    extra_sql = sql.SQL("").join(sql.SQL(", f.{}").format(sql.Identifier(c)) for c in extra)
    dec_cols = sql.SQL(
        ", d.outcome AS decision, d.corrected_crop, d.note AS decision_note, d.decided_by, "
        "to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS decided_at"
        if has_dec else
        ", NULL::text AS decision, NULL::text AS corrected_crop, NULL::text AS decision_note, "
        "NULL::text AS decided_by, NULL::text AS decided_at")
    dec_join = sql.SQL(
        " LEFT JOIN LATERAL (SELECT * FROM decisions x WHERE x.aoi = p.aoi AND x.year = p.year "
        "AND x.parcel_id = p.parcel_id ORDER BY x.decision_id DESC LIMIT 1) d ON TRUE" if has_dec else "")
    geom = (sql.SQL(", ST_AsBinary(ST_Transform(p.geom, {})) AS wkb").format(sql.Literal(geometry_epsg))
            if geometry_epsg else sql.SQL(""))
    cte = sql.SQL(
        "WITH q AS (SELECT f.run_id, f.pid, f.parcel_id, f.declared, p.crop_name, f.declared_class, f.predicted, "
        "f.probability, f.declared_probability, f.agree_count, f.n_predictions, f.flag, "
        "round(p.area_m2)::float8 AS area_m2{extra}, row_number() OVER (ORDER BY {rank})::int AS rank{dec}{geom} "
        "FROM parcel_flags f JOIN parcels p ON p.pid = f.pid{join} WHERE f.run_id = %(run)s)"
    ).format(extra=extra_sql, rank=_rank_expr(cols), dec=dec_cols, geom=geom, join=dec_join)
    return cte, extra, has_dec


def _sort_key(sort: str, order: str, sortable: tuple[str, ...]) -> sql.Composable:
    if sort not in sortable:
        raise InputError(f"cannot sort by {sort!r}; sortable: {', '.join(sortable)}")
    if order not in ("asc", "desc"):
        raise InputError("order must be asc or desc")
    direction = sql.SQL("DESC" if order == "desc" else "ASC")
    if sort == "flag":
        return sql.SQL("CASE q.flag WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 ELSE 2 END {} NULLS LAST, q.rank").format(direction)
    return sql.SQL("q.{} {} NULLS LAST, q.rank").format(sql.Identifier(sort), direction)


def _sortable(extra: list[str]) -> tuple[str, ...]:
    return ("rank",) + FLAG_SORT_COLUMNS + tuple(c for c in extra if c not in ("reason", "evidence", "suspicion_rank")) + (
        "decision", "decided_at")


def list_flags(
    conn: psycopg.Connection, run_id: int, flt: FlagFilter | None = None, *, sort: str = "rank",
    order: str = "asc", limit: int = 100, offset: int = 0,
) -> dict[str, Any]:
    """Flags of a run, filtered and sorted (default: suspicion rank), with their latest decision."""
    flt = flt or FlagFilter()
    run = get_run(conn, run_id)
    cte, extra, has_dec = _queue_cte(conn)
    sortable = _sortable(extra)
    key = _sort_key(sort, order, sortable)
    where, params = _flag_filters(flt, has_dec)
    params.update(run=run_id, limit=limit, offset=offset)
    names = crop_names(conn, run.get("aoi"), run.get("year"))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = [_clean(r) for r in cur.execute(
            cte + sql.SQL(" SELECT *, count(*) OVER () AS total_ FROM q WHERE {} ORDER BY {} "
                          "LIMIT %(limit)s OFFSET %(offset)s").format(where, key), params)]
        if rows:
            total = int(rows[0]["total_"])
        else:
            one = cur.execute(cte + sql.SQL(" SELECT count(*) AS n FROM q WHERE {}").format(where), params).fetchone()
            total = int(one["n"]) if one else 0
        crops = cur.execute(
            "SELECT f.declared, min(p.crop_name) AS crop_name, count(*) AS n FROM parcel_flags f "
            "JOIN parcels p ON p.pid = f.pid WHERE f.run_id = %s GROUP BY f.declared ORDER BY n DESC",
            (run_id,),
        ).fetchall()
    for r in rows:
        r.pop("total_", None)
        r["reason"] = flag_reason(r, names)
        r["predicted_name"] = r.get("predicted_name") or names.get(str(r.get("predicted")))
    return {"run": run, "total": total, "rows": rows, "crops": crops, "decisions": has_dec,
            "columns": list(rows[0].keys()) if rows else [], "sortable": list(sortable),
            "sort": sort, "order": order}


def queue_neighbours(conn: psycopg.Connection, run_id: int, pid: int, flt: FlagFilter | None = None, *,
                     sort: str = "rank", order: str = "asc") -> dict[str, Any]:
    """The parcel's place in the filtered, sorted queue and the previous and next parcels."""
    flt = flt or FlagFilter(flags=("red",))
    get_run(conn, run_id)
    cte, extra, has_dec = _queue_cte(conn)
    key = _sort_key(sort, order, _sortable(extra))
    where, params = _flag_filters(flt, has_dec)
    params.update(run=run_id, pid=pid)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(cte + sql.SQL(
            ", o AS (SELECT q.pid, q.parcel_id, q.rank, row_number() OVER (ORDER BY {key}) AS pos FROM q WHERE {where}) "
            "SELECT pid, parcel_id, rank, pos, count(*) OVER () AS total FROM o "
            "WHERE pos BETWEEN coalesce((SELECT pos FROM o WHERE pid = %(pid)s), 1) - 1 "
            "AND coalesce((SELECT pos FROM o WHERE pid = %(pid)s), 0) + 1 ORDER BY pos"
        ).format(key=key, where=where), params).fetchall()
    total = int(rows[0]["total"]) if rows else 0
    me = next((r for r in rows if r["pid"] == pid), None)
    brief = lambda r: {"pid": r["pid"], "parcel_id": r["parcel_id"], "rank": r["rank"]}  # noqa: E731
    if me is None:  # not (or no longer) in the queue: next is its first parcel
        return {"position": None, "total": total, "prev": None,
                "next": brief(rows[0]) if rows else None}
    prev = next((r for r in rows if r["pos"] == me["pos"] - 1), None)
    nxt = next((r for r in rows if r["pos"] == me["pos"] + 1), None)
    return {"position": int(me["pos"]), "total": total, "prev": brief(prev) if prev else None,
            "next": brief(nxt) if nxt else None}


def export_flags(conn: psycopg.Connection, run_id: int, flt: FlagFilter | None = None, *,
                 sort: str = "rank", order: str = "asc") -> tuple[list[dict[str, Any]], int]:
    """Every flag row matching the filters (queue order), with the geometry as WKB in the AOI's CRS."""
    flt = flt or FlagFilter()
    run = get_run(conn, run_id)
    epsg = aoi_epsg(conn, run["aoi"]) if run.get("aoi") else 4326
    cte, extra, has_dec = _queue_cte(conn, geometry_epsg=epsg)
    key = _sort_key(sort, order, _sortable(extra))
    where, params = _flag_filters(flt, has_dec)
    params["run"] = run_id
    names = crop_names(conn, run.get("aoi"), run.get("year"))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = [_clean(r) for r in cur.execute(
            cte + sql.SQL(" SELECT * FROM q WHERE {} ORDER BY {}").format(where, key), params)]
    for r in rows:
        r["reason"] = flag_reason(r, names)  # the same sentence the parcel page shows
        r["predicted_name"] = r.get("predicted_name") or names.get(str(r.get("predicted")))
    return rows, epsg


# --- the timeline ------------------------------------------------------------------------------

def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def chart(conn: psycopg.Connection, pid: int, *, run_id: int | None = None,
          cloud_max: float = DEFAULT_CLOUD_MAX) -> dict[str, Any]:
    """Everything the parcel timeline draws: S1 dB by orbit, VH/VV, coherence, NDVI, periods, peers, markers."""
    p = parcel(conn, pid)
    year = int(p["year"])
    codes = {v: k for k, v in BAND_CODES.items()}
    rows = conn.execute(
        "SELECT c.sensing_time, c.id, c.product_id, c.card_type, c.orbit_direction, c.relative_orbit, "
        "s.band, s.count, s.mean, s.p25, s.p75 FROM signatures s JOIN catalogue c ON c.id = s.obsid "
        "WHERE s.pid = %s AND s.year = %s AND s.band = ANY(%s) ORDER BY c.sensing_time, s.band",
        (pid, year, [BAND_CODES[b] for b in ("VV", "VH", "COH_VV", "COH_VH", "B04", "B08")]),
    ).fetchall()
    s1: list[dict[str, Any]] = []
    coh: list[dict[str, Any]] = []
    by_obs: dict[int, dict[str, Any]] = {}
    for t, obsid, product, _card, orbit, rel, band, count, mean, p25, p75 in rows:
        name = codes[band]
        if count == 0 or mean is None or not math.isfinite(mean):
            continue
        if name in ("VV", "VH"):
            s1.append({"date": _iso(t), "obsid": obsid, "product_id": product, "orbit": orbit,
                       "relative_orbit": rel, "band": name, "count": count, "mean_db": to_db(mean),
                       "p25_db": to_db(p25), "p75_db": to_db(p75)})
        elif name.startswith("COH"):
            coh.append({"date": _iso(t), "obsid": obsid, "product_id": product, "band": name,
                        "count": count, "mean": _num(mean), "p25": _num(p25), "p75": _num(p75)})
        else:
            o = by_obs.setdefault(obsid, {"date": _iso(t), "obsid": obsid, "product_id": product})
            o[name] = float(mean)
    # VH/VV per acquisition (a difference of dB values), split by orbit like the bands.
    pairs: dict[int, dict[str, Any]] = defaultdict(dict)
    for o in s1:
        pairs[o["obsid"]][o["band"]] = o
    ratio = [
        {"date": d["VV"]["date"], "obsid": k, "orbit": d["VV"]["orbit"],
         "value_db": round(d["VH"]["mean_db"] - d["VV"]["mean_db"], 3)}
        for k, d in pairs.items()
        if "VV" in d and "VH" in d and d["VV"]["mean_db"] is not None and d["VH"]["mean_db"] is not None
    ]
    ratio.sort(key=lambda r: r["date"])
    hist: dict[int, list[int]] = dict(conn.execute("SELECT obsid, counts FROM scl_histograms WHERE pid = %s", (pid,)).fetchall())
    ndvi = []
    for obsid, o in by_obs.items():
        red, nir = o.get("B04"), o.get("B08")
        if red is None or nir is None or (red + nir) == 0:
            continue
        frac = cloud_fraction(hist.get(obsid))
        ndvi.append({"date": o["date"], "obsid": obsid, "product_id": o["product_id"],
                     "value": round((nir - red) / (nir + red), 4),
                     "cloud_fraction": None if frac is None else round(frac, 3),
                     "cloudy": None if frac is None else frac > cloud_max})
    ndvi.sort(key=lambda r: r["date"])
    flag = parcel_flag(conn, pid, run_id)
    other = None
    if flag:
        other = flag.get("best_other") or (flag.get("predicted") if flag.get("predicted") != flag.get("declared") else None)
    return {
        "pid": pid, "year": year, "cloud_max": cloud_max,
        "units": {"s1": "dB (γ⁰, 10·log10 of the parcel mean)", "ratio": "dB (VH − VV)",
                  "coherence": "0–1", "ndvi": "NDVI (B08 − B04) / (B08 + B04) of the parcel means"},
        "s1": s1, "ratio": ratio, "coherence": coh, "ndvi": ndvi,
        "periods": periods(conn, p["aoi"], year, pid),
        "peers": peers(conn, p, cloud_max=cloud_max),
        "peers_predicted": peers(conn, p, crop=str(other), cloud_max=cloud_max) if other else None,
        "markers": markers(conn, pid, p["aoi"], year),
        "flag": flag,
    }


def seasons(conn: psycopg.Connection, pid: int) -> list[dict[str, Any]]:
    """The same field in other years of the AOI: same declared parcel id, else overlapping by half its area."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = list(cur.execute(
            "WITH me AS (SELECT * FROM parcels WHERE pid = %(pid)s) "
            "SELECT o.pid, o.year, o.parcel_id, o.crop_code, o.crop_name, round(o.area_m2)::float8 AS area_m2, "
            "(o.parcel_id = me.parcel_id) AS same_id, "
            "(SELECT f.flag FROM parcel_flags f JOIN classification_runs r ON r.run_id = f.run_id "
            " AND r.aoi = o.aoi AND r.year = o.year WHERE f.pid = o.pid ORDER BY f.run_id DESC LIMIT 1) AS flag "
            "FROM parcels o, me WHERE o.aoi = me.aoi AND o.year <> me.year AND (o.parcel_id = me.parcel_id "
            "OR (o.geom && me.geom AND ST_Area(ST_Intersection(o.geom, me.geom)) > 0.5 * LEAST(ST_Area(o.geom), ST_Area(me.geom)))) "
            "ORDER BY o.year DESC, same_id DESC, o.pid LIMIT 20",
            {"pid": pid},
        ))
    if decisions_available(conn):
        for r in rows:
            d = conn.execute("SELECT outcome FROM decisions WHERE aoi = (SELECT aoi FROM parcels WHERE pid = %s) "
                             "AND year = %s AND parcel_id = %s ORDER BY decision_id DESC LIMIT 1",
                             (pid, r["year"], r["parcel_id"])).fetchone()
            r["decision"] = d[0] if d else None
    return rows


def cloud_fraction(counts: list[int] | None) -> float | None:
    """The cloudy share of a parcel's pixels with data, from its SCL histogram (None if unknown)."""
    if not counts:
        return None
    valid = sum(counts[1:])
    if valid <= 0:
        return None
    return sum(counts[i - 1] for i in CLOUDY_IDX) / valid


def periods(conn: psycopg.Connection, aoi: str, year: int, pid: int) -> list[dict[str, Any]]:
    """The parcel's period means the classifier used (S1 in dB, coherence linear), with their dates."""
    codes = {v: k for k, v in BAND_CODES.items()}
    out = []
    for band, period, days, mean, n_obs in conn.execute(
        "SELECT band, period, period_days, mean, n_obs FROM period_means WHERE aoi = %s AND year = %s "
        "AND pid = %s AND band = ANY(%s) ORDER BY band, period",
        (aoi, year, pid, [BAND_CODES[b] for b in ("VV", "VH", "COH_VV", "COH_VH")]),
    ):
        start = date(year, 1, 1) + timedelta(days=int(period) * int(days))
        end = min(start + timedelta(days=int(days)), date(year + 1, 1, 1))
        name = codes[band]
        value = to_db(mean) if name in ("VV", "VH") else _num(mean)
        if value is None:
            continue
        out.append({"band": name, "period": period, "start": start.isoformat(), "end": end.isoformat(),
                    "value": value, "n_obs": n_obs})
    return out


def peers(conn: psycopg.Connection, p: dict[str, Any], *, crop: str | None = None,
          cloud_max: float = DEFAULT_CLOUD_MAX) -> dict[str, Any]:
    """Median and p25–p75, per acquisition, of the nearest parcels declaring a crop in the AOI.

    ``crop`` defaults to the parcel's declared crop; the peers are the PEER_SAMPLE parcels of that
    crop nearest to this one (the parcel itself excluded), so they share its weather and soils.
    """
    crop_col = "crop_code" if p.get("crop_code") is not None else "crop_name"
    crop = crop if crop is not None else p.get(crop_col)
    if crop is None:
        return {"crop": None, "crop_name": None, "n_parcels": 0, "VV": [], "VH": [], "NDVI": []}
    peer_pids = [r[0] for r in conn.execute(
        sql.SQL("SELECT pid FROM parcels WHERE aoi = %s AND year = %s AND {} = %s AND pid <> %s "
                "ORDER BY geom <-> (SELECT geom FROM parcels WHERE pid = %s), pid LIMIT %s").format(
                    sql.Identifier(crop_col)),
        (p["aoi"], p["year"], crop, p["pid"], p["pid"], PEER_SAMPLE),
    )]
    name = conn.execute(sql.SQL("SELECT min(crop_name) FROM parcels WHERE aoi = %s AND year = %s AND {} = %s").format(
        sql.Identifier(crop_col)), (p["aoi"], p["year"], crop)).fetchone()
    out: dict[str, Any] = {"crop": crop, "crop_name": name[0] if name else None, "n_parcels": len(peer_pids),
                           "nearest": True, "VV": [], "VH": [], "NDVI": []}
    if not peer_pids:
        return out
    for t, band, orbit, n, med, q1, q3 in conn.execute(
        "SELECT c.sensing_time, s.band, c.orbit_direction, count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY s.mean), "
        "percentile_cont(0.25) WITHIN GROUP (ORDER BY s.mean), "
        "percentile_cont(0.75) WITHIN GROUP (ORDER BY s.mean) "
        "FROM signatures s JOIN catalogue c ON c.id = s.obsid WHERE s.pid = ANY(%s) AND s.year = %s "
        "AND s.band IN (1, 2) AND s.count > 0 AND s.mean > 0 GROUP BY c.id, s.band ORDER BY c.sensing_time",
        (peer_pids, p["year"]),
    ):
        out["VV" if band == 1 else "VH"].append(
            {"date": _iso(t), "orbit": orbit, "n": n, "median": to_db(med), "p25": to_db(q1), "p75": to_db(q3)})
    for t, n, med, q1, q3 in conn.execute(
        "WITH v AS (SELECT s.obsid, s.pid, max(s.mean) FILTER (WHERE s.band = 13) AS red, "
        "max(s.mean) FILTER (WHERE s.band = 17) AS nir FROM signatures s "
        "WHERE s.pid = ANY(%(pids)s) AND s.year = %(year)s AND s.band IN (13, 17) AND s.count > 0 "
        "GROUP BY s.obsid, s.pid), "
        "clear AS (SELECT v.* FROM v LEFT JOIN scl_histograms h ON h.pid = v.pid AND h.obsid = v.obsid "
        "WHERE v.red + v.nir > 0 AND (h.pid IS NULL OR (SELECT sum(x) FROM unnest(h.counts[2:12]) x) = 0 "
        "OR (SELECT sum(h.counts[i]) FROM unnest(%(cloudy)s::int[]) i)::float8 "
        "/ (SELECT sum(x) FROM unnest(h.counts[2:12]) x) <= %(cmax)s)) "
        "SELECT c.sensing_time, count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY (nir - red) / (nir + red)), "
        "percentile_cont(0.25) WITHIN GROUP (ORDER BY (nir - red) / (nir + red)), "
        "percentile_cont(0.75) WITHIN GROUP (ORDER BY (nir - red) / (nir + red)) "
        "FROM clear JOIN catalogue c ON c.id = clear.obsid GROUP BY c.id ORDER BY c.sensing_time",
        {"pids": peer_pids, "year": p["year"], "cloudy": CLOUDY_IDX, "cmax": cloud_max},
    ):
        out["NDVI"].append({"date": _iso(t), "n": n, "median": _num(med), "p25": _num(q1), "p75": _num(q3)})
    return out


def markers(conn: psycopg.Connection, pid: int, aoi: str, year: int) -> list[dict[str, Any]]:
    """Activity markers (mowing, ploughing, harvest ...) of the parcel's newest marker run, if any."""
    if not table_exists(conn, "markers"):
        return []
    cols = table_columns(conn, "markers")
    run: Any = None
    if "run_id" in cols and table_exists(conn, "marker_runs"):
        from cbmflow.markers.store import latest_run as latest_marker_run

        run = latest_marker_run(conn, aoi, year)  # the one definition of "the newest marker run"
    with conn.cursor(row_factory=dict_row) as cur:
        if run is not None:
            rows = list(cur.execute("SELECT * FROM markers WHERE pid = %s AND run_id = %s", (pid, run)))
        else:
            rows = list(cur.execute("SELECT * FROM markers WHERE pid = %s", (pid,)))
    out = []
    for r in rows:
        item = {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in r.items()}
        if isinstance(item.get("confidence"), float):
            item["confidence"] = _num(item["confidence"], 3)
        out.append(item)
    out.sort(key=lambda m: str(m.get("event_date") or m.get("start_date") or ""))
    return out


# --- scenes that failed or gave no data ----------------------------------------------------------

def scene_problems(conn: psycopg.Connection, *, aoi: str | None = None, limit: int = 500) -> dict[str, Any]:
    """Scenes that failed or gave no data, per AOI and day, with their error and how to re-run them."""
    status_table = _extraction_status_table(conn)
    if status_table:
        out = _scene_problems_from_status(conn, status_table, aoi=aoi, limit=limit)
        # CARD failures (no raster yet) have no per-AOI extraction row: from the catalogue
        card = _scene_problems_from_catalogue(conn, aoi=aoi, limit=limit, card_only=True)
        out["items"] = sorted(out["items"] + card["items"], key=lambda i: (i["day"], i["aoi"] or ""),
                              reverse=True)[:limit]
        return out
    return _scene_problems_from_catalogue(conn, aoi=aoi, limit=limit)


def _extraction_status_table(conn: psycopg.Connection) -> str | None:
    for name in ("extractions", "extraction_status"):  # 005 (i8-truth) names it extractions
        cols = table_columns(conn, name)
        if {"aoi", "status"} <= cols and ({"obsid"} & cols or {"scene_id"} & cols):
            return name
    return None


def _rerun(card_type: str, product_type: str, has_assets: bool, day: str, aoi: str | None,
           year: int | None) -> dict[str, Any]:
    start = date.fromisoformat(day)
    end = (start + timedelta(days=1)).isoformat()
    if has_assets or product_type.startswith("CARD"):
        conf: dict[str, Any] = {"aoi": aoi, "year": year, "start": day, "end": end,
                                "card_type": card_type, "reprocess": True}
        dag = "extract_signatures"
    else:
        dag = {"bs": "card_s1_bs", "c6": "card_s1_coh6", "s2": "card_s2_l2a"}[card_type]
        conf = {"start": day, "end": end, "reprocess": True}
    return {"dag_id": dag, "conf": conf}


def _scene_problems_from_status(conn: psycopg.Connection, table: str, *, aoi: str | None,
                                limit: int) -> dict[str, Any]:
    cols = table_columns(conn, table)
    key = "obsid" if "obsid" in cols else "scene_id"
    err = next((c for c in ("error", "last_error", "message", "detail") if c in cols), None)
    upd = next((c for c in ("updated_at", "finished_at", "created_at") if c in cols), None)
    query = sql.SQL(
        "SELECT t.aoi, t.status, {err} AS error, {upd} AS updated_at, c.id, c.product_id, c.card_type, "
        "c.product_type, c.sensing_time, c.assets <> '{{}}'::jsonb AS has_assets, c.status AS scene_status "
        "FROM {tbl} t JOIN catalogue c ON c.id = t.{key} "
        "WHERE t.status IN ('failed', 'no_data') AND (%(aoi)s::text IS NULL OR t.aoi = %(aoi)s) "
        "ORDER BY c.sensing_time DESC, t.aoi LIMIT %(limit)s"
    ).format(err=sql.SQL("t.{}").format(sql.Identifier(err)) if err else sql.SQL("NULL::text"),
             upd=sql.SQL("t.{}").format(sql.Identifier(upd)) if upd else sql.SQL("NULL::timestamptz"),
             tbl=sql.Identifier(table), key=sql.Identifier(key))
    rows = conn.execute(query, {"aoi": aoi, "limit": limit}).fetchall()
    items = []
    for a, status, error, updated, obsid, product, card, ptype, t, has_assets, scene_status in rows:
        day = t.date().isoformat()
        items.append({"aoi": a, "day": day, "status": status, "error": error, "obsid": obsid,
                      "product_id": product, "card_type": card, "product_type": ptype,
                      "scene_status": scene_status,
                      "updated_at": _iso(updated) if isinstance(updated, datetime) else None,
                      "rerun": _rerun(card, ptype, bool(has_assets), day, a, t.year)})
    return {"source": table, "items": items}


def _scene_problems_from_catalogue(conn: psycopg.Connection, *, aoi: str | None, limit: int,
                                   card_only: bool = False) -> dict[str, Any]:
    # Without a per-(scene, AOI) status table: failed catalogue rows, and extracted scenes over an
    # AOI that wrote no signature for any of its parcels ("no_data"), AOI by footprint overlap.
    rows = conn.execute(
        "WITH ext AS (SELECT p.aoi, p.year, ST_Transform(ST_SetSRID(ST_Extent(p.geom)::geometry, a.epsg), 4326) AS g "
        "  FROM parcels p JOIN aois a ON a.name = p.aoi WHERE (%(aoi)s::text IS NULL OR p.aoi = %(aoi)s) "
        "  GROUP BY p.aoi, p.year, a.epsg), "
        "cand AS (SELECT c.*, e.aoi AS aoi_name, e.year AS aoi_year FROM catalogue c "
        "  LEFT JOIN ext e ON c.footprint IS NOT NULL AND ST_Intersects(c.footprint, e.g) "
        "    AND e.year = extract(year FROM c.sensing_time AT TIME ZONE 'UTC') "
        "  WHERE (c.status = 'failed' AND (NOT %(card_only)s OR c.assets = '{}'::jsonb)) "
        "     OR (NOT %(card_only)s AND c.status = 'extracted' AND e.aoi IS NOT NULL)) "
        "SELECT cand.aoi_name, CASE WHEN cand.status = 'failed' THEN 'failed' ELSE 'no_data' END, "
        "  cand.last_error, cand.updated_at, cand.id, cand.product_id, cand.card_type, cand.product_type, "
        "  cand.sensing_time, cand.assets <> '{}'::jsonb, cand.status, cand.attempts "
        "FROM cand WHERE (%(aoi)s::text IS NULL OR cand.aoi_name = %(aoi)s) AND (cand.status = 'failed' OR NOT EXISTS ("
        "  SELECT 1 FROM signatures s JOIN parcels p ON p.pid = s.pid "
        "  WHERE s.obsid = cand.id AND p.aoi = cand.aoi_name)) "
        "ORDER BY cand.sensing_time DESC, cand.aoi_name LIMIT %(limit)s",
        {"aoi": aoi, "limit": limit, "card_only": card_only},
    ).fetchall()
    items = []
    for a, status, error, updated, obsid, product, card, ptype, t, has_assets, scene_status, attempts in rows:
        day = t.date().isoformat()
        if status == "no_data" and not error:
            error = "extracted, but no parcel of the AOI got a value (footprint or no-data pixels)"
        items.append({"aoi": a, "day": day, "status": status, "error": error, "obsid": obsid,
                      "product_id": product, "card_type": card, "product_type": ptype,
                      "scene_status": scene_status, "attempts": attempts,
                      "updated_at": _iso(updated) if isinstance(updated, datetime) else None,
                      "rerun": _rerun(card, ptype, bool(has_assets), day, a, t.year)})
    return {"source": "catalogue", "items": items}


def chip_scenes(conn: psycopg.Connection, pid: int) -> list[dict[str, Any]]:
    """Scenes with a CARD raster over the parcel (those that gave it a signature), by date."""
    p = conn.execute("SELECT year FROM parcels WHERE pid = %s", (pid,)).fetchone()
    if p is None:
        raise NotFound(f"parcel pid {pid} does not exist")
    rows = conn.execute(
        "SELECT c.id, c.sensing_time, c.card_type, c.product_id, c.orbit_direction, c.assets "
        "FROM catalogue c WHERE c.card_type IN ('bs', 's2') AND c.assets <> '{}'::jsonb AND EXISTS ("
        "SELECT 1 FROM signatures s WHERE s.pid = %s AND s.year = %s AND s.obsid = c.id) "
        "ORDER BY c.sensing_time",
        (pid, p[0]),
    ).fetchall()
    out = []
    for obsid, t, card, product, orbit, assets in rows:
        needed = ("VV",) if card == "bs" else ("B04", "B03", "B02")
        if not all(b in (assets or {}) for b in needed):
            continue
        out.append({"obsid": obsid, "date": _iso(t), "card_type": card, "product_id": product,
                    "orbit": orbit, "bands": list(needed)})
    return out


def chip_source(conn: psycopg.Connection, pid: int, obsid: int) -> tuple[dict[str, str], str, int, str]:
    """(assets, card type, parcel EPSG, parcel WKT) for rendering a chip of a parcel on a scene."""
    row = conn.execute(
        "SELECT c.assets, c.card_type, ST_SRID(p.geom), ST_AsText(p.geom) FROM catalogue c, parcels p "
        "WHERE c.id = %s AND p.pid = %s", (obsid, pid),
    ).fetchone()
    if row is None:
        raise NotFound(f"no scene {obsid} or parcel {pid}")
    assets, card, srid, wkt = row
    if card not in ("bs", "s2") or not assets:
        raise NotFound(f"scene {obsid} has no CARD raster to show")
    return dict(assets), card, int(srid), wkt
