"""Decisions (schema 011): who may record, append-only in PostGIS, shown in the queue and the exports.

The app is the real one with Airflow's own auth dependency (SimpleAuthManager JWTs for an anonymous
caller, a viewer and an editor), reading as cbmflow_reader and writing as cbmflow_decider.
"""

from __future__ import annotations

import csv
import io

import psycopg
import pytest

from web_data import RED_PARCEL, YELLOW_PARCEL, WebData, airflow_token, build, empty_database

pytestmark = pytest.mark.integration

EVIL_ID = "-2+3+cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def web(pg_dsn: str) -> WebData:
    empty_database(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        data = build(conn)
        # a flagged parcel whose id a spreadsheet would run as a formula
        conn.execute("UPDATE parcels SET parcel_id = %s WHERE pid = %s", (EVIL_ID, data.yellow_pid))
        conn.execute("UPDATE parcel_flags SET parcel_id = %s WHERE pid = %s", (EVIL_ID, data.yellow_pid))
        conn.commit()
    return data


def _client(token: str | None):
    from fastapi.testclient import TestClient

    from cbmflow.airflow_adapter import web_auth
    from cbmflow.web import create_app

    airflow_token()  # initialises the auth manager
    c = TestClient(create_app(*web_auth()), root_path="/cbmflow", follow_redirects=False)
    if token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


@pytest.fixture(scope="module")
def editor(web: WebData, airflow_db: str):
    return _client(airflow_token("ines", "user"))


@pytest.fixture(scope="module")
def viewer(web: WebData, airflow_db: str):
    return _client(airflow_token("victor", "viewer"))


@pytest.fixture(scope="module")
def anon(web: WebData, airflow_db: str):
    return _client(None)


def test_only_editors_record_viewers_read_anonymous_refused(web: WebData, editor, viewer, anon) -> None:
    body = {"outcome": "field_visit", "note": "looks like wheat", "run_id": web.run_id}
    assert anon.post(f"/api/parcels/{web.red_pid}/decisions", json=body).status_code == 401
    assert anon.get(f"/api/parcels/{web.red_pid}/decisions").status_code == 401
    r = viewer.post(f"/api/parcels/{web.red_pid}/decisions", json=body)
    assert r.status_code == 403 and "read" in r.json()["detail"]
    assert viewer.get("/api/me").json() == {"user": "victor", "can_decide": False, "outcomes": viewer.get("/api/me").json()["outcomes"]}
    assert editor.get("/api/me").json()["can_decide"] is True
    assert viewer.get(f"/api/parcels/{web.red_pid}/decisions").json() == []
    r = editor.post(f"/api/parcels/{web.red_pid}/decisions", json=body)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["decided_by"] == "ines" and first["outcome"] == "field_visit" and first["parcel_id"] == RED_PARCEL
    r = editor.post(f"/api/parcels/{web.red_pid}/decisions",
                    json={"outcome": "wrong_declaration", "corrected_crop": "WW", "note": "=HYPERLINK(\"x\")",
                          "run_id": web.run_id})
    assert r.status_code == 201, r.text
    hist = viewer.get(f"/api/parcels/{web.red_pid}/decisions").json()
    assert [h["outcome"] for h in hist] == ["wrong_declaration", "field_visit"]  # newest first, both kept
    assert hist[0]["corrected_crop"] == "WW" and hist[0]["decided_at"].endswith("Z")
    assert viewer.get(f"/api/parcels/{web.red_pid}").json()["decisions"][0]["outcome"] == "wrong_declaration"
    # a cross-site form cannot post one (no CORS, JSON only, Origin checked)
    assert editor.post(f"/api/parcels/{web.red_pid}/decisions", json=body,
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert editor.post(f"/api/parcels/{web.red_pid}/decisions", data={"outcome": "confirmed"}).status_code == 422


@pytest.mark.parametrize("body", [
    {"outcome": "approved"},
    {"outcome": "confirmed", "corrected_crop": "WW"},
    {"outcome": "wrong_declaration"},
    {"outcome": "confirmed", "note": "x" * 4001},
    {"outcome": "confirmed", "run_id": 999999},
    {"outcome": "confirmed", "corrected_crop": "a\u0000b"},
])
def test_invalid_decisions_are_4xx(web: WebData, editor, body: dict) -> None:
    r = editor.post(f"/api/parcels/{web.red_pid}/decisions", json=body)
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert editor.post("/api/parcels/99999999/decisions", json={"outcome": "confirmed"}).status_code == 404


def test_flag_list_shows_latest_decision_and_filters_undecided(web: WebData, editor, viewer) -> None:
    editor.post(f"/api/parcels/{web.xss_pid}/decisions", json={"outcome": "confirmed", "run_id": web.run_id})
    rows = viewer.get(f"/api/runs/{web.run_id}/flags").json()["rows"]
    by_pid = {r["pid"]: r for r in rows}
    assert by_pid[web.xss_pid]["decision"] == "confirmed" and by_pid[web.xss_pid]["decided_by"] == "ines"
    assert by_pid[web.yellow_pid]["decision"] is None
    # default order is the suspicion rank: the red parcel first, ranks 1..n
    assert rows[0]["pid"] == web.red_pid and [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
    assert rows[0]["rank"] == 1
    undecided = viewer.get(f"/api/runs/{web.run_id}/flags", params={"decision": "undecided"}).json()
    assert web.xss_pid not in {r["pid"] for r in undecided["rows"]} and undecided["total"] == len(rows) - 1 - (
        1 if by_pid[web.red_pid]["decision"] else 0)
    confirmed = viewer.get(f"/api/runs/{web.run_id}/flags", params={"decision": "confirmed"}).json()
    assert [r["pid"] for r in confirmed["rows"]] == [web.xss_pid]
    assert viewer.get(f"/api/runs/{web.run_id}/flags", params={"decision": "maybe"}).status_code == 422


def test_queue_neighbours_follow_the_rank(web: WebData, viewer) -> None:
    rows = viewer.get(f"/api/runs/{web.run_id}/flags").json()["rows"]
    pids = [r["pid"] for r in rows]
    mid = viewer.get(f"/api/runs/{web.run_id}/queue/{pids[1]}", params={"flag": ["red", "yellow"]}).json()
    assert mid["position"] == 2 and mid["total"] == len(pids)
    assert mid["prev"]["pid"] == pids[0] and mid["next"]["pid"] == pids[2]
    first = viewer.get(f"/api/runs/{web.run_id}/queue/{pids[0]}", params={"flag": ["red", "yellow"]}).json()
    assert first["prev"] is None and first["next"]["pid"] == pids[1]
    only_red = viewer.get(f"/api/runs/{web.run_id}/queue/{web.red_pid}").json()  # default: red parcels
    assert only_red["total"] == 1 and only_red["next"] is None
    green = web.pids["P-00"]
    outside = viewer.get(f"/api/runs/{web.run_id}/queue/{green}").json()
    assert outside["position"] is None and outside["next"]["pid"] == web.red_pid


def test_exports_carry_decision_score_rank_and_the_page_reason_formula_safe(web: WebData, editor, viewer,
                                                                           tmp_path) -> None:
    editor.post(f"/api/parcels/{web.red_pid}/decisions",
                json={"outcome": "photo_requested", "note": "+ask for a photo", "run_id": web.run_id})
    r = viewer.get(f"/api/runs/{web.run_id}/flags.csv")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {"decision", "decided_by", "score", "rank", "reason", "decision_note"} <= set(rows[0])
    red = next(x for x in rows if x["pid"] == str(web.red_pid))
    assert red["decision"] == "photo_requested" and red["decided_by"] == "ines" and red["rank"] == "1"
    assert red["decision_note"] == "'+ask for a photo"  # formula-safe
    page = viewer.get(f"/api/parcels/{web.red_pid}").json()["flag"]
    assert red["reason"] == page["reason"] and "SILOMAIS" in red["reason"]  # the page's sentence, crop names
    assert page["rank"] == 1
    evil = next(x for x in rows if x["pid"] == str(web.yellow_pid))
    assert evil["parcel_id"] == "'" + EVIL_ID
    for line in r.text.splitlines()[1:]:
        for cell in next(csv.reader([line])):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    g = viewer.get(f"/api/runs/{web.run_id}/flags.gpkg")
    path = tmp_path / "f.gpkg"
    path.write_bytes(g.content)
    import pyogrio

    frame = pyogrio.read_dataframe(path, layer="flags")
    assert {"decision", "score", "rank", "reason"} <= set(frame.columns)
    red_g = frame[frame["pid"] == web.red_pid].iloc[0]
    assert red_g["decision"] == "photo_requested" and red_g["rank"] == 1 and red_g["reason"] == page["reason"]
    assert YELLOW_PARCEL not in set(frame["parcel_id"])  # renamed to the evil id above


def test_decider_role_may_only_insert_and_read_decisions(web: WebData, editor, pg_dsn: str) -> None:
    from cbmflow.web.decisions import decider_dsn

    editor.post(f"/api/parcels/{web.red_pid}/decisions", json={"outcome": "confirmed"})
    dsn = decider_dsn()
    assert "user=cbmflow_decider" in dsn
    with psycopg.connect(dsn, autocommit=True) as c:
        n = c.execute("SELECT count(*) FROM decisions").fetchone()[0]
        assert n >= 1
        c.execute("INSERT INTO decisions (aoi, year, parcel_id, outcome, decided_by) "
                  "VALUES ('webt', 2025, 'P-01', 'confirmed', 'sql')")
        for stmt in ("UPDATE decisions SET outcome = 'confirmed'", "DELETE FROM decisions",
                     "TRUNCATE decisions", "SELECT count(*) FROM parcels", "UPDATE parcels SET crop_code = 'x'",
                     "INSERT INTO aois (name, epsg) VALUES ('x', 4326)", "CREATE TABLE evil (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(stmt)
        assert c.execute("SELECT count(*) FROM decisions").fetchone()[0] == n + 1
    # the owner is refused too: the table is append-only by trigger as well as by grants
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for stmt in ("UPDATE decisions SET note = 'changed'", "DELETE FROM decisions"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                c.execute(stmt)
    # the reader sees decisions but cannot add one
    from cbmflow.web import api_dsn

    with psycopg.connect(api_dsn(), autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM decisions").fetchone()[0] == n + 1
        c.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO decisions (aoi, year, parcel_id, outcome, decided_by) "
                      "VALUES ('webt', 2025, 'P-01', 'confirmed', 'sql')")


def test_runs_answer_carries_no_server_paths(viewer, pg_dsn: str, web: WebData) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("UPDATE classification_runs SET report_uri = '/srv/secret/reports/run/index.html'")
    text = viewer.get("/api/runs").text
    assert "/srv/secret" not in text and "report_uri" not in text


def test_peers_of_declared_and_predicted_crop_nearest_first_named(web: WebData, viewer) -> None:
    ch = viewer.get(f"/api/parcels/{web.red_pid}/chart").json()
    decl, pred = ch["peers"], ch["peers_predicted"]
    assert decl["crop"] == "SM" and decl["crop_name"] == "SILOMAIS" and decl["nearest"]
    assert pred["crop"] == "WW" and pred["crop_name"] == "WINTERWEICHWEIZEN" and pred["n_parcels"] >= 4
    assert pred["VV"] and pred["NDVI"] and all(r["p25"] <= r["median"] <= r["p75"] for r in pred["NDVI"])
    # the parcel behaves like wheat: its summer NDVI is far from maize peers, close to wheat peers
    ndvi = {n["date"]: n["value"] for n in ch["ndvi"] if n["cloudy"] is False}
    d = {r["date"]: r["median"] for r in decl["NDVI"]}
    w = {r["date"]: r["median"] for r in pred["NDVI"]}
    common = [k for k in ndvi if k in d and k in w]
    assert common
    assert sum(abs(ndvi[k] - w[k]) for k in common) < sum(abs(ndvi[k] - d[k]) for k in common) / 3
    assert viewer.get(f"/api/parcels/{web.pids['P-00']}/chart").json()["peers_predicted"] is None  # green


def test_flag_shows_names_score_scale_and_the_evidence_of_schema_012_when_present(web: WebData, viewer,
                                                                                   pg_dsn: str) -> None:
    f = viewer.get(f"/api/parcels/{web.red_pid}").json()["flag"]
    assert f["predicted_name"] == "WINTERWEICHWEIZEN" and f["declared_name"] == "SILOMAIS"
    assert "0–1" in f["score_scale"] and f["rank"] == 1
    assert "SILOMAIS (SM)" in f["reason"] and "WINTERWEICHWEIZEN (WW)" in f["reason"]
    with psycopg.connect(pg_dsn, autocommit=True) as c:  # what issue 16's schema 012 adds
        c.execute("ALTER TABLE parcel_flags ADD COLUMN IF NOT EXISTS predicted_name text, "
                  "ADD COLUMN IF NOT EXISTS evidence jsonb")
        c.execute("UPDATE parcel_flags SET predicted_name = 'Winter wheat', evidence = %s::jsonb WHERE pid = %s",
                  ('[{"period": "2025-07-20", "band": "VH", "value": -22.1, "declared_p25": -15.0, '
                   '"declared_p75": -13.2, "predicted_median": -21.8, "z": -4.2}]', web.red_pid))
    f = viewer.get(f"/api/parcels/{web.red_pid}").json()["flag"]
    assert f["predicted_name"] == "Winter wheat" and f["evidence"][0]["band"] == "VH"
    rows = viewer.get(f"/api/runs/{web.run_id}/flags").json()["rows"]
    assert rows[0]["predicted_name"] == "Winter wheat" and rows[1]["evidence"] is None  # older rows: NULL
    assert viewer.get(f"/api/runs/{web.run_id}/flags.csv").status_code == 200


def test_aoi_map_carries_flag_and_decision_and_seasons_list_other_years(web: WebData, editor, viewer,
                                                                        pg_dsn: str) -> None:
    editor.post(f"/api/parcels/{web.red_pid}/decisions", json={"outcome": "field_visit"})
    fc = viewer.get("/api/aois/webt/2025/parcels.geojson").json()
    props = {f["id"]: f["properties"] for f in fc["features"]}
    assert len(props) == 16 and props[web.red_pid]["decision"] == "field_visit"
    assert props[web.red_pid]["flag"] == "red" and props[web.pids["P-00"]]["decision"] is None
    assert viewer.get(f"/api/parcels/{web.red_pid}/seasons").json() == []
    with psycopg.connect(pg_dsn, autocommit=True) as c:  # the same field declared in 2024
        c.execute("INSERT INTO parcels (aoi, year, parcel_id, crop_code, crop_name, area_m2, geom, source) "
                  "SELECT aoi, 2024, parcel_id, 'WW', 'WINTERWEICHWEIZEN', area_m2, geom, source FROM parcels "
                  "WHERE pid = %s", (web.red_pid,))
    seasons = viewer.get(f"/api/parcels/{web.red_pid}/seasons").json()
    assert [(s["year"], s["crop_code"], s["same_id"]) for s in seasons] == [(2024, "WW", True)]
    assert viewer.get(f"/api/parcels/{seasons[0]['pid']}/seasons").json()[0]["year"] == 2025


def test_per_aoi_read_scoping(web: WebData, editor, viewer, monkeypatch) -> None:
    assert len(viewer.get("/api/runs").json()) == 1  # unset: every logged-in user reads every AOI
    monkeypatch.setenv("CBMFLOW_AOI_ACCESS", '{"victor": ["elsewhere"], "role:user": ["*"]}')
    assert viewer.get("/api/runs").json() == [] and viewer.get("/api/aois").json() == []
    for path in (f"/api/parcels/{web.red_pid}", f"/api/parcels/{web.red_pid}/chart",
                 f"/api/parcels/{web.red_pid}/decisions", f"/api/runs/{web.run_id}/flags",
                 f"/api/runs/{web.run_id}/flags.csv", f"/api/runs/{web.run_id}/queue/{web.red_pid}",
                 "/api/aois/webt/2025/parcels", "/api/aois/webt/2025/parcels.geojson",
                 f"/api/parcels/{web.red_pid}/chips"):
        r = viewer.get(path)
        assert r.status_code == 404, (path, r.status_code)
    assert viewer.get("/api/search", params={"q": "P-0"}).json() == []
    assert viewer.get("/api/scenes/problems").json()["items"] == []
    # the editor's role reads everything
    assert editor.get(f"/api/parcels/{web.red_pid}").status_code == 200
    assert len(editor.get("/api/search", params={"q": "P-0"}).json()) >= 9
    monkeypatch.setenv("CBMFLOW_AOI_ACCESS", '{"victor": ["webt"]}')
    assert viewer.get(f"/api/parcels/{web.red_pid}").status_code == 200
    assert editor.get(f"/api/parcels/{web.red_pid}").status_code == 404  # no entry: no AOI
    monkeypatch.setenv("CBMFLOW_AOI_ACCESS", "not json")
    assert viewer.get("/api/runs").status_code == 503
