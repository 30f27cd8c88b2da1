"""``cbmflow card graph|pending|bs|coh6|s2|reset|sarsen``: CARD generation from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cbmflow.card.engines import BS_ENGINES, process_bs_scene, process_coh6_pair, process_s2_scene
from cbmflow.card.jobs import pending
from cbmflow.card.keys import CARD_ROOT_ENV
from cbmflow.catalogue import store as catalogue
from cbmflow.core.errors import InputError


def _kv(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"graph parameter {item!r} must be name=value")
        out[key.strip()] = value
    return out


def _cmd_graph(args: argparse.Namespace) -> int:
    from cbmflow.card import graphs

    text = graphs.build_graph(args.name, _kv(args.param))
    if args.output:
        Path(args.output).write_text(text)
        print(args.output)
    else:
        print(text)
    return 0


def _date(value: str | None) -> datetime | None:
    from cbmflow.core.dates import to_utc

    return to_utc(value, what="date")


def _cmd_pending(args: argparse.Namespace) -> int:
    ids = pending(args.card_type, start=_date(args.start), end=_date(args.end), dsn=args.dsn,
                  reprocess=args.reprocess)
    print(json.dumps(ids))
    return 0


def _cmd_bs(args: argparse.Namespace) -> int:
    out = process_bs_scene(args.scene_id, card_root=args.card_root, engine=args.engine, dsn=args.dsn,
                           reprocess=args.reprocess, dem=args.dem, epsg=args.epsg,
                           polarisations=tuple(args.pol or ("VV", "VH")), resolution=args.resolution,
                           runner=args.runner, graph_params=_kv(args.param))
    print(json.dumps(out, indent=2))
    return 0


def _cmd_coh6(args: argparse.Namespace) -> int:
    out = process_coh6_pair(args.secondary_id, args.reference_id, card_root=args.card_root, dsn=args.dsn,
                            reprocess=args.reprocess, dem=args.dem, epsg=args.epsg, runner=args.runner,
                            graph_params=_kv(args.param))
    print(json.dumps(out, indent=2))
    return 0


def _cmd_s2(args: argparse.Namespace) -> int:
    out = process_s2_scene(args.scene_id, card_root=args.card_root, dsn=args.dsn, reprocess=args.reprocess)
    print(json.dumps(out, indent=2))
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from cbmflow.core import db

    with db.transaction(args.dsn) as conn:
        scene = (catalogue.get(conn, int(args.scene)) if args.scene.isdigit()
                 else catalogue.get_by_product_id(conn, args.scene))
        assert scene.id is not None
        catalogue.set_status(conn, scene.id, args.status)
    print(f"scene {scene.product_id} (id {scene.id}): {scene.status} -> {args.status}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``cbmflow card graph|pending|bs|coh6|s2|reset`` (``sarsen``: the native CARD-BS of one SAFE)."""
    p = subparsers.add_parser("card", help="CARD generation (SNAP graphs, sarsen, Sen2Cor/L2A)")
    sub = p.add_subparsers(dest="card_command", required=True)

    g = sub.add_parser("graph", help="print a filled, validated SNAP graph")
    g.add_argument("name", choices=["card_bs", "card_coh6"])
    g.add_argument("-p", "--param", action="append", help="name=value (see include/graphs/README.md)")
    g.add_argument("-o", "--output", default=None, help="write the graph to this file")
    g.set_defaults(func=_cmd_graph)

    pe = sub.add_parser("pending", help="catalogue ids a run over [start, end) would process")
    pe.add_argument("card_type", choices=["bs", "c6", "s2"])
    pe.add_argument("--start", default=None)
    pe.add_argument("--end", default=None)
    pe.add_argument("--reprocess", action="store_true")
    pe.add_argument("--dsn", default=None)
    pe.set_defaults(func=_cmd_pending)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--card-root", default=None, help=f"CARD root URI (default ${CARD_ROOT_ENV})")
        q.add_argument("--dsn", default=None)
        q.add_argument("--reprocess", action="store_true", help="also redo ready/extracted scenes")

    def snap_opts(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dem", default=None, help="DEM GeoTIFF (SNAP: External DEM)")
        q.add_argument("--epsg", type=int, default=None, help="output UTM EPSG (default: scene's zone)")
        q.add_argument("--runner", choices=["gpt", "snappy"], default="gpt")
        q.add_argument("-p", "--param", action="append", help="graph parameter name=value")

    b = sub.add_parser("bs", help="CARD-BS for one catalogue scene")
    b.add_argument("scene_id", type=int)
    b.add_argument("--engine", choices=list(BS_ENGINES), default="sarsen")
    b.add_argument("--pol", action="append", default=None)
    b.add_argument("--resolution", type=float, default=10.0)
    common(b)
    snap_opts(b)
    b.set_defaults(func=_cmd_bs)

    c = sub.add_parser("coh6", help="CARD-COH6 for a secondary scene and its reference (SNAP)")
    c.add_argument("secondary_id", type=int)
    c.add_argument("reference_id", type=int)
    common(c)
    snap_opts(c)
    c.set_defaults(func=_cmd_coh6)

    s = sub.add_parser("s2", help="CARD-2A for one S2 scene (L2A direct or L1C via Sen2Cor)")
    s.add_argument("scene_id", type=int)
    common(s)
    s.set_defaults(func=_cmd_s2)

    r = sub.add_parser("reset", help="set a scene's status (e.g. failed -> discovered)")
    r.add_argument("scene", help="catalogue id or product id")
    r.add_argument("--status", default="discovered", choices=list(catalogue.STATUSES))
    r.add_argument("--dsn", default=None)
    r.set_defaults(func=_cmd_reset)

    _add_sarsen_arguments(sub.add_parser("sarsen", help="native CARD-BS from a GRD SAFE with sarsen"))


def _add_sarsen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("safe", help="Sentinel-1 GRD .SAFE folder")
    p.add_argument("dem", help="DEM GeoTIFF covering (part of) the scene")
    p.add_argument("--out", required=True, help="output folder URI (local path or s3://bucket/prefix)")
    p.add_argument("--product-id", default=None, help="product id for the keys (default: SAFE name)")
    p.add_argument("--pol", action="append", default=None,
                   help="polarisation, repeatable (default: VV)")
    p.add_argument("--epsg", type=int, default=None, help="output EPSG (default: UTM zone of the scene)")
    p.add_argument("--resolution", type=float, default=10.0, help="pixel size in metres (default 10)")
    p.add_argument("--radiometry", default="gamma_bilinear",
                   choices=["gamma_bilinear", "gamma_nearest", "none"],
                   help="radiometric terrain correction (none: geocoded beta0)")
    p.add_argument("--measurement-group", default=None, help="xarray-sentinel group, e.g. IW/VV")
    p.add_argument("--keep-zero", action="store_true",
                   help="keep DN 0 (GRD border no-data) as backscatter 0 instead of NaN")
    p.set_defaults(func=_cmd_sarsen)


def _cmd_sarsen(args: argparse.Namespace) -> int:
    from cbmflow.card.backscatter import sarsen_backscatter

    out = sarsen_backscatter(
        args.safe, args.dem, out_uri=args.out, product_id=args.product_id,
        polarisations=tuple(args.pol or ("VV",)), epsg=args.epsg, resolution=args.resolution,
        correct_radiometry=None if args.radiometry == "none" else args.radiometry,
        measurement_group=args.measurement_group, zero_is_nodata=not args.keep_zero,
    )
    print(json.dumps(out, indent=2))
    return 0
