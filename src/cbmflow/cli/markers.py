"""``cbmflow markers`` and ``cbmflow markers evaluate``: markers from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cbmflow.core.errors import InputError
from cbmflow.markers import DEFAULTS
from cbmflow.markers.rules import load_rules
from cbmflow.markers.run import (
    detect_all,
    detect_files,
    detect_season,
    evaluate_report,
    write_csv,
    write_season,
)


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
        if args.season:
            write_season(results, args.season, DEFAULTS.with_overrides(overrides))
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
        from cbmflow.core import db
        from cbmflow.markers import io

        with db.connect() as conn:
            sigs = io.read_db(conn, args.aoi, args.year)
        n = write_csv(detect_all(sigs, DEFAULTS.with_overrides(overrides), load_rules(args.rules)), args.out)
        print(f"  {n} markers also written to {args.out}")
    return 0


def _evaluate_cli(args: argparse.Namespace) -> int:
    rep = evaluate_report(args.truth, signatures=args.signatures, markers=args.markers,
                          overrides=_overrides(args.set))
    print(f"{rep['events']} true events on {rep['parcels']} parcel-seasons ({rep['truth']})")
    for sc in rep["windows"].values():
        lo, hi = sc["window"]
        print(f"  window {lo:+d}/{hi:+d} d: TP {sc['tp']} FP {sc['fp']} FN {sc['fn']}  precision "
              f"{sc['precision']:.3f} recall {sc['recall']:.3f} F1 {sc['f1']:.3f}")
    e = rep["date_errors_m3p20"]
    if e.get("n"):
        print(f"  date error (detected - true) of the {e['n']} matches at -3/+20: median {e['median']:+.0f} d, "
              f"quartiles {e['q25']:+.0f}/{e['q75']:+.0f} d, " + ", ".join(f"{k}: {v}" for k, v in e["histogram"].items()))
    e = rep["date_errors_pm3"]
    if e.get("n"):
        print(f"  date error of the {e['n']} matches at -3/+3: median {e['median']:+.0f} d, "
              + ", ".join(f"{k}: {v}" for k, v in e["histogram"].items() if k in ("-3..-1", "0", "1..3")))
    a = rep["mown_agreement"]
    print(f"  mown / not mown per parcel-season ({a['n']}): truth mown {a['mown_detected']} with a cut, "
          f"{a['mown_missed']} without; truth not mown {a['not_mown_clear']} without a cut, "
          f"{a['not_mown_detected']} with; agreement {a['accuracy']}")
    for truth_kind, row in rep["season_agreement"].items():
        print(f"  season verdict, truth {truth_kind}: "
              + (", ".join(f"{k} {v}" for k, v in sorted(row.items())) or "none"))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2, default=str))
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
    p.add_argument("--season", help="with --signatures: also write the season evidence CSV (cuts, verdict)")
    p.set_defaults(func=_cli)
    # `cbmflow markers evaluate --truth FILE ...` (the name) and `cbmflow markers-evaluate` (same command)
    msub = p.add_subparsers(dest="markers_command", required=False, metavar="{evaluate}")
    _evaluate_parser(msub.add_parser("evaluate", help=_EVAL_HELP, description=_EVAL_DESC))
    _evaluate_parser(sub.add_parser("markers-evaluate", help=_EVAL_HELP, description=_EVAL_DESC))


_EVAL_HELP = "score mowing events against dated truth (precision, recall, F1)"


_EVAL_DESC = ("One-to-one event matching at -3/+3 and -3/+20 days, date-error distribution, and per "
              "parcel-season agreement on mown / not mown.")


def _evaluate_parser(e: Any) -> None:
    e.add_argument("--truth", required=True, help="JRC FOIinfo.csv, or CSV parcel,date (empty date = not mown)")
    e.add_argument("--signatures", help="detect from these signatures (JRC tsdir or long table)")
    e.add_argument("--markers", help="or score a markers CSV written by cbmflow markers --out")
    e.add_argument("--set", action="append", metavar="NAME=VALUE", help="parameter override (with --signatures)")
    e.add_argument("--json", help="also write the full report as JSON")
    e.set_defaults(func=_evaluate_cli)
