"""Extract per-parcel signatures of ready CARD scenes into PostGIS, fanned out per tile and batch."""

from __future__ import annotations

from datetime import UTC

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from cbmflow.airflow_adapter import (
    card_ready_asset,
    extract_concurrency,
    retry_delay,
    signatures_asset,
)

DOC = """
### extract_signatures

Turns CARD rasters into per-parcel signatures (count, mean, std, min, max, p25, p50, p75 per band,
plus SCL histograms for Sentinel-2) in the `signatures` / `scl_histograms` tables.

**When it runs**: daily at 06:00 UTC, and whenever a CARD DAG publishes one of the Assets
`cbmflow_card_bs`, `cbmflow_card_c6`, `cbmflow_card_s2` (new scenes are ready). Trigger it by hand
for backfills.

**Tasks**
1. `plan` – finds the catalogue's scenes in status `ready` (plus `failed` and `extracted` when
   `reprocess` is true) within `start`..`end` (default: the whole `year`) and the AOI's extent, and
   groups them into units of (tile, batch of scenes): S2 by MGRS tile, S1 CARD by their grid tile
   (or a fixed 20 km tiling of the AOI's UTM grid). Batches grow so there are at most 512 units –
   far below Airflow's `max_map_length` of 1024 – and no unit is a single tiny scene when more
   share its tile.
2. `extract` – one mapped task per unit (`cbmflow.extract.extract_scenes`): builds the
   pixel-to-parcel index once for the tile's grid and reuses it for every scene and band of the
   batch, claims each scene (`ready -> processing`), writes its rows and marks it `extracted` in one
   transaction. A corrupt or missing raster fails only that scene (`failed`, with the error and
   the attempt count); the others continue. Retries with exponential backoff cover outages.
3. `summarise` – logs scenes and rows per band, publishes the `cbmflow_signatures` Asset, and
   fails the run (after everything else was written) if any scene failed, naming them.

**Params**: `aoi` (empty = every AOI with parcels for the year), `year` (empty = current year),
`start`/`end` (ISO dates, end exclusive), `card_type` (`bs`, `c6`, `s2`, `all`), `reprocess`
(re-extract `extracted` and `failed` scenes: rows are replaced, never duplicated), `batch_size`,
`buffer` (inward, metres), `min_area` (m²), `cloud_mask` (mask S2 cloudy SCL classes).

**Concurrency**: `extract` tasks run in parallel up to `$CBMFLOW_EXTRACT_CONCURRENCY` (the cluster
sets workers × worker concurrency; unset: uncapped on Celery, 2 on one machine). The first retry
waits `$CBMFLOW_RETRY_DELAY_S` (default 30 s), doubling after.
"""


@dag(
    dag_id="extract_signatures",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
        assets=(card_ready_asset("bs") | card_ready_asset("c6") | card_ready_asset("s2")),
    ),
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "aoi": Param("", type="string", description="AOI name; empty = every AOI with parcels"),
        "year": Param(None, type=["null", "integer"], description="parcel year; empty = current year"),
        "start": Param(None, type=["null", "string"], description="first sensing date (ISO), inclusive"),
        "end": Param(None, type=["null", "string"], description="last sensing date (ISO), exclusive"),
        "card_type": Param("all", enum=["all", "bs", "c6", "s2"], description="CARD type"),
        "reprocess": Param(False, type="boolean", description="re-extract extracted and failed scenes"),
        "batch_size": Param(25, type="integer", minimum=1, description="scenes per mapped task"),
        "buffer": Param(0.0, type="number", minimum=0, description="inward buffer in metres"),
        "min_area": Param(0.0, type="number", minimum=0, description="minimum parcel area in m²"),
        "cloud_mask": Param(False, type="boolean", description="mask cloudy SCL classes in S2 bands"),
    },
    default_args={"retries": 2, "retry_delay": retry_delay(30), "retry_exponential_backoff": True},
)
def extract_signatures() -> None:
    @task
    def plan(params: dict | None = None) -> list[dict]:  # type: ignore[type-arg]
        """Work units: (tile, batch of scene ids) per AOI."""
        from datetime import datetime

        from cbmflow import airflow_adapter, db, extract

        airflow_adapter.configure()
        p = params or {}
        year = int(p.get("year") or datetime.now(UTC).year)

        def _plan() -> list[dict]:  # type: ignore[type-arg]
            if p.get("aoi"):
                aois = [p["aoi"]]
            else:
                with db.connect() as conn:
                    aois = [r[0] for r in conn.execute(
                        "SELECT DISTINCT aoi FROM parcels WHERE year = %s ORDER BY 1", (year,))]
            units = []
            for aoi in aois:
                units += extract.plan_units(
                    card_type=p.get("card_type"), start=p.get("start"), end=p.get("end"),
                    reprocess=bool(p.get("reprocess")), aoi=aoi, year=year,
                    batch_size=int(p.get("batch_size") or 25),
                )
            return units

        return airflow_adapter.run(_plan)

    @task(max_active_tis_per_dag=extract_concurrency())
    def extract(unit: dict, params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Extract and store one unit's scenes."""
        from cbmflow import airflow_adapter
        from cbmflow import extract as engine

        airflow_adapter.configure()
        p = params or {}
        return airflow_adapter.run(
            engine.extract_scenes, unit["scene_ids"], aoi=unit["aoi"], year=int(unit["year"]),
            reprocess=bool(p.get("reprocess")), buffer=float(p.get("buffer") or 0.0),
            min_area=float(p.get("min_area") or 0.0), cloud_mask=bool(p.get("cloud_mask")),
            tile_bbox=unit.get("tile_bbox"),
        )

    @task(outlets=[signatures_asset()], trigger_rule="all_done")
    def summarise(results: list) -> dict:  # type: ignore[type-arg]
        """Log scenes and rows per band; fail if any scene failed."""
        import logging

        from cbmflow import airflow_adapter
        from cbmflow.errors import ProcessingError

        log = logging.getLogger("cbmflow.extract_signatures")
        total: dict = {"extracted": 0, "rows": 0, "skipped": 0, "failed": {}, "bands": {}}
        for r in results or []:
            if not r:
                continue
            total["extracted"] += len(r["extracted"])
            total["skipped"] += len(r["skipped"])
            total["rows"] += r["rows"]
            total["failed"].update(r["failed"])
            for band, n in r.get("bands", {}).items():
                total["bands"][band] = total["bands"].get(band, 0) + n
        log.info("extracted %d scene(s), %d rows, skipped %d", total["extracted"], total["rows"], total["skipped"])
        for band, n in sorted(total["bands"].items()):
            log.info("band %-6s %d rows", band, n)

        def _check() -> dict:  # type: ignore[type-arg]
            if total["failed"]:
                lines = "; ".join(f"{k}: {v}" for k, v in sorted(total["failed"].items()))
                raise ProcessingError(f"{len(total['failed'])} scene(s) failed (rerun with reprocess): {lines}")
            return total

        return airflow_adapter.run(_check)

    summarise(extract.expand(unit=plan()))


extract_signatures()
