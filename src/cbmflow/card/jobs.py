"""CARD generation: claim a catalogue scene, run its engine, publish COGs, mark it ready or failed.

Every product lands under a deterministic key
``<card_root>/<card_type>/<yyyy>/<mm>/<dd>/<product_id>_<BAND>.tif`` (sensing date, UTC), so a
retry or backfill overwrites the same objects instead of adding new ones. Only scenes in
``discovered`` or ``failed`` are claimed (plus ``ready``/``extracted`` with ``reprocess=True``):
a backfill over a date range therefore redoes exactly the scenes that are not ready.

Engines: CARD-BS with ``sarsen`` (native, :mod:`cbmflow.card.backscatter`) or ``snap`` (graph
``card_bs`` through gpt or esa_snappy); CARD-COH6 with SNAP (graph ``card_coh6``); CARD-2A from
ESA's L2A (direct ingestion) or from L1C through Sen2Cor. Where SNAP or Sen2Cor is missing the
scene is marked failed with a message saying what to install, never with a fake product.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import storage
from cbmflow.core.errors import InputError, NothingToDo, ProcessingError

log = logging.getLogger(__name__)

CARD_ROOT_ENV = "CBMFLOW_CARD_ROOT"
DEFAULT_CARD_ROOT = "s3://cbmflow-card"
CLAIMABLE: tuple[str, ...] = ("discovered", "failed")
REPROCESSABLE: tuple[str, ...] = CLAIMABLE + ("ready", "extracted")
BS_ENGINES: tuple[str, ...] = ("sarsen", "snap")
SAFE_KEYS: tuple[str, ...] = ("safe", "SAFE", "product", "manifest", "zip")
POLARISATIONS: tuple[str, ...] = ("VV", "VH", "HH", "HV")


def resolve_card_root(value: str | None = None) -> str:
    """The CARD root URI: the argument, else ``$CBMFLOW_CARD_ROOT``, else ``s3://cbmflow-card``."""
    return value or os.environ.get(CARD_ROOT_ENV) or DEFAULT_CARD_ROOT


def card_prefix(root: str, card_type: str, sensing_time: datetime) -> str:
    """``<root>/<card_type>/<yyyy>/<mm>/<dd>`` for a sensing time (UTC)."""
    from datetime import UTC

    t = sensing_time.astimezone(UTC)
    return storage.join(root, card_type, f"{t:%Y}", f"{t:%m}", f"{t:%d}")


def card_key(root: str, card_type: str, sensing_time: datetime, product_id: str, band: str) -> str:
    """The deterministic URI of one CARD band COG."""
    return storage.join(card_prefix(root, card_type, sensing_time), f"{product_id}_{band.upper()}.tif")


def claimable_statuses(reprocess: bool = False) -> tuple[str, ...]:
    """Statuses a run may claim: discovered/failed, plus ready/extracted when reprocessing."""
    return REPROCESSABLE if reprocess else CLAIMABLE


def pending(card_type: str, *, start: datetime | None, end: datetime | None, dsn: str | None = None,
            reprocess: bool = False, aoi_wkt: str | None = None,
            product_types: Sequence[str] | None = None, limit: int | None = None) -> list[int]:
    """Catalogue ids of the scenes a run over [start, end) must process."""
    from cbmflow.core import db

    with db.connect(dsn) as conn:
        released = catalogue.release_orphans(conn, card_type=card_type)
        if released:
            log.warning("released %d %s claim(s) of workers that are gone: %s", len(released), card_type, released)
        conn.commit()
        scenes = catalogue.find(conn, card_type=card_type, statuses=claimable_statuses(reprocess),
                                start=start, end=end, aoi_wkt=aoi_wkt or None,
                                product_types=product_types, limit=limit)
    return [s.id for s in scenes if s.id is not None]


def window(start: str | datetime | None, end: str | datetime | None,
           default_start: datetime | None = None, default_end: datetime | None = None,
           *, lookback_days: int = 0) -> tuple[datetime | None, datetime | None]:
    """The processing window [start - lookback_days, end): explicit ISO dates, else the data interval (UTC)."""
    from datetime import timedelta

    from cbmflow.core.dates import to_utc

    def as_dt(v: str | datetime | None) -> datetime | None:
        return to_utc(v, what="window bound")

    s, e = as_dt(start) or as_dt(default_start), as_dt(end) or as_dt(default_end)
    if s and e and s >= e:
        raise InputError(f"window start {s.isoformat()} is not before end {e.isoformat()}")
    if as_dt(start) is None and s is not None and lookback_days:  # the data interval, widened for late arrivals
        s = s - timedelta(days=lookback_days)
    return s, e


def discover_stac(card_type: str, source: str, *, start: datetime | None, end: datetime | None,
                  aoi_wkt: str | None = None, collections: Sequence[str] | None = None,
                  dsn: str | None = None) -> dict[str, Any]:
    """Search a STAC source for the window; record its scenes of ``card_type`` in the catalogue."""
    from cbmflow.core import db

    try:
        from cbmflow.catalogue import stac
    except ImportError as exc:
        from cbmflow.core.errors import ConfigError

        raise ConfigError(f"STAC discovery needs cbmflow.catalogue.stac, which is not importable: {exc}") from exc
    found = stac.discover(source, collections=list(collections) if collections else None,
                          intersects_wkt=aoi_wkt or None, start=start, end=end)
    scenes = [s for s in found if s.card_type == card_type]  # collection names differ between catalogues
    with db.connect(dsn) as conn:
        result = stac.catalogue_scenes(conn, scenes)
        conn.commit()
    log.info("STAC %s: %d item(s), %d of card type %s: %s", source, len(found), len(scenes), card_type, result)
    return dict(result)


def discover(card_type: str, *, start: datetime | None, end: datetime | None, reprocess: bool = False,
             aoi_wkt: str | None = None, stac_source: str | None = None, limit: int | None = None,
             dsn: str | None = None) -> list[int]:
    """Optionally run STAC discovery, then the ids of the window's scenes that are not ready."""
    if stac_source:
        log.info("STAC discovery from %s: %s", stac_source,
                 discover_stac(card_type, stac_source, start=start, end=end, aoi_wkt=aoi_wkt, dsn=dsn))
    ids = pending(card_type, start=start, end=end, dsn=dsn, reprocess=reprocess, aoi_wkt=aoi_wkt, limit=limit)
    log.info("%d %s scene(s) to process in [%s, %s)", len(ids), card_type, start, end)
    return ids


def discover_pairs(*, start: datetime | None, end: datetime | None, reprocess: bool = False,
                   aoi_wkt: str | None = None, stac_source: str | None = None,
                   dsn: str | None = None) -> list[dict[str, Any]]:
    """Optionally run STAC discovery, then the COH6 pairs of the window's scenes that are not ready."""
    if stac_source:
        log.info("STAC discovery from %s: %s", stac_source,
                 discover_stac("c6", stac_source, start=start, end=end, aoi_wkt=aoi_wkt, dsn=dsn))
    pairs, unpaired = pending_pairs(start=start, end=end, dsn=dsn, reprocess=reprocess, aoi_wkt=aoi_wkt)
    log.info("%d COH6 pair(s) in [%s, %s); %d scene(s) without a 6- or 12-day partner: %s",
             len(pairs), start, end, len(unpaired), unpaired)
    return pairs


def publish(ids: Sequence[int], dsn: str | None = None) -> dict[str, list[int]]:
    """Status -> ids of a run's scenes; NothingToDo when none became ready (no Asset event then)."""
    result = outcome(ids, dsn)
    if not result.get("ready"):
        raise NothingToDo(f"none of the {len(ids)} scene(s) of this run became ready: nothing to publish "
                          f"({ {k: len(v) for k, v in result.items()} })")
    return result


def scene_label(scene_id: int, dsn: str | None = None) -> str:
    """``<product id> <sensing date>`` of a catalogue scene (names a mapped task in the UI)."""
    from cbmflow.core import db

    try:
        with db.connect(dsn) as conn:
            s = catalogue.get(conn, int(scene_id))
    except Exception:  # noqa: BLE001 - a label is cosmetic; the task itself reports real errors
        return f"scene {scene_id}"
    return f"{s.product_id} {s.sensing_time:%Y-%m-%d}"


# Claim-holding sessions of this process, by scene id: open while the scene is being processed.
_HOLDERS: dict[int, Any] = {}


def _claim(dsn: str | None, scene_id: int, reprocess: bool) -> Scene:
    """Claim a scene for this process: the claim lock on a session of its own, then status ``processing``.

    A claim left by a worker that died (its session, and so its lock, is gone) is released first,
    so a retry takes the scene at once; a live worker's claim makes this a NothingToDo.
    """
    from cbmflow.core import db

    holder = db.connect(dsn, autocommit=True)
    try:
        if not catalogue.hold_claim(holder, scene_id):
            name = catalogue.get(holder, scene_id).product_id
            raise NothingToDo(f"scene {name} (id {scene_id}) is being processed by a live worker")
        with db.transaction(dsn) as conn:
            released = catalogue.release_orphans(conn, ids=[scene_id])
            if released:
                log.warning("scene id %s: released the claim of a worker that is gone", scene_id)
            scene = catalogue.get(conn, scene_id)
            if not catalogue.claim(conn, scene_id, claimable_statuses(reprocess)):
                raise NothingToDo(f"scene {scene.product_id} (id {scene_id}) is {scene.status}; only "
                                  f"{'/'.join(claimable_statuses(reprocess))} scenes are processed"
                                  + ("" if reprocess else " (set reprocess to redo ready scenes)"))
    except BaseException:
        holder.close()
        raise
    old = _HOLDERS.pop(scene_id, None)
    if old is not None:
        old.close()
    _HOLDERS[scene_id] = holder
    return scene


def _release_claim(scene_id: int) -> None:
    holder = _HOLDERS.pop(scene_id, None)
    if holder is not None:
        holder.close()  # ends the session: the claim lock goes with it


def _run_claimed(dsn: str | None, scene: Scene, work: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Run the work for a claimed scene; mark it ready with the assets or failed with the error."""
    from cbmflow.core import db

    assert scene.id is not None
    try:
        try:
            assets = work()
            if not assets:
                raise ProcessingError(f"scene {scene.product_id}: processing produced no band")
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            with db.transaction(dsn) as conn:
                catalogue.mark_failed(conn, scene.id, message)
            log.warning("scene %s failed: %s", scene.product_id, message)
            raise
        with db.transaction(dsn) as conn:
            catalogue.mark_ready(conn, scene.id, assets)
    finally:
        _release_claim(scene.id)
    log.info("scene %s ready: %s", scene.product_id, json.dumps(assets))
    return assets


def _local_product(scene: Scene, tmp: Path) -> Path:
    """The scene's source product (SAFE folder or zip) as a local path (downloads an S3 zip)."""
    uri = next((scene.source_assets[k] for k in SAFE_KEYS if k in scene.source_assets), None)
    if uri is None:
        raise InputError(f"scene {scene.product_id}: no source product among source_assets "
                         f"{sorted(scene.source_assets)} (expected one of {', '.join(SAFE_KEYS)})")
    parsed = storage.parse(uri)
    if not parsed.is_s3:
        path = Path(parsed.key)
        if path.name == "manifest.safe":
            path = path.parent
        if not path.exists():
            from cbmflow.core.errors import NotFound

            raise NotFound(f"scene {scene.product_id}: source product {path} does not exist")
        return path
    if not parsed.key.endswith(".zip"):
        raise InputError(f"scene {scene.product_id}: S3 source {uri} must be a .zip product")
    return storage.download(uri, tmp / Path(parsed.key).name)


def _local_file(uri: str, tmp: Path) -> Path:
    parsed = storage.parse(uri)
    if parsed.is_s3:
        return storage.download(uri, tmp / Path(parsed.key).name)
    return Path(parsed.key)


def _utm_of(scene: Scene) -> int:
    if not scene.footprint_wkt:
        raise InputError(f"scene {scene.product_id}: no footprint to choose a UTM zone; pass epsg")
    from shapely import wkt

    from cbmflow.core.geo import utm_epsg

    c = wkt.loads(scene.footprint_wkt).centroid
    return utm_epsg(c.x, c.y)


def split_bands(product: Path, bands: Sequence[str], uri_for: Callable[[str], str],
                tags: dict[str, str], zero_is_nodata: bool = True) -> dict[str, str]:
    """Write each band of a SNAP GeoTIFF as a float32 COG (nodata NaN); band names from descriptions or order."""
    import numpy as np
    import rasterio

    from cbmflow.core.cog import write_cog

    out: dict[str, str] = {}
    with rasterio.open(product) as src:
        if src.count < len(bands):
            raise ProcessingError(f"{product.name} has {src.count} band(s), expected {len(bands)}: {list(bands)}")
        descriptions = [d or "" for d in src.descriptions]
        for i, band in enumerate(bands, start=1):
            pol = band.split("_")[-1]
            index = next((j + 1 for j, d in enumerate(descriptions) if pol in d.upper()), i)
            arr = src.read(index).astype(np.float32)
            if zero_is_nodata:
                arr[arr == 0] = np.nan
            if src.nodata is not None and not np.isnan(src.nodata):
                arr[arr == src.nodata] = np.nan
            uri = uri_for(band)
            with storage.rasterio_env():
                write_cog(uri, arr, crs=src.crs, transform=src.transform, nodata=float("nan"),
                          band_names=[band], tags={**tags, "CBMFLOW_SOURCE_BAND": descriptions[index - 1]})
            out[band] = uri
    return out


def _polarisations_of(scene: Scene, requested: Sequence[str]) -> tuple[str, ...]:
    declared = scene.properties.get("sar:polarizations") or scene.properties.get("polarisations")
    if declared:
        pols = tuple(p for p in requested if p in {str(x).upper() for x in declared})
        if not pols:
            raise InputError(f"scene {scene.product_id}: none of {list(requested)} in its polarisations {declared}")
        return pols
    return tuple(requested)


def process_bs_scene(
    scene_id: int,
    *,
    card_root: str | None = None,
    engine: str = "sarsen",
    dsn: str | None = None,
    reprocess: bool = False,
    dem: str | None = None,
    epsg: int | None = None,
    polarisations: Sequence[str] = ("VV", "VH"),
    resolution: float = 10.0,
    runner: str = "gpt",
    graph_params: dict[str, Any] | None = None,
    threads: int = 2,
    cache: str = "4G",
    timeout: float = 3 * 3600,
) -> dict[str, str]:
    """Make CARD-BS for one catalogue scene (sarsen or SNAP), publish COGs, mark it ready; band -> URI."""
    if engine not in BS_ENGINES:
        raise InputError(f"CARD-BS engine {engine!r} unknown; choose one of {BS_ENGINES}")
    root = resolve_card_root(card_root)
    scene = _claim(dsn, scene_id, reprocess)
    prefix = card_prefix(root, "bs", scene.sensing_time)

    def work() -> dict[str, str]:
        with tempfile.TemporaryDirectory(prefix="cbmflow-bs-") as tmpdir:
            tmp = Path(tmpdir)
            if engine == "sarsen":
                return _bs_sarsen(scene, tmp, prefix, dem, epsg, polarisations, resolution)
            return _bs_snap(scene, tmp, root, dem, epsg, polarisations, resolution, runner,
                            graph_params or {}, threads, cache, timeout)

    return _run_claimed(dsn, scene, work)


def _bs_sarsen(scene: Scene, tmp: Path, prefix: str, dem: str | None, epsg: int | None,
               polarisations: Sequence[str], resolution: float) -> dict[str, str]:
    from cbmflow.card import backscatter as sarsen_bs

    dem_uri = dem or scene.properties.get("dem")
    if not dem_uri:
        raise InputError(f"scene {scene.product_id}: the sarsen engine needs a DEM GeoTIFF (param dem)")
    safe = _local_product(scene, tmp)
    available = sarsen_bs.available_polarisations(safe)
    pols = tuple(p for p in _polarisations_of(scene, polarisations) if p in available)
    if not pols:
        raise InputError(f"scene {scene.product_id}: none of {list(polarisations)} has measurement data in "
                         f"{safe.name}; available: {sorted(available) or 'none'}")
    return sarsen_bs.sarsen_backscatter(safe, _local_file(str(dem_uri), tmp), out_uri=prefix,
                                        product_id=scene.product_id, polarisations=pols, epsg=epsg,
                                        resolution=resolution)


def _bs_snap(scene: Scene, tmp: Path, root: str, dem: str | None, epsg: int | None,
             polarisations: Sequence[str], resolution: float, runner: str, graph_params: dict[str, Any],
             threads: int, cache: str, timeout: float) -> dict[str, str]:
    from cbmflow.card import graphs, snap

    if runner == "gpt":
        snap.find_gpt()  # fail at once, before any download, when SNAP is absent
    pols = _polarisations_of(scene, polarisations)
    params: dict[str, Any] = {
        "polarisations": ",".join(pols), "pixel_spacing": int(resolution),
        "map_projection": f"EPSG:{epsg or _utm_of(scene)}",
    }
    if dem:
        params.update({"dem_name": "External DEM", "external_dem_file": str(_local_file(dem, tmp))})
    params.update(graph_params)
    target = tmp / f"{scene.product_id}_bs.tif"
    params.update({"input": str(_local_product(scene, tmp)), "output": str(target)})
    graph_file = graphs.write_graph("card_bs", params, tmp / "card_bs.xml")
    snap.run_graph(graph_file, target, runner=runner, threads=threads, cache=cache, timeout=timeout)
    values = graphs.resolve_parameters("card_bs", params)
    tags = {"CBMFLOW_ENGINE": f"snap-{runner}", "CBMFLOW_CARD_TYPE": "bs", "CBMFLOW_PRODUCT_ID": scene.product_id,
            "CBMFLOW_CALIBRATION": values["calibration"] + ("+terrain-flattening" if values["terrain_flattening"] == "true" else ""),
            "CBMFLOW_UNITS": "dB" if values["db"] == "true" else "linear", "CBMFLOW_DEM": values["dem_name"]}
    return split_bands(target, pols, lambda b: card_key(root, "bs", scene.sensing_time, scene.product_id, b), tags)


def pending_pairs(*, start: datetime | None, end: datetime | None, dsn: str | None = None,
                  reprocess: bool = False, aoi_wkt: str | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """COH6 pairs to process in [start, end) as small dicts, and the ids of secondaries without a partner."""
    from datetime import timedelta

    from cbmflow.card import pairing
    from cbmflow.core import db

    with db.connect(dsn) as conn:
        secondaries = catalogue.find(conn, card_type="c6", statuses=claimable_statuses(reprocess),
                                     start=start, end=end, aoi_wkt=aoi_wkt or None)
        if not secondaries:
            return [], []
        first = min(s.sensing_time for s in secondaries) - timedelta(days=13)
        candidates = catalogue.find(conn, card_type="c6", start=first, end=end, aoi_wkt=aoi_wkt or None)
    pairs, unpaired = pairing.pair_scenes(secondaries, candidates)
    return ([{"secondary_id": p.secondary_id, "reference_id": p.reference_id, "days": p.days} for p in pairs],
            [s.id for s in unpaired if s.id is not None])


def process_coh6_pair(
    secondary_id: int,
    reference_id: int,
    *,
    card_root: str | None = None,
    dsn: str | None = None,
    reprocess: bool = False,
    dem: str | None = None,
    epsg: int | None = None,
    polarisations: Sequence[str] = ("VV", "VH"),
    runner: str = "gpt",
    graph_params: dict[str, Any] | None = None,
    threads: int = 2,
    cache: str = "4G",
    timeout: float = 6 * 3600,
) -> dict[str, str]:
    """Make CARD-COH6 for a (reference, secondary) SLC pair with SNAP; assets go on the secondary's row."""
    from cbmflow.core import db

    root = resolve_card_root(card_root)
    with db.connect(dsn) as conn:
        reference = catalogue.get(conn, reference_id)
    scene = _claim(dsn, secondary_id, reprocess)

    def work() -> dict[str, str]:
        from cbmflow.card import graphs, snap

        if runner == "gpt":
            snap.find_gpt()
        with tempfile.TemporaryDirectory(prefix="cbmflow-coh6-") as tmpdir:
            tmp = Path(tmpdir)
            pols = _polarisations_of(scene, polarisations)
            params: dict[str, Any] = {"polarisations": ",".join(pols),
                                      "map_projection": f"EPSG:{epsg or _utm_of(scene)}"}
            if dem:
                params.update({"dem_name": "External DEM", "external_dem_file": str(_local_file(dem, tmp))})
            params.update(graph_params or {})
            target = tmp / f"{scene.product_id}_coh6.tif"
            params.update({"reference": str(_local_product(reference, tmp)),
                           "secondary": str(_local_product(scene, tmp)), "output": str(target)})
            graph_file = graphs.write_graph("card_coh6", params, tmp / "card_coh6.xml")
            snap.run_graph(graph_file, target, runner=runner, threads=threads, cache=cache, timeout=timeout)
            tags = {"CBMFLOW_ENGINE": f"snap-{runner}", "CBMFLOW_CARD_TYPE": "c6",
                    "CBMFLOW_PRODUCT_ID": scene.product_id, "CBMFLOW_REFERENCE": reference.product_id}
            return split_bands(target, [f"COH_{p}" for p in pols],
                               lambda b: card_key(root, "c6", scene.sensing_time, scene.product_id, b), tags)

    return _run_claimed(dsn, scene, work)


def process_s2_scene(scene_id: int, *, card_root: str | None = None, dsn: str | None = None,
                     reprocess: bool = False, sen2cor_timeout: float = 2 * 3600) -> dict[str, str]:
    """Make CARD-2A for one S2 scene: ESA L2A directly, or L1C through Sen2Cor; band -> URI."""
    from cbmflow.card import optical as s2

    root = resolve_card_root(card_root)
    scene = _claim(dsn, scene_id, reprocess)

    def uri_for(band: str) -> str:
        return card_key(root, "s2", scene.sensing_time, scene.product_id, band)

    def work() -> dict[str, str]:
        tags = {"CBMFLOW_PRODUCT_ID": scene.product_id, "CBMFLOW_SOURCE_LEVEL": scene.product_type}
        if "L2A" in scene.product_type.upper():
            meta = s2.scene_metadata(scene.source_assets, scene.properties, scene.product_id)
            return s2.ingest_l2a(scene.source_assets, meta, uri_for,
                                 tags={**tags, "CBMFLOW_ENGINE": "esa-l2a"})
        if "L1C" not in scene.product_type.upper():
            raise InputError(f"scene {scene.product_id}: product type {scene.product_type!r} is neither L2A nor L1C")
        from cbmflow.card import sen2cor

        exe = sen2cor.find_l2a_process()  # fail at once when Sen2Cor is absent
        with tempfile.TemporaryDirectory(prefix="cbmflow-s2-") as tmpdir:
            tmp = Path(tmpdir)
            l2a = sen2cor.run_sen2cor(_local_product(scene, tmp), tmp / "l2a", exe=exe, timeout=sen2cor_timeout)
            files = sen2cor.l2a_band_files(l2a)
            meta = s2.read_l2a_metadata((l2a / "MTD_MSIL2A.xml").read_bytes())
            return s2.ingest_l2a({b: str(p) for b, p in files.items()}, meta, uri_for,
                                 tags={**tags, "CBMFLOW_ENGINE": "sen2cor"})

    return _run_claimed(dsn, scene, work)


def outcome(ids: Sequence[int], dsn: str | None = None) -> dict[str, list[int]]:
    """Status -> ids for the given catalogue ids (what a run achieved)."""
    from cbmflow.core import db

    result: dict[str, list[int]] = {}
    if not ids:
        return result
    with db.connect(dsn) as conn:
        for s in catalogue.find(conn, ids=list(ids)):
            assert s.id is not None
            result.setdefault(s.status, []).append(s.id)
    return result


def raise_for_failed(ids: Sequence[int], dsn: str | None = None) -> dict[str, int]:
    """Counts per status of the ids; ProcessingError naming every failed or unprocessed scene and its error."""
    from cbmflow.core import db

    if not ids:
        return {}
    with db.connect(dsn) as conn:
        catalogue.release_orphans(conn, ids=list(ids))  # a dead worker's claim is this run's failure
        conn.commit()
        scenes = catalogue.find(conn, ids=list(ids))
    # 'processing' with a live claim is another run's work (overlapping windows), not a failure of this run
    failed = [s for s in scenes if s.status in ("failed", "discovered")]
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s.status] = counts.get(s.status, 0) + 1
    if failed:
        lines = "; ".join(f"{s.product_id} (id {s.id}, {s.status}): {s.last_error or 'not processed'}"
                          for s in failed)
        raise ProcessingError(f"{len(failed)} of {len(scenes)} scene(s) not ready: {lines}")
    return counts


# --- command line --------------------------------------------------------------------------------

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
    """Add ``cbmflow card graph|pending|bs|coh6|s2|reset`` (and ``sarsen`` from cbmflow.card.backscatter)."""
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

    try:
        from cbmflow.card import backscatter as sarsen_bs
    except ImportError:
        return
    add = getattr(sarsen_bs, "add_sarsen_command", None)
    if add is not None:
        add(sub)


__all__ = ["card_key", "card_prefix", "resolve_card_root", "pending", "pending_pairs", "process_bs_scene",
           "process_coh6_pair", "process_s2_scene", "outcome", "raise_for_failed", "split_bands"]
