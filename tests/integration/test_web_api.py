"""The web app's API against the real PostGIS server, S3 (moto) and Airflow's own auth dependency.

Requests carry a JWT signed like the api-server signs the UI's ``_token`` cookie (SimpleAuthManager);
the app reads as the read-only role that schema 007 creates.
"""

from __future__ import annotations

import csv
import io
import re

import psycopg
import pytest

from web_data import (
    AOI,
    RED_PARCEL,
    XSS_ID,
    XSS_PARCEL,
    YEAR,
    WebData,
    airflow_token,
    build,
    empty_database,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web(pg_dsn: str, s3_endpoint: str) -> WebData:
    import uuid

    empty_database(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        return build(conn, s3_base=f"s3://web-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def client(web: WebData, airflow_db: str):
    from fastapi.testclient import TestClient

    from cbmflow.airflow_adapter import web_auth

    token = airflow_token()
    from cbmflow.web import create_app

    app = create_app(*web_auth())
    c = TestClient(app, root_path="/cbmflow")
    c.cookies.set("_token", token)
    return c


@pytest.fixture(scope="module")
def anon(web: WebData, airflow_db: str):
    from fastapi.testclient import TestClient

    from cbmflow.airflow_adapter import web_auth
    from cbmflow.web import create_app

    airflow_token()  # initialises the auth manager
    return TestClient(create_app(*web_auth()), root_path="/cbmflow", follow_redirects=False)


def test_without_airflow_login_api_is_401_and_pages_go_to_the_login(anon) -> None:
    assert anon.get("/api/runs").status_code == 401
    assert anon.get("/api/runs", headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403)
    r = anon.get("/flags")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/login?next=")
    assert "%2Fcbmflow%2Fflags" in r.headers["location"] or "/cbmflow/flags" in r.headers["location"]
    assert anon.get("/openapi.json").status_code in (303, 401)


def test_bearer_jwt_works_like_the_cookie(anon, web: WebData) -> None:
    token = airflow_token("admin", "admin")
    r = anon.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()[0]["run_id"] == web.run_id


def test_flag_list_sort_filter_and_links(client, web: WebData) -> None:
    body = client.get(f"/api/runs/{web.run_id}/flags").json()
    assert body["total"] == 3  # default: red and yellow
    assert [r["flag"] for r in body["rows"]][0] == "red"
    assert body["rows"][0]["parcel_id"] == RED_PARCEL and body["rows"][0]["declared_probability"] == 0.04
    only_red = client.get(f"/api/runs/{web.run_id}/flags", params={"flag": "red"}).json()
    assert [r["pid"] for r in only_red["rows"]] == [web.red_pid]
    by_prob = client.get(f"/api/runs/{web.run_id}/flags",
                         params={"sort": "probability", "order": "desc", "flag": ["red", "yellow", "green"]}).json()
    probs = [r["probability"] for r in by_prob["rows"]]
    assert probs == sorted(probs, reverse=True) and by_prob["total"] == 16
    crop = client.get(f"/api/runs/{web.run_id}/flags", params={"crop": "SM", "flag": ["red", "yellow", "green"]}).json()
    assert crop["total"] and all(r["declared"] == "SM" for r in crop["rows"])
    hi = client.get(f"/api/runs/{web.run_id}/flags", params={"min_prob": 0.9}).json()
    assert [r["parcel_id"] for r in hi["rows"]] == [RED_PARCEL]
    assert client.get(f"/api/runs/{web.run_id}/flags", params={"sort": "pid; drop table x"}).status_code == 422
    assert client.get(f"/api/runs/{web.run_id}/flags", params={"sort": "nosuchcol"}).status_code == 422
    assert client.get("/api/runs/999999/flags").status_code == 404
    page = client.get("/flags")
    assert page.status_code == 200 and 'content="/cbmflow"' in page.text


def test_exports_csv_and_geopackage(client, web: WebData, tmp_path) -> None:
    r = client.get(f"/api/runs/{web.run_id}/flags.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {x["parcel_id"] for x in rows} == {RED_PARCEL, "P-07", XSS_PARCEL}
    red = next(x for x in rows if x["flag"] == "red")
    assert red["predicted"] == "WW" and "5 of 5" in red["reason"]
    g = client.get(f"/api/runs/{web.run_id}/flags.gpkg", params={"flag": ["red", "yellow", "green"]})
    assert g.status_code == 200 and g.content[:16] == b"SQLite format 3\x00"
    path = tmp_path / "f.gpkg"
    path.write_bytes(g.content)
    import pyogrio

    info = pyogrio.read_info(path, layer="flags")
    assert info["features"] == 16 and info["crs"] == "EPSG:32633" and info["geometry_type"] in ("MultiPolygon", "Polygon")


def test_parcel_chart_splits_orbits_in_db_with_ndvi_clouds_peers_periods_markers(client, web: WebData) -> None:
    p = client.get(f"/api/parcels/{web.red_pid}").json()
    assert p["flag"]["flag"] == "red" and p["flag"]["predicted"] == "WW"
    assert "5 of 5" in p["flag"]["reason"] and "SM" in p["flag"]["reason"]
    assert 14 < p["bbox"][0] < 16 and p["geometry"]["type"] == "MultiPolygon"
    ch = client.get(f"/api/parcels/{web.red_pid}/chart").json()
    orbits = {(o["band"], o["orbit"]) for o in ch["s1"]}
    assert orbits == {("VV", "ascending"), ("VV", "descending"), ("VH", "ascending"), ("VH", "descending")}
    assert all(-30 < o["mean_db"] < 0 and o["p25_db"] <= o["mean_db"] <= o["p75_db"] for o in ch["s1"])
    assert ch["ratio"] and all(-15 < r["value_db"] < 0 for r in ch["ratio"])
    assert {c["band"] for c in ch["coherence"]} == {"COH_VV", "COH_VH"}
    cloudy = [n for n in ch["ndvi"] if n["cloudy"]]
    clear = [n for n in ch["ndvi"] if n["cloudy"] is False]
    assert cloudy and clear and max(n["value"] for n in clear) > 0.6 and all(n["value"] < 0.1 for n in cloudy)
    assert {p["band"] for p in ch["periods"]} >= {"VV", "VH"} and all(p["value"] < 0 for p in ch["periods"] if p["band"] == "VV")
    assert ch["peers"]["crop"] == "SM" and ch["peers"]["n_parcels"] >= 4 and ch["peers"]["VV"] and ch["peers"]["NDVI"]
    assert ch["markers"] and ch["markers"][0]["marker"] == "harvest" and ch["markers"][0]["event_date"] == "2025-07-29"
    by_id = client.get(f"/api/aois/{AOI}/{YEAR}/parcels/{RED_PARCEL}").json()
    assert by_id["pid"] == web.red_pid
    hits = client.get("/api/search", params={"q": "P-0", "aoi": AOI}).json()
    assert len(hits) >= 9 and hits[0]["parcel_id"].startswith("P-0")
    fc = client.get(f"/api/aois/{AOI}/{YEAR}/parcels.geojson").json()
    flags = {f["properties"]["flag"] for f in fc["features"]}
    assert len(fc["features"]) == 16 and flags == {"red", "yellow", "green"}
    box = ",".join(str(v) for v in p["bbox"])
    near = client.get(f"/api/aois/{AOI}/{YEAR}/parcels.geojson", params={"bbox": box}).json()
    assert web.red_pid in {f["id"] for f in near["features"]} and len(near["features"]) < 16
    assert client.get(f"/parcel/{AOI}/{YEAR}/{RED_PARCEL}").status_code == 200
    assert client.get(f"/parcel/{web.red_pid}").status_code == 200


def test_chips_are_pngs_from_the_cogs_on_s3_and_cached(client, web: WebData) -> None:
    from cbmflow.web import chips

    lst = client.get(f"/api/parcels/{web.red_pid}/chips").json()
    assert {c["card_type"] for c in lst} == {"bs", "s2"}
    assert any(c["product_id"] == XSS_ID for c in lst)
    before = chips.stats()["misses"]
    r = client.get(f"/api/parcels/{web.red_pid}/chips/{web.chip_obsid}.png")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    import numpy as np
    from rasterio.io import MemoryFile

    with MemoryFile(r.content) as m, m.open() as src:
        img = src.read()
    assert img.shape == (3, chips.SIZE, chips.SIZE) and img.std() > 5  # not blank
    outline = (img[0] == 255) & (img[1] == 212) & (img[2] == 0)
    assert 50 < outline.sum() < 0.25 * chips.SIZE**2  # the parcel's outline is drawn
    again = client.get(f"/api/parcels/{web.red_pid}/chips/{web.chip_obsid}.png")
    assert again.content == r.content and chips.stats()["misses"] == before + 1  # second one from the cache
    assert np.array_equal(img.shape, (3, 160, 160))
    s1 = client.get(f"/api/parcels/{web.red_pid}/chips/{web.s1_chip_obsid}.png")
    assert s1.status_code == 200 and s1.content[:4] == b"\x89PNG"
    assert client.get(f"/api/parcels/{web.red_pid}/chips/{web.failed_obsid}.png").status_code == 404


def test_scene_problems_list_failed_scene_with_error_and_rerun(client, web: WebData) -> None:
    body = client.get("/api/scenes/problems").json()
    failed = [i for i in body["items"] if i["obsid"] == web.failed_obsid]
    assert failed and failed[0]["status"] == "failed" and failed[0]["aoi"] == AOI and failed[0]["day"] == "2025-06-14"
    assert "DEM tile missing" in failed[0]["error"]
    assert failed[0]["rerun"] == {"dag_id": "card_s1_bs", "conf": {"start": "2025-06-14", "end": "2025-06-15", "reprocess": True}}
    assert client.get("/api/scenes/problems", params={"aoi": "nosuch"}).json()["items"] == []
    if web.extraction_failed_obsid is not None:  # schema 005: per-(scene, AOI) extraction status
        assert body["source"] == "extractions"
        ext = next(i for i in body["items"] if i["obsid"] == web.extraction_failed_obsid)
        assert ext["status"] == "failed" and "not a TIFF" in ext["error"] and ext["aoi"] == AOI
        assert ext["rerun"] == {"dag_id": "extract_signatures", "conf": {
            "aoi": AOI, "year": YEAR, "start": "2025-07-10", "end": "2025-07-11", "card_type": "s2",
            "reprocess": True}}
        assert any(i["status"] == "no_data" and i["day"] == "2025-07-15" for i in body["items"])


@pytest.mark.parametrize("path", [
    "/api/aois/webt/2025/parcels?offset=-1",
    "/api/aois/webt/2025/parcels?limit=0",
    "/api/aois/webt/2025/parcels?limit=99999999999999999999999",
    "/api/aois/we%00bt/2025/parcels",
    "/api/aois/%C3%A9t%C3%A9/2025/parcels",
    "/api/aois/webt/99999999999999999999/parcels",
    "/api/parcels/99999999999",
    "/api/parcels/-3",
    "/api/parcels/1e3",
    "/api/parcels/1/timeseries?band=%00",
    "/api/parcels/1/timeseries?band=%E2%82%AC",
    "/api/search?q=%00",
    "/api/search?q=",
    "/api/runs/1/flags?min_prob=nan",
    "/api/runs/1/flags?min_prob=2",
    "/api/runs/1/flags?flag=purple",
    "/api/runs/1/flags?crop=%00x",
    "/api/runs/99999999999999999999999/flags",
    "/api/runs/1/flags.xls",
    "/api/aois/webt/2025/parcels.geojson?bbox=1,2,3",
    "/api/aois/webt/2025/parcels.geojson?bbox=a,b,c,d",
    "/api/aois/webt/2025/parcels.geojson?bbox=0,0,999,1",
    "/api/parcels/1/chart?cloud_max=-1",
])
def test_bad_input_is_4xx_never_500(client, web: WebData, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
    assert "detail" in r.json()


def test_unreachable_database_is_503(client, monkeypatch) -> None:
    monkeypatch.setenv("CBMFLOW_API_DSN", "postgresql://cbmflow_reader@127.0.0.1:1/nowhere")
    for path in ("/api/runs", "/api/aois", "/api/parcels/1/chart", "/api/health"):
        r = client.get(path)
        assert r.status_code == 503 and "unreachable" in r.json()["detail"], path


def test_api_reads_with_the_read_only_role(web: WebData, pg_dsn: str) -> None:
    from cbmflow.web import api_dsn

    dsn = api_dsn()
    assert "user=cbmflow_reader" in dsn and "password" not in dsn
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM parcel_flags").fetchone()[0] == 16
        assert c.execute("SELECT count(*) FROM markers").fetchone()[0] >= 1
        for stmt in ("DELETE FROM parcel_flags", "INSERT INTO aois (name, epsg) VALUES ('x', 4326)",
                     "CREATE TABLE evil (x int)"):
            with pytest.raises(psycopg.Error):
                c.execute(stmt)
        c.execute("SET default_transaction_read_only = off")  # even then the grants refuse writes
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE parcels SET crop_code = 'x'")
    from cbmflow.core import db

    db.upgrade(pg_dsn)  # re-applying is a no-op; 007 is recorded
    assert "007" in db.applied_versions(pg_dsn)


def test_security_headers_and_offline_docs(client) -> None:
    for path in ("/flags", "/parcel/1", "/scenes", "/docs", "/api/runs"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff"
    spec = client.get("/openapi.json").json()
    assert "/api/parcels/{pid}/chart" in spec["paths"] and "/api/runs/{run_id}/flags.{fmt}" in spec["paths"]
    docs = client.get("/docs").text
    assert not re.search(r"(src|href)=\"https?://", docs)  # nothing from a CDN
    from cbmflow.web.app import STATIC

    for f in STATIC.iterdir():
        text = f.read_text()
        external = re.findall(r"https?://[^\s\"')]+", text.replace("http://www.w3.org/2000/svg", ""))
        assert not external, (f.name, external)  # every asset is local: nothing from a CDN
        if f.suffix == ".js":
            assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text, f.name
        if f.suffix == ".html":
            assert "<script>" not in text and " style=" not in text, f.name  # the CSP allows neither


def test_basemap_is_optional_and_allowed_by_the_csp(client, monkeypatch) -> None:
    assert client.get("/api/config").json()["basemap"]["url"] is None
    monkeypatch.setenv("CBMFLOW_BASEMAP_URL", "https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    assert client.get("/api/config").json()["basemap"]["url"].startswith("https://")
    assert "https://*.tiles.example.org" in client.get("/flags").headers["content-security-policy"]
    monkeypatch.setenv("CBMFLOW_BASEMAP_URL", "javascript:alert(1)//{z}")
    assert client.get("/api/config").json()["basemap"]["url"] is None


def test_flag_evidence_columns_of_schema_009_are_shown_when_present(client, web: WebData, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("UPDATE parcel_flags SET best_other = 'WW', best_other_probability = 0.9, score = 0.93, "
                  "reason = 'WW fits the season far better than the declared SM' WHERE pid = %s", (web.red_pid,))
    f = client.get(f"/api/parcels/{web.red_pid}").json()["flag"]
    assert f["reason"] == "WW fits the season far better than the declared SM" and f["score"] == 0.93
    assert f["best_other"] == "WW" and f["best_other_name"] == "WINTERWEICHWEIZEN"
    rows = client.get(f"/api/runs/{web.run_id}/flags", params={"sort": "score", "order": "desc"}).json()["rows"]
    assert rows[0]["pid"] == web.red_pid and rows[0]["score"] == 0.93
    # parcels without a stored reason still get one
    assert all(r["reason"] for r in rows)
