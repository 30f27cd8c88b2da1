"""CARD jobs: which scenes a run processes, the claim on each, and what became of them.

Only scenes in ``discovered`` or ``failed`` are claimed (plus ``ready``/``extracted`` with
``reprocess=True``): a backfill over a date range therefore redoes exactly the scenes that are not
ready. A claim is a session-level advisory lock of the worker plus status ``processing``; a worker
that dies releases it with its session. The engines that turn a claimed scene into COGs are in
:mod:`cbmflow.card.engines`; the keys they write in :mod:`cbmflow.card.keys`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core.errors import InputError, NothingToDo, ProcessingError

log = logging.getLogger(__name__)

CLAIMABLE: tuple[str, ...] = ("discovered", "failed")
REPROCESSABLE: tuple[str, ...] = CLAIMABLE + ("ready", "extracted")

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


def claim_scene(dsn: str | None, scene_id: int, reprocess: bool) -> Scene:
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


def release_claim(scene_id: int) -> None:
    holder = _HOLDERS.pop(scene_id, None)
    if holder is not None:
        holder.close()  # ends the session: the claim lock goes with it


def run_claimed(dsn: str | None, scene: Scene, work: Callable[[], dict[str, str]]) -> dict[str, str]:
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
        release_claim(scene.id)
    log.info("scene %s ready: %s", scene.product_id, json.dumps(assets))
    return assets


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


__all__ = ["CLAIMABLE", "REPROCESSABLE", "claim_scene", "claimable_statuses", "discover", "discover_pairs",
           "discover_stac", "outcome", "pending", "pending_pairs", "publish", "raise_for_failed",
           "release_claim", "run_claimed", "scene_label", "window"]
