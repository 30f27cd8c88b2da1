"""STAC items -> catalogue scenes, static sources, filters and a paged STAC API on loopback."""

from __future__ import annotations

import copy
import json
import posixpath
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pystac
import pytest

from cbmflow.catalogue import stac
from cbmflow.core.errors import InputError, NotFound


def _load(shared_data: Path, name: str) -> dict[str, Any]:
    return json.loads((shared_data / "stac" / name).read_text())


def _item(data: dict[str, Any]) -> pystac.Item:
    return pystac.Item.from_dict(copy.deepcopy(data), preserve_dict=True, migrate=False)


def test_s1_grd_item(shared_data: Path) -> None:
    path = shared_data / "stac" / "s1_grd_item.json"
    s = stac.scene_from_item(_item(_load(shared_data, "s1_grd_item.json")), base_href=str(path))
    assert s.product_id == "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13"
    assert (s.mission, s.product_type, s.card_type, s.status) == ("S1A", "GRD", "bs", "discovered")
    assert (s.relative_orbit, s.orbit_direction, s.tile) == (59, "ascending", "R059-S07")
    assert s.sensing_time == datetime(2021, 8, 9, 17, 40, 5, 653288, tzinfo=UTC)
    assert s.collection == "sentinel1-grd"
    assert set(s.source_assets) == {"VV", "VH", "manifest"}
    # relative hrefs resolve against the item file (stac/../../../tests/...)
    rel = _load(shared_data, "s1_grd_item.json")["assets"]["vv"]["href"]
    assert rel.startswith("../../../tests/data-files/grd/")
    assert s.source_assets["VV"] == posixpath.normpath(posixpath.join(str(path.parent), rel))
    assert s.properties["polarizations"] == ["VV", "VH"]
    assert s.footprint_wkt is not None and s.footprint_wkt.startswith("POLYGON")


def test_s2_l2a_earth_search_names_are_normalised(shared_data: Path) -> None:
    s = stac.scene_from_item(_item(_load(shared_data, "s2_l2a_item_stactools.json")))
    assert (s.mission, s.product_type, s.card_type, s.tile) == ("S2A", "L2A", "s2", "07HFE")
    assert (s.relative_orbit, s.orbit_direction) == (13, "descending")
    assert s.source_assets["B04"].endswith("/R10m/T07HFE_20190212T192651_B04_10m.tif")  # 'red'
    assert s.source_assets["B08"].endswith("_B08_10m.tif")  # 'nir'
    assert s.source_assets["B8A"].endswith("_B8A_20m.tif")  # 'nir08'
    assert s.source_assets["SCL"].endswith("/R20m/T07HFE_20190212T192651_SCL_20m.tif")  # 'scl', not scl_60m
    assert s.properties["processing_baseline"] == "02.12"
    assert s.properties["cloud_cover"] == pytest.approx(51.580326)
    assert s.status == "discovered" and s.last_error is None


def test_s2_l2a_planetary_computer_item(shared_data: Path) -> None:
    s = stac.scene_from_item(_item(_load(shared_data, "s2_l2a_item_earthsearch.json")))
    assert (s.mission, s.product_type, s.tile, s.relative_orbit) == ("S2B", "L2A", "06VVN", 43)
    assert s.source_assets["SCL"].endswith("T06VVN_20190629T212529_SCL_20m.tif")
    assert s.properties["processing_baseline"] == "02.12"


def test_s2_l1c_needs_no_scl(shared_data: Path) -> None:
    data = _load(shared_data, "s2_l2a_item_earthsearch.json")
    data["id"] = "S2B_MSIL1C_20190629T212529_R043_T06VVN_20190629T230000"
    data["collection"] = "sentinel-2-l1c"
    data["properties"]["s2:product_type"] = "S2MSI1C"
    del data["assets"]["SCL"]
    s = stac.scene_from_item(_item(data))
    assert (s.product_type, s.card_type, s.status) == ("L1C", "s2", "discovered")


def test_item_lacking_assets_is_failed_with_reason(shared_data: Path) -> None:
    data = _load(shared_data, "s2_l2a_item_earthsearch.json")
    del data["assets"]["SCL"], data["assets"]["B04"]
    s = stac.scene_from_item(_item(data))
    assert s.status == "failed"
    assert s.last_error is not None
    assert s.last_error.startswith(
        "missing asset(s) B04, SCL in item S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"
    )


def test_card_item_is_ready_and_simulated() -> None:
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "S1A_SIM_CARD_BS_20250601_A117",
        "geometry": {"type": "Polygon", "coordinates": [[[15, 48], [15.1, 48], [15.1, 48.1], [15, 48.1], [15, 48]]]},
        "bbox": [15, 48, 15.1, 48.1],
        "properties": {"datetime": "2025-06-01T05:00:00Z", "platform": "sentinel-1a", "sat:relative_orbit": 117,
                       "sat:orbit_state": "ascending", "cbmflow:card_type": "bs", "cbmflow:simulated": True,
                       "cbmflow:tile": "33UWP"},
        "links": [],
        "assets": {b: {"href": f"s3://bucket/at/2025/bs/S1A_SIM_CARD_BS_20250601_A117_{b}.tif", "roles": ["data"]}
                   for b in ("VV", "VH")},
    }
    s = stac.scene_from_item(_item(item))
    assert (s.product_type, s.card_type, s.status, s.simulated, s.tile) == ("CARD-BS", "bs", "ready", True, "33UWP")
    assert s.assets == {"VV": "s3://bucket/at/2025/bs/S1A_SIM_CARD_BS_20250601_A117_VV.tif",
                        "VH": "s3://bucket/at/2025/bs/S1A_SIM_CARD_BS_20250601_A117_VH.tif"}
    assert s.properties["cbmflow:tile"] == "33UWP" and s.properties["simulated"] is True
    assert s.properties["cbmflow:simulated"] is True and "cbmflow:card_type" not in s.properties
    del item["assets"]["VH"]
    failed = stac.scene_from_item(_item(item))
    assert failed.status == "failed" and failed.last_error == "missing asset(s) VH in item S1A_SIM_CARD_BS_20250601_A117"


def test_item_collection_filters(shared_data: Path) -> None:
    src = str(shared_data / "stac" / "s2_l2a_pc_search_13items.geojson")
    assert len(stac.discover(src)) == 13
    june = stac.discover(src, start=datetime(2020, 6, 1, tzinfo=UTC), end=datetime(2020, 7, 1, tzinfo=UTC))
    assert len(june) == 6
    assert len(stac.discover(src, collections=["sentinel-2-l1c"])) == 0
    assert len(stac.discover(src, bbox=(27.5, -8.0, 27.6, -7.9))) == 13
    assert stac.discover(src, bbox=(0, 0, 1, 1)) == []
    assert len(stac.discover(src, intersects_wkt="POINT (27.5 -7.5)", max_items=4)) == 4


def test_broken_item_in_collection_is_reported_others_continue(shared_data: Path, tmp_path: Path) -> None:
    data = _load(shared_data, "s2_l2a_pc_search_13items.geojson")
    broken_id = data["features"][2]["id"]
    del data["features"][2]["properties"]["datetime"]
    data["features"][5]["geometry"] = None
    path = tmp_path / "items.json"
    path.write_text(json.dumps(data))
    found = stac.discover_all(str(path))
    assert len(found.scenes) == 11
    assert [(p.where, p.error.split(": ")[-1]) for p in found.problems] == [
        (broken_id, "no datetime"), (data["features"][5]["id"], "no geometry"),
    ]
    assert broken_id in found.problems[0].error and str(path) in found.problems[0].error


def test_single_broken_item_and_invalid_json_are_clear_errors(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"type": "Feature", "id": "X1", "geometry": None, "properties": {}}))
    found = stac.discover_all(str(item))
    assert found.scenes == () and found.problems[0].where == "X1"
    assert found.problems[0].error == f"STAC item X1 in {item}: no geometry"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"STAC file .*bad\.json is not valid JSON"):
        stac.discover(str(bad))
    with pytest.raises(NotFound, match="missing.json does not exist"):
        stac.discover(str(tmp_path / "missing.json"))


def test_static_catalogue_with_child_collection(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "s1" / "a").mkdir(parents=True)
    (tmp_path / "s2").mkdir()
    (tmp_path / "s1" / "a" / "item.json").write_text((shared_data / "stac" / "s1_grd_item.json").read_text())
    (tmp_path / "s2" / "item.json").write_text((shared_data / "stac" / "s2_l2a_item_stactools.json").read_text())
    (tmp_path / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "id": "root", "stac_version": "1.0.0", "description": "test",
        "links": [{"rel": "child", "href": "./s1/collection.json"}, {"rel": "item", "href": "./s2/item.json"}],
    }))
    (tmp_path / "s1" / "collection.json").write_text(json.dumps({
        "type": "Collection", "id": "sentinel1-grd", "stac_version": "1.0.0", "description": "t",
        "links": [{"rel": "item", "href": "./a/item.json"}, {"rel": "item", "href": "./gone/item.json"}],
    }))
    found = stac.discover_all(str(tmp_path / "catalog.json"))
    assert sorted(s.product_type for s in found.scenes) == ["GRD", "L2A"]
    assert [p.where for p in found.problems] == [str(tmp_path / "s1" / "gone" / "item.json")]
    grd = next(s for s in found.scenes if s.product_type == "GRD")
    # relative asset hrefs are resolved against the item's file
    assert grd.source_assets["VV"].startswith(str(tmp_path.parent.parent))
    only_s1 = stac.discover(str(tmp_path / "catalog.json"), collections=["sentinel1-grd"])
    assert [s.mission for s in only_s1] == ["S1A"]


class _StacApi(BaseHTTPRequestHandler):
    items: list[dict[str, Any]] = []
    searches: list[str] = []
    bodies: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _search(self, page: int) -> None:
        type(self).searches.append(self.path)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        chunk = self.items[(page - 1) * 2: page * 2]
        links = [{"rel": "next", "href": f"{base}/search?page={page + 1}", "method": "GET",
                  "type": "application/geo+json"}] if page * 2 < len(self.items) else []
        self._send({"type": "FeatureCollection", "features": chunk, "links": links})

    def do_GET(self) -> None:  # noqa: N802
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/search"):
            page = int(self.path.split("page=")[1].split("&")[0]) if "page=" in self.path else 1
            self._search(page)
            return
        self._send({
            "type": "Catalog", "id": "test-api", "stac_version": "1.0.0", "description": "loopback",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [
                {"rel": "self", "href": base + "/", "type": "application/json"},
                {"rel": "root", "href": base + "/", "type": "application/json"},
                {"rel": "search", "href": base + "/search", "method": "POST", "type": "application/geo+json"},
            ],
        })

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).bodies.append(json.loads(body))
        self._search(1)


def test_stac_api_reads_every_page(shared_data: Path) -> None:
    features = _load(shared_data, "s2_l2a_pc_search_13items.geojson")["features"][:5]
    _StacApi.items = features
    _StacApi.searches = []
    _StacApi.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StacApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        scenes = stac.discover(url, collections=["sentinel-2-l2a"], bbox=(26, -9, 29, -7))
    finally:
        server.shutdown()
        server.server_close()
    assert [s.product_id for s in scenes] == [f["id"] for f in features]
    assert len(_StacApi.searches) == 3  # 2 + 2 + 1 items
    assert _StacApi.searches == ["/search", "/search?page=2", "/search?page=3"]
    assert _StacApi.bodies[0]["collections"] == ["sentinel-2-l2a"]
    assert _StacApi.bodies[0]["bbox"] == [26, -9, 29, -7]
