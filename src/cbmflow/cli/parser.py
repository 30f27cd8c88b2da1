"""The ``cbmflow`` command line.

Each domain module that offers commands defines ``register_cli(subparsers)``; which module
holds which command is the static table ``COMMANDS``, so ``cbmflow --help`` imports no domain
module and ``cbmflow <command>`` imports only the module of that command (no numpy, pandas or
psycopg for ``--help``). Every failure prints one line (no traceback, no secret) and exits
non-zero; the one exit-code table is :mod:`cbmflow.cli.exits` (0 done, 2 bad input or nothing
to do, 3 temporary, 4 disk full).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# command -> (module whose register_cli(subparsers) adds it, one-line help). Only the module of the
# command being run is imported; --help is drawn from this table alone.
COMMANDS: dict[str, tuple[str, str]] = {
    "parcels": ("cbmflow.cli.parcels", "declared parcels (import, inspect)"),
    "catalogue": ("cbmflow.cli.catalogue", "the scene catalogue (STAC discovery)"),
    "card": ("cbmflow.cli.card", "CARD generation (SNAP graphs, sarsen, Sen2Cor/L2A)"),
    "signatures": ("cbmflow.cli.extract", "extract the catalogue's ready scenes of an AOI into PostGIS"),
    "extract": ("cbmflow.cli.extract", "per-parcel statistics of a raster (Parquet or CSV)"),
    "season": ("cbmflow.cli.analytics", "season analytics from the results database"),
    "classify": ("cbmflow.cli.analytics", "classify parcels from a wide features parquet and flag outliers"),
    "features": ("cbmflow.cli.analytics", "convert per-parcel features from other systems to a wide table"),
    "markers": ("cbmflow.cli.markers", "detect mowing, bare soil/ploughing, harvest and no-evidence markers"),
    "markers-evaluate": ("cbmflow.cli.markers", "score mowing events against dated truth (precision, recall, F1)"),
    "simulate": ("cbmflow_sim.archive", "write a SIMULATED CARD archive for an AOI's parcels"),
    "simulate-crops": ("cbmflow_sim.crops", "SIMULATED wide per-parcel features, harder crop model"),
    "demo": ("cbmflow_dev.demo", "run the demo pipeline (simulated AT season, end to end)"),
    "archive": ("cbmflow.cli.extract", "the Parquet season archive (write, verify against PostGIS, show)"),
}


def _db_upgrade(args: argparse.Namespace) -> int:
    from cbmflow.core import db

    if args.create:
        db.create_database(args.dsn)
    applied = db.upgrade(args.dsn)
    print(f"schema: applied {', '.join(applied) if applied else 'nothing (up to date)'}; "
          f"versions now {', '.join(db.applied_versions(args.dsn))}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db

    with db.connect(args.dsn) as conn:
        print("schema versions:", ", ".join(db.applied_versions(args.dsn)))
        for (card, status), n in sorted(catalogue.counts(conn).items()):
            print(f"catalogue {card:>3} {status:<10} {n}")
        for aoi, year, n in conn.execute(
            "SELECT aoi, year, count(*) FROM parcels GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            print(f"parcels {aoi} {year}: {n}")
        if "005" in db.applied_versions(args.dsn):
            for (aoi, year, status), n in sorted(catalogue.extraction_counts(conn).items()):
                print(f"extraction {aoi} {year} {status:<9} {n}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: ``db``, the module of ``command`` (all modules when ``"*"``), the rest as names."""
    parser = argparse.ArgumentParser(prog="cbmflow", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p_db = sub.add_parser("db", help="results database schema")
    db_sub = p_db.add_subparsers(dest="db_command", required=True)
    p_up = db_sub.add_parser("upgrade", help="apply schema files not yet applied (idempotent)")
    p_up.add_argument("--dsn", default=None, help="database DSN (default: $CBMFLOW_DSN)")
    p_up.add_argument("--create", action="store_true", help="create the database if missing")
    p_up.set_defaults(func=_db_upgrade)
    p_st = db_sub.add_parser("status", help="schema versions, catalogue and parcel counts")
    p_st.add_argument("--dsn", default=None)
    p_st.set_defaults(func=_db_status)

    if command == "*":
        wanted = list(dict.fromkeys(module for module, _ in COMMANDS.values()))
    elif command in COMMANDS:
        wanted = [COMMANDS[command][0]]
    else:
        wanted = []
    for name in wanted:
        importlib.import_module(name).register_cli(sub)
    for name, (_, text) in COMMANDS.items():
        if name not in sub.choices:  # listed in --help without importing its module
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from cbmflow.cli import exits as clierrors

    clierrors.install_log_scrubber()
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - one line and an exit code; unknown errors re-raise
        message, code = clierrors.handle(exc)
        print(f"cbmflow: {'error: ' if code else ''}{message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
