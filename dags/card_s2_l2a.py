"""Daily Sentinel-2 CARD-2A: discover L2A/L1C scenes not yet ready -> harmonise each -> publish the Asset."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from cbmflow.airflow_adapter import MAP_LABEL, card_discover, card_params, card_publish_and_verify

DOC = """
### card_s2_l2a — Sentinel-2 CARD-2A (harmonised L2A reflectance + SCL), daily

**discover** selects the catalogue's S2 scenes (`card_type='s2'`) sensed in `[start, end)`
(default: the run's data interval) whose status is `discovered` or `failed` (plus
`ready`/`extracted` with `reprocess=true`); with `stac_source` set it first runs a STAC search.
**process** (one mapped task per scene, 3 retries with exponential backoff for transient
errors): an **L2A** scene is ingested directly from its band assets (B02, B03, B04, B08, B11,
SCL); an **L1C** scene goes through Sen2Cor `L2A_Process --resolution 10` (fails at once where
Sen2Cor is not installed). Reflectance of processing baseline 04.00+ (from 2022-01-25) loses the
+1000 offset (DN 0 stays no-data, DN below the offset becomes 1); 20 m bands are resampled to the
10 m grid with nearest neighbour. COGs go to `<card_root>/s2/<yyyy>/<mm>/<dd>/<product_id>_<BAND>.tif`
and the scene becomes `ready`. **verify** (runs whatever happened) fails the run, naming every
scene and its error, if discovery failed or any scene is not ready; **publish** emits the
`cbmflow_card_s2` Asset for `extract_signatures` only when nothing failed.

**Params**: `footprint` (WKT in EPSG:4326: only scenes intersecting it; empty = all), `start`/`end`,
`lookback_days`, `card_root`, `reprocess`, `stac_source`, `max_scenes`.

**Backfill**: `airflow backfill create --dag-id card_s2_l2a --from-date 2024-05-01 --to-date
2024-05-31` or *Trigger → Backfill* in the UI: only scenes that are not `ready` are redone.
See `docs/operations.md`.
"""


@dag(
    dag_id="card_s2_l2a",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # daily, interval [D, D+1)
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["cbmflow", "card", "s2"],
    doc_md=DOC,
    params=card_params(
        max_scenes=Param(None, type=["null", "integer"], description="limit the scenes per run"),
    ),
)
def card_s2_l2a() -> None:
    """Sentinel-2 CARD-2A."""

    @task(retries=3, retry_delay=timedelta(minutes=2), retry_exponential_backoff=True,
          max_retry_delay=timedelta(hours=1), max_active_tis_per_dagrun=4, map_index_template=MAP_LABEL)
    def process(scene_id: int, params: dict | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from cbmflow.airflow_adapter import label_map_index, run, task_params
        from cbmflow.card import engines as card
        from cbmflow.card.jobs import scene_label

        p = task_params(params)
        label_map_index(scene_label(scene_id))
        return run(card.process_s2_scene, scene_id, card_root=p.get("card_root"), reprocess=bool(p.get("reprocess")))

    ids = card_discover("s2")
    processed = process.expand(scene_id=ids)
    card_publish_and_verify("s2", ids, after=processed)


card_s2_l2a()
