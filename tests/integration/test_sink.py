"""The signatures sink against the real PostGIS: binary COPY, replace-not-duplicate, scene locking."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

from cbmflow.extract import sink

pytestmark = pytest.mark.integration


def stats(n: int, offset: float = 0.0) -> dict[str, np.ndarray]:
    pid = np.arange(1, n + 1)
    return {
        "pid": pid, "count": pid * 3,
        "mean": pid / 7 + offset, "std": pid / 11, "min": pid / 13, "max": pid * 1.5,
        "p25": pid / 17, "p50": pid / 19, "p75": pid / 23,
    }


def rows(conn: psycopg.Connection, obsid: int) -> list[tuple]:
    return conn.execute(
        "SELECT pid, count, mean, std, min, max, p25, p50, p75, band, year FROM signatures "
        "WHERE obsid = %s ORDER BY band, pid", (obsid,)
    ).fetchall()


def test_write_scene_round_trips_float32_exactly(conn: psycopg.Connection) -> None:
    s = stats(5)
    n = sink.write_scene(conn, 42, 2025, {"VV": s, "VH": stats(3)})
    conn.commit()
    assert n == 8
    got = rows(conn, 42)
    assert len(got) == 8
    vv = [r for r in got if r[9] == 1]
    assert [r[0] for r in vv] == [1, 2, 3, 4, 5]
    assert [r[1] for r in vv] == [3, 6, 9, 12, 15]
    for r, i in zip(vv, range(1, 6), strict=True):
        assert np.float32(r[2]) == np.float32(i / 7)  # the stored real is the float32 of the statistic
        assert np.float32(r[8]) == np.float32(i / 23)
    assert {r[10] for r in got} == {2025}
    # the year partition exists and holds the rows
    assert conn.execute("SELECT count(*) FROM signatures_2025").fetchone()[0] == 8


def test_rewrite_replaces_and_rollback_keeps_old(conn: psycopg.Connection) -> None:
    sink.write_scene(conn, 7, 2024, {"VV": stats(4)}, scl_hist=(np.array([1, 2]), np.ones((2, 12), dtype=int)))
    conn.commit()
    sink.write_scene(conn, 7, 2024, {"VV": stats(3, offset=1.0)}, scl_hist=(np.array([2]), 2 * np.ones((1, 12), dtype=int)))
    conn.commit()
    got = rows(conn, 7)
    assert len(got) == 3
    assert got[0][2] == pytest.approx(1 / 7 + 1.0, rel=1e-6)
    assert conn.execute("SELECT pid, counts FROM scl_histograms WHERE obsid = 7").fetchall() == [(2, [2] * 12)]
    sink.write_scene(conn, 7, 2024, {"VV": stats(9)})
    conn.rollback()
    assert len(rows(conn, 7)) == 3  # the failed write left the previous rows intact


def test_concurrent_writes_of_one_scene_do_not_double(conn: psycopg.Connection, clean_db: str) -> None:
    sink.write_scene(conn, 99, 2025, {"VV": stats(50)})  # transaction left open: holds the scene lock
    done: list[int] = []

    def other() -> None:
        with psycopg.connect(clean_db) as c2:
            done.append(sink.write_scene(c2, 99, 2025, {"VV": stats(50, offset=2.0)}))
            c2.commit()

    t = threading.Thread(target=other)
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the second writer should wait for the first one's lock"
    conn.commit()
    t.join(timeout=30)
    assert done == [50]
    got = rows(conn, 99)
    assert len(got) == 50  # replaced, not doubled
    assert got[0][2] == pytest.approx(1 / 7 + 2.0, rel=1e-6)  # the later writer won


def test_binary_buffer_layout() -> None:
    payload, n = sink.signature_buffer(5, 2025, {"VV": stats(2)})
    assert n == 2
    assert len(payload) == 2 * sink.RECORD_DTYPE.itemsize == 188
    first = np.frombuffer(payload[:94], dtype=sink.RECORD_DTYPE)[0]
    assert first["nfields"] == 12 and first["len_pid"] == 4 and first["len_band"] == 2
    assert (first["pid"], first["obsid"], first["band"], first["year"]) == (1, 5, 1, 2025)
