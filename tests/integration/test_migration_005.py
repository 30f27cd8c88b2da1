"""Schema 005 on a database that holds pre-005 data: extractions derived from the signatures."""

from __future__ import annotations

import os

import psycopg
import pytest

from cbmflow.catalogue import store as catalogue
from cbmflow.core import db

pytestmark = pytest.mark.integration


def test_005_migrates_existing_rows(pg_dsn: str) -> None:
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/cbmflow_test_{os.getpid()}_m005"
    db.drop_database(dsn)
    db.create_database(dsn)
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            for version, path in db.available_migrations():
                if version >= "005":
                    break
                conn.execute(path.read_text())  # type: ignore[call-overload]
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, path.name))
            conn.execute("INSERT INTO aois (name, epsg) VALUES ('x', 32633), ('y', 32633)")
            for aoi, pid in (("x", 1), ("x", 2), ("y", 3)):
                conn.execute("INSERT INTO parcels (pid, aoi, year, parcel_id, area_m2, geom, source) VALUES "
                             "(%s, %s, 2025, %s, 1, ST_Multi(ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 32633)), 't')",
                             (pid, aoi, f"p{pid}"))
            for sid, status, assets in ((1, "extracted", '{"VV": "s3://b/1.tif"}'),
                                        (2, "failed", '{"VV": "s3://b/2.tif"}'),   # an extraction failure
                                        (3, "processing", '{"VV": "s3://b/3.tif"}'),  # a killed extractor
                                        (4, "failed", '{}'),                        # a CARD failure
                                        (5, "extracted", '{"VV": "s3://b/5.tif"}')):  # 0 rows (silent hole)
                conn.execute("INSERT INTO catalogue (id, product_id, mission, product_type, card_type, "
                             "sensing_time, assets, status, last_error) VALUES (%s, %s, 'S1A', 'CARD-BS', 'bs', "
                             "'2025-05-01', %s, %s, 'old error')", (sid, f"S{sid}", assets, status))
            conn.execute("INSERT INTO signatures VALUES (1, 1, 9, 0, 0, 0, 0, 0, 0, 0, 1, 2025), "
                         "(2, 1, 9, 0, 0, 0, 0, 0, 0, 0, 1, 2025), (3, 1, 9, 0, 0, 0, 0, 0, 0, 0, 1, 2025), "
                         "(1, 1, 9, 0, 0, 0, 0, 0, 0, 0, 2, 2025)")
        assert "005" in db.upgrade(dsn)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT obsid, aoi, year, status, rows FROM extractions ORDER BY 1, 2").fetchall()
            assert rows == [(1, "x", 2025, "extracted", 3), (1, "y", 2025, "extracted", 1)]
            status = dict(conn.execute("SELECT id, status FROM catalogue").fetchall())
            assert status == {1: "extracted", 2: "ready", 3: "ready", 4: "failed", 5: "extracted"}
            err = conn.execute("SELECT last_error FROM catalogue WHERE id = 2").fetchone()[0]
            assert err == "migrated-005: was failed: old error"
            assert catalogue.extraction_counts(conn) == {("x", 2025, "extracted"): 1, ("y", 2025, "extracted"): 1}
    finally:
        db.drop_database(dsn)
