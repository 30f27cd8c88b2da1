"""Markers against the real PostGIS: signatures read per parcel (S2 scaling, SCL, orbits) and runs stored."""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg
import pytest

from cbmflow.markers import io, run, store
from cbmflow.markers.rules import Compliance
from cbmflow.markers.signals import Marker


def _scene(conn: psycopg.Connection, pid: str, card: str, when: dt.datetime, orbit: int | None,
           direction: str | None) -> int:
    return int(conn.execute(
        "INSERT INTO catalogue (product_id, mission, product_type, card_type, sensing_time, relative_orbit, "
        "orbit_direction, status, simulated) VALUES (%s, 'S1A', 'X', %s, %s, %s, %s, 'extracted', true) RETURNING id",
        (pid, card, when, orbit, direction)).fetchone()[0])


def _sig(conn: psycopg.Connection, pid: int, obsid: int, band: int, mean: float, count: int = 50) -> None:
    conn.execute("INSERT INTO signatures (pid, obsid, count, mean, std, min, max, p25, p50, p75, band, year) "
                 "VALUES (%s, %s, %s, %s, 0, 0, 0, 0, 0, 0, %s, 2025)", (pid, obsid, count, mean, band))


@pytest.fixture()
def parcel(conn: psycopg.Connection) -> int:
    conn.execute("INSERT INTO aois (name, epsg) VALUES ('mkdb', 32633)")
    pid = conn.execute(
        "INSERT INTO parcels (aoi, year, parcel_id, crop_code, crop_name, area_m2, geom, source) VALUES "
        "('mkdb', 2025, 'G-1', '459', 'Mähwiese', 1e4, "
        "ST_Multi(ST_GeomFromText('POLYGON((0 0,100 0,100 100,0 100,0 0))', 32633)), 'test') RETURNING pid"
    ).fetchone()[0]
    utc = dt.UTC
    s2a = _scene(conn, "S2A_1", "s2", dt.datetime(2025, 6, 1, 10, tzinfo=utc), 122, "descending")
    s2b = _scene(conn, "S2A_2", "s2", dt.datetime(2025, 6, 6, 10, tzinfo=utc), 122, "descending")
    for obsid, red, nir in ((s2a, 300.0, 3000.0), (s2b, 900.0, 2000.0)):
        _sig(conn, pid, obsid, 13, red)
        _sig(conn, pid, obsid, 17, nir)
    hist = [0] * 12
    hist[4] = 50
    conn.execute("INSERT INTO scl_histograms (pid, obsid, counts) VALUES (%s, %s, %s)", (pid, s2a, hist))
    cloudy = [0] * 12
    cloudy[4], cloudy[9] = 40, 10
    conn.execute("INSERT INTO scl_histograms (pid, obsid, counts) VALUES (%s, %s, %s)", (pid, s2b, cloudy))
    for k, (orbit, direction, hour) in enumerate(((73, "ascending", 17), (22, "descending", 5))):
        o = _scene(conn, f"S1_BS_{k}", "bs", dt.datetime(2025, 6, 2 + k, hour, tzinfo=utc), orbit, direction)
        _sig(conn, pid, o, 1, 0.1 * (k + 1))
        _sig(conn, pid, o, 2, 0.02 * (k + 1))
        c = _scene(conn, f"S1_C6_{k}", "c6", dt.datetime(2025, 6, 2 + k, hour, tzinfo=utc), orbit, direction)
        _sig(conn, pid, c, 3, 0.5)
        _sig(conn, pid, c, 4, 0.3)
    conn.commit()
    return int(pid)


def test_read_db_scales_s2_keeps_scl_and_splits_orbits(conn: psycopg.Connection, parcel: int) -> None:
    (s,) = io.read_db(conn, "mkdb", 2025)
    assert (s.pid, s.parcel, s.crop_group, s.year) == (parcel, "G-1", "grassland", 2025)
    assert s.s2 is not None
    assert s.s2.days.tolist() == [dt.date(2025, 6, 1).toordinal(), dt.date(2025, 6, 6).toordinal()]
    assert s.s2.b04 == pytest.approx([0.03, 0.09]) and s.s2.b08 == pytest.approx([0.3, 0.2])
    assert s.s2.usable((3, 8, 9, 10, 11), 0.0).tolist() == [True, False]  # 10 of 50 pixels cloudy
    assert s.s2.usable((3, 8, 9, 10, 11), 0.25).tolist() == [True, True]
    assert [o.orbit for o in s.s1] == ["22d", "73a"]
    asc = s.s1[1]
    assert asc.vv is not None and asc.vv.tolist() == pytest.approx([0.1])
    assert asc.coherence() == pytest.approx([np.sqrt((0.25 + 0.09) / 2)])
    with pytest.raises(Exception, match="no parcels"):
        io.read_db(conn, "nowhere", 2025)


def test_save_run_replaces_its_rows_and_load_markers_reads_them(conn: psycopg.Connection, parcel: int) -> None:
    m1 = Marker("mowing", "2025-06-03", "2025-06-01", "2025-06-06", 0.8, ("S2", "S1"), {"ndvi_low": 0.4})
    gap = Marker("no_evidence", None, "2025-07-01", "2025-07-30", 1.0, ("S2",), {"days": 29})
    comp = [Compliance("grassland_mowing", "compliant", "1 mowing event")]
    counts = store.save_run(conn, "r1", "mkdb", 2025, {"a": 1}, [(parcel, [m1, gap], comp)])
    assert counts == {"parcels": 1, "markers": 2, "compliance": 1}
    store.save_run(conn, "r1", "mkdb", 2025, {"a": 2}, [(parcel, [m1], comp)])  # the same run again
    ms = store.load_markers(conn, "mkdb", 2025, parcel)
    assert [(m.marker, m.event_date, m.sources, m.detail) for m in ms] == [
        ("mowing", dt.date(2025, 6, 3), ("S2", "S1"), {"ndvi_low": 0.4})]
    assert ms[0].as_dict()["event_date"] == "2025-06-03"
    assert conn.execute("SELECT params->>'a', n_parcels FROM marker_runs WHERE run_id = 'r1'").fetchone() == ("2", 1)
    (c,) = store.load_compliance(conn, "mkdb", 2025, parcel)
    assert (c.rule, c.status) == ("grassland_mowing", "compliant")
    assert store.load_markers(conn, "mkdb", 2025, parcel, run_id="nope") == []
    assert store.parcel_summaries(conn, "mkdb", 2025, [parcel]) == {parcel: "mowing 06-03"}


def test_detect_season_from_the_database(conn: psycopg.Connection, parcel: int) -> None:
    res = run.detect_season("mkdb", 2025, run_id="season")
    assert (res["parcels"], res["parcels_with_signatures"]) == (1, 1)
    # one usable S2 observation in the season: S2 and S1 gaps cover most of it -> not enough evidence
    assert res["compliance"] == {"not_enough_evidence": 2}
    assert res["markers"] == {"no_evidence": 4}  # S2: before and after 1 June; S1: before and after 2-3 June
