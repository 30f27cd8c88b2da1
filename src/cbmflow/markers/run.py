"""Marker runs end to end: signals in (PostGIS or JRC CSV files), markers and compliance out.

Used by the ``detect_markers`` DAG, ``cbmflow markers`` and the demo.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cbmflow.core.errors import InputError
from cbmflow.markers import DEFAULTS, MarkerParams, detect_parcel
from cbmflow.markers.rules import Compliance, Rule, evaluate_rules, load_rules
from cbmflow.markers.signals import Marker, ParcelSignals

log = logging.getLogger(__name__)

CSV_COLUMNS = ("parcel", "pid", "marker", "event_date", "start_date", "end_date", "confidence", "sources", "detail")


def detect_all(signals: Sequence[ParcelSignals], params: MarkerParams = DEFAULTS,
               rules: Sequence[Rule] | None = None) -> list[tuple[ParcelSignals, list[Marker], list[Compliance]]]:
    """Markers and compliance of every parcel."""
    rules = load_rules() if rules is None else rules
    out = []
    for sig in signals:
        found = detect_parcel(sig, params)
        out.append((sig, found, evaluate_rules(rules, sig.year, sig.crop_group, sig.crop_code, found)))
    return out


def run_id_for(aoi: str, year: int, tag: str) -> str:
    """A run id from the AOI, season and a tag (a DAG run id or a timestamp), safe for logs and URLs."""
    return re.sub(r"[^A-Za-z0-9_.:+-]", "_", f"{aoi}_{year}_{tag}")


def detect_season(aoi: str, year: int, *, run_id: str | None = None, overrides: dict[str, Any] | None = None,
                  rules_path: str | None = None, dsn: str | None = None, batch_size: int = 2000) -> dict[str, Any]:
    """Detect markers for every parcel of an AOI's season from PostGIS and store the run; returns its summary.

    Parcels are read ``batch_size`` at a time on a second connection while the run is written in
    one transaction (COPY), so memory stays bounded for a national AOI and the run still appears,
    or is replaced, atomically.
    """
    from cbmflow.core import db
    from cbmflow.core.errors import NotFound
    from cbmflow.markers import io, store

    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    params = DEFAULTS.with_overrides(overrides or {})
    rules = load_rules(rules_path)
    run_id = run_id or run_id_for(aoi, year, dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S"))
    seen = {"with_data": 0}

    def results(read: Any) -> Iterator[tuple[int, list[Marker], list[Compliance]]]:
        pids = [int(r[0]) for r in read.execute(
            "SELECT pid FROM parcels WHERE aoi = %s AND year = %s ORDER BY pid", (aoi, year))]
        for i in range(0, len(pids), batch_size):
            for sig, found, comp in detect_all(io.read_db(read, aoi, year, pids=pids[i:i + batch_size]), params, rules):
                seen["with_data"] += int(sig.s2 is not None or bool(sig.s1))
                yield int(sig.pid or 0), found, comp
            log.info("markers %s %d: %d of %d parcels", aoi, year, min(i + batch_size, len(pids)), len(pids))

    with db.connect(dsn) as read, db.connect(dsn) as conn:
        if read.execute("SELECT 1 FROM parcels WHERE aoi = %s AND year = %s LIMIT 1", (aoi, year)).fetchone() is None:
            raise NotFound(f"no parcels for AOI {aoi!r} {year}")
        counts = store.save_run(conn, run_id, aoi, year, {**params.as_dict(), "rules": [r.rule for r in rules]},
                                results(read))
        summ = store.summary(conn, run_id)
    log.info("markers run %s: %d parcels (%d with signatures), %s", run_id, counts["parcels"], seen["with_data"], summ)
    return {"run_id": run_id, "aoi": aoi, "year": year, "parcels": counts["parcels"],
            "parcels_with_signatures": seen["with_data"], **summ}


def write_csv(results: Sequence[tuple[ParcelSignals, list[Marker], list[Compliance]]], out: str | Path) -> int:
    """Write markers as CSV (one row per marker); returns the row count."""
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for sig, found, _ in results:
            for m in found:
                r = m.as_row()
                w.writerow([sig.parcel, sig.pid if sig.pid is not None else "", r["marker"], r["event_date"] or "",
                            r["start_date"] or "", r["end_date"] or "", r["confidence"], r["sources"],
                            json.dumps(r["detail"], default=str)])
                n += 1
    return n


def detect_files(path: str | Path, out: str | Path, *, overrides: dict[str, Any] | None = None,
                 year: int | None = None) -> list[tuple[ParcelSignals, list[Marker], list[Compliance]]]:
    """Detect markers from JRC CbM time-series CSVs or a long table and write them to ``out``; returns the results."""
    from cbmflow.markers import io, longtable

    params = DEFAULTS.with_overrides(overrides or {})
    sigs = longtable.read_long_table(path, year=year) if longtable.is_long_table(path) else io.read_tsdir(path, year=year)
    results = detect_all(sigs, params)
    write_csv(results, out)
    return results


def write_season(results: Sequence[tuple[ParcelSignals, list[Marker], list[Compliance]]], out: str | Path,
                 params: MarkerParams = DEFAULTS) -> int:
    """Write the season evidence (cuts, confidence, mown / not_mown / not_enough_evidence) as CSV."""
    from cbmflow.markers.season import season_evidence

    rows = [season_evidence(sig, found, params).as_row() for sig, found, _ in results]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["parcel", "year", "status", "n_cuts", "cut_dates", "cut_confidence",
                                "clear_observations", "longest_gap_days"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def evaluate_report(truth_path: str, *, signatures: str | None = None, markers: str | None = None,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score mowing events (from signatures, detected here, or a markers CSV) against a truth file."""
    from cbmflow.markers import evaluate, io, longtable
    from cbmflow.markers.season import season_evidence

    truth = evaluate.read_truth(truth_path)
    status: dict[str, str] = {}
    if signatures:
        params = DEFAULTS.with_overrides(overrides or {})
        sigs = longtable.read_long_table(signatures) if longtable.is_long_table(signatures) else io.read_tsdir(signatures)
        det: dict[str, list[str]] = {}
        for sig, found, _ in detect_all(sigs, params):
            det[sig.parcel] = [m.event_date for m in found if m.marker == "mowing" and m.event_date]
            status[sig.parcel] = season_evidence(sig, found, params).status
    elif markers:
        det = {}
        with open(markers, newline="", encoding="utf-8") as fh:
            r = csv.DictReader(fh)
            if not {"parcel", "marker", "event_date"} <= set(r.fieldnames or []):
                raise InputError(f"{markers}: a markers CSV needs columns parcel, marker, event_date "
                                 "(as written by cbmflow markers --out)")
            for row in r:
                lst = det.setdefault(row["parcel"], [])
                if row["marker"] == "mowing" and row["event_date"]:
                    lst.append(row["event_date"])
        status = {k: ("mown" if v else "no_cut_found") for k, v in det.items()}
    else:
        raise InputError("markers-evaluate needs --signatures DIR_OR_FILE or --markers FILE.csv")
    scores = evaluate.score_all(det, truth)
    return {"truth": truth_path, "parcels": len(truth), "events": sum(len(v) for v in truth.values()),
            "windows": {k: v.as_dict() for k, v in scores.items()},
            "date_errors_m3p20": evaluate.error_distribution(evaluate.date_errors(det, truth, (-3, 20))),
            "date_errors_pm3": evaluate.error_distribution(evaluate.date_errors(det, truth, (-3, 3))),
            "season_agreement": evaluate.season_agreement(status, truth),
            "mown_agreement": evaluate.mown_agreement(det, truth)}


def print_summary(aoi: str, year: int, *, dsn: str | None = None, examples: int = 3) -> None:
    """Print the AOI season's newest run: markers per type, compliance per status, a few parcels (demo)."""
    from cbmflow.core import db
    from cbmflow.core.errors import ProcessingError
    from cbmflow.markers import store

    with db.connect(dsn) as conn:
        run_id = store.latest_run(conn, aoi, year)
        if run_id is None:
            raise ProcessingError(f"detect_markers stored no run for {aoi} {year}")
        s = store.summary(conn, run_id)
        rows = conn.execute(
            "SELECT p.pid, p.parcel_id, p.crop_name FROM parcels p WHERE p.aoi = %s AND p.year = %s AND EXISTS "
            "(SELECT 1 FROM markers m WHERE m.run_id = %s AND m.pid = p.pid AND m.marker = 'mowing') "
            "ORDER BY p.pid LIMIT %s", (aoi, year, run_id, examples)).fetchall()
        print(f"   run {run_id}: markers " + (", ".join(f"{k} {v}" for k, v in s["markers"].items()) or "none"))
        print("   compliance " + (", ".join(f"{k} {v}" for k, v in s["compliance"].items()) or "none"))
        for pid, parcel_id, crop in rows:
            ms = [m for m in store.load_markers(conn, aoi, year, pid, run_id=run_id) if m.marker != "no_evidence"]
            print(f"   parcel {parcel_id} ({crop}): " + ", ".join(
                f"{m.marker} {m.event_date or m.start_date} [{'+'.join(m.sources)} {m.confidence:.2f}]" for m in ms))
