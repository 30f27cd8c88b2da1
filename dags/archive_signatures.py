"""The season archive: every AOI season's signatures as Parquet on object storage, after each extraction."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from cbmflow.airflow_adapter import MAP_LABEL, signatures_asset

DOC = """
### archive_signatures

Writes the signatures of a season, per AOI, year and band, into the Parquet season archive at
`$CBMFLOW_ARCHIVE_URI` (a folder or `s3://bucket/prefix`; `cbmflow.extract.archive`), then verifies
the published files against PostGIS (per scene: rows and checksums computed by SQL).

**When it runs**: whenever `extract_signatures` publishes the `cbmflow_signatures` Asset (new
signatures were written), and by hand for any AOI and season.

**Tasks**
1. `plan` – the (AOI, season, band) triples: the `aoi`/`year` params; when empty, the seasons and
   AOIs named by the triggering `cbmflow_signatures` Asset event(s), else the run's logical date's
   year; every band with signatures. Skips when there are none, or when no archive is configured.
2. `archive` – one mapped task per triple (`archive.archive_band`): reads the band's season from
   PostGIS with a binary COPY, keeps scenes PostGIS has pruned from the previous generation, writes
   a new generation (files sorted by parcel and sensing time, row groups by parcel) and publishes it
   with one atomic manifest write. Exactly once: a killed or retried task leaves the previous
   season visible and no half file; a re-run with unchanged rows writes nothing.
3. `verify` – per triple, PostGIS against the archive (`cbmflow archive verify`); fails naming the
   scenes that differ.

**Params**: `aoi`, `year`. See `docs/performance.md` (season archive) for layout, sizes and timings.
"""


@dag(
    dag_id="archive_signatures",
    schedule=[signatures_asset()],
    catchup=False,
    max_active_runs=1,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "aoi": Param("", type="string", description="AOI name; empty = every AOI with parcels in the season"),
        "year": Param(None, type=["null", "integer"],
                      description="season; empty = the triggering Asset event's, else the run's logical date's"),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
)
def archive_signatures() -> None:
    @task
    def plan(params: dict | None = None) -> list[dict]:  # type: ignore[type-arg]
        """The (AOI, season, band) triples to archive."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import archive

        airflow_adapter.configure()
        years, aois, source = airflow_adapter.marker_seasons(params or {}, get_current_context())
        return airflow_adapter.run(archive.plan_archive, years, aois, source)

    @task(max_active_tis_per_dag=2, map_index_template=MAP_LABEL)
    def archive(unit: dict) -> dict:  # type: ignore[type-arg]
        """Write and publish one AOI season's band."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import archive as arc

        airflow_adapter.configure()
        airflow_adapter.label_map_index(unit["label"])
        return airflow_adapter.run(arc.archive_unit, unit)

    @task
    def verify(results: list) -> list:  # type: ignore[type-arg]
        """PostGIS against the archive for every archived triple; fails on a difference."""
        from cbmflow import airflow_adapter
        from cbmflow.extract import archive as arc

        airflow_adapter.configure()
        return airflow_adapter.run(arc.verify_units, [r for r in results or [] if r])

    verify(archive.expand(unit=plan()))  # type: ignore[arg-type]


archive_signatures()
