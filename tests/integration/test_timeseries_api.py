from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cbmflow.catalogue import store as catalogue
from cbmflow.core import db

pytestmark = pytest.mark.integration


@pytest.fixture()
def one_parcel_two_scenes(conn) -> int:
    conn.execute("INSERT INTO aois (name, epsg) VALUES ('t', 32633)")
    pid = conn.execute(
        "INSERT INTO parcels (aoi, year, parcel_id, crop_code, crop_name, area_m2, geom, source) "
        "VALUES ('t', 2025, 'P-1', '140', 'SILOMAIS', 10000, "
        "ST_Multi(ST_GeomFromText('POLYGON((500000 5300000,500100 5300000,500100 5300100,500000 5300100,500000 5300000))', 32633)), 'test') "
        "RETURNING pid"
    ).fetchone()[0]
    ids = catalogue.upsert(conn, [
        catalogue.Scene(product_id=f"S1A_SIM_{d}", mission="S1A", product_type="CARD-BS", card_type="bs",
                        sensing_time=datetime(2025, 5, d, 5, tzinfo=UTC), status="extracted")
        for d in (7, 1)
    ])
    db.ensure_year_partition(conn, 2025)
    for (_name, obsid), mean in zip(sorted(ids.items()), (0.05, 0.07), strict=True):
        for band in (1, 2):
            conn.execute(
                "INSERT INTO signatures (pid, obsid, band, year, count, mean, std, min, max, p25, p50, p75) "
                "VALUES (%s, %s, %s, 2025, 100, %s, 0.01, 0.01, 0.2, 0.04, 0.05, 0.06)",
                (pid, obsid, band, mean * band),
            )
    conn.commit()
    return int(pid)


@pytest.fixture()
def client(airflow_db: str):
    """The web app with the api-server's own auth dependency and a logged-in user's JWT cookie."""
    from fastapi.testclient import TestClient

    from cbmflow.airflow_adapter import web_auth
    from cbmflow.web import create_app
    from web_data import airflow_token

    token = airflow_token()
    c = TestClient(create_app(*web_auth()), root_path="/cbmflow", follow_redirects=False)
    c.cookies.set("_token", token)
    return c


def test_api_serves_parcel_series_in_date_order(one_parcel_two_scenes: int, client) -> None:
    pid = one_parcel_two_scenes
    r = client.get(f"/api/parcels/{pid}/timeseries", params={"band": "VV"})
    assert r.status_code == 200
    obs = r.json()["observations"]
    assert [o["date"] for o in obs] == ["2025-05-01T05:00:00Z", "2025-05-07T05:00:00Z"]
    assert [o["band"] for o in obs] == ["VV", "VV"]
    assert [o["product_id"] for o in obs] == ["S1A_SIM_1", "S1A_SIM_7"]
    both = client.get(f"/api/parcels/{pid}/timeseries").json()["observations"]
    assert len(both) == 4
    p = client.get(f"/api/parcels/{pid}").json()
    assert p["parcel_id"] == "P-1" and p["geometry"]["type"] == "MultiPolygon"
    lon, lat = p["geometry"]["coordinates"][0][0][0]
    assert 14.9 < lon < 15.1 and 47.8 < lat < 47.9
    assert client.get("/api/aois/t/2025/parcels").json()[0]["parcel_id"] == "P-1"
    assert client.get("/api/parcels/999999").status_code == 404
    assert "unknown band" in client.get(f"/api/parcels/{pid}/timeseries", params={"band": "XX"}).json()["detail"]
    page = client.get(f"/parcel/{pid}")
    assert page.status_code == 200 and "parcel.js" in page.text


def test_api_requires_the_airflow_login(one_parcel_two_scenes: int, client) -> None:
    pid = one_parcel_two_scenes
    client.cookies.clear()
    assert client.get(f"/api/parcels/{pid}/timeseries").status_code == 401
    assert client.get(f"/api/parcels/{pid}/timeseries", headers={"Authorization": "Bearer tok"}).status_code in (401, 403)
    page = client.get(f"/parcel/{pid}")
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")


def test_plugin_registers_the_app() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "plugins" / "cbmflow_api.py"
    spec = importlib.util.spec_from_file_location("cbmflow_api_plugin", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    apps = mod.CbmflowApiPlugin.fastapi_apps
    assert apps[0]["url_prefix"] == "/cbmflow"
    assert any(v["href"] == "/cbmflow/flags" for v in mod.CbmflowApiPlugin.external_views)
