"""Extract per-parcel signatures of ready CARD scenes into PostGIS, fanned out per tile and batch."""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from cbmflow.airflow_adapter import (
    MAP_LABEL,
    card_ready_asset,
    extract_concurrency,
    retry_delay,
    signatures_asset,
)

log = logging.getLogger("cbmflow.extract_signatures")

DOC = """
### extract_signatures

Turns CARD rasters into per-parcel signatures (count, mean, std, min, max, p25, p50, p75 per band,
plus SCL histograms for Sentinel-2) in the `signatures` / `scl_histograms` tables, exactly once per
(scene, AOI): the table `extractions` records each pair's status (`pending`, `extracted`, `no_data`,
`failed`). See `docs/exactly-once.md`.

**When it runs**: daily at 06:00 UTC, and whenever a CARD DAG publishes one of the Assets
`cbmflow_card_bs`, `cbmflow_card_c6`, `cbmflow_card_s2` (new scenes are ready). Trigger it by hand
for backfills.

**Tasks**
1. `plan` – for each AOI, the catalogue's scenes with CARD rasters within `start`..`end` (default:
   the whole `year`) and the AOI's extent that the AOI has not got yet (`pending`, or `failed` and not
   waived; with `reprocess`
   every one), grouped into units of (tile, batch of scenes) and registered as `pending`. An
   unknown AOI or an unreachable database fails the run. No scene to do = "nothing to do" (green,
   said in the log, no Asset).
2. `extract` – one mapped task per unit, labelled `<aoi> <card type> <tile> <first>..<last> (<n>)`.
   Each scene is one transaction: lock its `extractions` row (the claim: a killed worker releases it
   at once), compute, replace this AOI's rows, mark `extracted` (or `no_data`: no parcel has a valid
   pixel), commit. A corrupt file marks only that scene `failed`; an outage of object storage or the
   database is retried with exponential backoff, and a retry finishes exactly the scenes of its unit
   that are not done yet.
3. `summarise` (runs whatever happened) – reads from the database what became of every planned
   (scene, AOI): rows per band, `no_data` scenes, failures.
4. `verify` (runs whatever happened) – fails the run, naming every culprit (product id, AOI, band,
   error), when the plan failed or any planned scene is `failed` or not done.
5. `publish` – emits the `cbmflow_signatures` Asset, only when every task succeeded and `verify`
   passed (skipped when there was nothing to do).

**Scope**: a scheduled, manual, Asset-triggered or cleared run covers the whole season `year` (empty:
the year of the run's data interval / logical date, never the calendar year); a backfill run
(`airflow backfill create`) without `start`/`end` covers its data interval (the day before each
06:00 tick), so a backfill over a date range redoes the scenes sensed in it. Every run re-plans
its scope's `failed` and unfinished scenes (no `reprocess` needed): a failure keeps every run over
its scope red until the scene is extracted or waived (`cbmflow extract waive`); waivers are listed
by `summarise` and `verify`.

**Params**: `aoi` (AOI name; empty = every AOI with parcels for the year), `year` (empty = the
run's data year), `start`/`end` (ISO dates, end exclusive), `card_type` (`bs`, `c6`, `s2`, `all`), `reprocess`
(re-extract `extracted`, `no_data` and `failed` scenes: rows are replaced, never duplicated),
`batch_size`, `buffer` (inward, metres), `min_area` (m²), `cloud_mask` (mask S2 cloudy SCL classes).

**Concurrency**: `extract` tasks run in parallel up to `$CBMFLOW_EXTRACT_CONCURRENCY` (the cluster
sets workers × worker concurrency; unset: uncapped on Celery, 2 on one machine). The first retry
waits `$CBMFLOW_RETRY_DELAY_S` (default 30 s), doubling after.
"""


@dag(
    dag_id="extract_signatures",
    schedule=AssetOrTimeSchedule(
        # the data interval is the day before the tick: a backfill run covers the scenes sensed in it
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC", interval=timedelta(days=1)),
        assets=(card_ready_asset("bs") | card_ready_asset("c6") | card_ready_asset("s2")),
    ),
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "aoi": Param(None, type=["null", "string"], description="AOI name; empty = every AOI with parcels"),
        "year": Param(None, type=["null", "integer"], description="parcel year; empty = the run's data year"),
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
        from cbmflow import airflow_adapter
        from cbmflow.core import db
        from cbmflow.extract import run as extract

        p = airflow_adapter.task_params(params)
        scope = airflow_adapter.scope_from_context(p)
        year = int(scope["year"])
        log.info("scope: season %s, sensing %s..%s, card type %s, AOI %s (%s run)", year, scope["start"] or "-",
                 scope["end"] or "-", scope["card_type"], ",".join(scope["aois"] or ["every AOI"]),
                 scope["run_type"] or "?")

        def _plan() -> list[dict]:  # type: ignore[type-arg]
            if scope["aois"]:
                aois = list(scope["aois"])
            else:
                from cbmflow.parcels.store import seasons_with_parcels

                with db.connect() as conn:
                    aois = [a for a, _ in seasons_with_parcels(conn, [year])]
                if not aois:
                    log.info("nothing to do: no AOI has parcels for %s", year)
            units = []
            for aoi in aois:
                units += extract.plan_units(
                    card_type=scope["card_type"], start=scope["start"], end=scope["end"],
                    reprocess=bool(p.get("reprocess")), aoi=aoi, year=year,
                    batch_size=int(p.get("batch_size") or 25),
                )
            return units

        return airflow_adapter.run(_plan)

    @task(max_active_tis_per_dag=extract_concurrency(), map_index_template=MAP_LABEL)
    def extract(unit: dict, params: dict | None = None, run_id: str | None = None) -> dict:  # type: ignore[type-arg]
        """Extract and store one unit's scenes."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import run as engine

        airflow_adapter.label_map_index(str(unit.get("label") or unit.get("tile")))
        p = airflow_adapter.task_params(params)
        log.info("unit %s: %d scene(s)", unit.get("label"), len(unit["scene_ids"]))
        return airflow_adapter.run(
            engine.extract_scenes, unit["scene_ids"], aoi=unit["aoi"], year=int(unit["year"]),
            reprocess=bool(p.get("reprocess")), buffer=float(p.get("buffer") or 0.0),
            min_area=float(p.get("min_area") or 0.0), cloud_mask=bool(p.get("cloud_mask")),
            tile_bbox=unit.get("tile_bbox"), run_id=f"extract_signatures/{run_id}",
            planned_at=unit.get("planned_at"),
        )

    @task(trigger_rule="all_done")
    def summarise(units: list | None, params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Log what the database says became of every planned scene: rows per band, no data, failures."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import run as extract

        airflow_adapter.configure()
        if units is None:
            log.warning("the plan did not finish: nothing to summarise (verify fails the run)")
            return {}
        if not units:
            waived = airflow_adapter.run(extract.scope_waivers, airflow_adapter.scope_from_context(params))
            extract.log_waivers(waived)
            log.info("nothing to do: no scene awaited extraction; %d failed scene extraction(s) waived", len(waived))
            return {"planned": 0, "waived": len(waived)}
        scope = airflow_adapter.scope_from_context(params)
        report = airflow_adapter.run(extract.extraction_report, units, reprocess=bool((params or {}).get("reprocess")),
                                     scope=scope)
        log.info("planned %d scene extraction(s): %d extracted (%s rows), %d no data, %d failed, %d not done, "
                 "%d waived", report["planned"], report["extracted"], f"{report['rows']:,}", len(report["no_data"]),
                 len(report["failed"]), len(report["not_done"]), len(report["waived"]))
        for band, n in sorted(report.get("bands", {}).items()):
            log.info("band %-6s %s rows", band, f"{n:,}")
        for item in report["no_data"]:
            log.warning("no data: %s (AOI %s): %s", item["product_id"], item["aoi"], item["error"])
        for item in report["failed"]:
            log.error("failed: %s (AOI %s%s): %s", item["product_id"], item["aoi"],
                      f", band {item['band']}" if item["band"] else "", item["error"])
        extract.log_waivers(report["waived"])
        return {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}

    @task(trigger_rule="all_done")
    def verify(units: list | None, params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Fail the run, naming every culprit, unless every planned scene is extracted or has no data."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import run as extract

        airflow_adapter.configure()
        return airflow_adapter.run(extract.verify_extraction, units, reprocess=bool((params or {}).get("reprocess")),
                                   scope=airflow_adapter.scope_from_context(params))

    @task(outlets=[signatures_asset()], trigger_rule="none_failed")
    def publish(units: list | None) -> int:  # type: ignore[type-arg]
        """Emit the cbmflow_signatures Asset (only after a fully good run with work done), naming the season."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowSkipException

        if not units:
            raise AirflowSkipException("nothing to do: no Asset event")
        n = sum(len(u["scene_ids"]) for u in units)
        years = sorted({int(u["year"]) for u in units})
        aois = sorted({str(u["aoi"]) for u in units})
        # detect_markers reads the season from this event (never from the calendar)
        get_current_context()["outlet_events"][signatures_asset()].extra = {"years": years, "aois": aois}
        log.info("publishing cbmflow_signatures: %d scene extraction(s) verified (seasons %s, AOIs %s)", n,
                 years, aois)
        return n

    units = plan()
    extracted = extract.expand(unit=units)
    summary = summarise(units)
    verified = verify(units)
    extracted >> summary >> verified
    [extracted, verified] >> publish(units)


extract_signatures()
