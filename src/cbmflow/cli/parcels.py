"""``cbmflow parcels import|list-columns``: declared parcels from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from cbmflow.parcels.store import Rules, import_parcels, list_columns


def _cli_import(args: argparse.Namespace) -> int:
    from cbmflow.core import db

    with db.connect() as conn:
        result = import_parcels(
            conn, args.file, aoi=args.aoi, year=args.year, id_col=args.id_col,
            crop_col=args.crop_col, crop_name_col=args.crop_name_col, epsg=args.epsg,
            report_path=args.report,
            rules=Rules.from_env(min_area_m2=args.min_area_m2,
                                 max_area_m2=args.max_area_ha * 1e4 if args.max_area_ha is not None else None,
                                 repair_tolerance=args.repair_tolerance),
        )
    for w in result.warnings:
        print(f"warning: {w}")
    print(f"read {result.read}")
    print(f"imported {result.accepted} (new {result.new}, updated {result.updated}, unchanged {result.unchanged})")
    print(f"repaired {result.repaired}")
    print(f"rejected {result.rejected}")
    print(f"aoi {result.aoi} EPSG:{result.epsg} parcels_version {result.parcels_version}")
    print(f"report {result.report_path}")
    return 0


def _cli_columns(args: argparse.Namespace) -> int:
    for name, dtype, sample in list_columns(args.file):
        print(f"{name}\t{dtype}\t{sample if sample is not None else ''}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``cbmflow parcels import`` and ``cbmflow parcels list-columns``."""
    p = subparsers.add_parser("parcels", help="declared parcels (import, inspect)")
    sub = p.add_subparsers(dest="parcels_command", required=True)
    imp = sub.add_parser("import", help="import a parcel file into an AOI and year")
    imp.add_argument("file", help="GeoPackage, zipped Shapefile/GeoPackage, GeoParquet or GeoJSON (path or s3://)")
    imp.add_argument("--aoi", required=True, help="AOI name ([a-z0-9_]+), created if missing")
    imp.add_argument("--year", required=True, type=int)
    imp.add_argument("--id-col", required=True, help="parcel id column; a comma list is joined with '-'")
    imp.add_argument("--crop-col", required=True, help="crop code column")
    imp.add_argument("--crop-name-col", default=None, help="crop name column")
    imp.add_argument("--epsg", type=int, default=None, help="working CRS of a new AOI (default: UTM zone)")
    imp.add_argument("--report", default=None, help="CSV report path (default: reports/parcels/...)")
    imp.add_argument("--min-area-m2", type=float, default=None,
                     help="reject parcels smaller than this (default 1 m2; $CBMFLOW_PARCEL_MIN_AREA_M2)")
    imp.add_argument("--max-area-ha", type=float, default=None,
                     help="reject parcels larger than this (default 1000 ha; $CBMFLOW_PARCEL_MAX_AREA_HA)")
    imp.add_argument("--repair-tolerance", type=float, default=None,
                     help="largest relative area change a self-intersection repair may make (default 0.01)")
    imp.set_defaults(func=_cli_import)
    cols = sub.add_parser("list-columns", help="list the columns of a parcel file with a sample value")
    cols.add_argument("file")
    cols.set_defaults(func=_cli_columns)
