"""The ``cbmflow`` command line.

Each domain module that offers commands defines ``register_cli(subparsers)``; the modules are
listed in ``_COMMAND_MODULES``. Every failure prints one line (no traceback, no secret) and
exits non-zero: 2 bad input, 3 temporary (database or S3 unreachable), 4 disk full
(:mod:`cbmflow.clierrors`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands (imported lazily; each has register_cli(subparsers)).
_COMMAND_MODULES = (
    "cbmflow.parcels",
    "cbmflow.stac",
    "cbmflow.simulate",
    "cbmflow.extract",
    "cbmflow.card",
    "cbmflow.analytics",
    "cbmflow.markers.run",
    "cbmflow.demo",
)


def _db_upgrade(args: argparse.Namespace) -> int:
    from cbmflow import db

    if args.create:
        db.create_database(args.dsn)
    applied = db.upgrade(args.dsn)
    print(f"schema: applied {', '.join(applied) if applied else 'nothing (up to date)'}; "
          f"versions now {', '.join(db.applied_versions(args.dsn))}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from cbmflow import catalogue, db

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
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

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # module not written yet
            raise
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from cbmflow import clierrors

    clierrors.install_log_scrubber()
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - one line and an exit code; unknown errors re-raise
        message, code = clierrors.handle(exc)
        print(f"cbmflow: {'error: ' if code else ''}{message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
