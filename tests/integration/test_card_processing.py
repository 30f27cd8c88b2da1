"""CARD processing against the real PostGIS catalogue and the moto S3 server.

S2: real L2A pixels (windows of the shared T29UNU product, baseline 04.00) ingested, harmonised and
published. S1 with SNAP: where gpt is absent the scene fails with the install message; the handling
path (graph -> gpt -> COGs -> ready) runs against a TEST DOUBLE of gpt whose product is labelled
simulated (product id contains SIMULATED, COG tag CBMFLOW_SIMULATED=true).
"""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from card_inputs import AUSTRIA, C60, IRELAND, N60, R60, s2_l2a_inputs
from cbmflow.card import engines
from cbmflow.card import jobs as card
from cbmflow.card import keys as card_keys
from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import storage
from cbmflow.core.errors import NothingToDo, ToolMissing

pytestmark = pytest.mark.integration

def _scene(conn, **kw) -> int:  # type: ignore[no-untyped-def]
    ids = catalogue.upsert(conn, [Scene(**kw)])
    conn.commit()
    return ids[kw["product_id"]]


def _status(dsn: str, scene_id: int) -> Scene:
    from cbmflow.core import db

    with db.connect(dsn) as c:
        return catalogue.get(c, scene_id)


def test_s2_l2a_ingested_harmonised_and_ready(conn, clean_db, s3_bucket, shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import rasterio
    from rasterio.windows import Window

    from cbmflow.core.cog import is_cog

    pid = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T170000"
    sid = _scene(conn, product_id=pid, mission="S2A", product_type="L2A", card_type="s2",
                 sensing_time=datetime(2022, 10, 5, 11, 54, 11, tzinfo=UTC), tile="29UNU", footprint_wkt=IRELAND,
                 source_assets=s2_l2a_inputs(shared_data, s3_bucket, tmp_path))
    out = engines.process_s2_scene(sid, card_root=f"{s3_bucket}/card", dsn=clean_db)
    prefix = f"{s3_bucket}/card/s2/2022/10/05/{pid}"
    assert out == {"B04": f"{prefix}_B04.tif", "SCL": f"{prefix}_SCL.tif"}
    scene = _status(clean_db, sid)
    assert (scene.status, scene.attempts, scene.assets) == ("ready", 1, out)

    with rasterio.open(shared_data / "s2" / "T29UNU_20221005T115411_B04_60m.jp2") as src:
        raw = src.read(1, window=Window(C60, R60, N60, N60)).astype(np.int32)
    with rasterio.open(shared_data / "s2" / "T29UNU_20221005T115411_SCL_20m.jp2") as src:
        scl_raw = src.read(1, window=Window(C60 * 3, R60 * 3, N60 * 3, N60 * 3))
    expected60 = np.where(raw == 0, 0, np.clip(raw - 1000, 1, None))
    expected = np.repeat(np.repeat(expected60, 3, axis=0), 3, axis=1)  # nearest 60 m -> 20 m grid
    with storage.rasterio_env():
        for band in ("B04", "SCL"):
            assert is_cog(out[band])
        with rasterio.open(storage.gdal_path(out["B04"])) as b04:
            assert b04.res == (20.0, 20.0) and b04.crs.to_epsg() == 32629 and b04.nodata == 0
            assert b04.dtypes[0] == "uint16"
            np.testing.assert_array_equal(b04.read(1), expected)
            assert "BOA_ADD_OFFSET -1000 removed" in b04.tags()["CBMFLOW_HARMONISATION"]
        with rasterio.open(storage.gdal_path(out["SCL"])) as scl:
            assert scl.dtypes[0] == "uint8"
            np.testing.assert_array_equal(scl.read(1), scl_raw)
    # the window really exercises all three rules
    assert (raw == 0).any() and ((raw > 0) & (raw <= 1000)).any() and (raw > 1000).any()


def test_ready_scene_is_not_claimed_again(conn, clean_db, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    sid = _scene(conn, product_id="S2B_MSIL2A_READY", mission="S2B", product_type="L2A", card_type="s2",
                 sensing_time=datetime(2024, 6, 1, 10, tzinfo=UTC), status="ready")
    before = conn.execute("SELECT updated_at, attempts FROM catalogue WHERE id = %s", (sid,)).fetchone()
    conn.commit()
    with pytest.raises(NothingToDo, match="is ready; only discovered/failed"):
        engines.process_s2_scene(sid, card_root=s3_bucket, dsn=clean_db)
    after = conn.execute("SELECT updated_at, attempts FROM catalogue WHERE id = %s", (sid,)).fetchone()
    assert after == before


@pytest.fixture()
def no_snap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}/bin{os.pathsep}/usr/bin")
    monkeypatch.delenv("SNAP_HOME", raising=False)
    monkeypatch.delenv("SEN2COR_HOME", raising=False)
    return empty


def test_snap_engine_without_snap_marks_failed_with_install_message(conn, clean_db, s3_bucket, no_snap) -> None:  # type: ignore[no-untyped-def]
    sid = _scene(conn, product_id="S1A_IW_GRDH_1SDV_20240601T165012_X", mission="S1A", product_type="GRD",
                 card_type="bs", sensing_time=datetime(2024, 6, 1, 16, 50, tzinfo=UTC), footprint_wkt=AUSTRIA,
                 source_assets={"safe": "/nonexistent/S1A.SAFE"})
    with pytest.raises(ToolMissing):
        engines.process_bs_scene(sid, card_root=s3_bucket, engine="snap", dsn=clean_db)
    scene = _status(clean_db, sid)
    assert scene.status == "failed" and scene.attempts == 1
    assert scene.last_error.startswith("ToolMissing: SNAP gpt not found: install ESA SNAP 10+")
    assert storage.list_uris(s3_bucket) == []


def test_l1c_without_sen2cor_and_coh6_without_snap_fail_clearly(conn, clean_db, s3_bucket, no_snap) -> None:  # type: ignore[no-untyped-def]
    l1c = _scene(conn, product_id="S2A_MSIL1C_20240601T100000_N0510_R122_T33UWP", mission="S2A",
                 product_type="L1C", card_type="s2", sensing_time=datetime(2024, 6, 1, 10, tzinfo=UTC))
    with pytest.raises(ToolMissing):
        engines.process_s2_scene(l1c, card_root=s3_bucket, dsn=clean_db)
    assert _status(clean_db, l1c).last_error.startswith("ToolMissing: Sen2Cor L2A_Process not found")

    ref = _scene(conn, product_id="S1A_IW_SLC__1SDV_20240526_REF", mission="S1A", product_type="SLC",
                 card_type="c6", sensing_time=datetime(2024, 5, 26, 16, 50, tzinfo=UTC), relative_orbit=117,
                 orbit_direction="ascending", footprint_wkt=AUSTRIA)
    sec = _scene(conn, product_id="S1A_IW_SLC__1SDV_20240607_SEC", mission="S1A", product_type="SLC",
                 card_type="c6", sensing_time=datetime(2024, 6, 7, 16, 50, tzinfo=UTC), relative_orbit=117,
                 orbit_direction="ascending", footprint_wkt=AUSTRIA)
    pairs, unpaired = card.pending_pairs(start=datetime(2024, 6, 1, tzinfo=UTC),
                                         end=datetime(2024, 6, 30, tzinfo=UTC), dsn=clean_db)
    assert pairs == [{"secondary_id": sec, "reference_id": ref, "days": 12}] and unpaired == []
    with pytest.raises(ToolMissing):
        engines.process_coh6_pair(sec, ref, card_root=s3_bucket, dsn=clean_db)
    assert _status(clean_db, sec).status == "failed"
    assert _status(clean_db, ref).status == "discovered"  # the reference is only read


FAKE_GPT = f"""#!{sys.executable}
# TEST DOUBLE of ESA SNAP gpt (not SNAP): checks the graph, writes a SIMULATED 2-band GeoTIFF to -t.
import sys, xml.etree.ElementTree as ET
import numpy as np, rasterio
from rasterio.transform import from_origin
argv = sys.argv[1:]
graph = ET.parse(argv[0]).getroot()
ops = [n.findtext("operator") for n in graph.findall("node")]
assert ops[0] == "Read" and ops[-1] == "Write", ops
target = argv[argv.index("-t") + 1]
data = np.array([[[0.25, 0.5], [0.0, 1.0]], [[0.05, 0.1], [0.2, 0.0]]], dtype="float32")
with rasterio.open(target, "w", driver="GTiff", width=2, height=2, count=2, dtype="float32",
                   crs="EPSG:32633", transform=from_origin(600000, 5350000, 10, 10)) as dst:
    dst.write(data)
    dst.set_band_description(1, "Gamma0_VH")  # deliberately in the other order
    dst.set_band_description(2, "Gamma0_VV")
    dst.update_tags(CBMFLOW_SIMULATED="true")
"""


def test_snap_handling_path_with_gpt_test_double(conn, clean_db, s3_bucket, no_snap, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Asserts the handling path only: the product is simulated by a gpt test double."""
    import rasterio

    gpt = no_snap / "gpt"
    gpt.write_text(FAKE_GPT)
    gpt.chmod(gpt.stat().st_mode | stat.S_IXUSR)
    safe = tmp_path / "S1A_IW_GRDH_1SDV_SIMULATED.SAFE"
    safe.mkdir()
    pid = "S1A_IW_GRDH_1SDV_20240601T165012_SIMULATED_TESTDOUBLE"
    sid = _scene(conn, product_id=pid, mission="S1A", product_type="GRD", card_type="bs", simulated=True,
                 sensing_time=datetime(2024, 6, 1, 16, 50, 12, tzinfo=UTC), footprint_wkt=AUSTRIA,
                 source_assets={"safe": str(safe)})
    out = engines.process_bs_scene(sid, card_root=s3_bucket, engine="snap", dsn=clean_db, epsg=32633)
    prefix = f"{s3_bucket}/bs/2024/06/01/{pid}"
    assert out == {"VV": f"{prefix}_VV.tif", "VH": f"{prefix}_VH.tif"}
    assert _status(clean_db, sid).status == "ready"
    with storage.rasterio_env():
        with rasterio.open(storage.gdal_path(out["VV"])) as vv:
            np.testing.assert_array_equal(vv.read(1), np.array([[0.05, 0.1], [0.2, np.nan]], dtype="float32"))
            assert np.isnan(vv.nodata) and vv.tags()["CBMFLOW_ENGINE"] == "snap-gpt"
            assert vv.tags()["CBMFLOW_SOURCE_BAND"] == "Gamma0_VV"
            assert vv.tags()["CBMFLOW_CALIBRATION"] == "beta0+terrain-flattening"
        with rasterio.open(storage.gdal_path(out["VH"])) as vh:
            np.testing.assert_array_equal(vh.read(1), np.array([[0.25, 0.5], [np.nan, 1.0]], dtype="float32"))


def test_pending_selects_only_unready_scenes_in_window(conn, clean_db) -> None:  # type: ignore[no-untyped-def]
    ids = {}
    for day, status in ((1, "ready"), (2, "failed"), (3, "discovered"), (4, "extracted"), (9, "failed")):
        ids[day] = _scene(conn, product_id=f"S1A_GRD_{day}", mission="S1A", product_type="GRD", card_type="bs",
                          sensing_time=datetime(2024, 6, day, 5, tzinfo=UTC), status=status)
    start, end = card.window("2024-06-01", "2024-06-05")
    assert card.pending("bs", start=start, end=end, dsn=clean_db) == [ids[2], ids[3]]
    assert card.pending("bs", start=start, end=end, dsn=clean_db, reprocess=True) == [ids[d] for d in (1, 2, 3, 4)]


def test_card_key_layout() -> None:
    t = datetime(2024, 1, 2, 23, 30, tzinfo=UTC)
    assert card_keys.card_key("s3://b/card", "bs", t, "S1A_X", "vv") == "s3://b/card/bs/2024/01/02/S1A_X_VV.tif"


def test_window_from_params_or_data_interval() -> None:
    di = (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC))
    assert card.window(None, None, *di) == di
    assert card.window(None, None, *di, lookback_days=2) == (datetime(2024, 5, 30, tzinfo=UTC), di[1])
    # explicit dates win and are not widened
    assert card.window("2024-05-01", "2024-05-08", *di, lookback_days=2) == (
        datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 8, tzinfo=UTC))
    with pytest.raises(Exception, match="is not before end"):
        card.window("2024-05-08", "2024-05-01")


def test_publish_and_verify_report_the_run(conn, clean_db) -> None:  # type: ignore[no-untyped-def]
    from cbmflow.core.errors import ProcessingError

    ok = _scene(conn, product_id="S2A_OK", mission="S2A", product_type="L2A", card_type="s2",
                sensing_time=datetime(2024, 6, 1, tzinfo=UTC), status="ready")
    bad = _scene(conn, product_id="S2A_BAD", mission="S2A", product_type="L2A", card_type="s2",
                 sensing_time=datetime(2024, 6, 1, tzinfo=UTC), status="failed")
    conn.execute("UPDATE catalogue SET last_error = 'CorruptData: B04 unreadable' WHERE id = %s", (bad,))
    conn.commit()
    assert card.publish([ok, bad], dsn=clean_db) == {"ready": [ok], "failed": [bad]}
    with pytest.raises(NothingToDo):
        card.publish([bad], dsn=clean_db)
    with pytest.raises(ProcessingError, match=r"1 of 2 scene\(s\) not ready: S2A_BAD \(id \d+, failed\): "
                                              r"CorruptData: B04 unreadable"):
        card.raise_for_failed([ok, bad], dsn=clean_db)
    assert card.raise_for_failed([ok], dsn=clean_db) == {"ready": 1}


def test_discover_with_stac_source_catalogues_then_selects(conn, clean_db, shared_data) -> None:  # type: ignore[no-untyped-def]
    item = str(shared_data / "stac" / "s2_l2a_item_earthsearch.json")  # a real Earth Search L2A item
    start, end = card.window("2019-06-29", "2019-06-30")
    ids = card.discover("s2", start=start, end=end, stac_source=item, dsn=clean_db)
    assert len(ids) == 1
    scene = catalogue.get(conn, ids[0])
    conn.commit()
    assert (scene.card_type, scene.product_type, scene.status) == ("s2", "L2A", "discovered")
    assert "B04" in scene.source_assets
    # the S1 DAG's discovery ignores an S2 item; running again adds nothing
    assert card.discover("bs", start=start, end=end, stac_source=item, dsn=clean_db) == []
    assert card.discover("s2", start=start, end=end, stac_source=item, dsn=clean_db) == ids
