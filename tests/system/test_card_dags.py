"""dag.test() of the CARD DAGs against the real PostGIS catalogue and moto S3.

* card_s2_l2a: real L2A pixels (windows of the shared T29UNU product) -> harmonised COGs; a
  two-day backfill redoes only the failed/discovered scenes and leaves ready/extracted ones alone.
* card_s1_bs: the native sarsen engine on the shared real SAFE (real metadata, constant dummy
  pixels: the catalogue row is flagged simulated), and the SNAP engine where SNAP is absent.
* card_s1_coh6: pairing, then the honest result here: no SNAP -> the pair fails with the install message.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from card_inputs import AUSTRIA, IRELAND, s2_l2a_inputs
from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import storage
from dag_loading import load_dag

pytestmark = pytest.mark.system



def _rows(conn, ids):  # type: ignore[no-untyped-def]
    out = {r[0]: r[1:] for r in conn.execute(
        "SELECT id, status, attempts, updated_at, last_error FROM catalogue WHERE id = ANY(%s)", (list(ids),))}
    conn.commit()
    return out


def _events(dr) -> int:  # type: ignore[no-untyped-def]
    """Asset events the run emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return int(session.query(AssetEvent).filter(AssetEvent.source_run_id == dr.run_id).count())


def _failed_tasks(dr) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: ti.state for ti in dr.get_task_instances() if ti.state != "success"}


def test_card_s2_l2a_backfill_redoes_only_unready_scenes(airflow_db, conn, s3_bucket, shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assets = s2_l2a_inputs(shared_data, s3_bucket, tmp_path)
    d5, d6 = datetime(2022, 10, 5, 11, 54, 11, tzinfo=UTC), datetime(2022, 10, 6, 11, 34, 21, tzinfo=UTC)

    def s2(pid: str, when: datetime, status: str, **kw) -> Scene:  # type: ignore[no-untyped-def]
        return Scene(product_id=pid, mission="S2A", product_type="L2A", card_type="s2", sensing_time=when,
                     tile="29UNU", footprint_wkt=IRELAND, source_assets=assets, status=status, **kw)

    ids = catalogue.upsert(conn, [
        s2("S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_FAILED", d5, "failed"),
        s2("S2A_MSIL2A_20221006T113421_N0400_R080_T29UNU_NEW", d6, "discovered"),
        s2("S2B_MSIL2A_20221005T115411_N0400_R023_T29UNU_READY", d5, "ready",
           assets={"B04": "s3://elsewhere/ready_B04.tif"}),
        s2("S2B_MSIL2A_20221006T113421_N0400_R080_T29UNU_EXTRACTED", d6, "extracted"),
        s2("S2A_MSIL2A_20221020T115411_N0400_R023_T29UNU_LATER", datetime(2022, 10, 20, 11, tzinfo=UTC), "failed"),
    ])
    failed, new, ready, extracted, later = ids.values()
    conn.execute("UPDATE catalogue SET attempts = 2, last_error = 'TransientError: S3 timeout' WHERE id = %s",
                 (failed,))
    conn.execute("UPDATE catalogue SET attempts = 1, updated_at = now() - interval '3 days' "
                 "WHERE id = ANY(%s)", ([ready, extracted, later],))
    conn.commit()
    before = _rows(conn, [ready, extracted, later])

    dag = load_dag("card_s2_l2a")
    conf = {"card_root": f"{s3_bucket}/card", "lookback_days": 0}
    # A backfill from 2022-10-05 to 2022-10-06 makes one run per daily interval [D, D+1).
    for day in ("2022-10-05", "2022-10-06"):
        dr = dag.test(run_conf={**conf, "start": day, "end": str(date.fromisoformat(day) + timedelta(days=1))})
        assert dr.state == "success", _failed_tasks(dr)
        assert _events(dr) == 1  # a good run with new ready scenes publishes cbmflow_card_s2

    after = _rows(conn, [failed, new, ready, extracted, later])
    assert after[failed][:2] == ("ready", 3) and after[failed][3] is None
    assert after[new][:2] == ("ready", 1)
    for sid in (ready, extracted, later):  # untouched: same status, attempts and updated_at
        assert after[sid] == before[sid]
    keys = sorted(u.rsplit("/", 1)[1] for u in storage.list_uris(f"{s3_bucket}/card/s2", ".tif"))
    assert keys == ["S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_FAILED_B04.tif",
                    "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_FAILED_SCL.tif",
                    "S2A_MSIL2A_20221006T113421_N0400_R080_T29UNU_NEW_B04.tif",
                    "S2A_MSIL2A_20221006T113421_N0400_R080_T29UNU_NEW_SCL.tif"]
    scene = catalogue.get(conn, new)
    conn.commit()
    assert scene.assets["B04"] == (f"{s3_bucket}/card/s2/2022/10/06/"
                                   "S2A_MSIL2A_20221006T113421_N0400_R080_T29UNU_NEW_B04.tif")

    # a second backfill of the same days finds nothing to redo and changes nothing
    snapshot = _rows(conn, ids.values())
    dr = dag.test(run_conf={**conf, "start": "2022-10-05", "end": "2022-10-07"})
    assert dr.state == "success"
    assert {ti.task_id: ti.state for ti in dr.get_task_instances()}["publish"] == "skipped" and _events(dr) == 0
    assert _rows(conn, ids.values()) == snapshot


@pytest.fixture()
def no_snap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{Path(os.sys.executable).parent}{os.pathsep}{empty}{os.pathsep}/bin{os.pathsep}/usr/bin")
    monkeypatch.delenv("SNAP_HOME", raising=False)


def test_card_s1_bs_snap_engine_without_snap_fails_clearly(airflow_db, conn, s3_bucket, no_snap) -> None:  # type: ignore[no-untyped-def]
    ids = catalogue.upsert(conn, [Scene(
        product_id="S1A_IW_GRDH_1SDV_20240601T165012_20240601T165037_054123_069ABC_1234", mission="S1A",
        product_type="GRD", card_type="bs", sensing_time=datetime(2024, 6, 1, 16, 50, 12, tzinfo=UTC),
        relative_orbit=117, orbit_direction="ascending", footprint_wkt=AUSTRIA,
        source_assets={"safe": "/data/S1A.SAFE"})])
    conn.commit()
    dr = load_dag("card_s1_bs").test(
        run_conf={"start": "2024-06-01", "end": "2024-06-02", "engine": "snap", "card_root": s3_bucket})
    assert dr.state == "failed"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    # verify names the scene; the Asset outlet (publish) does not run in a failed run
    assert states["process"] == "failed" and states["publish"] == "upstream_failed" and states["verify"] == "failed"
    assert _events(dr) == 0
    status, attempts, _, error = _rows(conn, ids.values())[ids.popitem()[1]]
    assert (status, attempts) == ("failed", 1)
    assert error.startswith("ToolMissing: SNAP gpt not found: install ESA SNAP 10+ with the Sentinel-1 toolbox")
    assert storage.list_uris(s3_bucket) == []


def test_card_s1_bs_sarsen_engine_on_real_safe(airflow_db, conn, s3_bucket, shared_data) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cbmflow.card.backscatter")
    import rasterio

    grd = shared_data / "s1" / "sarsen_grd"
    safe = next(grd.glob("S1B_IW_GRDH_*.SAFE"))
    pid = safe.name.removesuffix(".SAFE")
    ids = catalogue.upsert(conn, [Scene(
        product_id=pid, mission="S1B", product_type="GRD", card_type="bs",
        sensing_time=datetime(2021, 12, 23, 5, 11, 22, tzinfo=UTC), relative_orbit=117, orbit_direction="descending",
        source_assets={"safe": str(safe)}, properties={"note": "real metadata, constant dummy pixels"},
        simulated=True)])
    conn.commit()
    dr = load_dag("card_s1_bs").test(run_conf={"start": "2021-12-23", "end": "2021-12-24", "engine": "sarsen",
                                           "dem": str(grd / "Rome-30m-DEM.tif"), "card_root": f"{s3_bucket}/card",
                                           "resolution": 20})
    assert dr.state == "success", _failed_tasks(dr)
    scene = catalogue.get(conn, ids[pid])
    conn.commit()
    assert scene.status == "ready" and scene.attempts == 1
    assert scene.assets == {"VV": f"{s3_bucket}/card/bs/2021/12/23/{pid}_VV.tif"}
    with storage.rasterio_env(), rasterio.open(storage.gdal_path(scene.assets["VV"])) as src:
        assert src.tags()["CBMFLOW_ENGINE"] == "sarsen" and src.dtypes[0] == "float32"
        assert src.res == (20.0, 20.0) and src.crs.to_epsg() == 32633  # Rome: UTM 33N


def test_card_s1_coh6_pairs_then_fails_without_snap(airflow_db, conn, s3_bucket, no_snap) -> None:  # type: ignore[no-untyped-def]
    def slc(pid: str, when: datetime) -> Scene:
        return Scene(product_id=pid, mission="S1A", product_type="SLC", card_type="c6", sensing_time=when,
                     relative_orbit=117, orbit_direction="ascending", footprint_wkt=AUSTRIA,
                     source_assets={"safe": f"/data/{pid}.SAFE"})

    ids = catalogue.upsert(conn, [
        slc("S1A_IW_SLC__1SDV_20240520T165012_REF", datetime(2024, 5, 20, 16, 50, 12, tzinfo=UTC)),
        slc("S1A_IW_SLC__1SDV_20240601T165012_SEC", datetime(2024, 6, 1, 16, 50, 14, tzinfo=UTC)),
        slc("S1A_IW_SLC__1SDV_20240602T165012_LONE", datetime(2024, 6, 2, 5, 0, tzinfo=UTC)),
    ])
    conn.commit()
    ref, sec, lone = ids.values()
    dr = load_dag("card_s1_coh6").test(run_conf={"start": "2024-06-01", "end": "2024-06-03", "card_root": s3_bucket})
    assert dr.state == "failed"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states["discover"] == "success" and states["process"] == "failed" and states["verify"] == "failed"
    assert states["publish"] == "upstream_failed" and _events(dr) == 0
    rows = _rows(conn, [ref, sec, lone])
    assert rows[sec][0] == "failed" and rows[sec][3].startswith("ToolMissing: SNAP gpt not found")
    assert rows[ref][:2] == ("discovered", 0)   # the reference is read, not claimed
    assert rows[lone][:2] == ("discovered", 0)  # no 6- or 12-day partner: left for a later run


def test_card_discover_failure_fails_the_run_without_asset(airflow_db, conn) -> None:  # type: ignore[no-untyped-def]
    dr = load_dag("card_s2_l2a").test(run_conf={"start": "not-a-date", "end": "2022-10-06"})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed"
    assert states["discover"] == "failed" and states["verify"] == "failed"
    assert states["publish"] == "upstream_failed" and _events(dr) == 0
