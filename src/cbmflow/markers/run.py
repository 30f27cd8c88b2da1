"""Marker runs end to end: signals in (PostGIS or JRC CSV files), markers and compliance out.

Used by the ``detect_markers`` DAG, ``cbmflow markers`` and the demo.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cbmflow.errors import InputError
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
    from cbmflow import db
    from cbmflow.errors import NotFound
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
    from cbmflow.markers import io

    from cbmflow.markers import longtable

    params = DEFAULTS.with_overrides(overrides or {})
    sigs = longtable.read_long_table(path, year=year) if longtable.is_long_table(path) else io.read_tsdir(path, year=year)
    results = detect_all(sigs, params)
    write_csv(results, out)
    return results


def _overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise InputError(f"--set expects name=value, got {p!r}")
        out[k.strip()] = v.strip()
    return out


def _cli(args: argparse.Namespace) -> int:
    overrides = _overrides(args.set)
    if args.signatures:
        if not args.out:
            raise InputError("--signatures needs --out FILE.csv")
        results = detect_files(args.signatures, args.out, overrides=overrides, year=args.year)
        counts: dict[str, int] = {}
        for _, found, _ in results:
            for m in found:
                counts[m.marker] = counts.get(m.marker, 0) + 1
        print(f"{len(results)} parcels -> {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if args.truth:
            from cbmflow.markers import evaluate, io

            truth = io.read_foi_info(args.truth)
            det = {s.parcel: [m.event_date for m in found if m.marker == "mowing" and m.event_date]
                   for s, found, _ in results}
            for sc in evaluate.score_all(det, truth).values():
                lo, hi = sc.window
                print(f"mowing vs {args.truth} window {lo:+d}/{hi:+d} d: TP {sc.tp} FP {sc.fp} FN {sc.fn}  "
                      f"precision {sc.precision:.3f} recall {sc.recall:.3f} F1 {sc.f1:.3f}")
        return 0
    if not args.aoi or args.year is None:
        raise InputError("give --aoi and --year (markers from PostGIS) or --signatures DIR_OR_FILE --out FILE")
    res = detect_season(args.aoi, args.year, run_id=args.run_id, overrides=overrides, rules_path=args.rules)
    print(f"markers run {res['run_id']}: {res['parcels']} parcels ({res['parcels_with_signatures']} with signatures)")
    print("  markers:    " + (", ".join(f"{k} {v}" for k, v in res["markers"].items()) or "none"))
    print("  compliance: " + (", ".join(f"{k} {v}" for k, v in res["compliance"].items()) or "none"))
    if args.out:
        from cbmflow import db
        from cbmflow.markers import io

        with db.connect() as conn:
            sigs = io.read_db(conn, args.aoi, args.year)
        n = write_csv(detect_all(sigs, DEFAULTS.with_overrides(overrides), load_rules(args.rules)), args.out)
        print(f"  {n} markers also written to {args.out}")
    return 0


def register_cli(sub: Any) -> None:
    """Add the ``markers`` command."""
    p = sub.add_parser("markers", help="detect mowing, bare soil/ploughing, harvest and no-evidence markers",
                       description="From PostGIS (--aoi, --year; stores a run) or from JRC CbM time-series "
                                   "CSVs (--signatures DIR_OR_FILE --out markers.csv).")
    p.add_argument("--aoi", help="AOI name (markers from the database)")
    p.add_argument("--year", type=int, help="season (with --signatures: default = the files' year)")
    p.add_argument("--run-id", default=None, help="run id (default: <aoi>_<year>_<UTC timestamp>); "
                                                  "re-using one replaces that run's rows")
    p.add_argument("--signatures", help="JRC CbM tsdir folder, one <id>_*_ts.csv file, or a long table "
                                         "(CSV/Parquet: parcel, date, band, mean, count[, orbit, cloud_fraction])")
    p.add_argument("--out", help="CSV file to write the markers to")
    p.add_argument("--truth", help="JRC FOIinfo.csv: score the mowing events against it")
    p.add_argument("--rules", default=None, help="compliance rule table CSV (default: the packaged one)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a parameter, e.g. mowing.min_drop=0.15 (see cbmflow.markers.params)")
    p.set_defaults(func=_cli)


def print_summary(aoi: str, year: int, *, dsn: str | None = None, examples: int = 3) -> None:
    """Print the AOI season's newest run: markers per type, compliance per status, a few parcels (demo)."""
    from cbmflow import db
    from cbmflow.errors import ProcessingError
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
