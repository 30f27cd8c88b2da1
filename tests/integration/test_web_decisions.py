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
