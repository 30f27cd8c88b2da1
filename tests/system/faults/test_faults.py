"""Fault injection on the real local Celery cluster: the run tells the truth and no row is lost.

Each case starts from an empty extraction state over the same tiny SIMULATED archive on moto S3
(4 S1 CARD-BS scenes x VV/VH, 40 x 40 px; AOI ``fa`` with 4 parcels, AOI ``fb`` with 3 parcels over
the same scenes), injects one fault while ``extract_signatures`` runs through the Airflow REST API,
and ends with: the rows identical to a clean run (count and checksum per band), zero duplicate
keys, nothing stuck, and a run state that is ``success`` only when every scene is written and
``failed`` when data is missing. Pauses use the file hooks of :mod:`cbmflow.core.faults`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from affine import Affine
from shapely.geometry import box

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import cog

LocalCluster = Any  # tests/cluster/conftest.py: LocalCluster

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

DAG = "extract_signatures"
YEAR = 2025
X0, Y0, CRS = 500000.0, 5000000.0, "EPSG:32633"
R, C = np.mgrid[0:40, 0:40]
PARCELS = {
    "fa": {"A1": box(X0, Y0 - 100, X0 + 100, Y0), "A2": box(X0 + 200, Y0 - 100, X0 + 300, Y0),
           "A3": box(X0, Y0 - 300, X0 + 100, Y0 - 200), "A4": box(X0 + 150, Y0 - 390, X0 + 390, Y0 - 250)},
    # fb shares every scene; B1 covers the same ground as A1 (its own parcel, its own rows)
    "fb": {"B1": box(X0, Y0 - 100, X0 + 100, Y0), "B2": box(X0 + 250, Y0 - 250, X0 + 390, Y0 - 120),
           "B3": box(X0 + 20, Y0 - 390, X0 + 120, Y0 - 310)},
}
N_SCENES = 4
BANDS = ("VV", "VH")
RESET_TABLES = ("signatures", "scl_histograms", "extraction_waivers", "extractions")  # waivers reference extractions


def scene_name(i: int) -> str:
    """Product id of simulated scene ``i`` (sensed 2025-06-0<i+1> 05:00 UTC)."""
    return f"SIM_S1A_CARD_BS_2025060{i + 1}_FAULTS"


def write_band(bucket: str, i: int, band: str) -> str:
    """Write (or repair) scene ``i``'s COG of ``band``; returns its URI."""
    b = BANDS.index(band)
    uri = f"s3://{bucket}/card/{scene_name(i)}_{band}.tif"
    data = ((b + 1) * (40 * R + C) + 7 * i) / 1000 + 0.01
    cog.write_cog(uri, data.astype(np.float32), crs=CRS, transform=Affine(10, 0, X0, 0, -10, Y0),
                  nodata=float("nan"), tags={"CBMFLOW_SIMULATED": "true"})
    return uri


def _build(dsn: str, bucket: str) -> None:
    """Parcels of both AOIs and the simulated scenes, written once per session."""
    scenes = []
    for i in range(N_SCENES):
        name = scene_name(i)
        assets = {band: write_band(bucket, i, band) for band in BANDS}
        scenes.append(Scene(product_id=name, mission="S1A", product_type="CARD-BS", card_type="bs",
                            sensing_time=datetime(YEAR, 6, i + 1, 5, tzinfo=UTC), tile="E25N250",
                            orbit_direction="ascending", assets=assets, simulated=True, status="ready"))
    with psycopg.connect(dsn) as conn:
        for aoi, parcels in PARCELS.items():
            conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES (%s, 32633, 1)", (aoi,))
            for pid, g in parcels.items():
                conn.execute(
                    "INSERT INTO parcels (aoi, year, parcel_id, crop_code, area_m2, geom, source) "
                    "VALUES (%s, %s, %s, 'X', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test')",
                    (aoi, YEAR, pid, g.area, g.wkt))
        catalogue.upsert(conn, scenes)
        conn.commit()


def _reset(dsn: str) -> None:
    """Forget every extraction: no rows, every scene ready again (any writer left over is ended first)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        have = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        tables = [t for t in RESET_TABLES if t in have]
        conn.execute(f"TRUNCATE {', '.join(tables)}")
        conn.execute("UPDATE catalogue SET status = 'ready', attempts = 0, last_error = NULL")


def fingerprint(dsn: str, aoi: str) -> dict[str, tuple[int, str]]:
    """Per band: row count and a checksum of every value, keyed by parcel and product (not by ids)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT b.name, count(*), md5(string_agg(concat_ws(',', p.parcel_id, c.product_id, s.count, "
            "round(s.mean::numeric, 5), round(s.std::numeric, 5), s.min, s.max, s.p25, s.p50, s.p75), ';' "
            "ORDER BY p.parcel_id, c.product_id)) "
            "FROM signatures s JOIN parcels p ON p.pid = s.pid JOIN catalogue c ON c.id = s.obsid "
            "JOIN bands b ON b.code = s.band WHERE p.aoi = %s GROUP BY b.name", (aoi,)).fetchall()
    return {r[0]: (int(r[1]), str(r[2])) for r in rows}


def assert_consistent(dsn: str) -> None:
    """Zero duplicate keys and nothing left in a working state in any status column."""
    with psycopg.connect(dsn) as conn:
        dup = conn.execute("SELECT count(*) - count(DISTINCT (pid, obsid, band, year)) FROM signatures").fetchone()
        assert dup is not None and dup[0] == 0, f"{dup[0]} duplicate signature keys"
        tables = conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'status' AND table_name IN (SELECT tablename FROM pg_tables)").fetchall()
        for (t,) in tables:
            stuck = conn.execute(f"SELECT count(*) FROM {t} WHERE status IN ('processing', 'pending')").fetchone()
            assert stuck is not None and stuck[0] == 0, f"{stuck[0]} row(s) of {t} stuck in processing/pending"


def trigger(lc: LocalCluster, **conf: Any) -> str:
    """Trigger extract_signatures through the REST API (batch_size 2: two mapped tasks of 2 scenes)."""
    full = {"year": YEAR, "card_type": "bs", "batch_size": 2, **conf}
    return lc.client.trigger(DAG, full)


def wait_markers(lc: LocalCluster, point: str, n: int = 1, timeout: float = 180) -> list[int]:
    """PIDs paused at a hook point, once at least n are there."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p.name.split(".")[1]) for p in lc.hooks.glob(f"{point}.*.waiting")]
        if len(pids) >= n:
            return pids
        assert time.monotonic() < deadline, f"nothing paused at {point!r} after {timeout} s"
        time.sleep(0.5)


def pause(lc: LocalCluster, point: str) -> Path:
    flag = lc.hooks / f"{point}.pause"
    flag.touch()
    return flag


@pytest.fixture(scope="module")
def archive(cluster: LocalCluster) -> LocalCluster:
    """The archive built once, and the reference fingerprints of clean runs of each AOI."""
    with cluster.s3():
        _build(cluster.dsn, cluster.bucket)
    return cluster


@pytest.fixture(scope="module")
def reference(archive: LocalCluster) -> dict[str, dict[str, tuple[int, str]]]:
    """Clean runs without any fault: AOI fa alone, then fb alone, each from an empty state.

    The clean run is the extraction engine in this process (what `cbmflow signatures` runs, the
    same code the DAG's tasks call), which saves two cluster runs; `test_two_aois_sharing_scenes`
    shows the cluster's own fault-free runs give the same fingerprints.
    """
    from cbmflow.extract import run as extract

    ref = {}
    for aoi in ("fa", "fb"):
        _reset(archive.dsn)
        with archive.s3():
            out = extract.extract_all(aoi=aoi, year=YEAR, card_type="bs", dsn=archive.dsn)
        assert len(out["extracted"]) == N_SCENES and not out["failed"], out
        ref[aoi] = fingerprint(archive.dsn, aoi)
        assert_consistent(archive.dsn)
    n_parcels = {"fa": 4, "fb": 3}
    for aoi, fp in ref.items():
        assert set(fp) == set(BANDS)
        assert all(n == n_parcels[aoi] * N_SCENES for n, _ in fp.values()), fp
    return ref


@pytest.fixture()
def fresh(archive: LocalCluster) -> Any:
    """Empty extraction state and broker queue before the case; pause flags removed after it."""
    _reset(archive.dsn)
    archive.broker.purge(archive.env["CBMFLOW_CLUSTER_NAME"] + ":default")  # an ended run's messages stay behind
    yield archive
    for p in archive.hooks.iterdir():
        p.unlink(missing_ok=True)
    # a case that failed half-way leaves its run going: end it, so it cannot write into the next case
    for run in archive.client.unfinished_runs(DAG):
        archive.client.fail_run(DAG, run)
    deadline = time.monotonic() + 60
    while archive.client.unfinished_runs(DAG) and time.monotonic() < deadline:
        time.sleep(1)


def _retry_started_after(lc: LocalCluster, run: str, killed: datetime) -> float:
    """Seconds from the kill to the start of the first retried extract try (the recovery time)."""
    starts = [datetime.fromisoformat(t["start_date"]) for t in lc.client.task_instances(DAG, run)
              if t["task_id"] == "extract" and int(t.get("try_number") or 0) >= 2 and t.get("start_date")]
    assert starts, lc.client.task_states(DAG, run)
    return (min(starts) - killed).total_seconds()


def _tries(lc: LocalCluster, run: str) -> dict[str, int]:
    return {f"{t['task_id']}[{t['map_index']}]": int(t.get("try_number") or 0)
            for t in lc.client.task_instances(DAG, run)}


def test_kill_worker_during_mapped_extract(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    flag = pause(lc, "read")  # every extract task stops while opening its raster, claim held
    run = trigger(lc, aoi="fa")
    victim_pid = wait_markers(lc, "read")[0]
    worker = lc.worker_of(victim_pid)
    lc.kill_worker(worker)
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    flag.unlink()
    lc.restart_worker(worker)
    state = lc.client.wait_run(DAG, run, timeout=400)
    lc.timings["kill_worker_run_end_after_kill_s"] = time.monotonic() - killed_at
    lc.timings["kill_worker_retry_started_after_kill_s"] = _retry_started_after(lc, run, killed_wall)
    tries = _tries(lc, run)
    assert state == "success", lc.client.task_states(DAG, run)
    assert max(n for k, n in tries.items() if k.startswith("extract")) >= 2, tries  # the killed task was retried
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_kill_worker_during_copy(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    flag = pause(lc, "copy")  # inside the binary COPY: the first rows are on the wire
    run = trigger(lc, aoi="fa")
    victim_pid = wait_markers(lc, "copy")[0]
    worker = lc.worker_of(victim_pid)
    dbname = psycopg.conninfo.conninfo_to_dict(lc.dsn)["dbname"]
    with psycopg.connect(lc.dsn, autocommit=True) as mon:
        def copying() -> dict[int, int]:  # backend pid -> rows the server has received in its COPY
            return dict(mon.execute("SELECT pid, tuples_processed FROM pg_stat_progress_copy WHERE datname = %s",
                                    (dbname,)).fetchall())

        deadline = time.monotonic() + 30
        while not any(n > 0 for n in copying().values()):  # the paused writers' first rows are on the server
            assert time.monotonic() < deadline, copying()
            time.sleep(0.2)
        before = copying()
        lc.kill_worker(worker)
        killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
        # the dead writer's connection closes, the server rolls its COPY back: never a partial scene
        while set(before) <= set(copying()):  # a victim backend's COPY ends (a retry may already copy on a new one)
            assert time.monotonic() < killed_at + 30, (before, copying())
            time.sleep(0.1)
        per_scene = mon.execute("SELECT obsid, count(*) FROM signatures GROUP BY obsid").fetchall()
    assert sum(before.values()) > 0 and per_scene == [], (before, per_scene)  # rows were sent, none is visible
    flag.unlink()
    lc.restart_worker(worker)
    state = lc.client.wait_run(DAG, run, timeout=400)
    lc.timings["kill_copy_run_end_after_kill_s"] = time.monotonic() - killed_at
    lc.timings["kill_copy_retry_started_after_kill_s"] = _retry_started_after(lc, run, killed_wall)
    assert state == "success", lc.client.task_states(DAG, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_s3_outage(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    # 1. S3 down for the whole run: every retry fails, the run must fail and name the scenes
    lc.proxy.stop()
    try:
        run = trigger(lc, aoi="fa")
        assert lc.client.wait_run(DAG, run, timeout=400) == "failed"
    finally:
        lc.proxy.start()
    with psycopg.connect(lc.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM signatures").fetchone() == (0,)
    # 2. S3 down only until the first try failed: the retries finish the run, nothing lost
    lc.proxy.stop()
    t_down = time.monotonic()
    try:
        run = trigger(lc, aoi="fa")
        deadline = time.monotonic() + 300
        while not any(t["task_id"] == "extract" and t["state"] in ("up_for_retry", "failed")
                      or (t["task_id"] == "extract" and int(t.get("try_number") or 0) >= 2)
                      for t in lc.client.task_instances(DAG, run)):
            assert time.monotonic() < deadline, lc.client.task_states(DAG, run)
            time.sleep(1)
    finally:
        lc.proxy.start()
        lc.timings["s3_outage_s"] = time.monotonic() - t_down
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_database_connections_dropped(reference: dict, fresh: LocalCluster) -> None:
    """pg_terminate_backend on the results and the Airflow metadata databases during a COPY."""
    lc = fresh
    flag = pause(lc, "copy")
    run = trigger(lc, aoi="fa")
    wait_markers(lc, "copy")
    # the server drops every connection at once: the writers' (mid-COPY) and Airflow's own
    meta_db = lc.env["CBMFLOW_CLUSTER_META_DB"]
    with psycopg.connect(lc.dsn, autocommit=True) as conn:
        killed = dict(conn.execute(
            "SELECT datname, count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname IN (current_database(), %s) AND pid <> pg_backend_pid() GROUP BY datname",
            (meta_db,)).fetchall())
    assert killed.get(psycopg.conninfo.conninfo_to_dict(lc.dsn)["dbname"], 0) >= 1, killed
    assert killed.get(meta_db, 0) >= 1, killed
    flag.unlink()
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    tries = _tries(lc, run)
    assert max(n for k, n in tries.items() if k.startswith("extract")) >= 2, tries  # the dropped writer retried
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_two_concurrent_runs_over_the_same_scenes(reference: dict, fresh: LocalCluster) -> None:
    """A DAG run and a `cbmflow signatures` process (the DAG allows one active run) on the same scenes."""
    lc = fresh
    flag = pause(lc, "copy")
    env = dict(lc.env, CBMFLOW_DSN=lc.dsn, AWS_ENDPOINT_URL=lc.env["CBMFLOW_S3_ENDPOINT"])
    cli = subprocess.Popen([str(Path(sys.executable).parent / "cbmflow"), "signatures", "--aoi", "fa",
                            "--year", str(YEAR), "--card-type", "bs"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        run = trigger(lc, aoi="fa")
        deadline = time.monotonic() + 180
        while True:  # both writers are inside a COPY (or waiting for the other's claim)
            pids = wait_markers(lc, "copy")
            if cli.pid in pids and len(pids) >= 2:
                break
            assert time.monotonic() < deadline and cli.poll() is None, (pids, cli.pid)
            time.sleep(0.5)
        flag.unlink()
        out, _ = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, out
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_two_aois_sharing_scenes(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    run = trigger(lc, aoi="")  # every AOI: fa and fb over the same scenes, in one run
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert fingerprint(lc.dsn, "fb") == reference["fb"]
    # replacing fb's rows (reprocess) never touches fa's
    run = trigger(lc, aoi="fb", reprocess=True)
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert fingerprint(lc.dsn, "fb") == reference["fb"]
    assert_consistent(lc.dsn)


def test_unknown_aoi_fails_the_run(fresh: LocalCluster) -> None:
    run = trigger(fresh, aoi="no_such_aoi")
    assert fresh.client.wait_run(DAG, run, timeout=200) == "failed", fresh.client.task_states(DAG, run)


# --- red runs stay red: Clear, backfill and broker loss (issue 18) -------------------------------

def break_scene(lc: LocalCluster, i: int, band: str = "VV") -> None:
    """Overwrite scene ``i``'s COG of ``band`` with bytes that are no GeoTIFF (a truncated upload)."""
    from cbmflow.core import storage

    with lc.s3():
        storage.s3_client().put_object(Bucket=lc.bucket, Key=f"card/{scene_name(i)}_{band}.tif",
                                       Body=b"II*\x00truncated upload")


def repair_scene(lc: LocalCluster, i: int, band: str = "VV") -> None:
    """Write scene ``i``'s good COG again."""
    with lc.s3():
        write_band(lc.bucket, i, band)


def ledger(dsn: str, aoi: str) -> dict[str, tuple[str, int]]:
    """product id -> (status, attempts) of an AOI's (scene, AOI) extractions."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT c.product_id, e.status, e.attempts FROM extractions e "
                            "JOIN catalogue c ON c.id = e.obsid WHERE e.aoi = %s", (aoi,)).fetchall()
    return {r[0]: (str(r[1]), int(r[2])) for r in rows}


def clear_and_wait(lc: LocalCluster, run: str, timeout: float = 400) -> str:
    """Clear a finished run (the UI's Clear), wait until it ran again; its final state."""
    lc.client.clear_run(DAG, run)
    deadline = time.monotonic() + 60
    while lc.client.run_state(DAG, run) in ("success", "failed"):  # cleared: queued, then running
        assert time.monotonic() < deadline, "the cleared run never started again"
        time.sleep(0.5)
    return lc.client.wait_run(DAG, run, timeout=timeout)


def test_clear_of_a_red_run_stays_red_until_the_file_is_repaired(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    break_scene(lc, 1)
    try:
        run = trigger(lc, aoi="fa")
        assert lc.client.wait_run(DAG, run, timeout=400) == "failed", lc.client.task_states(DAG, run)
        first = ledger(lc.dsn, "fa")
        assert first[scene_name(1)][0] == "failed", first
        assert sorted(v[0] for k, v in first.items() if k != scene_name(1)) == ["extracted"] * 3
        # Clear with the file still broken: the failed scene is tried again and the run is red again
        assert clear_and_wait(lc, run) == "failed", lc.client.task_states(DAG, run)
        again = ledger(lc.dsn, "fa")
        assert again[scene_name(1)][0] == "failed"
        assert again[scene_name(1)][1] > first[scene_name(1)][1], (first, again)  # really re-tried
        assert {k: v for k, v in again.items() if k != scene_name(1)} == \
            {k: v for k, v in first.items() if k != scene_name(1)}  # the good scenes were not redone
    finally:
        repair_scene(lc, 1)
    # repaired: Clear makes the same run green, with the rows of a clean run
    assert clear_and_wait(lc, run) == "success", lc.client.task_states(DAG, run)
    assert ledger(lc.dsn, "fa")[scene_name(1)][0] == "extracted"
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_backfill_redoes_exactly_the_failed_scenes_of_its_range(reference: dict, fresh: LocalCluster) -> None:
    lc = fresh
    broken = (1, 3)  # sensed 2025-06-02 and 2025-06-04
    for i in broken:
        break_scene(lc, i)
    try:
        run = trigger(lc, aoi="fa")
        assert lc.client.wait_run(DAG, run, timeout=400) == "failed"
    finally:
        for i in broken:
            repair_scene(lc, i)
    before = ledger(lc.dsn, "fa")
    assert {k for k, v in before.items() if v[0] == "failed"} == {scene_name(i) for i in broken}
    # the daily runs at 06:00 of 2025-06-02 and -03 cover the scenes sensed 06-01 06:00 .. 06-03 06:00:
    # of the failed ones only scene 1 (06-02 05:00); scene 3 (06-04) is outside the range
    lc.client.backfill(DAG, "2025-06-02T00:00:00Z", "2025-06-03T12:00:00Z",
                       conf={"aoi": "fa", "card_type": "bs", "batch_size": 2}, reprocess_behavior="failed")
    deadline = time.monotonic() + 600
    while True:
        runs = lc.client.backfill_runs(DAG)
        if len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(2)
    assert [r["state"] for r in runs] == ["success", "success"], runs
    after = ledger(lc.dsn, "fa")
    redone = {k for k in after if after[k][1] != before[k][1]}
    assert redone == {scene_name(1)}, (before, after)  # exactly the failed scene of the range
    assert after[scene_name(1)][0] == "extracted" and after[scene_name(3)][0] == "failed"
    # a plain run then redoes the failed scene outside the range (nothing else) and is green
    run = trigger(lc, aoi="fa")
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    final = ledger(lc.dsn, "fa")
    assert {k for k in final if final[k][1] != after[k][1]} == {scene_name(3)}
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def _all_first_try(lc: LocalCluster, run: str) -> dict[str, int]:
    tries = _tries(lc, run)
    assert all(n == 1 for n in tries.values()), tries  # the outage used up no retry
    return tries


def test_broker_lost_with_a_message_in_its_queue(reference: dict, fresh: LocalCluster) -> None:
    """Redis restarted (every message gone) while a task waits in its queue: sent again, no retry used."""
    lc = fresh
    workers = ("worker-1", "worker-2")
    for w in workers:  # nobody consumes: the first task's message waits in the broker
        lc.script("stop", w)
    queue = lc.env["CBMFLOW_CLUSTER_NAME"] + ":default"
    try:
        run = trigger(lc, aoi="fa")
        deadline = time.monotonic() + 120
        # plan's message is in the broker and the API says it is queued (the two are written one after
        # the other: polled together, not read once)
        while lc.broker.queue_length(queue) < 1 or lc.client.task_states(DAG, run).get("plan[-1]") != "queued":
            assert time.monotonic() < deadline, (lc.broker.queue_length(queue), lc.client.task_states(DAG, run))
            time.sleep(0.5)
        lc.broker.kill()  # the message is lost with the broker
        t_lost = time.monotonic()
        lc.broker.start()
        assert lc.broker.queue_length(queue) == 0
    finally:
        for w in workers:
            lc.restart_worker(w)
    assert lc.client.wait_run(DAG, run, timeout=400) == "success", lc.client.task_states(DAG, run)
    lc.timings["broker_lost_message_run_end_s"] = time.monotonic() - t_lost
    _all_first_try(lc, run)
    # the UI's audit log says what happened
    events = lc.client.event_logs(DAG, "stuck in queued reschedule")
    assert any(e.get("run_id") == run and e.get("task_id") == "plan" for e in events), events
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)


def test_broker_down_for_a_minute_mid_run(reference: dict, fresh: LocalCluster) -> None:
    """Redis killed while extract tasks run and restarted 60 s later: the run ends green, no retry used."""
    lc = fresh
    flag = pause(lc, "read")
    run = trigger(lc, aoi="fa", batch_size=1)  # 4 units: some wait to be sent while the broker is down
    wait_markers(lc, "read")
    lc.broker.kill()
    t_down = time.monotonic()
    flag.unlink()  # the running tasks finish without the broker; the rest cannot be sent
    time.sleep(60)
    lc.broker.start()
    lc.timings["broker_down_s"] = time.monotonic() - t_down
    assert lc.client.wait_run(DAG, run, timeout=600) == "success", lc.client.task_states(DAG, run)
    lc.timings["broker_down_run_end_after_restart_s"] = time.monotonic() - t_down - 60
    _all_first_try(lc, run)
    assert fingerprint(lc.dsn, "fa") == reference["fa"]
    assert_consistent(lc.dsn)
