"""STAC discovery into the real PostGIS catalogue, from disk and from the moto S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cbmflow import cli
from cbmflow.catalogue import stac
from cbmflow.catalogue import store as catalogue
from cbmflow.core import storage
from cbmflow.core.errors import NotFound

pytestmark = pytest.mark.integration

REAL_SOURCES = (
    "s1_grd_item.json",
    "s2_l2a_item_earthsearch.json",
    "s2_l2a_item_stactools.json",
    "s2_l2a_pc_search_13items.geojson",
)


def _all_real(shared_data: Path) -> list[catalogue.Scene]:
    scenes: list[catalogue.Scene] = []
    for name in REAL_SOURCES:
        scenes.extend(stac.discover(str(shared_data / "stac" / name)))
    return scenes


def test_real_items_load_and_twice_adds_nothing(conn, shared_data: Path) -> None:
    scenes = _all_real(shared_data)
    assert len(scenes) == 16
    first = stac.catalogue_scenes(conn, scenes)
    assert first == {"new": 16, "known": 0, "failed": 0, "total": 16}
    snapshot = conn.execute("SELECT id, product_id, status, updated_at FROM catalogue ORDER BY id").fetchall()
    again = stac.catalogue_scenes(conn, _all_real(shared_data))
    assert again == {"new": 0, "known": 16, "failed": 0, "total": 16}
    assert conn.execute("SELECT id, product_id, status, updated_at FROM catalogue ORDER BY id").fetchall() == snapshot
    assert catalogue.counts(conn) == {("bs", "discovered"): 1, ("s2", "discovered"): 15}
    grd = catalogue.get_by_product_id(conn, "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13")
    assert (grd.mission, grd.product_type, grd.relative_orbit, grd.orbit_direction) == ("S1A", "GRD", 59, "ascending")
    s2 = catalogue.get_by_product_id(conn, "S2A_T07HFE_20190212T192646_L2A")
    assert s2.properties["processing_baseline"] == "02.12" and s2.tile == "07HFE"
    # footprints are stored in EPSG:4326 and searchable
    hits = catalogue.find(conn, aoi_wkt="POINT (27.5 -7.5)")
    assert len(hits) == 13


def test_item_missing_assets_is_recorded_failed(conn, shared_data: Path, tmp_path: Path) -> None:
    data = json.loads((shared_data / "stac" / "s2_l2a_item_earthsearch.json").read_text())
    del data["assets"]["SCL"]
    path = tmp_path / "item.json"
    path.write_text(json.dumps(data))
    counts = stac.catalogue_scenes(conn, stac.discover(str(path)))
    assert counts == {"new": 1, "known": 0, "failed": 1, "total": 1}
    s = catalogue.get_by_product_id(conn, data["id"])
    assert s.status == "failed"
    assert s.last_error is not None and s.last_error.startswith(f"missing asset(s) SCL in item {data['id']}")
    # the complete item later puts the scene back into the queue
    stac.catalogue_scenes(conn, stac.discover(str(shared_data / "stac" / "s2_l2a_item_earthsearch.json")))
    assert catalogue.get_by_product_id(conn, data["id"]).status == "discovered"


def test_item_collection_from_s3(conn, shared_data: Path, s3_bucket: str) -> None:
    uri = storage.upload(shared_data / "stac" / "s2_l2a_pc_search_13items.geojson", f"{s3_bucket}/stac/items.json")
    counts = stac.catalogue_scenes(conn, stac.discover(uri))
    assert counts["new"] == 13
    with pytest.raises(NotFound, match="bucket of s3://cbmflow-no-such-bucket/items.json does not exist"):
        stac.discover("s3://cbmflow-no-such-bucket/items.json")
    with pytest.raises(NotFound, match="nothing.json does not exist"):
        stac.discover(f"{s3_bucket}/nothing.json")


def test_cli_discover_reports_broken_items(clean_db: str, shared_data: Path, tmp_path: Path, capsys) -> None:
    data = json.loads((shared_data / "stac" / "s2_l2a_pc_search_13items.geojson").read_text())
    broken = data["features"][0]["id"]
    del data["features"][0]["properties"]["datetime"]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(data))
    argv = ["catalogue", "discover", "--source", str(path), "--start", "2020-06-01", "--end", "2020-07-31"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    # 13 items, the broken one (2020-07-31) skipped, the rest within the inclusive day range
    assert "scenes 12: new 12, known 0, failed (missing assets) 0, skipped items 1" in out
    assert f"skipped {broken}: STAC item {broken} in {path}: no datetime" in out
    assert cli.main(argv) == 0
    assert "scenes 12: new 0, known 12" in capsys.readouterr().out
    assert cli.main(["catalogue", "discover", "--source", str(tmp_path / "nope.json")]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err


def test_cli_discover_by_aoi(clean_db: str, shared_data: Path, tmp_path: Path, capsys) -> None:
    from cbmflow.core import db
    from cbmflow.parcels import store as parcels

    with db.connect(clean_db) as conn:
        parcels.import_parcels(conn, shared_data / "parcels" / "nl_brp_2023.gpkg", aoi="nl", year=2023,
                               id_col="id", crop_col="gewascode", report_path=str(tmp_path / "r.csv"))
    # the NL AOI does not intersect the Congo tile of the 13 items: nothing found
    src = str(shared_data / "stac" / "s2_l2a_pc_search_13items.geojson")
    assert cli.main(["catalogue", "discover", "--source", src, "--aoi", "nl"]) == 0
    assert "scenes 0:" in capsys.readouterr().out
    assert cli.main(["catalogue", "discover", "--source", src, "--aoi", "xx"]) == 2
    assert "AOI 'xx' does not exist; known AOIs: nl" in capsys.readouterr().err
