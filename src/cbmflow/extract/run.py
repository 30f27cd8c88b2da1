"""Scenes from the catalogue into PostGIS: per-scene transactions, planning units, reports, verification.

The statistics themselves are :mod:`cbmflow.extract.zonal`; the rows go to PostGIS through
:mod:`cbmflow.extract.sink`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cbmflow.core import bands as bands_mod
from cbmflow.core.dates import to_utc
from cbmflow.core.errors import CbmError, CorruptData, InputError
from cbmflow.extract.pixelindex import (
    Grid,
    IndexCache,
    PixelIndex,
)
from cbmflow.extract.zonal import (
    READ_ENV,
    ZonalResult,
    gather,
    index_for,
    open_raster,
    prepare_parcels,
    scl_histogram,
    scl_on_grid,
    valid_mask,
    zonal_from_values,
)
from cbmflow.parcels.store import get_aoi, load_parcels

log = logging.getLogger(__name__)

S1_TILE_M = 20_000.0  # fixed tiling of an AOI's UTM grid for S1 CARD units


# --------------------------------------------------------------------------------------------
# Scenes from the catalogue into PostGIS
# --------------------------------------------------------------------------------------------


# Peak working memory of one band's statistics, per indexed pixel (values, mask, sort keys, sorted
# float64 values, deviations): measured ~30 B; 32 B keeps a margin.
_BYTES_PER_INDEXED_PIXEL = 32
_PARALLEL_BUDGET = int(os.environ.get("CBMFLOW_EXTRACT_MEMORY_MB", "1536")) * 2**20


def parallel_bands(n_pixels: int) -> int:
    """How many bands of a scene to compute at once: 2 while their working sets fit the budget."""
    threads = int(os.environ.get("CBMFLOW_EXTRACT_THREADS", "2"))
    fits = max(1, _PARALLEL_BUDGET // max(1, _BYTES_PER_INDEXED_PIXEL * n_pixels))
    return max(1, min(threads, fits))


def _scene_stats(
    scene: Any, parcels: Any, parcel_key: str, *, buffer: float, min_area: float, cloud_mask: bool,
    cache: IndexCache | None,
) -> tuple[dict[str, ZonalResult], tuple[np.ndarray, np.ndarray] | None]:
    """All bands of a scene: statistics per band name, and the SCL histogram for S2."""
    from cbmflow.core import storage

    wanted = bands_mod.CARD_BANDS[scene.card_type]
    missing = [b for b in wanted if b not in scene.assets]
    if missing:
        raise InputError(f"scene {scene.id} ({scene.product_id}) has no asset for band(s) {missing}; "
                         f"assets: {sorted(scene.assets)}")
    pids = np.asarray(parcels["pid"], dtype=np.int64)

    def index_of(src: Any) -> PixelIndex:
        def make() -> tuple[np.ndarray, np.ndarray]:
            geoms, pos = prepare_parcels(parcels, src.crs, buffer=buffer, min_area=min_area)
            return geoms, pids[pos]

        return index_for(Grid.of(src), parcel_key, make, cache)

    out: dict[str, ZonalResult] = {}
    hist = None
    scl_index = None
    scl_values = None
    with storage.rasterio_env(None, **READ_ENV):
        if "SCL" in wanted:
            uri = scene.assets["SCL"]
            with open_raster(uri) as scl:
                scl_index = index_of(scl)
                scl_values = gather(scl, 1, scl_index, uri)
                hist = scl_histogram(scl_index, scl_values)

    def one_band(band: str, hint: PixelIndex | None) -> tuple[ZonalResult, PixelIndex]:
        uri = scene.assets[band]
        # rasterio environments are per thread: every band opens its own
        with storage.rasterio_env(None, **READ_ENV), open_raster(uri) as src:
            if src.crs is None:
                raise CorruptData(f"raster {uri} of scene {scene.id} has no CRS")
            index = hint if hint is not None and hint.grid == Grid.of(src) else index_of(src)
            values = gather(src, 1, index, uri)
            ok = valid_mask(values, src.nodatavals[0])
            if cloud_mask and "SCL" in wanted:
                if scl_index is not None and scl_index.grid == index.grid and scl_values is not None:
                    scl_here = scl_values
                else:
                    scl_here = scl_on_grid(scene.assets["SCL"], index)
                ok &= ~np.isin(scl_here, list(bands_mod.SCL_CLOUDY))
            return zonal_from_values(index, values, ok), index

    data_bands = [b for b in wanted if b != "SCL"]
    if data_bands:
        first, index = one_band(data_bands[0], None)  # builds (or fetches) the pixel index
        out[data_bands[0]] = first
        rest = data_bands[1:]
        if rest and parallel_bands(index.pix.size) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=parallel_bands(index.pix.size)) as pool:
                for band, (res, _) in zip(rest, pool.map(lambda b: one_band(b, index), rest), strict=True):
                    out[band] = res
        else:
            for band in rest:
                out[band] = one_band(band, index)[0]
    return out, hist


def _failed_band(scene: Any, exc: BaseException) -> str | None:
    """The band whose raster the error names, when it names one."""
    text = str(exc)
    for band, uri in sorted((scene.assets or {}).items()):
        if uri and uri in text:
            return str(band)
    return None


def _new_summary() -> dict[str, Any]:
    return {"extracted": [], "no_data": [], "failed": {}, "rows": 0, "skipped": [], "bands": {}}


def extract_scenes(
    scene_ids: list[int],
    *,
    aoi: str,
    year: int,
    dsn: str | None = None,
    reprocess: bool = False,
    buffer: float = 0.0,
    min_area: float = 0.0,
    cloud_mask: bool = False,
    tile_bbox: tuple[float, float, float, float] | Sequence[float] | None = None,
    index_cache: IndexCache | None = None,
    run_id: str | None = None,
    planned_at: str | datetime | None = None,
) -> dict[str, Any]:
    """Extract and store the signatures of catalogue scenes for one AOI, exactly once per (scene, AOI).

    Each scene is one transaction: lock its ``extractions`` row (the claim), compute, replace the
    AOI's rows, set ``extracted`` (or ``no_data`` when no parcel has a valid pixel), commit. A bad
    file marks only that scene ``failed`` and the others continue; an outage of storage or database
    raises :class:`~cbmflow.core.errors.TransientError` at once (the scene stays as it was, the retry
    redoes it). Scenes already done are skipped: without ``reprocess`` any done scene, with it the
    ones this ``run_id`` already did (so a retry of a mapped task finishes exactly its own scenes).
    "Already did" means since ``planned_at`` (the unit's plan): a cleared run plans again, so it
    retries the scenes that failed (or, with ``reprocess``, redoes those done) before that new plan.
    """
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db
    from cbmflow.core.errors import transient_cause
    from cbmflow.extract import sink

    summary = _new_summary()
    plan_time = to_utc(planned_at, what="planned_at") if isinstance(planned_at, str) else planned_at
    conn = db.connect(dsn)
    total = len(scene_ids)
    try:
        info = get_aoi(conn, aoi)
        box = tuple(float(v) for v in tile_bbox) if tile_bbox else None
        parcels = load_parcels(conn, info, year, bbox=box)  # type: ignore[arg-type]
        catalogue.register_extractions(conn, scene_ids, aoi, year)  # the work exists even if a try dies
        conn.commit()
        bbox_key = ",".join(f"{v:.0f}" for v in tile_bbox) if tile_bbox else "all"
        parcel_key = f"{info.name}-{year}-v{info.parcels_version}-b{buffer:g}-a{min_area:g}-{bbox_key}"
        partitions: set[int] = set()
        for i, sid in enumerate(scene_ids, 1):
            scene = catalogue.get(conn, sid)
            conn.commit()
            where = f"scene {i}/{total} {scene.product_id} (id {sid}, AOI {aoi})"
            if scene.year not in partitions:  # created in a short transaction of its own
                with conn.transaction():
                    db.ensure_year_partition(conn, scene.year)
                partitions.add(scene.year)
            try:
                with conn.transaction():
                    claim = catalogue.claim_extraction(conn, sid, aoi, year)
                    mine = (run_id is not None and claim.run_id == run_id
                            and (plan_time is None or claim.updated_at is None or claim.updated_at >= plan_time))
                    stale = claim.parcels_version < info.parcels_version  # the AOI's parcels changed since
                    if (claim.status in catalogue.DONE_STATUSES and not stale
                            and (not reprocess or claim.contended or mine)):
                        log.info("%s: already %s%s, skipped", where, claim.status,
                                 " (by a concurrent worker)" if claim.contended else "")
                        summary["skipped"].append(sid)
                        continue
                    if claim.status == "failed" and (mine or claim.contended):
                        # failed earlier in this run (a previous try) or just now by a concurrent worker:
                        # still a culprit, not tried twice; a failure of an earlier run is tried again
                        summary["failed"][str(sid)] = f"{scene.product_id}: failed in an earlier try"
                        summary["skipped"].append(sid)
                        continue
                    if claim.status == "failed":  # an earlier run's failure, tried again: the file may be repaired
                        from cbmflow.core import storage

                        storage.clear_http_cache()  # GDAL must read the object anew, not its cached old bytes
                        log.info("%s: failed before (%s), trying again", where, "reprocess" if reprocess else
                                 "a failure stays a culprit until extracted or waived")
                    if scene.status not in ("ready", "extracted") or not scene.assets:
                        log.warning("%s: catalogue status %s, no CARD rasters: left pending", where, scene.status)
                        summary["skipped"].append(sid)
                        continue
                    if len(parcels) == 0:
                        log.warning("%s: AOI %s has no parcels for %s in this unit", where, aoi, year)
                    stats, hist = _scene_stats(scene, parcels, parcel_key, buffer=buffer, min_area=min_area,
                                               cloud_mask=cloud_mask, cache=index_cache)
                    n = sink.write_scene(conn, sid, scene.year, stats, scl_hist=hist, aoi=aoi, parcel_year=year,
                                         fresh=claim.status == "pending")
                    status = "extracted" if n else "no_data"
                    catalogue.finish_extraction(
                        conn, sid, aoi, year, status, rows=n, run_id=run_id, parcels_version=info.parcels_version,
                        error=None if n else "no parcel of the AOI has a valid pixel in this scene "
                                             "(all nodata, masked, or no overlap)")
            except Exception as exc:  # noqa: BLE001 - classified below: outage -> retry, bad file -> failed
                _safe_rollback(conn)
                transient = transient_cause(exc)
                if transient is not None:
                    log.warning("%s: interrupted by an outage, the retry redoes it: %s", where, transient)
                    from cbmflow.core import storage

                    storage.clear_http_cache()  # GDAL must not remember the outage as a bad file
                    _note_interrupted(conn, sid, aoi, year, str(transient))
                    raise transient from exc
                band = _failed_band(scene, exc)
                msg = f"{scene.product_id}{' band ' + band if band else ''}: {type(exc).__name__}: {exc}"
                if isinstance(exc, CbmError):
                    log.warning("%s failed: %s", where, msg)
                else:
                    log.warning("%s failed unexpectedly: %s", where, msg, exc_info=True)
                with conn.transaction():
                    catalogue.claim_extraction(conn, sid, aoi, year)
                    catalogue.finish_extraction(conn, sid, aoi, year, "failed", run_id=run_id, error=msg, band=band,
                                                parcels_version=info.parcels_version)
                summary["failed"][str(sid)] = msg
                continue
            if n:
                per_band = ", ".join(f"{b} {len(r):,}" for b, r in stats.items())
                log.info("%s: %s rows (%s)", where, f"{n:,}", per_band)
                summary["extracted"].append(sid)
            else:
                log.warning("%s: NO DATA - no parcel has a valid pixel (all nodata or no overlap)", where)
                summary["no_data"].append(sid)
            summary["rows"] += n
            for band, res in stats.items():
                summary["bands"][band] = summary["bands"].get(band, 0) + len(res)
    finally:
        conn.close()
    log.info("AOI %s: extracted %d scene(s), %s rows; no data %d; failed %d; skipped %d", aoi,
             len(summary["extracted"]), f"{summary['rows']:,}", len(summary["no_data"]), len(summary["failed"]),
             len(summary["skipped"]))
    return summary


def _safe_rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - a dead connection has nothing to roll back
        pass


def _note_interrupted(conn: Any, sid: int, aoi: str, year: int, error: str) -> None:
    """Record the outage on the scene's row when the database is still reachable (best effort)."""
    from cbmflow.catalogue import store as catalogue

    try:
        with conn.transaction():
            catalogue.note_interrupted(conn, sid, aoi, year, error)
    except Exception:  # noqa: BLE001 - the database itself may be what is down
        log.debug("could not record the interruption of scene %s", sid, exc_info=True)


def _as_dt(value: Any, field: str) -> datetime | None:
    from cbmflow.core.dates import to_utc

    return to_utc(value, what=field)


def _footprint_bounds(footprint_wkt: str | None, epsg: int) -> tuple[float, float, float, float] | None:
    if not footprint_wkt:
        return None
    import shapely
    from pyproj import Transformer
    from shapely.ops import transform

    g = shapely.from_wkt(footprint_wkt)
    t = Transformer.from_crs(4326, epsg, always_xy=True)
    x0, y0, x1, y1 = transform(t.transform, g).bounds
    return float(x0), float(y0), float(x1), float(y1)


def plan_units(
    *,
    card_type: str | None,
    start: Any = None,
    end: Any = None,
    reprocess: bool = False,
    aoi: str,
    year: int,
    dsn: str | None = None,
    batch_size: int = 25,
    max_units: int = 512,
) -> list[dict[str, Any]]:
    """Work units for the extraction DAG: small JSON dicts of (tile, batch of scene ids) to map over."""
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db

    if card_type in (None, "", "all"):
        types: list[str] = list(catalogue.CARD_TYPES)
    elif card_type in catalogue.CARD_TYPES:
        types = [card_type]
    else:
        raise InputError(f"card_type {card_type!r} unknown; use one of {', '.join(catalogue.CARD_TYPES)} or all")
    s, e = _as_dt(start, "start"), _as_dt(end, "end")
    if s is None:
        s = datetime(year, 1, 1, tzinfo=UTC)
    if e is None:
        e = datetime(year + 1, 1, 1, tzinfo=UTC)
    import shapely

    with db.connect(dsn) as conn:
        info = get_aoi(conn, aoi)
        # Scenes with CARD rasters ('extracted' = done for some AOI, maybe not this one).
        scenes = [sc for t in types
                  for sc in catalogue.find(conn, card_type=t, statuses=["ready", "extracted"], start=s, end=e)
                  if sc.assets]
        row = conn.execute(
            "SELECT ST_AsText(ST_Transform(ST_SetSRID(ST_Extent(geom)::geometry, %s), 4326)) "
            "FROM parcels WHERE aoi = %s AND year = %s", (info.epsg, info.name, int(year))).fetchone()
        if not row or row[0] is None:
            log.warning("AOI %s has no parcels for %s: nothing to plan", aoi, year)
            return []
        extent = shapely.from_wkt(row[0])
        # Scenes whose footprint misses the AOI's parcels are left for other AOIs (no footprint: kept).
        scenes = [sc for sc in scenes if not sc.footprint_wkt or shapely.from_wkt(sc.footprint_wkt).intersects(extent)]
        keys = [(int(sc.id), info.name, int(year)) for sc in scenes if sc.id]
        state = catalogue.get_extractions(conn, keys)
        if not reprocess:
            # What this AOI has not got: never tried, interrupted, failed (re-planned by every run over
            # its scope until extracted or waived), or done for an older parcel set.
            waived = {(w.obsid, w.aoi, w.year) for w in catalogue.waivers(conn, keys=keys)}

            def due(k: tuple[int, str, int]) -> bool:
                x = state.get(k)
                return (x is None or x.status == "pending"
                        or (x.status == "failed" and k not in waived)
                        or (x.status in catalogue.DONE_STATUSES and x.parcels_version < info.parcels_version))

            retried = sum(1 for k in keys if state.get(k) is not None and state[k].status == "failed" and k not in waived)
            if retried:
                log.info("AOI %s %s: re-planning %d failed scene extraction(s) (they stay culprits until "
                         "extracted or waived)", aoi, year, retried)
            if waived:
                log.info("AOI %s %s: %d failed scene extraction(s) waived by an operator, not re-planned",
                         aoi, year, len(waived))
            scenes = [sc for sc in scenes if due((int(sc.id), info.name, int(year)))]  # type: ignore[arg-type]
        catalogue.register_extractions(conn, [int(sc.id) for sc in scenes if sc.id], info.name, int(year))
        conn.commit()
    groups: dict[tuple[str, str], list[Any]] = {}
    for sc in scenes:
        if sc.tile:
            tile = sc.tile
        else:  # S1 CARD without a tile id: the fixed 20 km tile of the AOI grid holding its footprint centre
            b = _footprint_bounds(sc.footprint_wkt, info.epsg)
            if b is None:
                tile = "all"
            else:
                cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                tile = f"E{int(cx // S1_TILE_M)}N{int(cy // S1_TILE_M)}"
        groups.setdefault((sc.card_type, tile), []).append(sc)
    total = sum(len(v) for v in groups.values())
    size = max(1, int(batch_size))
    while sum(math.ceil(len(v) / size) for v in groups.values()) > max_units:
        size *= 2
    units: list[dict[str, Any]] = []
    for (ct, tile), scs in sorted(groups.items()):
        for i in range(0, len(scs), size):
            batch = scs[i: i + size]
            boxes = [b for b in (_footprint_bounds(x.footprint_wkt, info.epsg) for x in batch) if b]
            bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                     max(b[3] for b in boxes)] if boxes and ct == "s2" else None)
            first, last = batch[0].sensing_time, batch[-1].sensing_time
            units.append({"scene_ids": [int(x.id) for x in batch], "aoi": aoi, "year": int(year),
                          "card_type": ct, "tile": tile, "tile_bbox": bbox, "parcels_version": info.parcels_version,
                          "label": f"{aoi} {ct} {tile} {first:%Y-%m-%d}..{last:%Y-%m-%d} ({len(batch)})"})
    planned_at = _db_now(dsn).isoformat()
    for u in units:
        u["planned_at"] = planned_at
    if units:
        log.info("AOI %s: planned %d unit(s) for %d scene(s) (batch size %d)", aoi, len(units), total, size)
    else:
        log.info("AOI %s %s: nothing to do - no scene with CARD rasters awaits extraction%s", aoi, year,
                 "" if reprocess else " (set reprocess to redo extracted, no_data and failed scenes)")
    return units


def _db_now(dsn: str | None) -> datetime:
    from cbmflow.core import db

    with db.connect(dsn) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def scope_waivers(scope: dict[str, Any] | None, dsn: str | None = None) -> list[dict[str, Any]]:
    """The waivers of failed extractions within a run's scope (``aois``, ``year``, ``start``, ``end``, ``card_type``)."""
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db

    if not scope or scope.get("year") is None:
        return []
    ct = scope.get("card_type")
    with db.connect(dsn) as conn:
        found = catalogue.waivers(conn, aois=scope.get("aois"), year=int(scope["year"]),
                                  start=_as_dt(scope.get("start"), "start"), end=_as_dt(scope.get("end"), "end"),
                                  card_types=None if ct in (None, "", "all") else [str(ct)])
    return [{"obsid": w.obsid, "product_id": w.product_id, "aoi": w.aoi, "year": w.year, "reason": w.reason,
             "waived_by": w.waived_by, "waived_at": w.waived_at.isoformat(), "error": w.error} for w in found]


def extraction_report(units: Sequence[dict[str, Any]], *, reprocess: bool = False,
                      dsn: str | None = None, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the database says became of every planned (scene, AOI): done, no_data, failed or not done.

    A scene counts as done when its status is ``extracted``/``no_data`` (with ``reprocess``: set
    after the plan). The report is read from ``extractions``, not from task results, so a task that
    died without a result cannot hide a hole.
    """
    from cbmflow.catalogue import store as catalogue
    from cbmflow.core import db

    keys = [(int(sid), str(u["aoi"]), int(u["year"])) for u in units for sid in u["scene_ids"]]
    planned = {str(u["aoi"]): _as_dt(u.get("planned_at"), "planned_at") for u in units}
    versions = {str(u["aoi"]): int(u.get("parcels_version") or 0) for u in units}
    report: dict[str, Any] = {"planned": len(keys), "extracted": 0, "rows": 0, "no_data": [], "failed": [],
                              "not_done": [], "waived": scope_waivers(scope, dsn)}
    if not keys:
        return report
    with db.connect(dsn) as conn:
        rows = catalogue.get_extractions(conn, keys)
        names = {s.id: s.product_id for s in catalogue.find(conn, ids=sorted({k[0] for k in keys}))}
        report["bands"] = {
            bands_mod.name(int(code)) if code is not None else "?": int(n) for code, n in conn.execute(
                "SELECT s.band, count(*) FROM signatures s JOIN parcels p ON p.pid = s.pid "
                "JOIN unnest(%s::int[], %s::text[], %s::int[]) AS k(obsid, aoi, year) "
                "ON s.obsid = k.obsid AND p.aoi = k.aoi AND p.year = k.year GROUP BY s.band",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]))}
    for k in keys:
        x = rows.get(k)
        item = {"obsid": k[0], "product_id": names.get(k[0], f"id {k[0]}"), "aoi": k[1], "year": k[2],
                "status": x.status if x else "missing", "band": x.band if x else None,
                "error": (x.last_error if x else None), "attempts": x.attempts if x else 0}
        after_plan = (not reprocess or planned.get(k[1]) is None
                      or (x is not None and x.updated_at is not None and x.updated_at >= planned[k[1]]))  # type: ignore[operator]
        fresh = x is not None and x.parcels_version >= versions.get(k[1], 0) and after_plan
        if x is not None and x.status == "failed" and after_plan:  # a corrupt file is a failure, not "unfinished"
            report["failed"].append(item)
        elif x is not None and x.status in catalogue.DONE_STATUSES and fresh:
            if x.status == "no_data":
                report["no_data"].append(item)
            else:
                report["extracted"] += 1
                report["rows"] += x.rows
        else:
            report["not_done"].append(item)
    return report


def log_waivers(waived: Sequence[dict[str, Any]]) -> None:
    """Log every waiver of a run's scope (they are not culprits, but never silent)."""
    for w in waived:
        log.warning("waived: %s (id %s, AOI %s %s) has no rows by an operator's decision (%s, %s): %s; "
                    "its error: %s", w["product_id"], w["obsid"], w["aoi"], w["year"], w["waived_by"],
                    w["waived_at"], w["reason"], w["error"])


def verify_extraction(units: Sequence[dict[str, Any]] | None, *, reprocess: bool = False,
                      dsn: str | None = None, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's report; ProcessingError naming every failed or unfinished scene (product, band, error)."""
    from cbmflow.core.errors import ProcessingError

    if units is None:
        raise ProcessingError("the plan did not finish (see the plan task's log): nothing was verified")
    if not units:
        waived = scope_waivers(scope, dsn)
        log_waivers(waived)
        log.info("nothing to do: no scene awaited extraction (this run wrote nothing, by design)%s",
                 f"; {len(waived)} failed scene extraction(s) waived" if waived else "")
        return {"planned": 0, "waived": len(waived)}
    report = extraction_report(units, reprocess=reprocess, dsn=dsn, scope=scope)
    log_waivers(report["waived"])
    for item in report["no_data"]:
        log.warning("no data: %s (AOI %s %s): %s", item["product_id"], item["aoi"], item["year"], item["error"])
    culprits = report["failed"] + report["not_done"]
    if culprits:
        lines = []
        for c in culprits:
            what = "failed" if c["status"] == "failed" else f"not extracted (status {c['status']})"
            lines.append(f"{c['product_id']} (id {c['obsid']}, AOI {c['aoi']} {c['year']}"
                         f"{', band ' + c['band'] if c['band'] else ''}) {what}: {c['error'] or 'its task did not finish'}")
        for line in lines:
            log.error("culprit: %s", line)
        raise ProcessingError(f"{len(culprits)} of {report['planned']} planned scene extraction(s) are not done "
                              f"({len(report['failed'])} failed, {len(report['not_done'])} unfinished); "
                              f"the good ones are written. Culprits: " + "; ".join(lines))
    log.info("verified: %d scene extraction(s) done (%s rows), %d with no data, %d waived", report["extracted"],
             f"{report['rows']:,}", len(report["no_data"]), len(report["waived"]))
    return report


def extract_all(
    *,
    aoi: str,
    year: int,
    card_type: str | None = None,
    start: Any = None,
    end: Any = None,
    reprocess: bool = False,
    dsn: str | None = None,
    buffer: float = 0.0,
    min_area: float = 0.0,
    cloud_mask: bool = False,
) -> dict[str, Any]:
    """Plan and run every unit in this process (what the DAG does, without Airflow); returns the merged summary."""
    import uuid

    cache = IndexCache()
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    total: dict[str, Any] = dict(_new_summary(), units=0)
    for unit in plan_units(card_type=card_type, start=start, end=end, reprocess=reprocess, aoi=aoi, year=year, dsn=dsn):
        r = extract_scenes(unit["scene_ids"], aoi=aoi, year=year, dsn=dsn, reprocess=reprocess, buffer=buffer,
                           min_area=min_area, cloud_mask=cloud_mask, tile_bbox=unit["tile_bbox"], index_cache=cache,
                           run_id=run_id)
        total["units"] += 1
        total["extracted"] += r["extracted"]
        total["no_data"] += r["no_data"]
        total["skipped"] += r["skipped"]
        total["failed"].update(r["failed"])
        total["rows"] += r["rows"]
        for band, n in r["bands"].items():
            total["bands"][band] = total["bands"].get(band, 0) + n
    return total


