"""``cbmflow demo``: the main job, end to end on a simulated Austrian season and the real S1 SAFE.

Steps (each prints what it did; a failing step stops the demo with its error):
 1. simulate a season of CARD COGs for the 100 real AT parcels (labelled SIMULATED)
 2. import the declared parcels into PostGIS (with an import report)
 3. catalogue the simulated archive's STAC ItemCollection
 4. native CARD-BS (sarsen) on the real S1 GRD SAFE in ../shared/data (real processing)
 5. extract per-parcel signatures of the season into PostGIS (the extract_signatures DAG), then
    activity markers (mowing, bare soil/ploughing, harvest, no-evidence gaps; detect_markers DAG)
 6. a larger synthetic AOI with 5 % wrongly declared crops: simulate, import, extract
 7. 5-day period means, crop classification, outlier flags and the HTML report (classify_outliers DAG)
 8. the red parcel to open first in the workbench: S1, S2/NDVI, markers and chips all present
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from cbmflow.core.config import database_dsn, project_root, shared_data_dir

log = logging.getLogger(__name__)

AT_FILE = "parcels/at_schlaege_2025.gpkg.zip"
AT_ID, AT_CROP, AT_CROP_NAME = "GEO_ID", "SNAR_CODE", "SNAR_BEZEICHNUNG"


def _step(title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*a: Any, **kw: Any) -> Any:
            print(f"\n== {title}", flush=True)
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
            return out

        return inner

    return wrap


def register_cli(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser("demo", help="run the demo pipeline (simulated AT season, end to end)")
    p.add_argument("--out", default=str(project_root() / "var" / "demo"), help="output folder")
    p.add_argument("--season", type=int, default=2025)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--ml-parcels", type=int, default=2000,
                   help="parcels of the synthetic AOI used for classification")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # dag.test() prints every task log line; the demo prints its own summary instead.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CBMFLOW_CARD_ROOT", str(out / "card"))
    os.environ.setdefault("CBMFLOW_REPORT_DIR", str(out / "reports"))
    os.environ.setdefault("CBMFLOW_WORK_DIR", str(out / "work"))
    t0 = time.perf_counter()
    print(f"cbmflow demo: results database {_redact(database_dsn())}, files under {out}")
    at = simulate_at(out, args.season, args.seed)
    import_and_catalogue("at", args.season, at, id_col=AT_ID, crop_col=AT_CROP, crop_name_col=AT_CROP_NAME,
                         reports=out / "reports")
    card_bs_on_real_safe(out)
    extract("at", args.season)
    show_signatures("at", args.season)
    markers("at", args.season)
    ml = simulate_ml_aoi(out, args.season, args.seed, args.ml_parcels)
    import_and_catalogue("sim", args.season, ml, id_col="parcel_id", crop_col="crop_code",
                         crop_name_col="crop_name", reports=out / "reports")
    extract("sim", args.season)
    markers("sim", args.season)
    classify("sim", args.season, ml.truth_uri, out / "reports")
    complete_case("sim", args.season)
    print(f"\ncbmflow demo finished in {time.perf_counter() - t0:.0f} s.")
    print("Where to look:")
    print(f"  simulated archive (COGs + STAC): {out / 'archive'}")
    print(f"  CARD-BS from the real SAFE:      {out / 'card'}")
    print(f"  import and classification reports: {out / 'reports'}")
    print("  database: `cbmflow db status`; tables parcels, catalogue, signatures, period_means, parcel_flags, "
          "markers, compliance")
    print("  Airflow UI (these runs and their task logs, the flag list, parcel views and decisions): `make ui`"
          " (port: CBMFLOW_API_PORT), log in, then 'CbM flags' -> a red parcel")
    return 0


def _redact(dsn: str) -> str:
    from cbmflow.core.db import _redact as redact

    return redact(dsn)


def _run_dag(dag_id: str, conf: dict[str, Any]) -> Any:
    """Run one of the project's DAGs with dag.test() through the Airflow adapter."""
    from cbmflow import airflow_adapter  # the one module that may import Airflow

    dr = airflow_adapter.test_dag(dag_id, conf, dags_folder=str(project_root() / "dags"))
    print(f"   DAG {dag_id}: run {dr.run_id} -> {dr.state}")
    return dr


@_step("Simulate a season of CARD rasters for the 100 real Austrian parcels (SIMULATED)")
def simulate_at(out: Path, season: int, seed: int) -> Any:
    """Simulate the AT demo season; returns the SimulationResult."""
    from cbmflow_sim.archive import simulate_season

    res = simulate_season(
        str(shared_data_dir() / AT_FILE), aoi="at", season=season, out=str(out / "archive"),
        id_col=AT_ID, crop_col=AT_CROP, crop_name_col=AT_CROP_NAME, seed=seed,
    )
    print(f"   {res.n_scenes} scenes, {res.n_rasters} COGs on a {res.shape[1]}x{res.shape[0]} grid "
          f"(EPSG:{res.epsg}, 10 m) -> {res.items_uri}")
    return res


@_step("Import the declared parcels into PostGIS and catalogue the archive's STAC items")
def import_and_catalogue(aoi: str, season: int, sim: Any, *, id_col: str, crop_col: str,
                         crop_name_col: str, reports: Path) -> None:
    """Import a simulation's declared parcels and catalogue its STAC items."""
    from cbmflow.catalogue import stac
    from cbmflow.core import db
    from cbmflow.parcels import store as parcels

    with db.connect() as conn:
        res = parcels.import_parcels(
            conn, sim.parcels_uri, aoi=aoi, year=season, id_col=id_col, crop_col=crop_col,
            crop_name_col=crop_name_col, epsg=sim.epsg,
            report_path=str(reports / f"import-{aoi}-{season}.csv"),
        )
        print(f"   parcels: {res.summary()}")
        found = stac.discover(sim.items_uri)
        counts = stac.catalogue_scenes(conn, found)
        conn.commit()
    print(f"   catalogue: {counts}")


@_step("Native CARD-BS (sarsen) on the real Sentinel-1 GRD SAFE, through the card_s1_bs DAG")
def card_bs_on_real_safe(out: Path) -> None:
    """Catalogue the shared real S1 SAFE and make its CARD-BS with sarsen via card_s1_bs."""
    from cbmflow.card.backscatter import parse_product_id, read_safe
    from cbmflow.catalogue import store as catalogue
    from cbmflow.catalogue.store import Scene
    from cbmflow.core import db

    grd = shared_data_dir() / "s1" / "sarsen_grd"
    safe = next(grd.glob("*.SAFE"))
    info = read_safe(safe)
    pid = parse_product_id(info.product_id)
    with db.connect() as conn:
        ids = catalogue.upsert(conn, [Scene(
            product_id=info.product_id, mission=pid.mission, product_type="GRD", card_type="bs",
            sensing_time=pid.start, relative_orbit=info.relative_orbit,
            orbit_direction=info.orbit_direction, footprint_wkt=info.footprint_wkt,
            source_assets={"safe": str(safe)},
            # the SAFE's metadata is real but its measurement pixels are constant dummies
            properties={"note": "real metadata, constant dummy pixels (sarsen test data)"},
            simulated=True,
        )])
        catalogue.set_status(conn, ids[info.product_id], "discovered")  # the demo redoes it
        conn.commit()
    day = pid.start.date()
    _run_dag("card_s1_bs", {
        "start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat(), "engine": "sarsen",
        "dem": str(grd / "Rome-30m-DEM.tif"), "card_root": str(out / "card"), "resolution": 20,
    })
    with db.connect() as conn:
        scene = catalogue.get(conn, ids[info.product_id])
    print(f"   {info.product_id}: {scene.status}; " + ", ".join(f"{b} -> {u}" for b, u in scene.assets.items()))
    import numpy as np
    import rasterio

    for band, uri in scene.assets.items():
        with rasterio.open(uri) as src:
            arr = src.read(1)
            valid = float(np.isfinite(arr).mean())
            print(f"   {band}: {src.width}x{src.height} px at {src.res[0]:g} m, {src.crs}, valid pixels "
                  f"{100 * valid:.0f} %" + (" (the test SAFE's measurement pixels are constant dummy DN 0,"
                                             " read as GRD border no-data)" if valid == 0 else ""))


@_step("Extract per-parcel signatures into PostGIS (extract_signatures DAG, mapped per tile)")
def extract(aoi: str, season: int) -> None:
    """Extract an AOI's season with the extract_signatures DAG."""
    _run_dag("extract_signatures", {"aoi": aoi, "year": season, "card_type": "all"})


def show_signatures(aoi: str, season: int) -> None:
    """Print signature rows per band and one parcel's time series."""
    from cbmflow.core import db
    from cbmflow.web import timeseries

    with db.connect() as conn:
        rows = conn.execute(
            "SELECT b.name, count(*), count(DISTINCT s.obsid), count(DISTINCT s.pid) FROM signatures s "
            "JOIN parcels p ON p.pid = s.pid JOIN bands b ON b.code = s.band "
            "WHERE p.aoi = %s AND p.year = %s GROUP BY b.code, b.name ORDER BY b.code", (aoi, season),
        ).fetchall()
        print(f"   signature rows for AOI {aoi} {season}:")
        for band, n, scenes, parcels in rows:
            print(f"     {band:<7} {n:>7} rows  ({scenes} scenes x {parcels} parcels)")
        pid_row = conn.execute(
            "SELECT pid, parcel_id, crop_name FROM parcels WHERE aoi = %s AND year = %s "
            "ORDER BY area_m2 DESC LIMIT 1", (aoi, season)).fetchone()
        if pid_row:
            obs = timeseries.series(conn, pid_row[0], bands=["VV", "VH"])
            print(f"   time series of parcel {pid_row[1]} ({pid_row[2]}), S1 backscatter (linear):")
            print("     date        band   count    mean     p50")
            for o in obs[:12]:
                print(f"     {o.date[:10]}  {o.band:<5} {o.count:>6} {o.mean:>8.4f} {o.p50:>8.4f}")
            if len(obs) > 12:
                print(f"     ... {len(obs) - 12} more (API: /cbmflow/api/parcels/{pid_row[0]}/timeseries)")


@_step("Activity markers and compliance per parcel into PostGIS (detect_markers DAG)")
def markers(aoi: str, season: int) -> None:
    """Detect the AOI season's markers with detect_markers and print what was stored."""
    from cbmflow.markers.run import print_summary

    _run_dag("detect_markers", {"aoi": aoi, "year": season})
    print_summary(aoi, season)


@_step("A larger synthetic AOI with 5 % wrongly declared crops (SIMULATED), for classification")
def simulate_ml_aoi(out: Path, season: int, seed: int, n: int) -> Any:
    """Simulate a synthetic AOI with 5 % wrong declarations; returns the SimulationResult."""
    from cbmflow_sim.archive import simulate_season, synthetic_parcels

    layout = synthetic_parcels(n, seed=seed, epsg=32633, origin=(520000.0, 5320000.0))
    path = out / "sim_parcels.gpkg"
    layout.to_file(path, driver="GPKG")
    res = simulate_season(
        str(path), aoi="sim", season=season, out=str(out / "archive"), id_col="parcel_id",
        crop_col="crop_code", crop_name_col="crop_name", seed=seed, mislabel=0.05,
        # S2 too (NDVI, true-colour chips, SCL clouds), so a red parcel is a complete case in the UI
        card_types=("bs", "c6", "s2"),
    )
    print(f"   {n} synthetic parcels, {res.n_scenes} S1/S2 scenes, {res.n_rasters} COGs; "
          f"wrong declarations recorded in {res.truth_uri}")
    return res


@_step("5-day means, out-of-fold crop classification and outlier flags (classify_outliers DAG)")
def classify(aoi: str, season: int, truth_uri: str, reports: Path) -> None:
    """Run classify_outliers for an AOI and print flags, evaluation and the report path."""
    from cbmflow.core import db

    _run_dag("classify_outliers", {"aoi": aoi, "year": season, "truth_uri": truth_uri})
    with db.connect() as conn:
        row = conn.execute(
            "SELECT run_id, metrics, report_uri FROM classification_runs WHERE aoi = %s AND year = %s "
            "ORDER BY run_id DESC LIMIT 1", (aoi, season)).fetchone()
        if row is None:
            from cbmflow.core.errors import ProcessingError

            raise ProcessingError(f"classify_outliers stored no run for {aoi} {season}")
        run_id, metrics, report = row
        flags: dict[str, int] = dict(conn.execute(
            "SELECT flag, count(*) FROM parcel_flags WHERE run_id = %s GROUP BY flag", (run_id,)).fetchall())
    total = sum(flags.values()) or 1
    print(f"   run {run_id}: " + ", ".join(f"{f} {flags.get(f, 0)} ({100 * flags.get(f, 0) / total:.1f} %)"
                                         for f in ("green", "yellow", "red")))
    ev = (metrics or {}).get("evaluation") or {}
    if ev:
        print(f"   red flags against the known wrong declarations: precision {ev['precision']:.3f}, "
              f"recall {ev['recall']:.3f} ({ev['true_red']} of {ev['n_mislabelled']} flagged red), "
              f"red {ev['red_pct']:.1f} % of parcels")
        print("   (simulated crop profiles separate more cleanly than real fields do: expect lower "
              "precision and recall on real declarations; see docs/analytics.md)")
    print(f"   report: {report}")


@_step("A complete case for the workbench: the most suspicious red parcel with S1, S2/NDVI, markers, chips")
def complete_case(aoi: str, season: int) -> None:
    """Print the top-ranked red parcel that has S1, NDVI, markers and chips, and its workbench URL."""
    from cbmflow.core import db
    from cbmflow.web import queries

    with db.connect() as conn:
        run = queries.latest_run(conn, aoi, season)
        if run is None:
            print("   no classification run")
            return
        reds = queries.list_flags(conn, run, queries.FlagFilter(flags=("red",)), limit=50)["rows"]
        for r in reds:
            ch = queries.chart(conn, r["pid"], run_id=run)
            chips = queries.chip_scenes(conn, r["pid"])
            kinds = {c["card_type"] for c in chips}
            if ch["s1"] and ch["ndvi"] and ch["markers"] and {"bs", "s2"} <= kinds:
                print(f"   parcel {r['parcel_id']} (pid {r['pid']}, rank {r['rank']}): declared "
                      f"{r.get('crop_name') or r['declared']}, predicted {r.get('predicted_name') or r['predicted']}; "
                      f"{len(ch['s1'])} S1 and {len(ch['ndvi'])} NDVI observations, {len(ch['markers'])} markers, "
                      f"{len(chips)} chips")
                print(f"   open it: /cbmflow/parcel/{r['pid']}?run={run}&flag=red  (n / p: next / previous red parcel)")
                return
        print(f"   none of the {len(reds)} top red parcels has S1, NDVI, markers and chips together")
