"""The season archive: Parquet per AOI, year and band, exactly once, verified against PostGIS (local and S3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.extract import archive, sink

ROOT = Path(__file__).resolve().parents[2]
AOI, YEAR = "arch", 2025


def _season(dsn: str, n_parcels: int = 300, n_scenes: int = 12, seed: int = 1) -> list[int]:
    """An AOI with parcels, catalogue scenes and random VV/VH signatures; returns the scene ids."""
    rng = np.random.default_rng(seed)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES (%s, 32633, 1)", (AOI,))
        with conn.cursor() as cur, cur.copy("COPY parcels (pid, aoi, year, parcel_id, crop_code, area_m2, geom, source) "
                                            "FROM STDIN") as cp:
            for pid in range(1, n_parcels + 1):
                x = 500000 + 100 * pid
                cp.write_row((pid, AOI, YEAR, f"P{pid}", "X", 10000.0,
                              f"SRID=32633;MULTIPOLYGON((({x} 5000000,{x + 50} 5000000,{x + 50} 5000050,{x} 5000050,"
                              f"{x} 5000000)))", "test"))
        start = datetime(YEAR, 3, 1, 5, 30, tzinfo=UTC)
        scenes = [Scene(product_id=f"SIM_S1_{d:03d}", mission="S1A", product_type="CARD-BS", card_type="bs",
                        sensing_time=start + timedelta(days=6 * (n_scenes - d)), tile="T", relative_orbit=44,
                        orbit_direction="ascending", assets={"VV": "x", "VH": "y"}, simulated=True, status="ready")
                  for d in range(n_scenes)]  # ids in reverse time order: the sort must follow sensing time
        ids = list(catalogue.upsert(conn, scenes).values())
        pids = np.arange(1, n_parcels + 1)
        for sid in ids:
            keep = rng.random(n_parcels) > 0.05  # some parcels miss some scenes
            stats = {}
            for band in ("VV", "VH"):
                p = pids[keep]
                v = rng.lognormal(-2.5, 0.5, (p.size, 7)).astype(np.float32)
                v[rng.random(p.size) < 0.01, 1] = np.nan  # a NaN std must checksum the same everywhere
                stats[band] = {"pid": p, "count": rng.integers(1, 400, p.size), "mean": v[:, 0], "std": v[:, 1],
                               "min": v[:, 2], "max": v[:, 3], "p25": v[:, 4], "p50": v[:, 5], "p75": v[:, 6]}
            sink.write_scene(conn, sid, YEAR, stats, aoi=AOI, parcel_year=YEAR)
        conn.commit()
    return ids


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "archive")
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/season-archive"


def test_archive_round_trip_verify_and_idempotent_rerun(clean_db: str, root: str) -> None:
    ids = _season(clean_db)
    first = archive.archive_season(AOI, YEAR, root=root, dsn=clean_db)
    assert {r.band for r in first} == {"VV", "VH"}
    assert all(r.status == "written" for r in first)
    with psycopg.connect(clean_db) as conn:
        n_db = conn.execute("SELECT count(*) FROM signatures WHERE band = 1").fetchone()[0]
        row = conn.execute("SELECT obsid, count, mean, p75 FROM signatures WHERE pid = 17 AND band = 1 "
                           "ORDER BY obsid").fetchall()
    vv = next(r for r in first if r.band == "VV")
    assert vv.rows == n_db and vv.scenes == len(ids)
    reports = archive.verify_season(AOI, YEAR, root=root, dsn=clean_db)
    assert all(r["ok"] for r in reports), reports
    # one parcel's season: the same values, in sensing-time order (ids were created newest first)
    rows, scenes = archive.read_parcel(AOI, YEAR, 17, "VV", root=root)
    got = sorted((int(r["obsid"]), int(r["count"]), float(r["mean"]), float(r["p75"])) for r in rows)
    assert got == sorted((o, c, float(np.float32(m)), float(np.float32(p))) for o, c, m, p in row)
    times = [scenes[str(int(o))]["info"]["sensing_time"] for o in rows["obsid"]]
    assert times == sorted(times) and len(times) == len(row)
    # one scene
    scene_rows = archive.read_scene(AOI, YEAR, ids[3], "VH", root=root)
    with psycopg.connect(clean_db) as conn:
        assert scene_rows.size == conn.execute("SELECT count(*) FROM signatures WHERE obsid = %s AND band = 2",
                                               (ids[3],)).fetchone()[0]
    # a re-run with the same rows writes nothing
    gen = archive.read_manifest(AOI, YEAR, "VV", root=root)["generation"]
    again = archive.archive_season(AOI, YEAR, root=root, dsn=clean_db)
    assert all(r.status == "unchanged" for r in again)
    assert archive.read_manifest(AOI, YEAR, "VV", root=root)["generation"] == gen


def test_verify_catches_a_changed_value_and_a_rewrite_repairs_it(clean_db: str, tmp_path: Path) -> None:
    root = str(tmp_path / "arc")
    _season(clean_db, n_parcels=50, n_scenes=4)
    archive.archive_season(AOI, YEAR, root=root, dsn=clean_db)
    gen = archive.read_manifest(AOI, YEAR, "VV", root=root)["generation"]
    with psycopg.connect(clean_db) as conn:
        obsid = conn.execute("UPDATE signatures SET p50 = p50 + 1 WHERE pid = 7 AND band = 1 RETURNING obsid"
                             ).fetchall()[0][0]
        conn.commit()
    bad = {r["band"]: r for r in archive.verify_season(AOI, YEAR, root=root, dsn=clean_db)}
    assert not bad["VV"]["ok"] and obsid in bad["VV"]["mismatched"]
    assert bad["VH"]["ok"]
    out = {r.band: r for r in archive.archive_season(AOI, YEAR, root=root, dsn=clean_db)}
    assert out["VV"].status == "written" and out["VH"].status == "unchanged"
    assert archive.read_manifest(AOI, YEAR, "VV", root=root)["generation"] != gen
    assert all(r["ok"] for r in archive.verify_season(AOI, YEAR, root=root, dsn=clean_db))
    # the old generation is gone from storage
    assert not any(gen in str(p) for p in Path(root).rglob("*"))


def test_scenes_pruned_from_postgis_stay_in_the_archive(clean_db: str, tmp_path: Path) -> None:
    root = str(tmp_path / "arc")
    ids = _season(clean_db, n_parcels=40, n_scenes=5)
    archive.archive_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])
    before, _ = archive.read_parcel(AOI, YEAR, 5, "VV", root=root)
    with psycopg.connect(clean_db) as conn:  # PostGIS keeps the recent window only
        conn.execute("DELETE FROM signatures WHERE obsid = ANY(%s)", (ids[:2],))
        conn.execute("UPDATE signatures SET mean = mean * 2 WHERE obsid = %s AND band = 1", (ids[4],))
        conn.commit()
    res = archive.archive_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert res.status == "written" and res.carried == 2
    after, scenes = archive.read_parcel(AOI, YEAR, 5, "VV", root=root)
    assert sorted(after["obsid"].tolist()) == sorted(before["obsid"].tolist())
    kept = {int(o): float(m) for o, m in zip(before["obsid"], before["mean"], strict=True)}
    now = {int(o): float(m) for o, m in zip(after["obsid"], after["mean"], strict=True)}
    for o in ids[:2]:
        if o in kept:
            assert now[o] == kept[o] and scenes[str(o)]["from"] == "archive"
    if ids[4] in kept:
        assert now[ids[4]] == pytest.approx(2 * kept[ids[4]])
    rep = archive.verify_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert rep["ok"] and sorted(rep["archive_only"]) == sorted(ids[:2])


def test_readers_for_web_and_sql(clean_db: str, tmp_path: Path) -> None:
    root = str(tmp_path / "arc")
    _season(clean_db, n_parcels=30, n_scenes=3)
    archive.archive_season(AOI, YEAR, root=root, dsn=clean_db)
    obs = archive.parcel_observations(AOI, YEAR, 3, ["VV", "VH"], root=root)
    with psycopg.connect(clean_db) as conn:
        n = conn.execute("SELECT count(*) FROM signatures WHERE pid = 3").fetchone()[0]
        assert len(obs) == n
        assert [o[0] for o in obs] == sorted(o[0] for o in obs)
        loaded = archive.load_into_temp_table(conn, AOI, YEAR, ["VV", "VH"], root=root)
        assert loaded == conn.execute("SELECT count(*) FROM signatures").fetchone()[0]
        diff = conn.execute("SELECT count(*) FROM (SELECT * FROM signatures EXCEPT SELECT * FROM archived_signatures "
                            "WHERE mean = mean) d WHERE mean = mean").fetchone()[0]
        assert diff == 0


_WRITER = """
import sys
from cbmflow.extract import archive
from cbmflow.core import db
with db.connect(sys.argv[1]) as conn:
    print("START", flush=True)
    archive.archive_band(conn, sys.argv[2], int(sys.argv[3]), "VV", root=sys.argv[4], pause_after_file=0.4)
print("DONE", flush=True)
"""


def test_kill_9_mid_write_leaves_no_half_file_and_a_rerun_completes(clean_db: str, root: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "PARCELS_PER_FILE", 64)
    _season(clean_db, n_parcels=640, n_scenes=6)  # 10 files of 64 parcels
    first = archive.archive_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert first.status == "written"
    published = archive.read_manifest(AOI, YEAR, "VV", root=root)
    with psycopg.connect(clean_db) as conn:  # new rows: the next run must write a new generation
        conn.execute("UPDATE signatures SET mean = mean + 1 WHERE band = 1")
        conn.commit()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    code = _WRITER.replace("archive.archive_band", "archive.PARCELS_PER_FILE = 64\n    archive.archive_band")
    proc = subprocess.Popen([sys.executable, "-c", code, clean_db, AOI, str(YEAR), root], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "START"
    fs, base = archive.filesystem(root)
    prefix = f"{base}/{archive.season_prefix(AOI, YEAR, 'VV')}"
    from pyarrow import fs as pafs

    deadline = time.time() + 60
    written: list[str] = []
    while time.time() < deadline:  # wait until the writer has finished some files of the new generation
        infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        written = [i.path for i in infos if i.type == pafs.FileType.File and published["generation"] not in i.path
                   and i.path.endswith(".parquet")]
        if len(written) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(written) >= 2, "the writer was killed before it wrote anything"
    # the reader still sees the previous generation, whole
    seen = archive.read_manifest(AOI, YEAR, "VV", root=root)
    assert seen["generation"] == published["generation"]
    import pyarrow.parquet as pq

    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    for i in infos:  # every parquet object under the prefix is a complete file (no half object / no temp name)
        if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
            with fs.open_input_file(i.path) as f:
                assert pq.ParquetFile(f).metadata.num_rows > 0
    rep = archive.verify_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert not rep["ok"]  # PostGIS moved on; the archive still holds the published season, whole
    assert not rep["manifest_mismatch"]
    # the re-run completes, sweeps the killed writer's files, and matches PostGIS
    again = archive.archive_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert again.status == "written" and again.files == 10
    rep = archive.verify_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0]
    assert rep["ok"], rep
    final = archive.read_manifest(AOI, YEAR, "VV", root=root)["generation"]
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    gens = {i.path.split(prefix + "/", 1)[1].split("/", 1)[0] for i in infos if i.type == pafs.FileType.File
            and i.path.endswith(".parquet")}
    assert gens == {final}
    assert archive.archive_season(AOI, YEAR, root=root, dsn=clean_db, bands=["VV"])[0].status == "unchanged"


def test_bytes_per_record_and_cli(clean_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cbmflow.cli.parser import main

    root = str(tmp_path / "arc")
    _season(clean_db, n_parcels=2000, n_scenes=20)
    monkeypatch.setenv("CBMFLOW_ARCHIVE_URI", root)
    monkeypatch.setenv("CBMFLOW_DSN", clean_db)
    assert main(["archive", "--aoi", AOI, "--year", str(YEAR)]) == 0
    out = capsys.readouterr().out
    assert "written" in out and "B/record" in out
    m = archive.read_manifest(AOI, YEAR, "VV")
    assert m["bytes"] / m["rows"] <= 30.0  # random float32 statistics: the incompressible case
    assert main(["archive", "verify", "--aoi", AOI, "--year", str(YEAR)]) == 0
    assert capsys.readouterr().out.count("OK") == 2
    assert main(["archive", "show", "--aoi", AOI, "--year", str(YEAR), "--pid", "9"]) == 0
    assert "observation(s) of parcel 9" in capsys.readouterr().out
    with psycopg.connect(clean_db) as conn:
        conn.execute("DELETE FROM signatures WHERE pid = 9 AND band = 2")
        conn.commit()
    assert main(["archive", "verify", "--aoi", AOI, "--year", str(YEAR)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_archive_signatures_dag_archives_and_verifies(clean_db: str, airflow_db: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cbmflow import airflow_adapter

    root = str(tmp_path / "dag-archive")
    _season(clean_db, n_parcels=60, n_scenes=4)
    monkeypatch.setenv("CBMFLOW_ARCHIVE_URI", root)
    monkeypatch.setenv("CBMFLOW_DSN", clean_db)
    dr = airflow_adapter.test_dag("archive_signatures", {"aoi": AOI, "year": YEAR}, dags_folder=str(ROOT / "dags"))
    states = {(t.task_id, t.map_index): t.state for t in dr.get_task_instances()}
    assert states[("verify", -1)] == "success", states
    assert sum(1 for (tid, _), st in states.items() if tid == "archive" and st == "success") == 2
    assert all(r["ok"] for r in archive.verify_season(AOI, YEAR, root=root, dsn=clean_db))


def test_markers_web_and_period_means_read_the_archive_when_postgis_has_pruned_the_season(
        clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cbmflow.analytics.periods import compute_period_means
    from cbmflow.markers import io as markers_io
    from cbmflow.web import timeseries

    root = str(tmp_path / "arc")
    _season(clean_db, n_parcels=25, n_scenes=6)
    monkeypatch.setenv("CBMFLOW_ARCHIVE_URI", root)
    archive.archive_season(AOI, YEAR, dsn=clean_db)
    with psycopg.connect(clean_db) as conn:
        sig_db = markers_io.read_db(conn, AOI, YEAR)
        obs_db = timeseries.series(conn, 4)
        n_db = compute_period_means(conn, AOI, YEAR)
        means_db = conn.execute("SELECT pid, band, period, mean, n_obs FROM period_means ORDER BY 1, 2, 3").fetchall()
        conn.execute("DELETE FROM signatures")
        conn.commit()
        sig_arc = markers_io.read_db(conn, AOI, YEAR)
        obs_arc = timeseries.series(conn, 4)
        n_arc = compute_period_means(conn, AOI, YEAR)
        means_arc = conn.execute("SELECT pid, band, period, mean, n_obs FROM period_means ORDER BY 1, 2, 3").fetchall()
    assert obs_db and [o.as_dict() for o in obs_arc] == [o.as_dict() for o in obs_db]
    assert n_arc == n_db and means_arc == means_db
    assert len(sig_arc) == len(sig_db)
    for a, b in zip(sig_arc, sig_db, strict=True):
        assert a.parcel == b.parcel and len(a.s1) == len(b.s1)
        for oa, ob in zip(a.s1, b.s1, strict=True):
            np.testing.assert_array_equal(oa.days, ob.days)
            np.testing.assert_array_equal(oa.vv, ob.vv)
    monkeypatch.delenv("CBMFLOW_ARCHIVE_URI")
    with psycopg.connect(clean_db) as conn:  # without an archive, nothing is invented
        assert timeseries.series(conn, 4) == []
