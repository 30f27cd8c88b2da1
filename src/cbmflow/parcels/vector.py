"""Parcel shapes (ids, geometries, CRS) for extraction, read without pandas or geopandas.

A single-layer GeoPackage is read straight from its SQLite tables (OGC 12-128r18: the
``gpkg_contents``/``gpkg_geometry_columns`` tables and the GeoPackage binary header in front of
each WKB geometry); any other file goes through :func:`cbmflow.parcels.store.read_vector`. Both
give the same ids, geometries and row order (the FID order).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cbmflow.core.errors import InputError, NotFound

log = logging.getLogger(__name__)

# GeoPackage binary header: envelope indicator (flags bits 1-3) -> envelope bytes
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


@dataclass(frozen=True)
class Shapes:
    """Parcel geometries (shapely, None when missing), their ids and CRS, aligned by position."""

    ids: np.ndarray
    geoms: np.ndarray
    crs: str | None  # anything rasterio's and pyproj's CRS.from_user_input accept (EPSG:n or WKT)
    columns: tuple[str, ...] = ()  # the source's column names (informational; the readers' messages list their own)

    def __len__(self) -> int:
        return int(self.geoms.size)

    @classmethod
    def of_frame(cls, gdf: Any, id_col: str) -> Shapes:
        """The shapes of a GeoDataFrame's ``id_col`` and geometry."""
        names = [str(c) for c in gdf.columns]
        _require_column(id_col, names)
        return cls(ids=np.asarray(gdf[id_col]), geoms=np.asarray(gdf.geometry.values, dtype=object),
                   crs=gdf.crs.to_wkt() if gdf.crs is not None else None, columns=tuple(names))


def _require_column(id_col: str, columns: list[str]) -> None:
    """Raise an InputError naming the available columns when ``id_col`` is not one of them."""
    if id_col not in columns:
        raise InputError(f"parcels have no column {id_col!r}; available: {', '.join(columns)}")


def read_shapes(path: str | os.PathLike[str], id_col: str) -> Shapes:
    """The parcels of a vector file (local or s3://) as ids of ``id_col``, geometries and CRS."""
    p = Path(os.fspath(path))
    if p.suffix.lower() == ".gpkg" and "://" not in os.fspath(path):
        if not p.exists():
            raise NotFound(f"parcel file {path} does not exist")
        shapes = _read_gpkg(p, id_col)
        if shapes is not None:
            return shapes
    from cbmflow.parcels.store import read_vector

    return Shapes.of_frame(read_vector(path), id_col)


def _read_gpkg(path: Path, id_col: str) -> Shapes | None:
    """A single-feature-table GeoPackage read with sqlite3; None when the general reader should read it."""
    import shapely

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        tables = con.execute(
            "SELECT c.table_name, g.column_name, c.srs_id FROM gpkg_contents c "
            "JOIN gpkg_geometry_columns g ON g.table_name = c.table_name WHERE c.data_type = 'features'"
        ).fetchall()
        if len(tables) != 1:
            return None  # several layers (or none): the general reader chooses and says which
        table, geom_col, srs_id = tables[0]
        info = con.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
        names = [str(r[1]) for r in info]
        fid = next((str(r[1]) for r in info if r[5] == 1 and str(r[2]).upper() == "INTEGER"), None)
        attrs = [n for n in names if n != geom_col]
        _require_column(id_col, attrs)
        order = f" ORDER BY {_quote(fid)}" if fid else ""
        rows = con.execute(f"SELECT {_quote(id_col)}, {_quote(geom_col)} FROM {_quote(table)}{order}").fetchall()
        crs = _gpkg_crs(con, srs_id)
    except sqlite3.Error as exc:
        log.debug("%s is not a GeoPackage sqlite3 can read (%s): using the general reader", path, exc)
        return None
    finally:
        con.close()
    ids = [r[0] for r in rows]
    if any(v is None for v in ids) or len({type(v) for v in ids}) > 1:
        return None  # empty or mixed-type ids: the general reader's dtype rules apply
    wkb: list[bytes | None] = []
    for _, blob in rows:
        if blob is None:
            wkb.append(None)
            continue
        b = bytes(blob)
        if b[:2] != b"GP" or b[3] & 0x20:  # not a standard GeoPackage binary (or an extension's type)
            return None
        env = _ENVELOPE_BYTES.get((b[3] >> 1) & 0x07)
        if env is None:
            raise InputError(f"parcel file {path}: a geometry has an invalid GeoPackage envelope code")
        wkb.append(b[8 + env:])
    try:
        geoms = shapely.from_wkb(np.array(wkb, dtype=object))
    except shapely.errors.GEOSException as exc:
        raise InputError(f"parcel file {path}: a geometry is not valid WKB: {exc}") from exc
    return Shapes(ids=np.array(ids), geoms=np.asarray(geoms, dtype=object), crs=crs, columns=tuple(attrs))


def _gpkg_crs(con: sqlite3.Connection, srs_id: int | None) -> str | None:
    """The CRS of an srs_id: ``EPSG:n`` when the organisation is EPSG, else its WKT; None when undefined."""
    if srs_id is None or int(srs_id) in (0, -1):
        return None
    row = con.execute("SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
                      "WHERE srs_id = ?", (int(srs_id),)).fetchone()
    if row is None:
        return None
    org, code, definition = row
    if str(org).upper() == "EPSG" and code is not None and int(code) > 0:
        return f"EPSG:{int(code)}"
    return str(definition) if definition and str(definition).lower() != "undefined" else None


def _quote(name: str) -> str:
    """An SQLite identifier, double-quoted."""
    return '"' + str(name).replace('"', '""') + '"'


__all__ = ["Shapes", "read_shapes"]
