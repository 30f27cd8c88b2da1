"""Demo-like results for the web tests: parcels, S1/COH6/S2 signatures, SCL histograms, period
means, a classification run with red/yellow/green flags, markers, failed scenes, and CARD COGs
on S3 for the chips. Everything here is SIMULATED and small (16 parcels, one season).

Also: Airflow's own auth for in-process tests (SimpleAuthManager + a JWT signed with the
api-server's secret), so the web app is tested with the exact dependency the api-server uses.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

# The web tests read with the default: CBMFLOW_DSN as the read-only role (never an outside override).
os.environ.pop("CBMFLOW_API_DSN", None)

AOI, YEAR, EPSG = "webt", 2025, 32633
X0, Y0, SIZE = 520000.0, 5320000.0, 100.0  # 4x4 parcels of 100 m with 20 m lanes
XSS_ID = 'S2B_MSIL2A_<img src=x onerror="window.__xss=1">'
XSS_PARCEL = '<b id="xss">P-XSS</b>'
CROPS = {"WW": "WINTERWEICHWEIZEN", "SM": "SILOMAIS", "GL": "DAUERGRUENLAND"}
RED_PARCEL, YELLOW_PARCEL = "P-03", "P-07"


@dataclass(frozen=True)
class WebData:
    """What the fixture made: ids the tests click and check."""

    run_id: int
    red_pid: int
    yellow_pid: int
    xss_pid: int
    pids: dict[str, int]
    chip_obsid: int | None
    s1_chip_obsid: int | None
    failed_obsid: int
    extraction_failed_obsid: int | None = None


def _parcel_wkt(i: int) -> str:
    r, c = divmod(i, 4)
    x, y = X0 + c * (SIZE + 20), Y0 + r * (SIZE + 20)
    return (f"MULTIPOLYGON((({x} {y},{x + SIZE} {y},{x + SIZE} {y + SIZE * 0.8},{x + SIZE * 0.7} {y + SIZE},"
            f"{x} {y + SIZE},{x} {y})))")


def _crop_of(i: int) -> str:
    return ["WW", "SM", "GL"][i % 3]


def _profile(crop: str, doy: float, band: str) -> float:
    """Linear backscatter (or coherence / reflectance) of a crop on a day of the year."""
    g = lambda mu, s: math.exp(-((doy - mu) ** 2) / (2 * s * s))  # noqa: E731
    if band == "VV":
        db = {"WW": -11 + 3 * g(150, 30) - 5 * g(210, 8), "SM": -15 + 7 * g(215, 30),
              "GL": -12 + 1.5 * math.sin(doy / 20)}[crop]
        return 10 ** (db / 10)
    if band == "VH":
        db = {"WW": -18 + 4 * g(150, 30) - 6 * g(210, 8), "SM": -22 + 9 * g(220, 28),
              "GL": -17 + 1.5 * math.sin(doy / 20)}[crop]
        return 10 ** (db / 10)
    if band.startswith("COH"):
        return {"WW": 0.3 + 0.4 * g(215, 12), "SM": 0.6 - 0.4 * g(200, 35), "GL": 0.25 + 0.3 * g(160, 4)}[crop]
    ndvi = {"WW": 0.2 + 0.6 * g(140, 35), "SM": 0.15 + 0.7 * g(215, 30), "GL": 0.55 + 0.2 * g(150, 50)}[crop]
    red = 0.08 * (1 - ndvi) + 0.02
    return red if band == "B04" else red * (1 + ndvi) / (1 - ndvi)


def build(conn: Any, s3_base: str | None = None) -> WebData:
    """Insert the web test season into an emptied results database (and its COGs under s3_base)."""
    from cbmflow.analytics.periods import compute_period_means
    from cbmflow.catalogue import store as catalogue
    from cbmflow.catalogue.store import Scene
    from cbmflow.core import db

    rng = np.random.default_rng(7)
    conn.execute("INSERT INTO aois (name, epsg) VALUES (%s, %s)", (AOI, EPSG))
    pids: dict[str, int] = {}
    crops: dict[int, str] = {}
    for i in range(16):
        pid_text = XSS_PARCEL if i == 15 else f"P-{i:02d}"
        crop = _crop_of(i)
        declared = "SM" if pid_text == RED_PARCEL else crop  # P-03 behaves like WW, declared maize
        pid = conn.execute(
            "INSERT INTO parcels (aoi, year, parcel_id, crop_code, crop_name, area_m2, geom, source) "
            "VALUES (%s, %s, %s, %s, %s, ST_Area(ST_GeomFromText(%s)), ST_GeomFromText(%s, %s), 'web test') "
            "RETURNING pid",
            (AOI, YEAR, pid_text, declared, CROPS[declared], _parcel_wkt(i), _parcel_wkt(i), EPSG),
        ).fetchone()[0]
        pids[pid_text] = int(pid)
        crops[int(pid)] = crop  # the true crop drives the signal
    fp = conn.execute(
        "SELECT ST_AsText(ST_Transform(ST_Buffer(ST_Envelope(ST_Collect(geom)), 2000), 4326)) FROM parcels"
    ).fetchone()[0]
    scenes: list[Scene] = []
    day0 = date(YEAR, 3, 1)
    for k in range(36):  # S1 every 6 days per orbit, Mar..Oct
        for orbit, hour, offset in (("ascending", 17, 0), ("descending", 5, 3)):
            t = datetime.combine(day0 + timedelta(days=6 * k + offset), datetime.min.time(), UTC).replace(hour=hour)
            scenes.append(Scene(product_id=f"S1A_SIM_{orbit[:3].upper()}_{t:%Y%m%d}", mission="S1A",
                                product_type="CARD-BS", card_type="bs", sensing_time=t, orbit_direction=orbit,
                                relative_orbit=44 if orbit == "ascending" else 95, footprint_wkt=fp,
                                simulated=True, status="extracted"))
            if orbit == "ascending" and k % 2 == 0:
                scenes.append(Scene(product_id=f"S1A_SIM_COH6_{t:%Y%m%d}", mission="S1A", product_type="CARD-COH6",
                                    card_type="c6", sensing_time=t, orbit_direction=orbit, footprint_wkt=fp,
                                    simulated=True, status="extracted"))
    for k in range(45):  # S2 every 5 days
        t = datetime.combine(day0 + timedelta(days=5 * k + 1), datetime.min.time(), UTC).replace(hour=10)
        pid_ = XSS_ID if k == 23 else f"S2B_SIM_{t:%Y%m%d}"
        scenes.append(Scene(product_id=pid_, mission="S2B", product_type="CARD-2A", card_type="s2", sensing_time=t,
                            footprint_wkt=fp, simulated=True, status="extracted", tile="33TWN"))
    failed_t = datetime(YEAR, 6, 14, 5, tzinfo=UTC)
    scenes.append(Scene(product_id="S1A_IW_GRDH_1SDV_20250614T050000_FAILED", mission="S1A", product_type="GRD",
                        card_type="bs", sensing_time=failed_t, footprint_wkt=fp, simulated=True, status="failed"))
    ids = catalogue.upsert(conn, scenes)
    failed_obsid = ids["S1A_IW_GRDH_1SDV_20250614T050000_FAILED"]
    conn.execute("UPDATE catalogue SET last_error = %s, attempts = 3 WHERE id = %s",
                 ("ProcessingError: gpt exited 1: <script>alert(1)</script> DEM tile missing", failed_obsid))
    db.ensure_year_partition(conn, YEAR)
    rows = []
    hist_rows = []
    cloudy: set[str] = set()
    codes = {"VV": 1, "VH": 2, "COH_VV": 3, "COH_VH": 4, "B04": 13, "B08": 17}
    for s in scenes:
        if s.status != "extracted":
            continue
        obsid = ids[s.product_id]
        doy = s.sensing_time.timetuple().tm_yday
        bands = {"bs": ("VV", "VH"), "c6": ("COH_VV", "COH_VH"), "s2": ("B04", "B08")}[s.card_type]
        cloudy_scene = s.card_type == "s2" and s.product_id != XSS_ID and rng.random() < 0.3
        if cloudy_scene:
            cloudy.add(s.product_id)
        for pid, crop in crops.items():
            for b in bands:
                v = _profile(crop, doy, b)
                if s.card_type == "bs":
                    v *= float(rng.lognormal(0, 0.12)) * (1.08 if s.orbit_direction == "descending" else 1.0)
                elif cloudy_scene:
                    v = 0.3 if b == "B04" else 0.33  # bright cloud: NDVI near 0
                else:
                    v *= float(rng.normal(1, 0.03))
                rows.append((pid, obsid, b, v))
            if s.card_type == "s2":
                counts = [0] * 12
                if cloudy_scene:
                    counts[9], counts[4] = 70, 10
                else:
                    counts[4], counts[5] = 78, 2
                hist_rows.append((pid, obsid, counts))
    with conn.cursor() as cur, cur.copy(
        "COPY signatures (pid, obsid, band, year, count, mean, std, min, max, p25, p50, p75) FROM STDIN"
    ) as cp:
        for pid, obsid, b, v in rows:
            spread = 0.12 * v
            cp.write_row((pid, obsid, codes[b], YEAR, 80, v, spread, v * 0.6, v * 1.5, v - spread, v, v + spread))
    with conn.cursor() as cur, cur.copy("COPY scl_histograms (pid, obsid, counts) FROM STDIN") as cp:
        for r in hist_rows:
            cp.write_row(r)
    compute_period_means(conn, AOI, YEAR, period_days=5)
    run_id = conn.execute(
        "INSERT INTO classification_runs (aoi, year, params) VALUES (%s, %s, '{\"by\": \"crop\"}') RETURNING run_id",
        (AOI, YEAR),
    ).fetchone()[0]
    for text, pid in pids.items():
        declared = "SM" if text == RED_PARCEL else _crop_of(list(pids).index(text))
        if text == RED_PARCEL:
            pred, prob, dprob, agree, flag = "WW", 0.91, 0.04, 5, "red"
        elif text == YELLOW_PARCEL:
            pred, prob, dprob, agree, flag = "GL", 0.52, 0.41, 3, "yellow"
        elif text == XSS_PARCEL:
            pred, prob, dprob, agree, flag = "GL", 0.62, 0.30, 4, "yellow"
        else:
            pred, prob, dprob, agree, flag = declared, 0.88, 0.88, 5, "green"
        conn.execute(
            "INSERT INTO parcel_flags (run_id, pid, parcel_id, declared, declared_class, predicted, probability, "
            "declared_probability, agree_count, n_predictions, flag) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,5,%s)",
            (run_id, pid, text, declared, declared, pred, prob, dprob, agree, flag),
        )
    _markers(conn, pids[RED_PARCEL])
    extraction_failed = None
    if conn.execute("SELECT to_regclass('extractions') IS NOT NULL").fetchone()[0]:  # schema 005
        s2_failed = next(p for p in ids if p.startswith("S2B_SIM_20250710"))
        s2_empty = next(p for p in ids if p.startswith("S2B_SIM_20250715"))
        extraction_failed = ids[s2_failed]
        conn.execute(
            "INSERT INTO extractions (obsid, aoi, year, status, attempts, last_error, band) VALUES "
            "(%s, %s, %s, 'failed', 2, 'CorruptData: raster s3://card/B08.tif cannot be read: not a TIFF', 'B08'), "
            "(%s, %s, %s, 'no_data', 1, NULL, NULL)",
            (ids[s2_failed], AOI, YEAR, ids[s2_empty], AOI, YEAR))
    chip_obsid = s1_chip = None
    if s3_base:
        chip_obsid, s1_chip = _chip_cogs(conn, ids, s3_base, cloudy)
    conn.commit()
    return WebData(run_id=int(run_id), red_pid=pids[RED_PARCEL], yellow_pid=pids[YELLOW_PARCEL],
                   xss_pid=pids[XSS_PARCEL], pids=pids, chip_obsid=chip_obsid, s1_chip_obsid=s1_chip,
                   failed_obsid=failed_obsid, extraction_failed_obsid=extraction_failed)


def _markers(conn: Any, pid: int) -> None:
    exists = conn.execute("SELECT to_regclass('markers') IS NOT NULL").fetchone()[0]
    if not exists:  # the i12-markers schema (006) is not on this branch: the shape it announced
        conn.execute(
            "CREATE TABLE markers (run_id text, aoi text, year int, pid int, marker text, event_date date, "
            "start_date date, end_date date, confidence real, sources text[], detail jsonb)"
        )
        conn.execute("GRANT SELECT ON markers TO cbmflow_reader")
    cols = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'markers'::regclass AND attnum > 0 AND NOT attisdropped")}
    if "run_id" in cols and conn.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'markers' AND column_name = 'run_id'"
    ).fetchone()[0] != "text":
        return  # a different markers schema: the fixture does not guess its keys
    if conn.execute("SELECT to_regclass('marker_runs') IS NOT NULL").fetchone()[0]:
        conn.execute("INSERT INTO marker_runs (run_id, aoi, year) VALUES ('webtest', %s, %s) ON CONFLICT DO NOTHING",
                     (AOI, YEAR))
    conn.execute(
        "INSERT INTO markers (run_id, aoi, year, pid, marker, event_date, start_date, end_date, confidence, sources) "
        "VALUES ('webtest', %s, %s, %s, 'harvest', '2025-07-29', '2025-07-26', '2025-08-02', 0.86, ARRAY['VV','COH_VV'])",
        (AOI, YEAR, pid),
    )


def _chip_cogs(conn: Any, ids: dict[str, int], s3_base: str, cloudy: set[str]) -> tuple[int, int]:
    """Write 10 m S2 B04/B03/B02 and S1 VV COGs over the parcels to S3 for a few summer scenes."""
    from psycopg.types.json import Jsonb
    from rasterio.transform import from_origin

    from cbmflow.core import cog, storage

    storage.ensure_bucket(s3_base)
    w = h = 100  # 1 km x 1 km at 10 m around the parcels
    transform = from_origin(X0 - 250, Y0 + 750, 10, 10)
    yy, xx = np.mgrid[0:h, 0:w]
    r, c = (yy - 25) // 12, (xx - 25) // 12  # parcel-sized blocks (100 m + 20 m lanes)
    lane = ((yy - 25) % 12 >= 10) | ((xx - 25) % 12 >= 10)
    s2 = [p for p in ids if p.startswith("S2B_") and p not in cloudy
          and datetime(YEAR, 6, 1, tzinfo=UTC).date() <= _date_of(p) <= date(YEAR, 8, 31)][:5]
    if XSS_ID not in s2:
        s2 = [XSS_ID, *s2[:4]]
    s1 = [p for p in ids if p.startswith("S1A_SIM_ASC_2025") and date(YEAR, 6, 1) <= _date_of(p) <= date(YEAR, 8, 31)][::3][:4]
    for n, product in enumerate(s2):
        green = 0.5 + 0.4 * np.sin((r * 3 + c * 5 + n) * 0.9) ** 2
        bands = {"B04": 0.12 - 0.08 * green, "B03": 0.06 + 0.05 * green, "B02": 0.05 + 0.01 * green}
        assets = {}
        for band, arr in bands.items():
            a = np.where(lane, 0.09, arr).astype("float32")
            assets[band] = cog.write_cog(storage.join(s3_base, "card", "s2", f"s2_{n}", f"{band}.tif"), a,
                                         crs=f"EPSG:{EPSG}", transform=transform, nodata=None)
        conn.execute("UPDATE catalogue SET assets = %s WHERE id = %s", (Jsonb(assets), ids[product]))
    for n, product in enumerate(s1):
        db_ = -14 + 5 * np.sin((r * 2 + c * 3 + n) * 0.7) + np.random.default_rng(n).normal(0, 1.2, (h, w))
        vv = np.where(lane, 10 ** (-18 / 10), 10 ** (db_ / 10)).astype("float32")
        uri = cog.write_cog(storage.join(s3_base, "card", "bs", f"s1_{n}", "VV.tif"), vv,
                            crs=f"EPSG:{EPSG}", transform=transform, nodata=None)
        conn.execute("UPDATE catalogue SET assets = %s WHERE id = %s", (Jsonb({"VV": uri}), ids[product]))
    return ids[XSS_ID], ids[s1[0]]


def _date_of(product_id: str) -> date:
    digits = product_id.rsplit("_", 1)[-1]
    return datetime.strptime(digits, "%Y%m%d").date() if digits.isdigit() else date(YEAR, 6, 25)


# --- Airflow's own authentication, in-process ---------------------------------------------------

JWT_SECRET = "cbmflow-web-tests-jwt-secret-" + "0123456789abcdef" * 3


def airflow_auth_env() -> dict[str, str]:
    """The Airflow settings that make SimpleAuthManager with a known user and JWT secret."""
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "inspector:viewer,admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__API_AUTH__JWT_ISSUER": "cbmflow-tests",
    }


def airflow_token(username: str = "inspector", role: str = "viewer") -> str:
    """A JWT for a SimpleAuthManager user, signed the way the api-server signs the UI's token."""
    for k, v in airflow_auth_env().items():
        os.environ[k] = v
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.configuration import conf

    for k, v in airflow_auth_env().items():
        section, key = k.split("__")[1:3]
        conf.set(section.lower(), key.lower(), v)
    am = create_auth_manager()
    return str(am.generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


def empty_database(dsn: str) -> None:
    """Empty every data table of the test database (the schema and the band table stay)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as c:
        tables = [r[0] for r in c.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname NOT IN ('schema_migrations', 'bands', 'spatial_ref_sys')")]
        if tables:
            c.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
