"""Season analytics: period means -> S1 features -> out-of-fold crop classification & flags -> report."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

DOC = """
### classify_outliers

Splits a season's parcels into those whose Sentinel-1 time series is consistent with the declared
crop (green), uncertain ones (yellow) and the ~5 % outliers an inspector follows up (red).

**When it runs**: triggered by hand (or by `make demo`) once the season's signatures are extracted.

**Tasks**
1. `period_means` – recomputes the `period_days` day-of-year averages of every parcel and band
   from `signatures` into `period_means` (idempotent per AOI and year; skips when the season has
   no signatures).
2. `features` – the wide per-parcel table (VV, VH in dB, VH/VV, COH6 VV/VH per period, gaps
   interpolated, missing fractions), written as parquet under `$CBMFLOW_WORK_DIR/<aoi>/<year>/`.
3. `classify_and_flag` – stratified K-fold out-of-fold predictions, 3 repetitions; red when all
   three agree with each other against the declaration with a confident mean probability. Stores
   the run in `classification_runs` and every parcel's flag in `parcel_flags`.
4. `report` – HTML report with PNG plots (accuracy per class, confusion matrix, flag counts, red
   parcels against their declared class's median/IQR profile) under `$CBMFLOW_REPORT_DIR`.

**Outcome**: the tasks form one chain, so any failure fails the run; a season without signatures
is "nothing to do" (`period_means` is skipped and says why, nothing downstream runs).

**Params**: `aoi` (the AOI *name*, required: an empty or unknown name fails at once, listing the
known AOIs), `year`, `period_days` (default 5), `by` (`group`: classes are the crop groups
of `cbmflow.core.crops` (default); `crop`: the declared crops), `min_class_size` (default 5; rarer crops
are pooled by crop group, docs/analytics.md), `min_area` (m², smaller parcels excluded), `cloud_max` (S2 cloud filter
for the period means), `truth_uri` (optional truth parquet to evaluate the red flags against).
See `docs/analytics.md`.
"""


@dag(
    dag_id="classify_outliers",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "aoi": Param(None, type=["null", "string"], description="AOI name (required; the run fails naming the known AOIs)"),
        "year": Param(2025, type="integer", description="parcel year (season)"),
        "period_days": Param(5, type="integer", minimum=1, maximum=366, description="period length in days"),
        "by": Param("group", enum=["group", "crop"], description="classes: crop groups or declared crops"),
        "min_class_size": Param(5, type="integer", minimum=2,
                                description="parcels a class needs (rarer crops are pooled by crop group)"),
        "min_area": Param(0.0, type="number", minimum=0, description="exclude parcels under this area (m²)"),
        "cloud_max": Param(None, type=["null", "number"], description="max cloudy fraction of S2 observations"),
        "truth_uri": Param(None, type=["null", "string"], description="truth parquet to evaluate red flags (optional)"),
    },
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
)
def classify_outliers() -> None:
    @task
    def period_means(params: dict | None = None) -> int:  # type: ignore[type-arg]
        """Recompute the season's period means; returns rows written."""
        from cbmflow import airflow_adapter
        from cbmflow.analytics import season as analytics
        from cbmflow.core import db
        from cbmflow.core.errors import InputError, NotFound
        from cbmflow.parcels import store as parcels

        p = airflow_adapter.task_params(params)
        aoi = str(p.get("aoi") or "").strip()

        def _periods() -> int:
            with db.connect() as conn:
                try:
                    parcels.get_aoi(conn, aoi)
                except NotFound as exc:
                    if not aoi:
                        raise InputError(f"classify_outliers needs an AOI name (param aoi): {exc}") from None
                    raise
            return analytics.season_periods(aoi, int(p["year"]), period_days=int(p.get("period_days") or 5),
                                            cloud_max=p.get("cloud_max"))

        return airflow_adapter.run(_periods)

    @task
    def features(rows: int, params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Build the feature table; returns its URI and counts."""
        from cbmflow import airflow_adapter
        from cbmflow.analytics import season as analytics

        p = airflow_adapter.task_params(params)
        return airflow_adapter.run(analytics.season_features, str(p["aoi"]), int(p["year"]))

    @task
    def classify_and_flag(feats: dict, params: dict | None = None) -> int:  # type: ignore[type-arg]
        """Classify out-of-fold, flag every parcel, store the run; returns the run id."""
        from cbmflow import airflow_adapter
        from cbmflow.analytics import season as analytics

        p = airflow_adapter.task_params(params)
        min_area = float(p.get("min_area") or 0.0)
        return airflow_adapter.run(
            analytics.classify_season, str(p["aoi"]), int(p["year"]), feats["uri"],
            by=str(p.get("by") or "group"), min_class_size=int(p.get("min_class_size") or 5),
            min_area=min_area if min_area > 0 else None,
            truth_uri=p.get("truth_uri") or None,
        )

    @task
    def report(classification_run: int) -> str:
        """Write the run's HTML report; returns its URI."""
        from cbmflow import airflow_adapter
        from cbmflow.analytics import season as analytics

        airflow_adapter.configure()
        return airflow_adapter.run(analytics.report_run, int(classification_run))

    report(classify_and_flag(features(period_means())))


classify_outliers()
