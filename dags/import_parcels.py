"""Import a declared-parcel file into PostGIS for one AOI and year (manual trigger)."""

from __future__ import annotations

from airflow.sdk import Param, dag, task

DOC = """
### import_parcels

Imports a farmers' declaration file (GeoPackage, zipped Shapefile/GeoPackage, GeoParquet/fiboa or
GeoJSON; local path or `s3://`) into the `parcels` table of the results database for one AOI and
year, via `cbmflow.parcels.store.import_parcels`:

* validates in the file's CRS (empty, non-polygon, zero area, Z/M dropped, self-intersections
  repaired within a 1 % area tolerance or rejected, ring orientation, wrong CRS label), then in the
  working CRS (a new AOI gets `epsg` or the UTM zone of the parcels' median centre; geographic or
  area-distorting CRSs are refused), with area bounds (1 m² .. 1,000 ha) and duplicate ids;
  nothing is dropped silently (see docs/parcels-and-catalogue.md);
* writes a CSV report (row, parcel_id, action, reason) and returns the counts as XCom;
* is idempotent: re-running with the same file changes nothing; new or changed parcels bump
  `aois.parcels_version`.

Trigger with params `file`, `aoi`, `year`, `id_col` (comma list = composite id), `crop_col`
and optionally `crop_name_col`, `epsg`, `report`. Bad input (unknown column, no CRS, missing file)
fails the task without retries; a database outage is retried.
"""


@dag(
    dag_id="import_parcels",
    schedule=None,
    catchup=False,
    tags=["cbmflow"],
    doc_md=DOC,
    params={
        "file": Param("", type="string", description="parcel file path or s3:// URI"),
        "aoi": Param("", type="string", description="AOI name ([a-z0-9_]+)"),
        "year": Param(2025, type="integer", description="declaration year"),
        "id_col": Param("", type="string", description="parcel id column(s), comma separated"),
        "crop_col": Param("", type="string", description="crop code column"),
        "crop_name_col": Param(None, type=["null", "string"], description="crop name column"),
        "epsg": Param(None, type=["null", "integer"], description="working CRS of a new AOI"),
        "report": Param(None, type=["null", "string"], description="report CSV path or s3:// URI"),
    },
)
def import_parcels() -> None:
    @task
    def import_file(params: dict | None = None) -> dict:  # type: ignore[type-arg]
        """Run the parcel import and return its counts."""
        from dataclasses import asdict

        from cbmflow import airflow_adapter
        from cbmflow.core import db
        from cbmflow.parcels import store as parcels

        p = airflow_adapter.task_params(params)

        def _run() -> dict:  # type: ignore[type-arg]
            with db.connect() as conn:
                result = parcels.import_parcels(
                    conn,
                    p["file"],
                    aoi=p["aoi"],
                    year=int(p["year"]),
                    id_col=p["id_col"],
                    crop_col=p["crop_col"],
                    crop_name_col=p.get("crop_name_col") or None,
                    epsg=p.get("epsg") or None,
                    report_path=p.get("report") or None,
                )
            return asdict(result)

        return airflow_adapter.run(_run)

    import_file()


import_parcels()
