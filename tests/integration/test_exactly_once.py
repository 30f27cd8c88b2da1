"""Exactly-once extraction under faults, against the real PostGIS and a moto S3 server.

* kill -9 of a ``cbmflow signatures`` process in the middle of its COPY: no partial row, no stale
  claim (the next attempt claims at once), rows identical to a clean run afterwards;
* two AOIs sharing a scene keep their own rows and statuses;
* an object-storage outage is a retryable error that leaves the scene ``pending``, not ``failed``;
* an all-nodata raster and a raster beside the parcels are ``no_data``, listed by ``problem_scenes``;
* two writers creating two new year partitions at once do not deadlock;
* two extraction runs at once over the same scenes: no duplicate, no lost row.

Rasters are tiny simulated CARD COGs (labelled SIM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from affine import Affine
from shapely.geometry import box

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import cog, db
from cbmflow.core.errors import StorageUnavailable, TransientError
from cbmflow.extract import run as extract

pytestmark = pytest.mark.integration

X0, Y0, CRS = 500000.0, 5000000.0, "EPSG:32633"
T10 = Affine(10, 0, X0, 0, -10, Y0)
R, C = np.mgrid[0:40, 0:40]


def pixel_box(r0: int, r1: int, c0: int, c1: int):  # type: ignore[no-untyped-def]
    return box(X0 + 10 * c0, Y0 - 10 * (r1 + 1), X0 + 10 * (c1 + 1), Y0 - 10 * r0)


# AOI 'a' and AOI 'b' overlap: b's B1 is a's P1 again (another declaration of the same field).
AOIS = {
    "a": {"P1": pixel_box(0, 9, 0, 9), "P2": pixel_box(0, 9, 20, 29), "P3": pixel_box(20, 29, 0, 9)},
    "b": {"B1": pixel_box(0, 9, 0, 9), "B2": pixel_box(30, 39, 30, 39)},
}


def add_aoi(conn: psycopg.Connection, aoi: str, year: int = 2025) -> dict[str, int]:
    conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES (%s, 32633, 1)", (aoi,))
    pids = {}
    for name, g in AOIS[aoi].items():
        pids[name] = conn.execute(
            "INSERT INTO parcels (aoi, year, parcel_id, crop_code, area_m2, geom, source) "
            "VALUES (%s, %s, %s, 'X', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test') RETURNING pid",
            (aoi, year, name, g.area, g.wkt)).fetchone()[0]
    conn.commit()
    return pids


def s1_scene(base: str, name: str, day: int, *, fill: float | None = None, shift: float = 0.0) -> Scene:
    """A two-band SIM CARD-BS scene; ``fill`` = every pixel that value; ``shift`` moves it east (m)."""
    vv = ((40 * R + C + day) / 1000).astype(np.float32)
    if fill is not None:
        vv = np.full_like(vv, fill)
    assets = {}
    for band, data in (("VV", vv), ("VH", vv * 2)):
        uri = f"{base}/bs/{name}_{band}.tif"
        cog.write_cog(uri, data, crs=CRS, transform=Affine(10, 0, X0 + shift, 0, -10, Y0), nodata=float("nan"),
                      tags={"CBMFLOW_SIMULATED": "true"})
        assets[band] = uri
    return Scene(product_id=name, mission="S1A", product_type="CARD-BS", card_type="bs",
                 sensing_time=datetime(2025, 5, day, 5, tzinfo=UTC), tile="E25N250",
                 orbit_direction="ascending", assets=assets, simulated=True, status="ready")


def checksum(conn: psycopg.Connection, aoi: str | None = None) -> dict[int, tuple[int, str]]:
    """Per band: (row count, md5 of every row in key order)."""
    q = ("SELECT s.band, count(*), md5(string_agg(concat_ws(',', s.pid, s.obsid, s.count, s.mean, s.std, s.min, "
         "s.max, s.p25, s.p50, s.p75, s.year), ';' ORDER BY s.pid, s.obsid)) FROM signatures s "
         "JOIN parcels p ON p.pid = s.pid WHERE (%s::text IS NULL OR p.aoi = %s) GROUP BY s.band")
    out = {r[0]: (int(r[1]), r[2]) for r in conn.execute(q, (aoi, aoi))}
    conn.commit()
    return out


def assert_exact(conn: psycopg.Connection, aoi: str, day_of: dict[int, int]) -> None:
    """Every row of ``aoi`` equals the statistics computed by hand from the scene's formula.

    A scene of day ``d`` has VV = (40 r + c + d) / 1000 and VH = 2 VV; a parcel is a pixel box, so
    its count is the box's pixel count and its mean, min and max follow from the box's corners.
    """
    boxes = {"P1": (0, 9, 0, 9), "P2": (0, 9, 20, 29), "P3": (20, 29, 0, 9), "B1": (0, 9, 0, 9),
             "B2": (30, 39, 30, 39)}
    rows = conn.execute(
        "SELECT p.parcel_id, s.obsid, s.band, s.count, s.mean, s.min, s.max FROM signatures s "
        "JOIN parcels p ON p.pid = s.pid WHERE p.aoi = %s", (aoi,)).fetchall()
    conn.commit()
    assert len(rows) == len(AOIS[aoi]) * len(day_of) * 2, rows
    for parcel, obsid, band, count, mean, mn, mx in rows:
        r0, r1, c0, c1 = boxes[parcel]
        k = 1.0 if band == 1 else 2.0
        vv = (40 * R[r0:r1 + 1, c0:c1 + 1] + C[r0:r1 + 1, c0:c1 + 1] + day_of[obsid]) / 1000
        want = (k * vv).astype(np.float32).astype(np.float64)
        assert count == want.size, (parcel, obsid, band, count)
        assert mean == pytest.approx(want.mean(), rel=1e-5), (parcel, obsid, band)
        assert (mn, mx) == (pytest.approx(want.min(), rel=1e-6), pytest.approx(want.max(), rel=1e-6))


def duplicates(conn: psycopg.Connection) -> int:
    n = conn.execute("SELECT count(*) - count(DISTINCT (pid, obsid, band)) FROM signatures").fetchone()[0]
    conn.commit()
    return int(n)


def statuses(conn: psycopg.Connection, aoi: str) -> dict[int, str]:
    out = dict(conn.execute("SELECT obsid, status FROM extractions WHERE aoi = %s", (aoi,)).fetchall())
    conn.commit()
    return out


def _child_env(dsn: str, pause: float) -> dict[str, str]:
    env = dict(os.environ, CBMFLOW_DSN=dsn, CBMFLOW_TEST_COPY_PAUSE=str(pause))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _kill_during_copy(dsn: str, args: list[str]) -> None:
    """Start ``cbmflow <args>`` with a slow COPY, wait until its COPY runs, kill -9 it, wait for its backend to go."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    code = "import sys; from cbmflow.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=_child_env(dsn, 30.0),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    backend = None
    try:
        with psycopg.connect(dsn, autocommit=True) as mon:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                row = mon.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY signatures%%' "
                    "AND state = 'active'", (dbname,)).fetchone()
                if row:
                    backend = row[0]
                    break
                time.sleep(0.1)
            assert backend is not None, f"the child never reached its COPY: {proc.communicate()[0]!r}"
            time.sleep(0.5)  # the first chunk is on the server, the rest is not
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            deadline = time.monotonic() + 30  # the server notices the closed socket and rolls back
            while time.monotonic() < deadline and mon.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
                time.sleep(0.05)
            assert mon.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone() is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _claimable_now(dsn: str, obsids: list[int], aoi: str) -> bool:
    """Whether every scene's claim can be taken without waiting (no dead worker holds it)."""
    with psycopg.connect(dsn) as c:
        try:
            rows = c.execute("SELECT obsid FROM extractions WHERE aoi = %s AND obsid = ANY(%s) FOR UPDATE NOWAIT",
                             (aoi, obsids)).fetchall()
        except psycopg.errors.LockNotAvailable:
            return False
        return len(rows) == len(obsids)


def test_kill_9_during_copy_leaves_no_partial_rows_and_no_stale_claim(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    add_aoi(conn, "a")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/k", f"SIM_S1_k{i}", i + 1) for i in range(3)])
    conn.commit()
    obsids = sorted(ids.values())
    args = ["signatures", "--aoi", "a", "--year", "2025", "--card-type", "bs"]

    # 1. a fresh extraction killed in its first scene's COPY: nothing written, nothing stuck
    _kill_during_copy(clean_db, args)
    assert checksum(conn) == {} and duplicates(conn) == 0
    assert set(statuses(conn, "a").values()) == {"pending"}
    assert _claimable_now(clean_db, obsids, "a")
    out = extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db)  # the next attempt
    assert sorted(out["extracted"]) == obsids and out["skipped"] == [] and out["failed"] == {}
    clean = checksum(conn)
    assert {b: n for b, (n, _) in clean.items()} == {1: 9, 2: 9} and duplicates(conn) == 0
    assert_exact(conn, "a", {ids[f"SIM_S1_k{i}"]: i + 1 for i in range(3)})  # a clean run, checked by hand

    # 2. a reprocess killed mid-COPY: the old rows stay whole (the delete rolled back with the COPY)
    _kill_during_copy(clean_db, [*args, "--reprocess"])
    assert checksum(conn) == clean and duplicates(conn) == 0
    assert set(statuses(conn, "a").values()) == {"extracted"}
    assert _claimable_now(clean_db, obsids, "a")
    redo = extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db, reprocess=True)
    assert sorted(redo["extracted"]) == obsids and redo["skipped"] == []
    assert checksum(conn) == clean and duplicates(conn) == 0


def test_two_aois_sharing_a_scene_keep_their_own_rows(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    pa, pb = add_aoi(conn, "a"), add_aoi(conn, "b")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/o", "SIM_S1_shared", 2)])
    conn.commit()
    sid = ids["SIM_S1_shared"]
    assert extract.extract_scenes([sid], aoi="a", year=2025, dsn=clean_db)["rows"] == 6
    rows_a = checksum(conn, "a")
    xmin_a = sorted(r[0] for r in conn.execute(
        "SELECT xmin::text FROM signatures WHERE pid = ANY(%s)", (list(pa.values()),)))
    conn.commit()
    assert extract.extract_scenes([sid], aoi="b", year=2025, dsn=clean_db)["rows"] == 4
    # b re-extracted (reprocess): a's rows are the very same tuples, not rewritten
    assert extract.extract_scenes([sid], aoi="b", year=2025, dsn=clean_db, reprocess=True)["rows"] == 4
    assert checksum(conn, "a") == rows_a
    assert sorted(r[0] for r in conn.execute(
        "SELECT xmin::text FROM signatures WHERE pid = ANY(%s)", (list(pa.values()),))) == xmin_a
    per_pid = dict(conn.execute("SELECT pid, count(*) FROM signatures GROUP BY pid").fetchall())
    assert per_pid == {**{p: 2 for p in pa.values()}, **{p: 2 for p in pb.values()}}
    assert statuses(conn, "a") == {sid: "extracted"} and statuses(conn, "b") == {sid: "extracted"}
    # the same field in both AOIs has the same statistics (one scene, same pixels)
    same = conn.execute("SELECT count(DISTINCT (band, mean, count)) FROM signatures WHERE pid = ANY(%s)",
                        ([pa["P1"], pb["B1"]],)).fetchone()[0]
    assert same == 2 and duplicates(conn) == 0


def test_storage_outage_is_retryable_and_the_scene_stays_pending(conn, clean_db) -> None:  # type: ignore[no-untyped-def]
    """A real moto server with the rasters, then stopped: the extraction fails retryably."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    try:
        from cbmflow.core import storage

        storage.ensure_bucket("s3://outage")
        add_aoi(conn, "a")
        ids = catalogue.upsert(conn, [s1_scene("s3://outage/c", "SIM_S1_o1", 1), s1_scene("s3://outage/c", "SIM_S1_o2", 2)])
        conn.commit()
        server.stop()  # the storage goes away
        with pytest.raises(TransientError) as err:
            extract.extract_scenes(sorted(ids.values()), aoi="a", year=2025, dsn=clean_db)
        assert isinstance(err.value, StorageUnavailable) and err.value.outcome == "retry"
        assert set(statuses(conn, "a").values()) == {"pending"}  # never 'failed'
        first = min(ids.values())
        note = conn.execute("SELECT attempts, last_error FROM extractions WHERE obsid = %s", (first,)).fetchone()
        conn.commit()
        assert note[0] == 1 and note[1].startswith("interrupted, will retry") and "SIM_S1_o1_VV.tif" in note[1]
        assert catalogue.problem_scenes(conn, "a") == []
        # the storage comes back (moto restarts empty: the same objects are uploaded again)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        storage.ensure_bucket("s3://outage")
        for name, day in (("SIM_S1_o1", 1), ("SIM_S1_o2", 2)):
            s1_scene("s3://outage/c", name, day)
        out = extract.extract_scenes(sorted(ids.values()), aoi="a", year=2025, dsn=clean_db)  # the retry
        assert sorted(out["extracted"]) == sorted(ids.values()) and out["failed"] == {} and out["rows"] == 12
        assert set(statuses(conn, "a").values()) == {"extracted"}
    finally:
        os.environ["AWS_ENDPOINT_URL"] = old
        server.stop()


def test_database_outage_is_retryable() -> None:
    from cbmflow.core.errors import DatabaseUnavailable, transient_cause

    with socket_port() as port, pytest.raises(DatabaseUnavailable) as err:
        db.connect(f"postgresql://postgres@127.0.0.1:{port}/nothing")
    assert err.value.outcome == "retry"
    assert isinstance(transient_cause(psycopg.OperationalError("server closed the connection unexpectedly")),
                      DatabaseUnavailable)
    assert transient_cause(psycopg.errors.UndefinedTable("no table")) is None


class socket_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_all_nodata_and_no_overlap_are_no_data(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    add_aoi(conn, "a")
    scenes = [s1_scene(f"{s3_bucket}/n", "SIM_S1_nan", 1, fill=float("nan")),
              s1_scene(f"{s3_bucket}/n", "SIM_S1_beside", 2, shift=10_000.0),
              s1_scene(f"{s3_bucket}/n", "SIM_S1_good", 3)]
    ids = catalogue.upsert(conn, scenes)
    conn.commit()
    units = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db)
    out = extract.extract_scenes(units[0]["scene_ids"], aoi="a", year=2025, dsn=clean_db, run_id="r1")
    assert sorted(out["no_data"]) == sorted([ids["SIM_S1_nan"], ids["SIM_S1_beside"]])
    assert out["extracted"] == [ids["SIM_S1_good"]] and out["rows"] == 6
    st = statuses(conn, "a")
    assert st == {ids["SIM_S1_nan"]: "no_data", ids["SIM_S1_beside"]: "no_data", ids["SIM_S1_good"]: "extracted"}
    probs = catalogue.problem_scenes(conn, "a", since=datetime(2025, 1, 1, tzinfo=UTC))
    assert [(p.product_id, p.status, p.rows) for p in probs] == [
        ("SIM_S1_beside", "no_data", 0), ("SIM_S1_nan", "no_data", 0)]  # newest sensing day first
    assert "no parcel of the AOI has a valid pixel" in (probs[0].last_error or "")
    report = extract.verify_extraction(units, dsn=clean_db)  # no_data is reported, not a failure
    assert [i["product_id"] for i in report["no_data"]] == ["SIM_S1_nan", "SIM_S1_beside"]
    assert report["extracted"] == 1 and report["rows"] == 6
    # a later plan does not pick them again (without reprocess): they are done, with no data
    assert extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db) == []


def test_concurrent_partition_creation_does_not_deadlock(clean_db) -> None:  # type: ignore[no-untyped-def]
    years = (2031, 2032)
    with psycopg.connect(clean_db) as c:
        for y in years:  # rows of not-yet-partitioned years wait in the default partition
            c.execute("INSERT INTO signatures SELECT g, 900000 + %s, 1, 0, 0, 0, 0, 0, 0, 0, 1, %s "
                      "FROM generate_series(1, 150000) g", (y, y))
    barrier = threading.Barrier(len(years))
    errors: list[BaseException] = []
    spans: dict[int, tuple[float, float]] = {}

    def create(year: int) -> None:
        try:
            with psycopg.connect(clean_db) as c:
                c.execute("SET deadlock_timeout = '200ms'")
                barrier.wait()
                t0 = time.monotonic()
                with c.transaction():
                    db.ensure_year_partition(c, year)
                spans[year] = (t0, time.monotonic())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(y,)) for y in years]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    (a0, a1), (b0, b1) = spans[years[0]], spans[years[1]]
    assert a0 < b1 and b0 < a1, spans  # the two creations really ran at the same time
    with psycopg.connect(clean_db) as c:
        for y in years:
            assert c.execute(f"SELECT count(*) FROM signatures_{y}").fetchone()[0] == 150000
        assert c.execute("SELECT count(*) FROM signatures_default").fetchone()[0] == 0
        c.execute("DELETE FROM signatures WHERE obsid > 900000")


def test_two_concurrent_runs_write_every_row_once(conn, clean_db, s3_bucket, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cbmflow.core import faults

    add_aoi(conn, "a")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/cc", f"SIM_S1_c{i}", i + 1) for i in range(6)])
    conn.commit()
    # slow COPYs (4 rows, then 0.15 s) so the two writers' transactions overlap on the server
    monkeypatch.setattr(faults, "ARMED", True)
    monkeypatch.setattr(faults, "COPY_PAUSE_S", 0.15)
    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    dbname = psycopg.conninfo.conninfo_to_dict(clean_db)["dbname"]
    most_at_once = [0, 0]  # COPYs at the same moment, backends waiting for the other's claim
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(clean_db, autocommit=True) as mon:
            while not done.is_set():
                copies, waiting = mon.execute(
                    "SELECT (SELECT count(*) FROM pg_stat_progress_copy WHERE datname = %s), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock')",
                    (dbname, dbname)).fetchone()
                most_at_once[0] = max(most_at_once[0], int(copies))
                most_at_once[1] = max(most_at_once[1], int(waiting))
                time.sleep(0.01)

    def one(reprocess: bool) -> None:
        try:
            barrier.wait()
            results.append(extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db, reprocess=reprocess))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=one, args=(r,)) for r in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    done.set()
    watcher.join(timeout=10)
    assert errors == [] and len(results) == 2
    # the runs overlapped: two COPYs at once, or one waited for a scene the other held
    assert most_at_once[0] >= 2 or most_at_once[1] >= 1, most_at_once
    monkeypatch.setattr(faults, "ARMED", False)
    assert all(r["failed"] == {} for r in results)
    assert set(results[0]["extracted"]) | set(results[1]["extracted"]) == set(ids.values())
    assert set(statuses(conn, "a").values()) == {"extracted"}
    both = checksum(conn)
    assert both[1][0] == 18 and both[2][0] == 18 and duplicates(conn) == 0
    # identical to a clean single run
    conn.execute("TRUNCATE signatures")
    conn.execute("UPDATE extractions SET status = 'pending'")
    conn.commit()
    extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db)
    assert checksum(conn) == both
    assert_exact(conn, "a", {ids[f"SIM_S1_c{i}"]: i + 1 for i in range(6)})


def test_card_claim_of_a_killed_worker_is_released_at_once(conn, clean_db) -> None:  # type: ignore[no-untyped-def]
    """A CARD worker killed with its scene in 'processing': the next attempt takes it at once (no 6-hour timer)."""
    from cbmflow.card import jobs as card

    ids = catalogue.upsert(conn, [Scene(product_id="SIM_S1_GRD_claimed", mission="S1A", product_type="GRD",
                                        card_type="bs", sensing_time=datetime(2025, 5, 1, tzinfo=UTC))])
    conn.commit()
    sid = ids["SIM_S1_GRD_claimed"]
    code = ("import sys, time; from cbmflow.card import jobs as card; card.claim_scene(None, int(sys.argv[1]), False); "
            "print('claimed', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(sid)], env=_child_env(clean_db, 0),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
        assert catalogue.get(conn, sid).status == "processing"
        conn.commit()
        assert catalogue.release_orphans(conn, ids=[sid]) == []  # its worker is alive: the claim stands
        conn.commit()
        with pytest.raises(Exception, match="being processed by a live worker"):
            card.claim_scene(clean_db, sid, False)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30  # the server ends the dead worker's session (and its lock)
    while time.monotonic() < deadline and conn.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
            (catalogue.CLAIM_LOCK, sid)).fetchone():
        conn.commit()
        time.sleep(0.05)
    conn.commit()
    assert card.pending("bs", start=None, end=None, dsn=clean_db) == [sid]  # released and due again
    scene = catalogue.get(conn, sid)
    conn.commit()
    assert scene.status == "failed" and "is gone" in (scene.last_error or "")
    assert card.claim_scene(clean_db, sid, False).id == sid  # the retry claims it
    card.release_claim(sid)


def test_a_retry_finishes_exactly_its_units_remaining_scenes(conn, clean_db, s3_bucket, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reprocess run, try 1 interrupted by an outage at scene 2; try 2 (same unit, same run) skips scene 1."""
    add_aoi(conn, "a")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/r", f"SIM_S1_r{i}", i + 1) for i in range(3)])
    conn.commit()
    s1, s2, s3 = sorted(ids.values())
    extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db)
    clean = checksum(conn)
    units = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db, reprocess=True)
    assert [u["scene_ids"] for u in units] == [[s1, s2, s3]]
    real = extract._scene_stats
    calls: list[int] = []

    def flaky(scene, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(scene.id)
        if scene.id == s2 and calls.count(s2) == 1:
            raise StorageUnavailable(f"raster {scene.assets['VV']}: HTTP response code: 503 (SlowDown)")
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(extract, "_scene_stats", flaky)
    unit = units[0]
    with pytest.raises(StorageUnavailable):  # try 1
        extract.extract_scenes(unit["scene_ids"], aoi="a", year=2025, dsn=clean_db, reprocess=True, run_id="R")
    with pytest.raises(Exception, match="not done"):  # verify now: scenes 2 and 3 are not redone yet
        extract.verify_extraction(units, reprocess=True, dsn=clean_db)
    out = extract.extract_scenes(unit["scene_ids"], aoi="a", year=2025, dsn=clean_db, reprocess=True, run_id="R")
    assert out["skipped"] == [s1] and out["extracted"] == [s2, s3]  # try 2: only what try 1 did not finish
    assert calls == [s1, s2, s2, s3]
    assert extract.verify_extraction(units, reprocess=True, dsn=clean_db)["extracted"] == 3
    assert checksum(conn) == clean and duplicates(conn) == 0


def test_new_parcels_make_extracted_scenes_due_again(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    """Parcels imported after an extraction (parcels_version grows): the next plain run extracts them."""
    pids = add_aoi(conn, "a")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/v", "SIM_S1_v", 1)])
    conn.commit()
    extract.extract_all(aoi="a", year=2025, card_type="bs", dsn=clean_db)
    assert extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db) == []
    g = pixel_box(30, 39, 30, 39)
    new = conn.execute("INSERT INTO parcels (aoi, year, parcel_id, area_m2, geom, source) VALUES "
                       "('a', 2025, 'P9', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test') RETURNING pid",
                       (g.area, g.wkt)).fetchone()[0]
    conn.execute("UPDATE aois SET parcels_version = parcels_version + 1 WHERE name = 'a'")
    conn.commit()
    units = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db)
    assert [u["scene_ids"] for u in units] == [[ids["SIM_S1_v"]]]
    with pytest.raises(Exception, match="not done"):  # planned for the new parcel set, not yet done
        extract.verify_extraction(units, dsn=clean_db)
    out = extract.extract_scenes(units[0]["scene_ids"], aoi="a", year=2025, dsn=clean_db)
    assert out["rows"] == 8 and out["extracted"] == [ids["SIM_S1_v"]]
    per_pid = dict(conn.execute("SELECT pid, count(*) FROM signatures GROUP BY pid").fetchall())
    assert per_pid == {**{p: 2 for p in pids.values()}, new: 2}
    assert extract.verify_extraction(units, dsn=clean_db)["extracted"] == 1


def test_a_cleared_run_retries_its_failed_scene_a_retry_does_not(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    """Same run id: a task retry (same plan) skips a scene that failed in it; a Clear (new plan) tries it again."""
    from cbmflow.core import storage

    add_aoi(conn, "a")
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/cl", f"SIM_S1_cl{i}", i + 1) for i in range(2)])
    conn.commit()
    bad = ids["SIM_S1_cl1"]
    storage.write_bytes(f"{s3_bucket}/cl/bs/SIM_S1_cl1_VV.tif", b"II*\x00truncated upload")
    plan1 = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db)
    kw = {"aoi": "a", "year": 2025, "dsn": clean_db, "run_id": "extract_signatures/manual__1"}
    out = extract.extract_scenes(plan1[0]["scene_ids"], planned_at=plan1[0]["planned_at"], **kw)
    assert list(out["failed"]) == [str(bad)]

    def attempts() -> int:
        n = conn.execute("SELECT attempts FROM extractions WHERE obsid = %s AND aoi = 'a'", (bad,)).fetchone()[0]
        conn.commit()
        return int(n)

    assert attempts() == 1
    # a retry of the same task (same plan): still a culprit, not tried twice
    retry = extract.extract_scenes(plan1[0]["scene_ids"], planned_at=plan1[0]["planned_at"], **kw)
    assert retry["failed"] == {str(bad): "SIM_S1_cl1: failed in an earlier try"} and attempts() == 1
    # the run cleared: plan runs again (a later planned_at) and the failed scene is tried again
    plan2 = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db)
    assert [u["scene_ids"] for u in plan2] == [[bad]]
    again = extract.extract_scenes(plan2[0]["scene_ids"], planned_at=plan2[0]["planned_at"], **kw)
    assert list(again["failed"]) == [str(bad)] and attempts() == 2  # still broken: red again
    s1_scene(f"{s3_bucket}/cl", "SIM_S1_cl1", 2)  # repaired (same objects, good bytes)
    plan3 = extract.plan_units(card_type="bs", aoi="a", year=2025, dsn=clean_db)
    fixed = extract.extract_scenes(plan3[0]["scene_ids"], planned_at=plan3[0]["planned_at"], **kw)
    assert fixed["extracted"] == [bad] and fixed["failed"] == {}
    assert_exact(conn, "a", {ids["SIM_S1_cl0"]: 1, bad: 2})
