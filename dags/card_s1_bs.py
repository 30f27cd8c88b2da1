"""Daily Sentinel-1 CARD-BS: discover GRD scenes not yet ready -> process each -> publish the Asset."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from cbmflow.airflow_adapter import MAP_LABEL, card_discover, card_params, card_publish_and_verify

DOC = """
### card_s1_bs — Sentinel-1 CARD-BS (geocoded backscatter), daily

**discover** selects the catalogue's S1 GRD scenes (`card_type='bs'`) sensed in the window
`[start, end)` (default: the run's data interval) whose status is `discovered` or `failed`
(plus `ready`/`extracted` with `reprocess=true`); with `stac_source` set it first runs a STAC
search into the catalogue. **process** (one mapped task per scene, 3 retries with exponential
backoff for transient errors) claims the scene, runs the engine — `sarsen` (native, runs here) or
`snap` (graph `include/graphs/card_bs.xml` through `gpt`; fails at once where SNAP is not
installed) — writes one COG per polarisation to
`<card_root>/bs/<yyyy>/<mm>/<dd>/<product_id>_<BAND>.tif` and marks the scene `ready` (or
`failed` with the error). **verify** (runs whatever happened) fails the run, naming every scene
and its error, if discovery failed or any scene is not ready, so failed orbits are visible;
**publish** emits the `cbmflow_card_bs` Asset that `extract_signatures` is scheduled on, only when
nothing failed (a failed run publishes nothing; "nothing to do" skips it).

**Backfill failed orbits**: `airflow backfill create --dag-id card_s1_bs --from-date 2024-05-01
--to-date 2024-05-31` (or *Trigger → Backfill* in the UI). Only scenes that are not `ready` are
processed again; good ones are left alone. See `docs/operations.md`.

**`footprint`** (Param): WKT in EPSG:4326; only scenes intersecting it are processed (empty = all).
(The AOI *name* is only used by `extract_signatures` and `classify_outliers`.)
"""


@dag(
    dag_id="card_s1_bs",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # daily, interval [D, D+1)
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["cbmflow", "card", "s1"],
    doc_md=DOC,
    params=card_params(
        engine=Param("sarsen", enum=["sarsen", "snap"], description="CARD-BS engine"),
        runner=Param("gpt", enum=["gpt", "snappy"], description="SNAP runner (engine snap)"),
        dem=Param(None, type=["null", "string"], description="DEM GeoTIFF path/URI (sarsen; SNAP External DEM)"),
        epsg=Param(None, type=["null", "integer"], description="output UTM EPSG; default the scene's zone"),
        resolution=Param(10, enum=[10, 20], description="pixel spacing in metres"),
        max_scenes=Param(None, type=["null", "integer"], description="limit the scenes per run"),
    ),
)
def card_s1_bs() -> None:
    """Sentinel-1 CARD-BS."""

    @task(retries=3, retry_delay=timedelta(minutes=2), retry_exponential_backoff=True,
          max_retry_delay=timedelta(hours=1), max_active_tis_per_dagrun=4, map_index_template=MAP_LABEL)
    def process(scene_id: int, params: dict | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from cbmflow.airflow_adapter import label_map_index, run, task_params
        from cbmflow.card import engines as card
        from cbmflow.card.jobs import scene_label

        p = task_params(params)
        label_map_index(scene_label(scene_id))
        return run(card.process_bs_scene, scene_id, card_root=p.get("card_root"), engine=p.get("engine", "sarsen"),
                   reprocess=bool(p.get("reprocess")), dem=p.get("dem"), epsg=p.get("epsg"),
                   resolution=float(p.get("resolution") or 10), runner=p.get("runner", "gpt"))

    ids = card_discover("bs")
    processed = process.expand(scene_id=ids)
    card_publish_and_verify("bs", ids, after=processed)


card_s1_bs()
