"""The ``extract`` (ad-hoc raster), ``signatures`` (catalogue scenes into PostGIS) and ``archive`` (the season
archive) commands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from cbmflow.core.errors import InputError

# Domain modules are imported inside each command: `cbmflow extract` (the cold path of one raster)
# loads neither pandas, geopandas, psycopg nor the archive's code.

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _cli_extract(args: argparse.Namespace) -> int:
    import numpy as np

    from cbmflow.core import storage

    storage.import_rasterio_without_boto3()
    from cbmflow.extract.pixelindex import IndexCache
    from cbmflow.extract.zonal import STAT_COLUMNS, extract_result, open_raster
    from cbmflow.parcels.vector import read_shapes

    out = str(args.out)
    if not out.endswith((".parquet", ".csv")):
        raise InputError(f"--out {out}: use a .parquet or .csv file name")
    parcels = read_shapes(args.parcels, args.id_col)  # a GeoPackage's FID column counts, as in `parcels import`
    with storage.rasterio_env(), open_raster(args.raster) as src:
        names = [d or "" for d in src.descriptions]
        count = src.count
    if args.band:
        selected = [(args.band, _band_sel(args.band, names, count, args.raster))]
    else:
        selected = [(names[i] or str(i + 1), i + 1) for i in range(count)]
    cache = IndexCache()
    columns: dict[str, list[np.ndarray]] = {c: [] for c in ("parcel_id", "band", *STAT_COLUMNS)}
    for label, number in selected:
        res, ids = extract_result(args.raster, parcels, id_col=args.id_col, band=number, buffer=args.buffer,
                                  min_area=args.min_area, mask=args.scl, index_cache=cache,
                                  parcel_key="cli")  # one parcel set per command: no hash of its shapes
        columns["parcel_id"].append(ids)
        columns["band"].append(np.full(len(res), label, dtype=object))
        columns["count"].append(res.count.astype(np.int32))
        for col in STAT_COLUMNS[1:]:
            columns[col].append(getattr(res, col).astype(np.float32))
    data = {k: np.concatenate(v) for k, v in columns.items()}
    rows = int(data["band"].size)
    _write_table(data, out)
    print(f"{rows} rows ({len(selected)} band(s), {np.unique(data['parcel_id']).size} parcels) -> {out}")
    return 0


def _write_table(data: dict[str, Any], out: str) -> None:
    """Columns to Parquet (pyarrow, no pandas) or CSV (pandas)."""
    if out.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(data)
        pq.write_table(pa.Table.from_arrays([_arrow_column(data[k]) for k in names], names=names), out)
        return
    import pandas as pd

    pd.DataFrame(data).to_csv(out, index=False)


def _arrow_column(values: Any) -> Any:
    """A numpy column as an Arrow array built from its buffers.

    pyarrow's converters (``pa.array``) import pandas on first use (~0.15 s of a cold
    ``cbmflow extract``); numbers and non-null texts are laid out directly instead.
    """
    import numpy as np
    import pyarrow as pa

    v = np.asarray(values)
    if v.dtype.kind in "iuf":
        v = np.ascontiguousarray(v)
        return pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), v.size, [None, pa.py_buffer(v)])
    items = v.tolist()
    if v.dtype.kind in "OU" and all(isinstance(x, str) for x in items):
        encoded = [x.encode() for x in items]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        large = bool(offsets[-1] >= 2**31)  # 32-bit offsets hold up to 2 GiB of text
        return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(encoded),
                                     [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)),
                                      pa.py_buffer(b"".join(encoded))])
    return pa.array(items)


def _band_sel(band: str, names: list[str], count: int, uri: str) -> int:
    if band.isdigit() and 1 <= int(band) <= count:
        return int(band)
    if band in names:
        return names.index(band) + 1
    if count == 1:
        return 1
    raise InputError(f"raster {uri} has no band {band!r}; bands: {', '.join(n or str(i + 1) for i, n in enumerate(names))}")


def _cli_signatures(args: argparse.Namespace) -> int:
    from cbmflow.extract.run import extract_all

    out = extract_all(aoi=args.aoi, year=args.year, card_type=args.card_type, start=args.start, end=args.end,
                      reprocess=args.reprocess, buffer=args.buffer, min_area=args.min_area, cloud_mask=args.cloud_mask)
    print(f"signatures {args.aoi} {args.year}: {len(out['extracted'])} scene(s) extracted in {out['units']} unit(s), "
          f"{out['rows']} rows, {len(out['no_data'])} no data, {len(out['skipped'])} skipped, "
          f"{len(out['failed'])} failed")
    for band, n in sorted(out["bands"].items()):
        print(f"  {band:<7} {n} rows")
    for sid in out["no_data"]:
        print(f"  no data {sid}: no parcel has a valid pixel")
    for sid, msg in sorted(out["failed"].items()):
        print(f"  failed {sid}: {msg}")
    return 1 if out["failed"] else 0


def _register_main(subparsers: Any) -> None:
    """Add the ``extract`` (ad-hoc raster) and ``signatures`` (catalogue scenes into PostGIS) sub-commands."""
    p = subparsers.add_parser("signatures", help="extract the catalogue's ready scenes of an AOI into PostGIS")
    p.add_argument("--aoi", required=True)
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--card-type", choices=["bs", "c6", "s2", "all"], default="all")
    p.add_argument("--start", help="first sensing date (ISO)")
    p.add_argument("--end", help="end sensing date (ISO, exclusive)")
    p.add_argument("--reprocess", action="store_true", help="re-extract extracted and failed scenes")
    p.add_argument("--buffer", type=float, default=0.0)
    p.add_argument("--min-area", type=float, default=0.0)
    p.add_argument("--cloud-mask", action="store_true", help="exclude cloudy SCL classes from S2 bands")
    p.set_defaults(func=_cli_signatures)
    p = subparsers.add_parser("extract", help="per-parcel statistics of a raster (Parquet or CSV); "
                              "`extract waive` waives a failed catalogue scene extraction")
    p.add_argument("--raster", help="raster path or s3:// URI (required)")
    p.add_argument("--band", help="band name (description) or number; default every band")
    p.add_argument("--parcels", help="parcel file (GeoPackage, GeoJSON, Shapefile, ...) (required)")
    p.add_argument("--id-col", help="the parcels' id column (required)")
    p.add_argument("--out", help="output .parquet or .csv (required)")
    p.add_argument("--buffer", type=float, default=0.0, help="inward buffer in metres (default 0)")
    p.add_argument("--min-area", type=float, default=0.0, help="skip parcels smaller than this (m²)")
    p.add_argument("--scl", help="SCL raster: pixels of cloudy classes are excluded")
    p.set_defaults(func=_cli_extract_checked, _extract_parser=p)
    sub = p.add_subparsers(dest="extract_command", metavar="{waive}")
    w = sub.add_parser("waive", help="let a failed (scene, AOI) stay without rows: recorded with a reason, "
                       "shown in every run summary of its scope; runs over it stop failing")
    w.add_argument("--scene", required=True, help="the scene's product id or catalogue id")
    w.add_argument("--aoi", required=True)
    w.add_argument("--year", type=int, help="parcel year (default: the scene's only failed year for the AOI)")
    w.add_argument("--reason", help="why the rows may stay missing (required unless --undo)")
    w.add_argument("--by", default=os.environ.get("USER") or "operator", help="who waives (default $USER)")
    w.add_argument("--undo", action="store_true", help="delete the waiver: the failure counts again")
    w.set_defaults(func=_cli_waive)


def _cli_extract_checked(args: argparse.Namespace) -> int:
    missing = [f"--{n.replace('_', '-')}" for n in ("raster", "parcels", "id_col", "out") if not getattr(args, n)]
    if missing:
        args._extract_parser.error(f"the following arguments are required: {', '.join(missing)}")
    return _cli_extract(args)


def _cli_waive(args: argparse.Namespace) -> int:
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db

    with db.connect() as conn:
        scene = (catalogue.get(conn, int(args.scene)) if str(args.scene).isdigit()
                 else catalogue.get_by_product_id(conn, str(args.scene)))
        year = args.year
        if year is None:
            years = [int(r[0]) for r in conn.execute(
                "SELECT year FROM extractions WHERE obsid = %s AND aoi = %s AND status = 'failed' ORDER BY 1",
                (int(scene.id), args.aoi))]  # type: ignore[arg-type]
            if len(years) != 1:
                raise InputError(f"{scene.product_id} has {len(years)} failed extraction(s) for AOI {args.aoi} "
                                 f"({', '.join(map(str, years)) or 'none'}): give --year")
            year = years[0]
        if args.undo:
            done = catalogue.unwaive_extraction(conn, int(scene.id), args.aoi, int(year))  # type: ignore[arg-type]
            conn.commit()
            print(f"{'waiver deleted' if done else 'no waiver'}: {scene.product_id} (id {scene.id}, AOI {args.aoi} "
                  f"{year}){'; every run over it fails again until it is extracted' if done else ''}")
            return 0
        if not args.reason or not args.reason.strip():
            raise InputError("a waiver needs a reason: --reason '...'")
        w = catalogue.waive_extraction(conn, int(scene.id), args.aoi, int(year), args.reason, args.by)  # type: ignore[arg-type]
        conn.commit()
    print(f"waived: {w.product_id} (id {w.obsid}, AOI {w.aoi} {w.year}) by {w.waived_by} at {w.waived_at:%Y-%m-%d %H:%M} "
          f"UTC: {w.reason}\n  its error: {w.error}\n  runs over it no longer fail on it; every summary lists it")
    return 0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _cli_archive(args: argparse.Namespace) -> int:
    missing = [f"--{n}" for n in ("aoi", "year") if getattr(args, n) is None]
    if missing:
        args._archive_parser.error(f"the following arguments are required: {', '.join(missing)}")
    from cbmflow.extract.archive import archive_season, read_parcel, verify_season

    if args.archive_command == "verify":
        reports = verify_season(args.aoi, args.year, bands=args.band or None, root=args.root)
        bad = 0
        for r in reports:
            state = "OK" if r["ok"] else "MISMATCH"
            bad += not r["ok"]
            print(f"{state:<8} {r['aoi']} {r['year']} {r['band']:<7} PostGIS {r['db_rows']:,} rows / {r['db_scenes']} "
                  f"scene(s); archive {r['archive_rows']:,} rows ({r.get('generation', 'nothing archived')})")
            for what in ("missing_in_archive", "mismatched", "manifest_mismatch", "archive_only"):
                if r[what]:
                    print(f"  {what.replace('_', ' ')}: {len(r[what])} scene(s): {', '.join(map(str, r[what][:10]))}")
        if not reports:
            print(f"nothing to verify for AOI {args.aoi} {args.year}: no signatures and no archive")
        return 1 if bad else 0
    if args.archive_command == "show":
        rows, scenes = read_parcel(args.aoi, args.year, args.pid, args.band or "VV", root=args.root)
        for r in rows:
            inf = scenes[str(int(r["obsid"]))]["info"]
            print(f"{inf['sensing_time']}  {inf['product_id']}  n={int(r['count'])}  mean={float(r['mean']):.6g}  "
                  f"p50={float(r['p50']):.6g}")
        print(f"{rows.size} observation(s) of parcel {args.pid}, band {args.band or 'VV'}")
        return 0
    results = archive_season(args.aoi, args.year, bands=args.band or None, root=args.root)
    for res in results:
        print(f"{res.status:<9} {res.aoi} {res.year} {res.band:<7} {res.rows:,} rows, {res.scenes} scene(s) "
              f"({res.carried} kept from the archive), {res.files} file(s), {res.bytes / 2**20:.1f} MiB, "
              f"{res.bytes_per_record:.1f} B/record, {res.seconds:.1f} s")
    if not results:
        print(f"nothing to archive: AOI {args.aoi} {args.year} has no signatures in PostGIS")
    return 0


def _register_archive(subparsers: Any) -> None:
    """Add ``archive`` (write a season to the archive), ``archive verify`` and ``archive show``."""
    p = subparsers.add_parser("archive", help="write an AOI season's signatures to the Parquet season archive "
                              "($CBMFLOW_ARCHIVE_URI); `archive verify` checks it against PostGIS")
    p.add_argument("--aoi", help="AOI name (required)")
    p.add_argument("--year", type=int, help="season (required)")
    p.add_argument("--band", action="append", help="band (repeatable); default every band of the season")
    p.add_argument("--root", help="archive root (default $CBMFLOW_ARCHIVE_URI)")
    p.set_defaults(func=_cli_archive, archive_command=None, _archive_parser=p)
    sub = p.add_subparsers(dest="archive_command", metavar="{verify,show}")
    v = sub.add_parser("verify", help="per-scene rows and checksums: PostGIS (computed by SQL) vs the archive files")
    v.add_argument("--aoi", required=True)
    v.add_argument("--year", type=int, required=True)
    v.add_argument("--band", action="append")
    v.add_argument("--root")
    v.set_defaults(func=_cli_archive, _archive_parser=v)
    s = sub.add_parser("show", help="one parcel's season of one band, read from the archive")
    s.add_argument("--aoi", required=True)
    s.add_argument("--year", type=int, required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--band")
    s.add_argument("--root")
    s.set_defaults(func=_cli_archive, _archive_parser=s)


def register_cli(subparsers: Any) -> None:
    """Add this group's sub-commands."""
    _register_main(subparsers)
    _register_archive(subparsers)
