"""The demo's DAGs through a deployed stack (docker compose or swarm), and the row counts to compare.

``python -m cbmflow_dev.deploy run`` runs inside a container of the stack (``docker exec`` into the
api-server): it simulates the demo's two seasons into the shared data volume, then triggers through
the REST API, as an operator would, ``import_parcels``, ``extract_signatures``, ``detect_markers``
and ``classify_outliers``, each of which must end ``success``, and prints the row counts as JSON.
``python -m cbmflow_dev.deploy counts`` prints the same counts for the database of ``CBMFLOW_DSN``
(on the host, after ``make demo``), so ``scripts/deploy-test.sh`` compares the two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cbmflow_dev.cluster import Cluster

__all__ = ["counts", "main", "running_hosts", "signature_digest"]

SEASON = 2025
AT_ID, AT_CROP, AT_CROP_NAME = "GEO_ID", "SNAR_CODE", "SNAR_BEZEICHNUNG"


def signature_digest(conn: Any, aoi: str, year: int) -> dict[str, list[Any]]:
    """Per band name: [rows, md5 of every row] of an AOI season's signatures (ids, not serials)."""
    rows = conn.execute(
        "SELECT b.name, count(*), md5(string_agg(concat_ws(':', p.parcel_id, c.product_id, s.count, s.mean, "
        "s.std, s.min, s.max, s.p25, s.p50, s.p75), ',' ORDER BY p.parcel_id, c.product_id)) "
        "FROM signatures s JOIN parcels p ON p.pid = s.pid JOIN catalogue c ON c.id = s.obsid "
        "JOIN bands b ON b.code = s.band WHERE p.aoi = %s AND p.year = %s GROUP BY b.name ORDER BY b.name",
        (aoi, year)).fetchall()
    return {str(r[0]): [int(r[1]), str(r[2])] for r in rows}


def counts(conn: Any, aois: tuple[str, ...] = ("at", "sim"), year: int = SEASON) -> dict[str, Any]:
    """Row counts per AOI of what the demo's DAGs write (parcels, signatures, markers, flags, ...)."""
    out: dict[str, Any] = {}
    for aoi in aois:
        out[aoi] = {
            "parcels": conn.execute("SELECT count(*) FROM parcels WHERE aoi = %s AND year = %s",
                                    (aoi, year)).fetchone()[0],
            "signatures": signature_digest(conn, aoi, year),
            "period_means": conn.execute("SELECT count(*) FROM period_means WHERE aoi = %s AND year = %s",
                                         (aoi, year)).fetchone()[0],
            # The latest marker run only: on a running stack detect_markers also runs on its asset schedule.
            "markers": dict(conn.execute(
                "SELECT marker, count(*) FROM markers WHERE run_id = (SELECT run_id FROM marker_runs "
                "WHERE aoi = %s AND year = %s ORDER BY created_at DESC LIMIT 1) GROUP BY marker ORDER BY marker",
                (aoi, year)).fetchall()),
            "compliance": dict(conn.execute(
                "SELECT status, count(*) FROM compliance WHERE run_id = (SELECT run_id FROM marker_runs "
                "WHERE aoi = %s AND year = %s ORDER BY created_at DESC LIMIT 1) GROUP BY status ORDER BY status",
                (aoi, year)).fetchall()),
            "flags": dict(conn.execute(
                "SELECT f.flag, count(*) FROM parcel_flags f JOIN classification_runs r ON r.run_id = f.run_id "
                "WHERE r.aoi = %s AND r.year = %s GROUP BY f.flag ORDER BY f.flag", (aoi, year)).fetchall()),
        }
    return out


def _cluster() -> Cluster:
    """The stack's api-server as seen from inside a container (admin password in the secrets volume)."""
    return Cluster(os.environ.get("CBMFLOW_API_URL", "http://airflow-apiserver:8080"),
                   Path(os.environ.get("CBMFLOW_SECRETS_DIR", "/opt/airflow/secrets")))


def running_hosts(cluster: Cluster, dag_id: str) -> list[str]:
    """Host names (worker containers) of the running task instances of ``dag_id``'s latest run."""
    runs = cluster._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-start_date&limit=1")["dag_runs"]
    if not runs:
        return []
    tis = cluster.task_instances(dag_id, str(runs[0]["dag_run_id"]))
    return sorted({str(t["hostname"]) for t in tis if t["state"] == "running" and t.get("hostname")})


class Runner:
    """Triggers the project's DAGs on a running stack and waits for each to end."""

    def __init__(self, cluster: Cluster, timeout: float) -> None:
        self.cluster = cluster
        self.timeout = timeout

    def dag(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause, trigger and wait for one DAG run; raise unless it ends ``success``."""
        t0 = time.perf_counter()
        self.cluster.wait_dag(dag_id, timeout=300)
        run_id = self.cluster.trigger(dag_id, conf)
        state = self.cluster.wait_run(dag_id, run_id, timeout=self.timeout, poll=2)
        print(f"   DAG {dag_id}: run {run_id} -> {state} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if state != "success":
            from cbmflow.core.errors import ProcessingError

            raise ProcessingError(f"{dag_id} run {run_id} ended {state}: {self.cluster.task_states(dag_id, run_id)}")
        return run_id


def _import_and_catalogue(runner: Runner, aoi: str, sim: Any, id_col: str, crop_col: str, crop_name_col: str,
                          reports: Path) -> None:
    from cbmflow.catalogue import stac
    from cbmflow.core import db

    runner.dag("import_parcels", {"file": sim.parcels_uri, "aoi": aoi, "year": SEASON, "id_col": id_col,
                                  "crop_col": crop_col, "crop_name_col": crop_name_col, "epsg": sim.epsg,
                                  "report": str(reports / f"import-{aoi}-{SEASON}.csv")})
    with db.connect() as conn:
        n = stac.catalogue_scenes(conn, stac.discover(sim.items_uri))
        conn.commit()
    print(f"   catalogue {aoi}: {n}", flush=True)


def _simulated(out: Path, name: str, make: Any) -> Any:
    """A simulated season: the one recorded in ``out/<name>.json`` when there, else ``make()``'s (recorded).

    Simulation is deterministic for a seed, so a second stack on the same data folder (the swarm after
    compose) reuses the archive instead of spending minutes re-simulating it.
    """
    from dataclasses import asdict

    from cbmflow_sim.archive import SimulationResult

    record = out / f"{name}.json"
    if record.exists():
        d = json.loads(record.read_text())
        return SimulationResult(**{**d, "transform": tuple(d["transform"]), "shape": tuple(d["shape"])})
    res = make()
    record.write_text(json.dumps(asdict(res)))
    return res


def run(out: Path, *, only_at: bool, timeout: float, seed: int = 42, ml_parcels: int = 2000) -> dict[str, Any]:
    """The demo's pipeline through the stack's REST API; returns the row counts."""
    from cbmflow import airflow_adapter
    from cbmflow.core import db
    from cbmflow.core.config import shared_data_dir
    from cbmflow_sim.archive import simulate_season, synthetic_parcels

    airflow_adapter.configure()  # CBMFLOW_DSN and AWS_* from the stack's AIRFLOW_CONN_* variables
    runner = Runner(_cluster(), timeout)
    out.mkdir(parents=True, exist_ok=True)
    reports = out / "reports"
    reports.mkdir(exist_ok=True)
    archive = out / "archive"
    at = _simulated(out, f"at-{seed}", lambda: simulate_season(
        str(shared_data_dir() / "parcels/at_schlaege_2025.gpkg.zip"), aoi="at", season=SEASON, out=str(archive),
        id_col=AT_ID, crop_col=AT_CROP, crop_name_col=AT_CROP_NAME, seed=seed))
    print(f"== AT season: {at.n_scenes} scenes, {at.n_rasters} COGs", flush=True)
    _import_and_catalogue(runner, "at", at, AT_ID, AT_CROP, AT_CROP_NAME, reports)
    runner.dag("extract_signatures", {"aoi": "at", "year": SEASON, "card_type": "all"})
    aois: tuple[str, ...] = ("at",)
    if not only_at:
        runner.dag("detect_markers", {"aoi": "at", "year": SEASON})

        def make_ml() -> Any:
            layout = synthetic_parcels(ml_parcels, seed=seed, epsg=32633, origin=(520000.0, 5320000.0))
            path = out / "sim_parcels.gpkg"
            layout.to_file(path, driver="GPKG")
            return simulate_season(str(path), aoi="sim", season=SEASON, out=str(archive), id_col="parcel_id",
                                   crop_col="crop_code", crop_name_col="crop_name", seed=seed, mislabel=0.05,
                                   card_types=("bs", "c6", "s2"))  # as make demo: S2 too

        ml = _simulated(out, f"sim-{seed}-{ml_parcels}-s2", make_ml)
        print(f"== synthetic AOI: {ml_parcels} parcels, {ml.n_rasters} COGs", flush=True)
        _import_and_catalogue(runner, "sim", ml, "parcel_id", "crop_code", "crop_name", reports)
        runner.dag("extract_signatures", {"aoi": "sim", "year": SEASON, "card_type": "all"})
        runner.dag("detect_markers", {"aoi": "sim", "year": SEASON})
        runner.dag("classify_outliers", {"aoi": "sim", "year": SEASON, "truth_uri": ml.truth_uri})
        aois = ("at", "sim")
    with db.connect() as conn:
        return counts(conn, aois)


def main(argv: list[str] | None = None) -> int:
    """``python -m cbmflow_dev.deploy run|counts``: print the row counts as one JSON line."""
    ap = argparse.ArgumentParser(prog="cbmflow_dev.deploy")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the demo's DAGs through the stack's REST API (inside a container)")
    r.add_argument("--out", default="/opt/airflow/data/deploy-demo")
    r.add_argument("--only-at", action="store_true", help="only the AT season: import and extraction")
    r.add_argument("--timeout", type=float, default=1200, help="seconds per DAG run")
    c = sub.add_parser("counts", help="the row counts of the database of CBMFLOW_DSN")
    c.add_argument("--aoi", action="append", help="AOIs (default: at and sim)")
    h = sub.add_parser("running", help="host names of the running task instances of a DAG's latest run")
    h.add_argument("dag_id")
    args = ap.parse_args(argv)
    if args.cmd == "running":
        for host in running_hosts(_cluster(), args.dag_id):
            print(host)
        return 0
    if args.cmd == "run":
        result = run(Path(args.out), only_at=args.only_at, timeout=args.timeout)
    else:
        from cbmflow.core import db

        with db.connect() as conn:
            result = counts(conn, tuple(args.aoi or ("at", "sim")))
    print("COUNTS " + json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
