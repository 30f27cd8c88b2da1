"""Activity markers per parcel (mowing, bare soil/ploughing, harvest, no-evidence gaps) and compliance."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from cbmflow.airflow_adapter import signatures_asset

DOC = """
### detect_markers

Reads every parcel's signatures of a season from PostGIS, detects activity markers and checks
the compliance rules per crop, and stores the run in `marker_runs`, `markers` and `compliance`.

**When it runs**: whenever `extract_signatures` publishes the `cbmflow_signatures` Asset (new
signatures were written), and by hand for any AOI and season.

**Tasks**
1. `plan` – the (AOI, season) pairs to process: the `aoi`/`year` params; when empty, the seasons
   and AOIs named by the triggering `cbmflow_signatures` Asset event(s), else the year of the run's
   logical date / data interval (never the calendar year), every AOI with parcels in the season.
   Skips when there are none, saying which seasons and AOIs it looked for and why.
2. `detect` – one mapped task per (AOI, season) (`cbmflow.markers.run.detect_season`): S2 NDVI
   drops fused with S1 6-day coherence rises (mowing), bare-soil periods and ploughing, harvest
   week by week, `no_evidence` periods without usable observations (cloudy S2 observations are
   excluded by the parcel's SCL histogram; S1 is referenced per orbit), then the rule table.
   The run id is `<aoi>_<year>_<dag run id>`: a retry or a cleared re-run replaces that run's rows
   in one transaction, never duplicates them; other runs are kept for comparison.
3. `summarise` – logs markers per type and compliance per status of every run.

**Params**: `aoi`, `year`, `rules` (a rule table CSV path; empty = the packaged
`cbmflow/data/marker_rules.csv`), `overrides` (parameter overrides such as
`{"mowing.min_drop": 0.15}`; defaults and their sources in `cbmflow.markers.params`).
See `docs/markers.md`.
"""


@dag(
    dag_id="detect_markers",
    schedule=[signatures_asset()],
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "aoi": Param("", type="string", description="AOI name; empty = every AOI with parcels in the season"),
        "year": Param(None, type=["null", "integer"], description="season; empty = the triggering Asset event's, else the run's logical date's"),
        "rules": Param("", type="string", description="rule table CSV; empty = the packaged table"),
        "overrides": Param({}, type="object", description='parameter overrides, e.g. {"mowing.min_drop": 0.15}'),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
)
def detect_markers() -> None:
    @task
    def plan(params: dict | None = None) -> list[dict]:  # type: ignore[type-arg]
        """The (AOI, season) pairs to process."""
        import logging

        from cbmflow import airflow_adapter
        from cbmflow.core import db
        from cbmflow.core.errors import NothingToDo

        log = logging.getLogger("cbmflow.detect_markers")
        p = airflow_adapter.task_params(params)
        ctx = get_current_context()
        years, aois, source = airflow_adapter.marker_seasons(p, ctx)
        log.info("seasons %s, AOI %s (from %s)", years, ",".join(aois) if aois else "every AOI with parcels", source)

        def _plan() -> list[dict]:  # type: ignore[type-arg]
            from cbmflow.parcels.store import seasons_with_parcels

            with db.connect() as conn:
                rows = seasons_with_parcels(conn, years, aois)
            if not rows:
                msg = (f"no parcels for {', '.join(aois) if aois else 'any AOI'} in season(s) "
                       f"{', '.join(map(str, years))} (from {source}): nothing to detect")
                log.warning("skipping: %s", msg)
                raise NothingToDo(msg)
            return [{"aoi": r[0], "year": int(r[1])} for r in rows]

        return airflow_adapter.run(_plan)

    @task(max_active_tis_per_dag=2)
    def detect(unit: dict, params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Detect and store one AOI season's markers; returns the run summary."""
        from cbmflow import airflow_adapter
        from cbmflow.markers import run

        p = airflow_adapter.task_params(params)
        dag_run = get_current_context()["dag_run"]
        run_id = run.run_id_for(unit["aoi"], int(unit["year"]), str(dag_run.run_id))
        return airflow_adapter.run(
            run.detect_season, unit["aoi"], int(unit["year"]), run_id=run_id,
            overrides=dict(p.get("overrides") or {}), rules_path=p.get("rules") or None,
        )

    @task
    def summarise(results: list) -> list:  # type: ignore[type-arg]
        """Log every run's markers per type and compliance per status."""
        import logging

        log = logging.getLogger("cbmflow.detect_markers")
        out = [r for r in results or [] if r]
        for r in out:
            log.info("run %s: %d parcels (%d with signatures); markers %s; compliance %s", r["run_id"],
                     r["parcels"], r["parcels_with_signatures"], r["markers"], r["compliance"])
        return out

    summarise(detect.expand(unit=plan()))


detect_markers()
