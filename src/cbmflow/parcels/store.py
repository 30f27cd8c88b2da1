"""Parcels: import declared parcel files into PostGIS (validated, repaired, reported) and load them.

Import reads GeoPackage, (zipped) Shapefile, zipped GeoPackage, GeoParquet (incl. fiboa) and
GeoJSON; reprojects to the AOI's working CRS; repairs invalid geometries with ``make_valid``
(keeping the polygonal parts); rejects null/empty/non-polygon geometries, missing ids and
duplicate ids (the first valid copy is kept). Every input row ends up imported, imported after
repair, or rejected; a CSV report names each repaired or rejected row and the reason.

The upsert key is (aoi, year, parcel_id). Re-importing an unchanged file changes nothing; a new
or changed parcel bumps ``aois.parcels_version``. Parcels absent from a later file are kept.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cbmflow.core.errors import InputError, NotFound
from cbmflow.core.geo import utm_epsg  # noqa: F401 - part of this module's API (tests, callers)
from cbmflow.parcels.checks import (
    Issue,
    Rules,
    cell_text,
    check_source,
    check_working,
    check_working_crs,
    choose_epsg,
)

if TYPE_CHECKING:
    import geopandas
    import psycopg

log = logging.getLogger(__name__)

_AOI_RE = re.compile(r"^[a-z0-9_]+$")
REPORT_FIELDS = ("row", "parcel_id", "action", "reason")


@dataclass(frozen=True)
class Aoi:
    """An area of interest: its name, working CRS (EPSG code) and parcel-set version."""

    name: str
    epsg: int
    parcels_version: int


ParcelIssue = Issue  # one repaired or rejected input row (row = 1-based feature number)


@dataclass(frozen=True)
class Validation:
    """Parcels ready to store (in the target CRS), the issues met on the way and any warnings."""

    frame: geopandas.GeoDataFrame  # row, parcel_id, crop_code, crop_name, area_m2, geometry
    issues: tuple[ParcelIssue, ...]
    read: int
    oriented: int = 0  # rows whose ring orientation was normalised (not reported per row)
    warnings: tuple[str, ...] = ()

    @property
    def repaired(self) -> int:
        """Number of rows imported after repair."""
        return len({i.row for i in self.issues if i.action == "repaired"})

    @property
    def rejected(self) -> int:
        """Number of rows rejected."""
        return len({i.row for i in self.issues if i.action == "rejected"})


@dataclass(frozen=True)
class ImportResult:
    """What an import did: counts (read = accepted + rejected) and where the report is."""

    aoi: str
    year: int
    epsg: int
    source: str
    read: int
    accepted: int
    repaired: int
    rejected: int
    new: int
    updated: int
    unchanged: int
    parcels_version: int
    report_path: str
    oriented: int = 0
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for logs and the command line."""
        return (
            f"parcels {self.source} -> aoi {self.aoi} {self.year} (EPSG:{self.epsg}): "
            f"read {self.read}, imported {self.accepted} (new {self.new}, updated {self.updated}, "
            f"unchanged {self.unchanged}), repaired {self.repaired}, rejected {self.rejected}; "
            f"parcels_version {self.parcels_version}; report {self.report_path}"
        )


# --------------------------------------------------------------------------- AOIs


def get_aoi(conn: psycopg.Connection, name: str) -> Aoi:
    """The AOI with this name."""
    row = conn.execute("SELECT name, epsg, parcels_version FROM aois WHERE name = %s", (name,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT name FROM aois ORDER BY name")]
        raise NotFound(f"AOI {name!r} does not exist; known AOIs: {', '.join(known) or '(none)'}")
    return Aoi(str(row[0]), int(row[1]), int(row[2]))


# --------------------------------------------------------------------------- reading


def _local_copy(path: str | os.PathLike[str], tmpdir: str) -> Path:
    from cbmflow.core import storage

    uri = storage.parse(path)
    if uri.is_s3:
        return storage.download(str(uri), Path(tmpdir) / Path(uri.key).name)
    local = Path(uri.key)
    if not local.exists():
        raise NotFound(f"parcel file {path} does not exist")
    return local


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".geoparquet")


def _read_any(path: Path) -> tuple[geopandas.GeoDataFrame, str | None]:
    """Read the (single or first) layer; returns the frame and the name of the FID column."""
    import geopandas as gpd
    import pyogrio

    if _is_parquet(path):
        try:
            return gpd.read_parquet(path), None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"parcel file {path} is not readable GeoParquet: {exc}") from exc
    try:
        layers = pyogrio.list_layers(path)
        layer = None
        if len(layers) > 1:
            polygonal = [str(n) for n, t in layers if t and "Polygon" in str(t)]
            layer = polygonal[0] if polygonal else str(layers[0][0])
            log.warning("%s has %d layers; reading %s", path, len(layers), layer)
        info = pyogrio.read_info(path, layer=layer)
        frame = pyogrio.read_dataframe(path, layer=layer, fid_as_index=True)
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(f"parcel file {path} cannot be read as vector data: {exc}") from exc
    fid_col = info.get("fid_column") or "fid"
    if fid_col not in frame.columns:
        frame = frame.reset_index(names=fid_col)
    else:
        frame = frame.reset_index(drop=True)
    return frame, fid_col


def _split_cols(spec: str) -> list[str]:
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not cols:
        raise InputError("an empty column name was given")
    return cols


def read_parcels_file(
    path: str | os.PathLike[str],
    *,
    id_col: str,
    crop_col: str,
    crop_name_col: str | None = None,
) -> geopandas.GeoDataFrame:
    """Read a parcel file as row, parcel_id, crop_code, crop_name, geometry (source CRS, all rows).

    ``id_col`` may list several columns separated by commas; their values are joined with '-'.
    The FID of GeoPackage/Shapefile sources is available under its own name (e.g. ``fid``).
    """
    import geopandas as gpd

    with tempfile.TemporaryDirectory(prefix="cbmflow-parcels-") as tmp:
        local = _local_copy(path, tmp)
        frame, _ = _read_any(local)
    if frame.crs is None:
        raise InputError(
            f"parcel file {path} has no CRS; assign the CRS its coordinates are in and import again, "
            f"e.g. ogr2ogr -a_srs EPSG:25832 fixed.gpkg {Path(os.fspath(path)).name}"
        )
    available = [c for c in frame.columns if c != frame.geometry.name]
    wanted = {"--id-col": _split_cols(id_col), "--crop-col": _split_cols(crop_col)}
    if crop_name_col:
        wanted["--crop-name-col"] = _split_cols(crop_name_col)
    for option, cols in wanted.items():
        missing = [c for c in cols if c not in frame.columns or c == frame.geometry.name]
        if missing:
            raise InputError(
                f"parcel file {path}: {option} column(s) {', '.join(missing)} not found; "
                f"available columns: {', '.join(map(str, available))}"
            )
    id_cols = wanted["--id-col"]
    if len(id_cols) == 1:
        ids = [cell_text(v) for v in frame[id_cols[0]].tolist()]
    else:
        parts = [[cell_text(v) for v in frame[c].tolist()] for c in id_cols]
        ids = [None if any(p is None for p in vals) else "-".join(vals) for vals in zip(*parts, strict=True)]  # type: ignore[arg-type]

    def joincell_text(cols: list[str]) -> list[str | None]:
        if len(cols) == 1:
            return [cell_text(v) for v in frame[cols[0]].tolist()]
        cells = [[cell_text(v) for v in frame[c].tolist()] for c in cols]
        return [" ".join(x for x in vals if x) or None for vals in zip(*cells, strict=True)]

    import pandas as pd

    def texts(values: list[str | None]) -> pd.Series:
        return pd.Series(values, dtype=object)  # keeps None as None (no NaN)

    out = gpd.GeoDataFrame(
        {
            "row": range(1, len(frame) + 1),
            "parcel_id": texts(ids),
            "crop_code": texts(joincell_text(wanted["--crop-col"])),
            "crop_name": texts(joincell_text(wanted["--crop-name-col"]) if crop_name_col else [None] * len(frame)),
        },
        geometry=frame.geometry.values,
        crs=frame.crs,
    )
    return out


def read_vector(path: str | os.PathLike[str]) -> geopandas.GeoDataFrame:
    """A vector file (local or s3://) as a GeoDataFrame that keeps its FID column (e.g. GeoPackage ``fid``/``id``)."""
    with tempfile.TemporaryDirectory(prefix="cbmflow-parcels-") as tmp:
        frame, _ = _read_any(_local_copy(path, tmp))
    return frame


def list_columns(path: str | os.PathLike[str]) -> list[tuple[str, str, str | None]]:
    """The columns of a parcel file as (name, dtype, first non-empty value)."""
    with tempfile.TemporaryDirectory(prefix="cbmflow-parcels-") as tmp:
        frame, _ = _read_any(_local_copy(path, tmp))
    out = []
    for col in frame.columns:
        if col == frame.geometry.name:
            continue
        series = frame[col].dropna()
        sample = cell_text(series.iloc[0]) if len(series) else None
        out.append((str(col), str(frame[col].dtype), sample))
    return out


# --------------------------------------------------------------------------- validation


def default_epsg(frame: geopandas.GeoDataFrame) -> int:
    """The UTM zone EPSG code of the parcels' median centre (a stray vertex cannot move it)."""
    return choose_epsg(frame)[0]


def validate(frame: geopandas.GeoDataFrame, epsg: int | None = None, rules: Rules | None = None) -> Validation:
    """Check in the source CRS, check the working CRS, reproject, check again; one issue per problem row.

    ``epsg`` None chooses the UTM zone of the parcels. Raises InputError when the CRS label or the
    working CRS is wrong (see :mod:`cbmflow.parcels.checks`).
    """
    rules = rules or Rules.from_env()
    src = check_source(frame, rules)
    warnings: list[str] = list(src.warnings)
    if epsg is None:
        epsg, more = choose_epsg(src.frame)
        warnings.extend(more)
    check_working_crs(int(epsg), src.frame, rules)
    good, issues = check_working(src, int(epsg), rules)
    for w in warnings:
        log.warning("%s", w)
    return Validation(frame=good, issues=issues, read=src.read, oriented=src.oriented, warnings=tuple(warnings))


# --------------------------------------------------------------------------- report


def default_report_path(path: str | os.PathLike[str], aoi: str, year: int) -> str:
    """Where the import report of a file goes unless told otherwise."""
    from cbmflow.core.config import project_root

    base = os.environ.get("CBMFLOW_REPORTS_DIR") or str(project_root() / "reports")
    stem = Path(os.fspath(path)).name.split(".")[0]
    return str(Path(base) / "parcels" / f"{aoi}_{year}_{stem}.import-report.csv")


def write_report(issues: Sequence[ParcelIssue], uri: str) -> str:
    """Write the repaired/rejected rows as CSV (row, parcel_id, action, reason); returns the URI."""
    from cbmflow.core import storage

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for i in issues:
        writer.writerow((i.row, i.parcel_id or "", i.action, i.reason))
    return storage.write_bytes(uri, buf.getvalue().encode("utf-8"), content_type="text/csv")


# --------------------------------------------------------------------------- import


def _ensure_aoi(
    conn: psycopg.Connection, name: str, epsg: int | None, frame: geopandas.GeoDataFrame, rules: Rules
) -> tuple[Aoi, list[str]]:
    """The AOI (created in the given or default working CRS if new) and any CRS warnings."""
    if not _AOI_RE.match(name):
        raise InputError(f"AOI name {name!r} must match [a-z0-9_]+")
    row = conn.execute(
        "SELECT name, epsg, parcels_version FROM aois WHERE name = %s FOR UPDATE", (name,)
    ).fetchone()
    if row is not None:
        aoi = Aoi(str(row[0]), int(row[1]), int(row[2]))
        if epsg is not None and int(epsg) != aoi.epsg:
            raise InputError(
                f"AOI {name} already works in EPSG:{aoi.epsg}; --epsg {epsg} contradicts it"
            )
        check_working_crs(aoi.epsg, frame, rules)
        return aoi, []
    warnings: list[str] = []
    if epsg is not None:
        code = int(epsg)
    else:
        code, warnings = choose_epsg(frame)
    check_working_crs(code, frame, rules)
    conn.execute(
        "INSERT INTO aois (name, epsg) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, code)
    )
    row = conn.execute(
        "SELECT name, epsg, parcels_version FROM aois WHERE name = %s FOR UPDATE", (name,)
    ).fetchone()
    assert row is not None
    log.info("created AOI %s in EPSG:%s", name, row[1])
    return Aoi(str(row[0]), int(row[1]), int(row[2])), warnings


def import_parcels(
    conn: psycopg.Connection,
    path: str | os.PathLike[str],
    *,
    aoi: str,
    year: int,
    id_col: str,
    crop_col: str,
    crop_name_col: str | None = None,
    epsg: int | None = None,
    report_path: str | None = None,
    source: str | None = None,
    rules: Rules | None = None,
) -> ImportResult:
    """Import a parcel file into an AOI and year in one transaction (committed unless nested)."""
    import shapely

    if not 1900 <= int(year) <= 2200:
        raise InputError(f"year {year} is out of range")
    the_rules = rules or Rules.from_env()
    frame = read_parcels_file(path, id_col=id_col, crop_col=crop_col, crop_name_col=crop_name_col)
    src = source or Path(os.fspath(path)).name
    report = report_path or default_report_path(path, aoi, year)
    first = check_source(frame, the_rules)  # may raise: wrong CRS label
    with conn.transaction():
        the_aoi, warnings = _ensure_aoi(conn, aoi, epsg, first.frame, the_rules)
        good, issues = check_working(first, the_aoi.epsg, the_rules)
        checked = Validation(frame=good, issues=issues, read=first.read, oriented=first.oriented,
                             warnings=tuple(warnings))
        for w in warnings:
            log.warning("%s", w)
        good = checked.frame
        wkb = shapely.to_wkb(good.geometry.values, output_dimension=2)
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _parcels_in (parcel_id text, crop_code text, "
                "crop_name text, area_m2 double precision, wkb bytea) ON COMMIT DROP"
            )
            cur.execute("TRUNCATE _parcels_in")
            with cur.copy(
                "COPY _parcels_in (parcel_id, crop_code, crop_name, area_m2, wkb) FROM STDIN"
            ) as copy:
                for rec in zip(
                    good["parcel_id"].tolist(),
                    [cell_text(v) for v in good["crop_code"].tolist()],
                    [cell_text(v) for v in good["crop_name"].tolist()],
                    good["area_m2"].tolist(), wkb, strict=True,
                ):
                    copy.write_row(rec)
            cur.execute(
                """
                INSERT INTO parcels AS p (aoi, year, parcel_id, crop_code, crop_name, area_m2, geom, source)
                SELECT %(aoi)s, %(year)s, parcel_id, crop_code, crop_name, area_m2,
                       ST_Multi(ST_SetSRID(ST_GeomFromWKB(wkb), %(epsg)s)), %(source)s
                FROM _parcels_in
                ON CONFLICT (aoi, year, parcel_id) DO UPDATE SET
                    crop_code = EXCLUDED.crop_code,
                    crop_name = EXCLUDED.crop_name,
                    area_m2 = EXCLUDED.area_m2,
                    geom = EXCLUDED.geom,
                    source = EXCLUDED.source,
                    imported_at = now()
                WHERE (p.crop_code, p.crop_name, ST_AsBinary(p.geom))
                      IS DISTINCT FROM
                      (EXCLUDED.crop_code, EXCLUDED.crop_name, ST_AsBinary(EXCLUDED.geom))
                RETURNING (xmax = 0) AS inserted
                """,
                {"aoi": the_aoi.name, "year": int(year), "epsg": the_aoi.epsg, "source": src},
            )
            outcome = [bool(r[0]) for r in cur.fetchall()]
            cur.execute("DROP TABLE _parcels_in")
        new = sum(outcome)
        updated = len(outcome) - new
        version = the_aoi.parcels_version
        if new or updated:
            bumped = conn.execute(
                "UPDATE aois SET parcels_version = parcels_version + 1 WHERE name = %s "
                "RETURNING parcels_version",
                (the_aoi.name,),
            ).fetchone()
            assert bumped is not None
            version = int(bumped[0])
        # written before the commit: a report that cannot be written (full disk) imports nothing
        written = write_report(checked.issues, report)
    result = ImportResult(
        aoi=the_aoi.name, year=int(year), epsg=the_aoi.epsg, source=src, read=checked.read,
        accepted=len(good), repaired=checked.repaired, rejected=checked.rejected, new=new,
        updated=updated, unchanged=len(good) - new - updated, parcels_version=version,
        report_path=written, oriented=checked.oriented, warnings=checked.warnings,
    )
    log.info(result.summary())
    return result


# --------------------------------------------------------------------------- loading


def load_parcels(
    conn: psycopg.Connection,
    aoi: str | Aoi,
    year: int,
    *,
    bbox: tuple[float, float, float, float] | None = None,
) -> geopandas.GeoDataFrame:
    """Parcels of an AOI and year (pid, parcel_id, crop_code, crop_name, area_m2, geometry) in its CRS."""
    import geopandas as gpd
    import shapely

    the_aoi = aoi if isinstance(aoi, Aoi) else get_aoi(conn, aoi)
    query = (
        "SELECT pid, parcel_id, crop_code, crop_name, area_m2, ST_AsBinary(geom) FROM parcels "
        "WHERE aoi = %s AND year = %s"
    )
    params: list[Any] = [the_aoi.name, int(year)]
    if bbox is not None:
        if len(bbox) != 4:
            raise InputError(f"bbox must be (minx, miny, maxx, maxy), got {bbox!r}")
        query += " AND geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)"
        params.extend([float(v) for v in bbox] + [the_aoi.epsg])
    query += " ORDER BY pid"
    rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 6
    return gpd.GeoDataFrame(
        {
            "pid": [int(v) for v in cols[0]],
            "parcel_id": list(cols[1]),
            "crop_code": list(cols[2]),
            "crop_name": list(cols[3]),
            "area_m2": [float(v) for v in cols[4]],
        },
        geometry=shapely.from_wkb([bytes(b) for b in cols[5]]) if rows else [],
        crs=f"EPSG:{the_aoi.epsg}",
    ).astype({"pid": "int64", "area_m2": "float64"})


def seasons_with_parcels(conn: Any, years: Sequence[int], aois: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(AOI, year) pairs that hold parcels, for the given years and optionally only these AOIs."""
    rows = conn.execute(
        "SELECT DISTINCT aoi, year FROM parcels WHERE year = ANY(%s) AND (%s::text[] IS NULL OR aoi = ANY(%s)) "
        "ORDER BY 2, 1", ([int(y) for y in years], list(aois) if aois else None, list(aois) if aois else None),
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]
