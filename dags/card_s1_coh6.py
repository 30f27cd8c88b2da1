"""Daily Sentinel-1 CARD-COH6: pair SLC scenes (6, else 12 days) -> coherence per pair -> publish the Asset."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from cbmflow.airflow_adapter import MAP_LABEL, card_discover, card_params, card_publish_and_verify

DOC = """
### card_s1_coh6 — Sentinel-1 CARD-COH6 (6-day interferometric coherence), daily

**discover** selects the catalogue's S1 SLC scenes (`card_type='c6'`) sensed in `[start, end)`
(default: the run's data interval) whose status is `discovered` or `failed` (plus
`ready`/`extracted` with `reprocess=true`) and pairs each (the *secondary*) with the *reference*
of the same relative orbit and direction 6 days earlier, or 12 days earlier where no 6-day
partner exists (no Sentinel-1B after 2021-12-23; Sentinel-1C from 2025). Scenes without a
partner are logged and left `discovered`. **process** (one mapped task per pair, 3 retries with
exponential backoff for transient errors) runs `include/graphs/card_coh6.xml` with SNAP `gpt`
(per IW subswath Split → Orbit → Back-Geocoding → Coherence 5×20 → Deburst; Merge; Terrain-Correction
20 m) and writes `COH_VV`/`COH_VH` COGs to
`<card_root>/c6/<yyyy>/<mm>/<dd>/<secondary product_id>_<BAND>.tif`; the secondary's row becomes
`ready`. Where SNAP is not installed each pair fails at once with what to install.
**verify** (runs whatever happened) fails the run, naming each pair's error, if discovery failed or
any pair failed; **publish** emits the `cbmflow_card_c6` Asset only when nothing failed.

**Backfill**: `airflow backfill create --dag-id card_s1_coh6 --from-date 2024-05-01 --to-date
2024-05-31` or *Trigger → Backfill* in the UI: only scenes that are not `ready` are redone.
See `docs/operations.md`.

**`footprint`** (Param): WKT in EPSG:4326; only scenes intersecting it are processed (empty = all).
(The AOI *name* is only used by `extract_signatures` and `classify_outliers`.)
"""


@dag(
    dag_id="card_s1_coh6",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # daily, interval [D, D+1)
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow", "card", "s1"],
    doc_md=DOC,
    params=card_params(
        runner=Param("gpt", enum=["gpt", "snappy"], description="SNAP runner"),
        dem=Param(None, type=["null", "string"], description="external DEM GeoTIFF (default: SNAP's Copernicus 30 m)"),
        epsg=Param(None, type=["null", "integer"], description="output UTM EPSG; default the scene's zone"),
    ),
)
def card_s1_coh6() -> None:
    """Sentinel-1 CARD-COH6."""

    @task(retries=3, retry_delay=timedelta(minutes=5), retry_exponential_backoff=True,
          max_retry_delay=timedelta(hours=2), max_active_tis_per_dagrun=2, map_index_template=MAP_LABEL)
    def process(pair: dict, params: dict | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
        from cbmflow.airflow_adapter import label_map_index, run, task_params
        from cbmflow.card import engines as card
        from cbmflow.card.jobs import scene_label

        p = task_params(params)
        label_map_index(scene_label(pair["secondary_id"]) + " x " + scene_label(pair["reference_id"]))
        return run(card.process_coh6_pair, pair["secondary_id"], pair["reference_id"], card_root=p.get("card_root"),
                   reprocess=bool(p.get("reprocess")), dem=p.get("dem"), epsg=p.get("epsg"),
                   runner=p.get("runner", "gpt"))

    @task
    def secondaries(pairs: list[dict]) -> list[int]:
        return [int(pr["secondary_id"]) for pr in pairs]

    pairs = card_discover("c6")
    processed = process.expand(pair=pairs)
    ids = secondaries(pairs)  # type: ignore[arg-type]
    card_publish_and_verify("c6", ids, after=processed)


card_s1_coh6()
