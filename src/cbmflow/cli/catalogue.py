"""``cbmflow catalogue discover``: STAC discovery into the catalogue from the command line."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cbmflow.catalogue.stac import (
    aoi_footprint_wkt,
    catalogue_scenes,
    discover_all,
)
from cbmflow.core.dates import to_utc


def _parse_time(text: str | None, *, end: bool = False) -> datetime | None:
    return to_utc(text, what="time", end=end)


def _cli_discover(args: argparse.Namespace) -> int:
    from cbmflow.core import db

    with db.connect() as conn:
        wkt = aoi_footprint_wkt(conn, args.aoi) if args.aoi else None
        found = discover_all(
            args.source,
            collections=args.collection or None,
            bbox=args.bbox,
            intersects_wkt=wkt,
            start=_parse_time(args.start),
            end=_parse_time(args.end, end=True),
            max_items=args.max_items,
        )
        counts = catalogue_scenes(conn, found.scenes)
    print(f"scenes {counts['total']}: new {counts['new']}, known {counts['known']}, "
          f"failed (missing assets) {counts['failed']}, skipped items {len(found.problems)}")
    for p in found.problems:
        print(f"skipped {p.where}: {p.error}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``cbmflow catalogue discover``."""
    p = subparsers.add_parser("catalogue", help="the scene catalogue (STAC discovery)")
    sub = p.add_subparsers(dest="catalogue_command", required=True)
    d = sub.add_parser("discover", help="discover scenes from STAC and record them in the catalogue")
    d.add_argument("--source", required=True,
                   help="STAC API URL, or catalog.json / ItemCollection / Item (path or s3://)")
    d.add_argument("--collection", action="append", help="collection id (repeatable)")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--aoi", help="AOI name: its parcels' extent")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="EPSG:4326 box")
    d.add_argument("--start", help="first day (YYYY-MM-DD, inclusive) or ISO timestamp")
    d.add_argument("--end", help="last day (YYYY-MM-DD, inclusive) or ISO timestamp (exclusive)")
    d.add_argument("--max-items", type=int, default=None)
    d.set_defaults(func=_cli_discover)
