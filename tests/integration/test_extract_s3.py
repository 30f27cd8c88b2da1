"""Scenes from the catalogue, rasters in moto S3, signatures into the real PostGIS.

Grid: EPSG:32633, 10 m, top-left (500000, 5000000), 40 x 40 px. Parcels (rows x cols of pixels):
P1 rows 0-9 x cols 0-9, P2 rows 0-9 x cols 20-29, P3 rows 20-29 x cols 0-9, P4 outside the raster.
VV = (40 r + c) / 1000, VH = 2 VV; S2 bands = 40 r + c + 1 (uint16), SCL on a 20 m grid: class 4,
with cloud (class 9) over its rows 0-1 x cols 0-4 = band rows 0-3 x cols 0-9 (40 pixels of P1).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from affine import Affine
from shapely.geometry import box

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import cog, storage
from cbmflow.extract import run as extract
from cbmflow.extract.pixelindex import IndexCache

pytestmark = pytest.mark.integration

X0, Y0, CRS = 500000.0, 5000000.0, "EPSG:32633"
T10 = Affine(10, 0, X0, 0, -10, Y0)
T20 = Affine(20, 0, X0, 0, -20, Y0)
R, C = np.mgrid[0:40, 0:40]


def pixel_box(r0: int, r1: int, c0: int, c1: int):
    return box(X0 + 10 * c0, Y0 - 10 * (r1 + 1), X0 + 10 * (c1 + 1), Y0 - 10 * r0)


PARCELS = {
    "P1": pixel_box(0, 9, 0, 9),
    "P2": pixel_box(0, 9, 20, 29),
    "P3": pixel_box(20, 29, 0, 9),
    "P4": box(X0 + 5000, Y0, X0 + 5100, Y0 + 100),
}


def add_parcels(conn: psycopg.Connection, aoi: str = "t", year: int = 2025) -> dict[str, int]:
    conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES (%s, 32633, 1)", (aoi,))
    pids = {}
    for pid, g in PARCELS.items():
        pids[pid] = conn.execute(
            "INSERT INTO parcels (aoi, year, parcel_id, crop_code, area_m2, geom, source) "
            "VALUES (%s, %s, %s, 'X', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test') RETURNING pid",
            (aoi, year, pid, g.area, g.wkt),
        ).fetchone()[0]
    conn.commit()
    return pids


def s1_scene(base: str, name: str, day: int, *, corrupt: bool = False, missing: bool = False) -> Scene:
    vv = ((40 * R + C) / 1000).astype(np.float32)
    assets = {}
    for band, data in (("VV", vv), ("VH", 2 * vv)):
        uri = f"{base}/bs/{name}_{band}.tif"
        if corrupt and band == "VV":
            storage.write_bytes(uri, b"II*\x00" + b"\x00" * 64)  # a truncated TIFF
        elif not (missing and band == "VH"):
            cog.write_cog(uri, data, crs=CRS, transform=T10, nodata=float("nan"))
        assets[band] = uri
    return Scene(product_id=name, mission="S1A", product_type="CARD-BS", card_type="bs",
                 sensing_time=datetime(2025, 5, day, 5, tzinfo=UTC), relative_orbit=44,
                 orbit_direction="ascending", tile="E25N250", assets=assets, simulated=True, status="ready")


def s2_scene(base: str, name: str, day: int) -> Scene:
    assets = {}
    for band in ("B02", "B03", "B04", "B08", "B11"):
        uri = f"{base}/s2/{name}_{band}.tif"
        cog.write_cog(uri, (40 * R + C + 1).astype(np.uint16), crs=CRS, transform=T10, nodata=0)
        assets[band] = uri
    scl = np.full((20, 20), 4, dtype=np.uint8)
    scl[0:2, 0:5] = 9
    assets["SCL"] = f"{base}/s2/{name}_SCL.tif"
    cog.write_cog(assets["SCL"], scl, crs=CRS, transform=T20, nodata=0)
    return Scene(product_id=name, mission="S2A", product_type="CARD-2A", card_type="s2",
                 sensing_time=datetime(2025, 5, day, 10, tzinfo=UTC), tile="33UWP",
                 assets=assets, simulated=True, status="ready")


def sig(conn: psycopg.Connection, obsid: int) -> dict[tuple[int, int], tuple]:
    return {(r[0], r[1]): r[2:] for r in conn.execute(
        "SELECT pid, band, count, mean, min, max, p50 FROM signatures WHERE obsid = %s", (obsid,))}


def test_extract_scenes_end_to_end(conn: psycopg.Connection, clean_db: str, s3_bucket: str) -> None:
    pids = add_parcels(conn)
    base = f"{s3_bucket}/SIM_card"
    scenes = [s1_scene(base, "SIM_S1_ok", 1), s1_scene(base, "SIM_S1_corrupt", 7, corrupt=True),
              s1_scene(base, "SIM_S1_missing", 13, missing=True), s2_scene(base, "SIM_S2_ok", 3)]
    ids = catalogue.upsert(conn, scenes)
    conn.commit()
    ok, bad, gone, s2 = (ids[s.product_id] for s in scenes)
    cache = IndexCache()
    out = extract.extract_scenes([ok, bad, gone, s2], aoi="t", year=2025, dsn=clean_db,
                                 cloud_mask=True, index_cache=cache)
    assert sorted(out["extracted"]) == sorted([ok, s2])
    assert set(out["failed"]) == {str(bad), str(gone)}
    assert out["failed"][str(bad)].startswith("SIM_S1_corrupt band VV: CorruptData")
    assert "SIM_S1_corrupt_VV.tif" in out["failed"][str(bad)]
    assert "SIM_S1_missing_VH.tif" in out["failed"][str(gone)] and "does not exist" in out["failed"][str(gone)]
    assert out["rows"] == 3 * 2 + 3 * 5
    status = {r[0]: r[1:] for r in conn.execute(
        "SELECT obsid, status, attempts, last_error, band, rows FROM extractions WHERE aoi = 't'")}
    assert status[ok][:2] == ("extracted", 1) and status[s2][:2] == ("extracted", 1)
    assert status[ok][4] == 6 and status[s2][4] == 15
    assert status[bad][:2] == ("failed", 1) and "SIM_S1_corrupt_VV.tif" in status[bad][2] and status[bad][3] == "VV"
    assert status[gone][:2] == ("failed", 1) and status[gone][3] == "VH"
    # the catalogue keeps the CARD state: the failed extraction does not send the scene back to CARD
    cat = dict(conn.execute("SELECT id, status FROM catalogue").fetchall())
    assert cat == {ok: "extracted", s2: "extracted", bad: "ready", gone: "ready"}
    probs = catalogue.problem_scenes(conn, "t")
    assert {(p.product_id, p.status, p.band) for p in probs} == {
        ("SIM_S1_corrupt", "failed", "VV"), ("SIM_S1_missing", "failed", "VH")}
    assert sig(conn, bad) == {} and sig(conn, gone) == {}
    s = sig(conn, ok)
    # P1: values (40 r + c) / 1000 over r, c in 0..9: mean 0.1845, min 0, max 0.369, median 0.1845
    assert s[(pids["P1"], 1)][0] == 100
    assert s[(pids["P1"], 1)][1:] == pytest.approx((0.1845, 0.0, 0.369, 0.1845), rel=1e-6)
    assert s[(pids["P2"], 2)][1:] == pytest.approx((0.409, 0.04, 0.778, 0.409), rel=1e-6)
    assert (pids["P4"], 1) not in s  # outside the raster: no row
    s = sig(conn, s2)
    # cloud mask removes band rows 0-3 of P1: rows 4-9 remain, values 40 r + c + 1
    assert s[(pids["P1"], 13)][:3] == pytest.approx((60, 40 * 6.5 + 4.5 + 1, 161))
    assert s[(pids["P2"], 13)][0] == 100  # no cloud over P2
    hist = dict(conn.execute("SELECT pid, counts FROM scl_histograms WHERE obsid = %s", (s2,)).fetchall())
    assert hist[pids["P1"]] == [0, 0, 0, 0, 15, 0, 0, 0, 0, 10, 0, 0]
    assert hist[pids["P2"]] == [0, 0, 0, 0, 25, 0, 0, 0, 0, 0, 0, 0]
    assert cache.misses == 2  # one index for the 10 m grid, one for the 20 m SCL grid; every other band reused

    # re-run without reprocess: the done scenes are left alone; the failed ones are tried again
    # (a failed scene stays a culprit until it is extracted or waived) and, still broken, fail again
    again = extract.extract_scenes([ok, bad, gone, s2], aoi="t", year=2025, dsn=clean_db)
    assert again["extracted"] == [] and sorted(again["skipped"]) == sorted([ok, s2])
    assert set(again["failed"]) == {str(bad), str(gone)}
    total = conn.execute("SELECT count(*) FROM signatures").fetchone()[0]
    assert total == 21
    # reprocess: replaced, not duplicated; the failed scenes fail again (third attempt: first run, re-run, this)
    redo = extract.extract_scenes([ok, bad, gone, s2], aoi="t", year=2025, dsn=clean_db, cloud_mask=True,
                                  reprocess=True)
    assert sorted(redo["extracted"]) == sorted([ok, s2]) and redo["rows"] == 21
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 21
    assert conn.execute("SELECT attempts FROM extractions WHERE obsid = %s", (bad,)).fetchone()[0] == 3


def test_plan_units_groups_by_tile_and_batches(conn: psycopg.Connection, clean_db: str, tmp_path) -> None:
    add_parcels(conn)
    scenes = []
    for i in range(7):
        scenes.append(Scene(product_id=f"SIM_S1_{i}", mission="S1A", product_type="CARD-BS", card_type="bs",
                            sensing_time=datetime(2025, 4, 1 + i, tzinfo=UTC), tile="E25N250",
                            assets={"VV": "x", "VH": "y"}, simulated=True, status="ready"))
    for i in range(3):
        scenes.append(Scene(product_id=f"SIM_S2_{i}", mission="S2A", product_type="CARD-2A", card_type="s2",
                            sensing_time=datetime(2025, 4, 1 + i, tzinfo=UTC), tile="33UWP",
                            footprint_wkt="POLYGON((14.9 45,15.2 45,15.2 45.3,14.9 45.3,14.9 45))",
                            assets={"B04": "x"}, simulated=True, status="ready"))
    scenes.append(Scene(product_id="SIM_S2_elsewhere", mission="S2A", product_type="CARD-2A", card_type="s2",
                        sensing_time=datetime(2025, 4, 1, tzinfo=UTC), tile="32TQR",
                        footprint_wkt="POLYGON((10 40,10.1 40,10.1 40.1,10 40.1,10 40))",  # misses the AOI
                        assets={"B04": "x"}, simulated=True, status="ready"))
    scenes.append(Scene(product_id="SIM_S1_old", mission="S1A", product_type="CARD-BS", card_type="bs",
                        sensing_time=datetime(2024, 4, 1, tzinfo=UTC), tile="E25N250",
                        assets={"VV": "x"}, simulated=True, status="ready"))
    catalogue.upsert(conn, scenes)
    conn.commit()
    units = extract.plan_units(card_type="all", start="2025-01-01", end="2026-01-01", reprocess=False,
                               aoi="t", year=2025, dsn=clean_db, batch_size=3)
    assert [(u["card_type"], u["tile"], len(u["scene_ids"])) for u in units] == [
        ("bs", "E25N250", 3), ("bs", "E25N250", 3), ("bs", "E25N250", 1), ("s2", "33UWP", 3)]
    assert units[3]["tile_bbox"] is not None and len(units[3]["tile_bbox"]) == 4
    only_s2 = extract.plan_units(card_type="s2", start=None, end=None, aoi="t", year=2025, dsn=clean_db)
    assert len(only_s2) == 1
    capped = extract.plan_units(card_type="bs", aoi="t", year=2025, dsn=clean_db, batch_size=1, max_units=3)
    assert len(capped) <= 3 and sum(len(u["scene_ids"]) for u in capped) == 7


def test_cli_signatures_runs_every_unit(conn: psycopg.Connection, clean_db: str, s3_bucket: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cbmflow import cli

    add_parcels(conn)
    catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/c", "SIM_S1_a", 1), s1_scene(f"{s3_bucket}/c", "SIM_S1_b", 2)])
    conn.commit()
    assert cli.main(["signatures", "--aoi", "t", "--year", "2025", "--card-type", "bs"]) == 0
    out = capsys.readouterr().out
    assert "2 scene(s) extracted in 1 unit(s), 12 rows" in out and "VV      6 rows" in out
    assert conn.execute("SELECT count(*) FROM signatures").fetchone()[0] == 12


def test_index_rebuilt_when_parcels_version_changes(conn: psycopg.Connection, clean_db: str, s3_bucket: str) -> None:
    pids = add_parcels(conn)
    ids = catalogue.upsert(conn, [s1_scene(f"{s3_bucket}/v", "SIM_S1_v", 1)])
    conn.commit()
    sid = ids["SIM_S1_v"]
    cache = IndexCache()
    assert extract.extract_scenes([sid], aoi="t", year=2025, dsn=clean_db, index_cache=cache)["rows"] == 6
    # a new parcel P5 (rows 30-39 x cols 30-39) arrives with an import that bumps parcels_version
    g = pixel_box(30, 39, 30, 39)
    p5 = conn.execute(
        "INSERT INTO parcels (aoi, year, parcel_id, area_m2, geom, source) VALUES "
        "('t', 2025, 'P5', %s, ST_Multi(ST_GeomFromText(%s, 32633)), 'test') RETURNING pid", (g.area, g.wkt)
    ).fetchone()[0]
    conn.execute("UPDATE aois SET parcels_version = parcels_version + 1 WHERE name = 't'")
    conn.commit()
    out = extract.extract_scenes([sid], aoi="t", year=2025, dsn=clean_db, reprocess=True, index_cache=cache)
    assert out["rows"] == 8 and cache.misses == 2  # a new index for the new parcel set
    got = dict(conn.execute("SELECT pid, count FROM signatures WHERE band = 1").fetchall())
    assert got == {pids["P1"]: 100, pids["P2"]: 100, pids["P3"]: 100, p5: 100}
