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

import argparse
import csv
import io
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from cbmflow.errors import InputError, NotFound

if TYPE_CHECKING:
    import geopandas

log = logging.getLogger(__name__)

_AOI_RE = re.compile(r"^[a-z0-9_]+$")
_POLYGONAL = ("Polygon", "MultiPolygon")
REPORT_FIELDS = ("row", "parcel_id", "action", "reason")


@dataclass(frozen=True)
class Aoi:
    """An area of interest: its name, working CRS (EPSG code) and parcel-set version."""

    name: str
    epsg: int
    parcels_version: int


@dataclass(frozen=True)
class ParcelIssue:
    """One repaired or rejected input row (row is the 1-based feature number in the file)."""

    row: int
    parcel_id: str | None
    action: str  # "repaired" | "rejected"
    reason: str


@dataclass(frozen=True)
class Validation:
    """Parcels ready to store (in the target CRS) and the issues met on the way."""

    frame: geopandas.GeoDataFrame  # row, parcel_id, crop_code, crop_name, area_m2, geometry
    issues: tuple[ParcelIssue, ...]
    read: int

    @property
    def repaired(self) -> int:
        """Number of rows imported after repair."""
        return sum(1 for i in self.issues if i.action == "repaired")

    @property
    def rejected(self) -> int:
        """Number of rows rejected."""
        return sum(1 for i in self.issues if i.action == "rejected")


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


def utm_epsg(lon: float, lat: float) -> int:
    """The WGS 84 / UTM zone EPSG code (326xx north, 327xx south) containing a point."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return (32600 if lat >= 0 else 32700) + zone


# --------------------------------------------------------------------------- reading


def _local_copy(path: str | os.PathLike[str], tmpdir: str) -> Path:
    from cbmflow import storage

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


def _text(value: Any) -> str | None:
    """A cell as text: None for missing, integral floats without '.0'."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value).strip()
    return text or None


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
        raise InputError(f"parcel file {path} has no CRS; assign one (e.g. with ogr2ogr -a_srs)")
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
        ids = [_text(v) for v in frame[id_cols[0]].tolist()]
    else:
        parts = [[_text(v) for v in frame[c].tolist()] for c in id_cols]
        ids = [None if any(p is None for p in vals) else "-".join(vals) for vals in zip(*parts, strict=True)]  # type: ignore[arg-type]

    def join_text(cols: list[str]) -> list[str | None]:
        if len(cols) == 1:
            return [_text(v) for v in frame[cols[0]].tolist()]
        cells = [[_text(v) for v in frame[c].tolist()] for c in cols]
        return [" ".join(x for x in vals if x) or None for vals in zip(*cells, strict=True)]

    import pandas as pd

    def texts(values: list[str | None]) -> pd.Series:
        return pd.Series(values, dtype=object)  # keeps None as None (no NaN)

    out = gpd.GeoDataFrame(
        {
            "row": range(1, len(frame) + 1),
            "parcel_id": texts(ids),
            "crop_code": texts(join_text(wanted["--crop-col"])),
            "crop_name": texts(join_text(wanted["--crop-name-col"]) if crop_name_col else [None] * len(frame)),
        },
        geometry=frame.geometry.values,
        crs=frame.crs,
    )
    return out


def list_columns(path: str | os.PathLike[str]) -> list[tuple[str, str, str | None]]:
    """The columns of a parcel file as (name, dtype, first non-empty value)."""
    with tempfile.TemporaryDirectory(prefix="cbmflow-parcels-") as tmp:
        frame, _ = _read_any(_local_copy(path, tmp))
    out = []
    for col in frame.columns:
        if col == frame.geometry.name:
            continue
        series = frame[col].dropna()
        sample = _text(series.iloc[0]) if len(series) else None
        out.append((str(col), str(frame[col].dtype), sample))
    return out


# --------------------------------------------------------------------------- validation


def default_epsg(frame: geopandas.GeoDataFrame) -> int:
    """The UTM zone EPSG code of the centre of the parcels' extent."""
    import shapely

    geoms = frame.geometry
    geoms = geoms[~(geoms.isna() | geoms.is_empty)]
    if geoms.empty:
        raise InputError("no parcel has a geometry: cannot choose a working CRS")
    minx, miny, maxx, maxy = geoms.to_crs(4326).total_bounds
    centre = shapely.box(minx, miny, maxx, maxy).centroid
    return utm_epsg(centre.x, centre.y)


def _polygonal_part(geom: Any) -> Any:
    """The polygonal part of a geometry as a (Multi)Polygon, or None if it has none."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon) and not part.is_empty:
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(p for p in part.geoms if not p.is_empty)
        elif part.geom_type == "GeometryCollection":
            sub = _polygonal_part(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def validate(frame: geopandas.GeoDataFrame, epsg: int) -> Validation:
    """Reproject to EPSG:epsg, repair what can be repaired, reject the rest (one issue per row)."""
    import geopandas as gpd
    import numpy as np
    import shapely

    read = len(frame)
    issues: list[ParcelIssue] = []
    rows = frame["row"].to_numpy()
    ids = [_text(v) for v in frame["parcel_id"].tolist()]
    geoms = frame.geometry.values
    bad = np.zeros(read, dtype=bool)

    missing = shapely.is_missing(np.asarray(geoms)) | shapely.is_empty(np.asarray(geoms))
    for i in np.flatnonzero(missing):
        issues.append(ParcelIssue(int(rows[i]), ids[i], "rejected", "null or empty geometry"))
    bad |= missing

    gtypes = np.array([g.geom_type if g is not None else "" for g in geoms], dtype=object)
    for i in np.flatnonzero(~bad):
        if gtypes[i] not in _POLYGONAL and gtypes[i] != "GeometryCollection":
            issues.append(ParcelIssue(int(rows[i]), ids[i], "rejected", f"non-polygon geometry ({gtypes[i]})"))
            bad[i] = True
    for i in np.flatnonzero(~bad):
        if ids[i] is None:
            issues.append(ParcelIssue(int(rows[i]), None, "rejected", "missing parcel id"))
            bad[i] = True

    keep = frame.loc[~bad].copy()
    if keep.crs is None:
        raise InputError("parcels have no CRS")
    keep = keep.to_crs(epsg)
    new_geoms = list(keep.geometry.values)
    krows = keep["row"].tolist()
    kids = keep["parcel_id"].tolist()
    drop = np.zeros(len(keep), dtype=bool)
    valid = shapely.is_valid(np.asarray(new_geoms, dtype=object))
    for j, g in enumerate(new_geoms):
        if valid[j] and g.geom_type in _POLYGONAL:
            continue
        if valid[j]:  # a valid GeometryCollection
            part = _polygonal_part(g)
            reason = "polygonal parts kept from GeometryCollection"
        else:
            why = shapely.is_valid_reason(g)
            part = _polygonal_part(shapely.make_valid(g))
            reason = f"invalid geometry ({why}) repaired with make_valid"
        if part is None or part.is_empty or part.area <= 0:
            issues.append(ParcelIssue(krows[j], kids[j], "rejected", "geometry empty after repair"
                                      if not valid[j] else "no polygonal part"))
            drop[j] = True
            continue
        new_geoms[j] = part
        issues.append(ParcelIssue(krows[j], kids[j], "repaired", reason))
    keep = gpd.GeoDataFrame(
        keep.drop(columns=keep.geometry.name), geometry=new_geoms, crs=keep.crs
    ).loc[~drop]

    first_row: dict[str, int] = {}
    dup = np.zeros(len(keep), dtype=bool)
    for j, (pid, row) in enumerate(zip(keep["parcel_id"].tolist(), keep["row"].tolist(), strict=True)):
        if pid in first_row:
            dup[j] = True
            issues.append(ParcelIssue(row, pid, "rejected", f"duplicate parcel id; row {first_row[pid]} is kept"))
        else:
            first_row[pid] = row
    rejected_dup_rows = set(keep["row"].to_numpy()[dup].tolist())
    # a duplicate that was repaired first is reported once, as rejected
    issues = [i for i in issues if not (i.action == "repaired" and i.row in rejected_dup_rows)]
    keep = keep.loc[~dup].copy()
    keep["area_m2"] = keep.geometry.area
    keep = keep[["row", "parcel_id", "crop_code", "crop_name", "area_m2", "geometry"]]
    issues.sort(key=lambda i: i.row)
    return Validation(frame=keep.reset_index(drop=True), issues=tuple(issues), read=read)


# --------------------------------------------------------------------------- report


def default_report_path(path: str | os.PathLike[str], aoi: str, year: int) -> str:
    """Where the import report of a file goes unless told otherwise."""
    from cbmflow.config import project_root

    base = os.environ.get("CBMFLOW_REPORTS_DIR") or str(project_root() / "reports")
    stem = Path(os.fspath(path)).name.split(".")[0]
    return str(Path(base) / "parcels" / f"{aoi}_{year}_{stem}.import-report.csv")


def write_report(issues: Sequence[ParcelIssue], uri: str) -> str:
    """Write the repaired/rejected rows as CSV (row, parcel_id, action, reason); returns the URI."""
    from cbmflow import storage

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for i in issues:
        writer.writerow((i.row, i.parcel_id or "", i.action, i.reason))
    return storage.write_bytes(uri, buf.getvalue().encode("utf-8"), content_type="text/csv")


# --------------------------------------------------------------------------- import


def _ensure_aoi(conn: psycopg.Connection, name: str, epsg: int | None, frame: geopandas.GeoDataFrame) -> Aoi:
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
        return aoi
    code = int(epsg) if epsg is not None else default_epsg(frame)
    _check_projected(code)
    conn.execute(
        "INSERT INTO aois (name, epsg) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, code)
    )
    row = conn.execute(
        "SELECT name, epsg, parcels_version FROM aois WHERE name = %s FOR UPDATE", (name,)
    ).fetchone()
    assert row is not None
    log.info("created AOI %s in EPSG:%s", name, row[1])
    return Aoi(str(row[0]), int(row[1]), int(row[2]))


def _check_projected(epsg: int) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_epsg(epsg)
    except CRSError as exc:
        raise InputError(f"EPSG:{epsg} is not a known CRS") from exc
    if not crs.is_projected:
        raise InputError(f"EPSG:{epsg} ({crs.name}) is not projected; the working CRS needs metres")


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
) -> ImportResult:
    """Import a parcel file into an AOI and year in one transaction (committed unless nested)."""
    import shapely

    if not 1900 <= int(year) <= 2200:
        raise InputError(f"year {year} is out of range")
    frame = read_parcels_file(path, id_col=id_col, crop_col=crop_col, crop_name_col=crop_name_col)
    src = source or Path(os.fspath(path)).name
    report = report_path or default_report_path(path, aoi, year)
    with conn.transaction():
        the_aoi = _ensure_aoi(conn, aoi, epsg, frame)
        checked = validate(frame, the_aoi.epsg)
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
                    [_text(v) for v in good["crop_code"].tolist()],
                    [_text(v) for v in good["crop_name"].tolist()],
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
    written = write_report(checked.issues, report)
    result = ImportResult(
        aoi=the_aoi.name, year=int(year), epsg=the_aoi.epsg, source=src, read=checked.read,
        accepted=len(good), repaired=checked.repaired, rejected=checked.rejected, new=new,
        updated=updated, unchanged=len(good) - new - updated, parcels_version=version,
        report_path=written,
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


# --------------------------------------------------------------------------- command line


def _cli_import(args: argparse.Namespace) -> int:
    from cbmflow import db

    with db.connect() as conn:
        result = import_parcels(
            conn, args.file, aoi=args.aoi, year=args.year, id_col=args.id_col,
            crop_col=args.crop_col, crop_name_col=args.crop_name_col, epsg=args.epsg,
            report_path=args.report,
        )
    print(f"read {result.read}")
    print(f"imported {result.accepted} (new {result.new}, updated {result.updated}, unchanged {result.unchanged})")
    print(f"repaired {result.repaired}")
    print(f"rejected {result.rejected}")
    print(f"aoi {result.aoi} EPSG:{result.epsg} parcels_version {result.parcels_version}")
    print(f"report {result.report_path}")
    return 0


def _cli_columns(args: argparse.Namespace) -> int:
    for name, dtype, sample in list_columns(args.file):
        print(f"{name}\t{dtype}\t{sample if sample is not None else ''}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``cbmflow parcels import`` and ``cbmflow parcels list-columns``."""
    p = subparsers.add_parser("parcels", help="declared parcels (import, inspect)")
    sub = p.add_subparsers(dest="parcels_command", required=True)
    imp = sub.add_parser("import", help="import a parcel file into an AOI and year")
    imp.add_argument("file", help="GeoPackage, zipped Shapefile/GeoPackage, GeoParquet or GeoJSON (path or s3://)")
    imp.add_argument("--aoi", required=True, help="AOI name ([a-z0-9_]+), created if missing")
    imp.add_argument("--year", required=True, type=int)
    imp.add_argument("--id-col", required=True, help="parcel id column; a comma list is joined with '-'")
    imp.add_argument("--crop-col", required=True, help="crop code column")
    imp.add_argument("--crop-name-col", default=None, help="crop name column")
    imp.add_argument("--epsg", type=int, default=None, help="working CRS of a new AOI (default: UTM zone)")
    imp.add_argument("--report", default=None, help="CSV report path (default: reports/parcels/...)")
    imp.set_defaults(func=_cli_import)
    cols = sub.add_parser("list-columns", help="list the columns of a parcel file with a sample value")
    cols.add_argument("file")
    cols.set_defaults(func=_cli_columns)
