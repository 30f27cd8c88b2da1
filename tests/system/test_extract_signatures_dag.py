"""``extract_signatures`` end to end under ``dag.test()``: moto S3 rasters -> real PostGIS signatures.

A tiny simulated CARD archive (labelled SIM): 40 x 40 px on a 10 m EPSG:32633 grid, 3 parcels on
it and 1 outside; two S1 CARD-BS scenes, one S1 scene whose VV COG is corrupt, one S2 scene with a
20 m SCL.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from affine import Affine
from shapely.geometry import box

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import cog, storage
from dag_loading import load_dag

pytestmark = pytest.mark.system

X0, Y0, CRS = 500000.0, 5000000.0, "EPSG:32633"
R, C = np.mgrid[0:40, 0:40]
PARCELS = {
    "P1": box(X0, Y0 - 100, X0 + 100, Y0),
    "P2": box(X0 + 200, Y0 - 100, X0 + 300, Y0),
    "P3": box(X0, Y0 - 300, X0 + 100, Y0 - 200),
    "P4": box(X0 + 5000, Y0, X0 + 5100, Y0 + 100),
}


def bs_values(i: int, scale: float) -> np.ndarray:
    """The simulated backscatter of the i-th S1 scene (a repaired file gets exactly these)."""
    return (scale * (40 * R + C + i) / 1000).astype(np.float32)


def write_bs(uri: str, i: int, scale: float) -> None:
    """Write a good S1 COG of the i-th scene at ``uri`` (also what 'repairing' a broken file means here)."""
    cog.write_cog(uri, bs_values(i, scale), crs=CRS, transform=Affine(10, 0, X0, 0, -10, Y0), nodata=float("nan"),
                  tags={"CBMFLOW_SIMULATED": "true"})


def build_archive(conn: psycopg.Connection, base: str, *, broken: bool = True) -> dict[str, int]:
    conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES ('sys', 32633, 1)")
    for pid, g in PARCELS.items():
        conn.execute(
            "INSERT INTO parcels (aoi, year, parcel_id, crop_code, area_m2, geom, source) "
            "VALUES ('sys', 2025, %s, 'X', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test')",
            (pid, g.area, g.wkt))
    t10, t20 = Affine(10, 0, X0, 0, -10, Y0), Affine(20, 0, X0, 0, -20, Y0)
    scenes = []
    for i, kind in enumerate(("ok", "ok2", "corrupt")):
        name = f"SIM_S1A_CARD_BS_2025050{i + 1}_{kind}"
        assets = {}
        for band, scale in (("VV", 1.0), ("VH", 0.5)):
            uri = f"{base}/bs/{name}_{band}.tif"
            if kind == "corrupt" and band == "VV" and broken:
                storage.write_bytes(uri, b"II*\x00" + b"\x00" * 32)
            else:
                write_bs(uri, i, scale)
            assets[band] = uri
        scenes.append(Scene(product_id=name, mission="S1A", product_type="CARD-BS", card_type="bs",
                            sensing_time=datetime(2025, 5, i + 1, 5, tzinfo=UTC), tile="E25N250",
                            orbit_direction="ascending", assets=assets, simulated=True, status="ready"))
    name = "SIM_S2A_CARD_2A_20250503"
    assets = {}
    for band in ("B02", "B03", "B04", "B08", "B11"):
        assets[band] = f"{base}/s2/{name}_{band}.tif"
        cog.write_cog(assets[band], (40 * R + C + 1).astype(np.uint16), crs=CRS, transform=t10, nodata=0)
    scl = np.full((20, 20), 4, dtype=np.uint8)
    scl[0:2, 0:5] = 9
    assets["SCL"] = f"{base}/s2/{name}_SCL.tif"
    cog.write_cog(assets["SCL"], scl, crs=CRS, transform=t20, nodata=0)
    scenes.append(Scene(product_id=name, mission="S2A", product_type="CARD-2A", card_type="s2",
                        sensing_time=datetime(2025, 5, 3, 10, tzinfo=UTC), tile="33TWL",
                        assets=assets, simulated=True, status="ready"))
    ids = catalogue.upsert(conn, scenes)
    conn.commit()
    return ids


LABELS: set[str] = set()  # the UI labels of the last run's mapped extract tasks


def run(conf: dict):  # type: ignore[no-untyped-def]
    """(state, task states by task id (mapped: the set of states), Asset events the run emitted)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    dr = load_dag("extract_signatures").test(run_conf=conf)
    states: dict[str, set[str]] = {}
    LABELS.clear()
    for ti in dr.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
        if ti.task_id == "extract" and ti.map_index >= 0:
            LABELS.add(str(ti.rendered_map_index))
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dr.run_id).count()
    return str(dr.state), {k: (v.pop() if len(v) == 1 else v) for k, v in states.items()}, events


def xcom(dr, task_id: str):  # type: ignore[no-untyped-def]
    """The return value a task of the DAG run pushed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dr.run_id, dag_ids=dr.dag_id, task_ids=task_id,
                                                 key="return_value")).first()
        return None if row is None else XComModel.deserialize_value(row)


def run_dag(conf: dict) -> str:
    return str(run(conf)[0])


def extraction_status(conn: psycopg.Connection) -> dict[int, tuple]:
    out = {r[0]: r[1:] for r in conn.execute("SELECT obsid, status, last_error, band FROM extractions")}
    conn.commit()
    return out


def test_dag_extracts_replaces_and_skips(airflow_db: str, conn: psycopg.Connection, s3_bucket: str,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    ids = build_archive(conn, f"{s3_bucket}/sim")
    corrupt = next(v for k, v in ids.items() if k.endswith("corrupt"))
    conf = {"aoi": "sys", "year": 2025, "card_type": "all", "reprocess": False, "batch_size": 2}

    state, tasks, events = run(conf)
    # the corrupt scene fails the run after the others were written; verify names it; no Asset event
    assert state == "failed" and tasks["verify"] == "failed" and tasks["publish"] == "upstream_failed"
    assert tasks["summarise"] == "success" and tasks["extract"] == "success" and events == 0
    assert LABELS == {"sys bs E25N250 2025-05-01..2025-05-02 (2)", "sys bs E25N250 2025-05-03..2025-05-03 (1)",
                      "sys s2 33TWL 2025-05-03..2025-05-03 (1)"}
    status = extraction_status(conn)
    assert status.pop(corrupt)[::2] == ("failed", "VV")
    assert {v[0] for v in status.values()} == {"extracted"}
    err = conn.execute("SELECT last_error FROM extractions WHERE obsid = %s", (corrupt,)).fetchone()[0]
    assert err.startswith("SIM_S1A_CARD_BS_20250503_corrupt band VV: CorruptData") and "corrupt_VV.tif" in err
    per_band = dict(conn.execute("SELECT band, count(*) FROM signatures GROUP BY band").fetchall())
    assert per_band == {1: 6, 2: 6, 11: 3, 12: 3, 13: 3, 17: 3, 20: 3}  # 3 parcels x 2 scenes; 3 x 1 S2
    assert conn.execute("SELECT count(*) FROM scl_histograms").fetchone()[0] == 3
    stamp = dict(conn.execute("SELECT obsid, updated_at FROM extractions").fetchall())
    conn.commit()

    # no reprocess (a re-run, a Clear): only the failed scene is planned again; still broken -> still red,
    # the good scenes untouched, no Asset event
    state, tasks, events = run(conf)
    assert state == "failed" and tasks["verify"] == "failed" and events == 0, tasks
    assert LABELS == {"sys bs E25N250 2025-05-03..2025-05-03 (1)"}
    from cbmflow.extract import run as extract

    report = extract.extraction_report([{"scene_ids": [corrupt], "aoi": "sys", "year": 2025, "parcels_version": 1}])
    assert (len(report["failed"]), len(report["not_done"])) == (1, 0)  # a corrupt file is failed, not unfinished
    now = dict(conn.execute("SELECT obsid, updated_at FROM extractions").fetchall())
    assert now.pop(corrupt) > stamp.pop(corrupt) and now == stamp
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 27
    assert conn.execute("SELECT attempts FROM extractions WHERE obsid = %s", (corrupt,)).fetchone()[0] == 2
    conn.commit()

    # reprocess (backfill): every row replaced, none duplicated; the corrupt scene fails again
    assert run_dag(dict(conf, reprocess=True)) == "failed"
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 27
    assert conn.execute("SELECT count(DISTINCT (pid, obsid, band)) FROM signatures").fetchone()[0] == 27
    assert conn.execute("SELECT attempts FROM extractions WHERE obsid = %s", (corrupt,)).fetchone()[0] == 3
    conn.commit()

    # the bad product withdrawn, a reprocess is fully good: success, one Asset event, no error line
    conn.execute("DELETE FROM catalogue WHERE id = %s", (corrupt,))
    conn.commit()
    capfd.readouterr()
    state, tasks, events = run(dict(conf, reprocess=True, aoi=None))  # empty aoi = every AOI
    out = "".join(capfd.readouterr())
    assert state == "success" and tasks["publish"] == "success" and events == 1, tasks
    assert "XCom not found" not in out and "[error" not in out.lower()
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 27


def test_plan_failure_fails_the_run(airflow_db: str, conn: psycopg.Connection, s3_bucket: str) -> None:
    build_archive(conn, f"{s3_bucket}/plan")
    state, tasks, events = run({"aoi": "no_such_aoi", "year": 2025})
    assert state == "failed" and events == 0
    assert tasks["plan"] == "failed" and tasks["verify"] == "failed"
    assert tasks["publish"] == "upstream_failed" and tasks["extract"] == "upstream_failed"
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 0


def test_storage_outage_fails_the_task_not_the_scene(airflow_db: str, conn: psycopg.Connection, s3_bucket: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    build_archive(conn, f"{s3_bucket}/out")
    conn.execute("DELETE FROM catalogue WHERE product_id LIKE '%%corrupt'")
    conn.commit()
    good = os.environ["AWS_ENDPOINT_URL"]
    with socket.socket() as s:  # a port nobody listens on: connection refused, like a stopped MinIO
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    state, tasks, events = run({"aoi": "sys", "year": 2025, "batch_size": 2})
    assert state == "failed" and tasks["extract"] == "failed" and tasks["verify"] == "failed" and events == 0
    status = extraction_status(conn)
    assert {v[0] for v in status.values()} == {"pending"}  # retryable: never 'failed'
    assert any("interrupted, will retry" in (v[1] or "") for v in status.values())
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 0
    conn.commit()
    # storage back: the next run (no reprocess) does exactly the pending scenes and the run is green
    monkeypatch.setenv("AWS_ENDPOINT_URL", good)
    state, tasks, events = run({"aoi": "sys", "year": 2025, "batch_size": 2})
    assert state == "success" and events == 1, tasks
    assert {v[0] for v in extraction_status(conn).values()} == {"extracted"}
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 27


# --------------------------------------------------------------------------------------------
# A failed (scene, AOI) keeps every run over its scope red until repaired or waived (issue 18)
# --------------------------------------------------------------------------------------------

CHECKSUM_SQL = (
    "SELECT md5(string_agg(concat_ws('|', c.product_id, p.parcel_id, s.band, s.count, s.mean, s.std, s.min, s.max, "
    "s.p25, s.p50, s.p75), ',' ORDER BY c.product_id, p.parcel_id, s.band)), count(*) "
    "FROM signatures s JOIN parcels p ON p.pid = s.pid JOIN catalogue c ON c.id = s.obsid")


def checksum(conn: psycopg.Connection) -> tuple[str, int]:
    """(md5 of every signature row keyed by product and parcel ids, row count): comparable across databases."""
    row = conn.execute(CHECKSUM_SQL).fetchone()
    conn.commit()
    return str(row[0]), int(row[1])


def wipe(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE aois, catalogue, parcels, signatures, scl_histograms, extractions RESTART IDENTITY CASCADE")
    conn.commit()


def test_red_until_repaired_then_rows_identical_to_a_clean_run(airflow_db: str, conn: psycopg.Connection,
                                                               s3_bucket: str) -> None:
    # an independent clean run first: the same archive with the file good from the start
    build_archive(conn, f"{s3_bucket}/clean", broken=False)
    conf = {"aoi": "sys", "year": 2025, "batch_size": 2}
    assert run_dag(conf) == "success"
    clean = checksum(conn)
    assert clean[1] == 18 + 15  # 3 S1 scenes x 3 parcels x 2 bands + 3 parcels x 5 S2 bands
    wipe(conn)

    base = f"{s3_bucket}/red"
    ids = build_archive(conn, base)
    corrupt = next(v for k, v in ids.items() if k.endswith("corrupt"))
    assert run_dag(conf) == "failed"
    broken = checksum(conn)
    assert broken[1] == 27 and broken[0] != clean[0]
    # a re-run / Clear with the file still broken: still red, nothing changed
    state, tasks, events = run(conf)
    assert state == "failed" and tasks["verify"] == "failed" and events == 0
    assert checksum(conn) == broken
    # the file repaired: the next plain run extracts exactly that scene and is green, rows as the clean run's
    write_bs(f"{base}/bs/SIM_S1A_CARD_BS_20250503_corrupt_VV.tif", 2, 1.0)
    state, tasks, events = run(conf)
    assert state == "success" and events == 1, tasks
    assert LABELS == {"sys bs E25N250 2025-05-03..2025-05-03 (1)"}
    assert extraction_status(conn)[corrupt][0] == "extracted"
    assert checksum(conn) == clean


def test_waiver_turns_the_scope_green_and_is_shown(airflow_db: str, conn: psycopg.Connection, s3_bucket: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cbmflow import cli

    ids = build_archive(conn, f"{s3_bucket}/waive")
    name = next(k for k in ids if k.endswith("corrupt"))
    good = next(k for k in ids if k.endswith("_ok"))
    conf = {"aoi": "sys", "year": 2025, "batch_size": 2}
    assert run_dag(conf) == "failed"
    # only a failed extraction can be waived, and only with a reason
    assert cli.main(["extract", "waive", "--scene", good, "--aoi", "sys", "--reason", "x"]) != 0
    assert cli.main(["extract", "waive", "--scene", name, "--aoi", "sys", "--reason", " "]) != 0
    assert conn.execute("SELECT count(*) FROM extraction_waivers").fetchone()[0] == 0
    conn.commit()
    capsys.readouterr()
    assert cli.main(["extract", "waive", "--scene", name, "--aoi", "sys", "--reason", "orbit withdrawn by ESA",
                     "--by", "tester"]) == 0
    assert f"waived: {name}" in capsys.readouterr().out
    row = conn.execute("SELECT reason, waived_by, error FROM extraction_waivers").fetchone()
    conn.commit()
    assert row[:2] == ("orbit withdrawn by ESA", "tester") and "CorruptData" in row[2]
    # the waived scene is not planned again; the run is green and says so (summary and verify results)
    dr = load_dag("extract_signatures").test(run_conf=conf)
    assert str(dr.state) == "success"
    assert xcom(dr, "summarise") == {"planned": 0, "waived": 1}
    assert xcom(dr, "verify") == {"planned": 0, "waived": 1}
    from cbmflow.extract import run as extract

    shown = extract.scope_waivers({"aois": ["sys"], "year": 2025})
    assert [(w["product_id"], w["reason"], w["waived_by"]) for w in shown] == [(name, "orbit withdrawn by ESA",
                                                                                 "tester")]
    assert extract.scope_waivers({"aois": ["sys"], "year": 2024}) == []
    # the waiver undone: the failure counts again
    assert cli.main(["extract", "waive", "--undo", "--scene", name, "--aoi", "sys"]) == 0
    assert run_dag(conf) == "failed"


def test_backfill_redoes_exactly_the_failed_scenes_of_its_range(airflow_db: str, conn: psycopg.Connection,
                                                                s3_bucket: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs with a 2025 logical date and no year param: the season and window come from the run, not today.

    ``dag.test()`` can only make manual runs, so the run type the task sees is set to ``backfill``
    (what ``airflow backfill create`` makes); the data interval is the DAG timetable's own.
    """
    from cbmflow import airflow_adapter

    base = f"{s3_bucket}/bf"
    ids = build_archive(conn, base)
    storage.write_bytes(f"{base}/bs/SIM_S1A_CARD_BS_20250502_ok2_VV.tif", b"II*\x00" + b"\x00" * 32)
    assert run_dag({"aoi": "sys", "year": 2025}) == "failed"
    failed = {k for k, v in extraction_status(conn).items() if v[0] == "failed"}
    assert failed == {ids["SIM_S1A_CARD_BS_20250502_ok2"], ids["SIM_S1A_CARD_BS_20250503_corrupt"]}
    before = dict(conn.execute("SELECT obsid, attempts FROM extractions").fetchall())
    conn.commit()
    write_bs(f"{base}/bs/SIM_S1A_CARD_BS_20250502_ok2_VV.tif", 1, 1.0)  # both repaired
    write_bs(f"{base}/bs/SIM_S1A_CARD_BS_20250503_corrupt_VV.tif", 2, 1.0)

    real = airflow_adapter.scope_from_context

    def as_backfill(params: dict | None = None) -> dict:  # type: ignore[type-arg]
        from airflow.sdk import get_current_context

        ctx = get_current_context()
        return airflow_adapter.extraction_scope(
            params if params is not None else ctx.get("params"), run_type="backfill",
            logical_date=ctx.get("logical_date"), data_interval_start=ctx.get("data_interval_start"),
            data_interval_end=ctx.get("data_interval_end"))

    assert real is not as_backfill
    monkeypatch.setattr(airflow_adapter, "scope_from_context", as_backfill)
    # the tick of 2025-05-03 06:00 covers 2025-05-02 06:00..05-03 06:00: only the 05-03 05:00 scene
    dr = load_dag("extract_signatures").test(logical_date=datetime(2025, 5, 3, 6, tzinfo=UTC), run_conf={"aoi": "sys"})
    assert str(dr.state) == "success"
    after = dict(conn.execute("SELECT obsid, attempts FROM extractions").fetchall())
    status = extraction_status(conn)
    redone = {k for k in after if after[k] != before[k]}
    assert redone == {ids["SIM_S1A_CARD_BS_20250503_corrupt"]}, redone
    assert status[ids["SIM_S1A_CARD_BS_20250502_ok2"]][0] == "failed"  # outside this range: left alone
    # the tick of 2025-05-02 06:00: the other failed scene, and nothing else
    dr = load_dag("extract_signatures").test(logical_date=datetime(2025, 5, 2, 6, tzinfo=UTC), run_conf={"aoi": "sys"})
    assert str(dr.state) == "success"
    final = dict(conn.execute("SELECT obsid, attempts FROM extractions").fetchall())
    conn.commit()
    assert {k for k in final if final[k] != after[k]} == {ids["SIM_S1A_CARD_BS_20250502_ok2"]}
    assert {v[0] for v in extraction_status(conn).values()} == {"extracted"}
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 33
