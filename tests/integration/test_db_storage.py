from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cbmflow.catalogue import store as catalogue
from cbmflow.core import db, storage
from cbmflow.core.errors import NotFound

pytestmark = pytest.mark.integration


def test_upgrade_is_idempotent(pg_dsn: str) -> None:
    assert db.upgrade(pg_dsn) == []
    assert db.applied_versions(pg_dsn)[0] == "001"


def test_year_partition_created_and_rows_routed(conn) -> None:
    conn.execute(
        "INSERT INTO signatures (pid, obsid, band, year, count, mean, std, min, max, p25, p50, p75)"
        " VALUES (1, 1, 1, 2031, 3, 1, 0, 1, 1, 1, 1, 1)"
    )
    db.ensure_year_partition(conn, 2031)
    db.ensure_year_partition(conn, 2031)
    part = conn.execute("SELECT tableoid::regclass::text FROM signatures").fetchone()[0]
    assert part == "signatures_2031"


def _scene(pid: str, status: str = "discovered") -> catalogue.Scene:
    return catalogue.Scene(
        product_id=pid, mission="S1A", product_type="GRD", card_type="bs",
        sensing_time=datetime(2024, 5, 1, 5, 30, tzinfo=UTC), relative_orbit=44,
        orbit_direction="ascending", footprint_wkt="POLYGON((10 55,11 55,11 56,10 56,10 55))",
        source_assets={"safe": "s3://raw/x.zip"}, status=status,
    )


def test_catalogue_upsert_twice_adds_nothing_and_queue_moves(conn) -> None:
    ids1 = catalogue.upsert(conn, [_scene("A"), _scene("B")])
    ids2 = catalogue.upsert(conn, [_scene("A"), _scene("B")])
    assert ids1 == ids2
    assert conn.execute("SELECT count(*) FROM catalogue").fetchone()[0] == 2
    sid = ids1["A"]
    assert catalogue.claim(conn, sid, ["discovered", "failed"]) is True
    assert catalogue.claim(conn, sid, ["discovered", "failed"]) is False  # already taken
    catalogue.mark_failed(conn, sid, "boom")
    s = catalogue.get(conn, sid)
    assert (s.status, s.attempts, s.last_error) == ("failed", 1, "boom")
    catalogue.mark_ready(conn, sid, {"VV": "s3://card/a_VV.tif"})
    s = catalogue.get(conn, sid)
    assert s.status == "ready" and s.assets["VV"] == "s3://card/a_VV.tif" and s.last_error is None
    # re-discovery keeps the queue position
    catalogue.upsert(conn, [_scene("A")])
    assert catalogue.get(conn, sid).status == "ready"
    assert [x.product_id for x in catalogue.find(conn, statuses=["discovered"])] == ["B"]
    with pytest.raises(NotFound):
        catalogue.get(conn, 999999)


def test_s3_roundtrip_and_vsis3_range_read(s3_bucket: str, tmp_path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "r.tif"
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(500000, 5300000, 10, 10)) as dst:
        dst.write(data, 1)
    uri = storage.upload(path, f"{s3_bucket}/card/r.tif")
    assert storage.exists(uri)
    assert storage.list_uris(f"{s3_bucket}/card/") == [uri]
    with storage.rasterio_env():
        with storage.open_raster(uri) as src:
            win = src.read(1, window=((10, 12), (20, 22)))
    assert win.tolist() == data[10:12, 20:22].tolist()
    assert not storage.exists(f"{s3_bucket}/card/missing.tif")
    with pytest.raises(NotFound, match="missing.tif"):
        storage.read_bytes(f"{s3_bucket}/card/missing.tif")
    with pytest.raises(NotFound, match="bucket"):
        storage.read_bytes("s3://no-such-bucket-xyz/k")


def test_stale_processing_claims_are_released_for_retry(conn) -> None:
    from datetime import timedelta

    ids = catalogue.upsert(conn, [_scene("OLD"), _scene("FRESH"), _scene("OLD_WITH_CARD")])
    catalogue.mark_ready(conn, ids["OLD_WITH_CARD"], {"VV": "s3://card/x_VV.tif"})
    for pid in ids.values():
        assert catalogue.claim(conn, pid, ["discovered", "ready"])
    conn.execute("UPDATE catalogue SET updated_at = now() - interval '7 hours' WHERE id = ANY(%s)",
                 ([ids["OLD"], ids["OLD_WITH_CARD"]],))
    assert catalogue.release_stale(conn, card_type="c6") == []  # other card type: untouched
    released = catalogue.release_stale(conn, card_type="bs", older_than=timedelta(hours=6))
    assert sorted(released) == sorted([ids["OLD"], ids["OLD_WITH_CARD"]])
    old, fresh = catalogue.get(conn, ids["OLD"]), catalogue.get(conn, ids["FRESH"])
    assert (old.status, old.attempts) == ("failed", 1) and "stale claim" in (old.last_error or "")
    assert catalogue.get(conn, ids["OLD_WITH_CARD"]).status == "ready"  # extraction retries it
    assert fresh.status == "processing"
    assert catalogue.claim(conn, ids["OLD"], ["discovered", "failed"])  # a run can take it again
