"""Parcel validation: geometry checks in the source CRS, CRS sanity, then checks in the working CRS.

Every input row ends up kept (possibly repaired) or rejected with a reason; nothing is dropped
silently. The rules and their defaults (all configurable, see :class:`Rules`):

Source CRS (the file as it is)
  * null or empty geometry, non-polygonal geometry, missing parcel id: rejected;
  * GeometryCollection: its polygonal parts are kept (repaired), none: rejected;
  * Z and M coordinates: dropped (repaired, reported);
  * zero area (all vertices on a line or a point): rejected;
  * self-intersection: repaired with ``make_valid`` (polygonal parts kept) when the repair changes
    the area by at most ``repair_tolerance`` (default 1 %); rejected otherwise (a bowtie, a spike
    that crosses the field);
  * ring orientation: normalised (exterior counter-clockwise, holes clockwise), counted, not reported;
  * CRS label: a parcel outside its CRS's area of use (plus a 5 degree margin) is rejected; when
    most are, the label is wrong and the import stops (:class:`~cbmflow.core.errors.InputError`).

Working CRS
  * must be projected, in metres, and keep areas within ``distortion_tolerance`` (default 1 %) of
    the true (equal-area) areas over every parcel of the AOI: EPSG:3857 at 48 N (x2.2) is refused;
  * the default is the UTM zone of the parcels' median centre (robust to a stray vertex); a
    warning says when the parcels span several zones;
  * after reprojection: validity again (repaired as above), area bounds (default reject < 1 m2 and
    > 1,000 ha), a median area below 1 m2 stops the import (wrong CRS label), duplicate ids
    (the first valid copy is kept).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cbmflow.core.errors import InputError
from cbmflow.core.geo import utm_epsg

if TYPE_CHECKING:
    import geopandas

log = logging.getLogger(__name__)

_POLYGONAL = ("Polygon", "MultiPolygon")
AREA_OF_USE_MARGIN_DEG = 5.0
_DISTORTION_SAMPLE = 50_000  # parcels compared with the equal-area reference (evenly spaced + extremes)


@dataclass(frozen=True)
class Rules:
    """Validation thresholds (defaults documented in docs/parcels-and-catalogue.md)."""

    min_area_m2: float = 1.0
    max_area_m2: float = 1_000 * 10_000.0  # 1,000 ha
    repair_tolerance: float = 0.01  # largest relative area change a self-intersection repair may make
    distortion_tolerance: float = 0.01  # largest relative area error of the working CRS over the AOI
    area_of_use_margin_deg: float = AREA_OF_USE_MARGIN_DEG

    @classmethod
    def from_env(cls, **overrides: float | None) -> Rules:
        """The defaults, overridden by CBMFLOW_PARCEL_* variables and then by non-None keywords."""
        env = {
            "min_area_m2": ("CBMFLOW_PARCEL_MIN_AREA_M2", 1.0),
            "max_area_m2": ("CBMFLOW_PARCEL_MAX_AREA_HA", 10_000.0),
            "repair_tolerance": ("CBMFLOW_PARCEL_REPAIR_TOLERANCE", 1.0),
            "distortion_tolerance": ("CBMFLOW_CRS_DISTORTION_TOLERANCE", 1.0),
        }
        values: dict[str, float] = {}
        for name, (var, scale) in env.items():
            raw = os.environ.get(var)
            if raw:
                try:
                    values[name] = float(raw) * scale
                except ValueError:
                    raise InputError(f"{var}={raw!r} is not a number") from None
        values.update({k: float(v) for k, v in overrides.items() if v is not None})
        rules = replace(cls(), **values)
        if not 0 <= rules.min_area_m2 < rules.max_area_m2:
            raise InputError(f"parcel area bounds {rules.min_area_m2} m2 .. {rules.max_area_m2} m2 are not a range")
        if rules.repair_tolerance < 0 or rules.distortion_tolerance < 0:
            raise InputError("tolerances must not be negative")
        return rules


@dataclass(frozen=True)
class Issue:
    """One repaired or rejected input row (row is the 1-based feature number in the file)."""

    row: int
    parcel_id: str | None
    action: str  # "repaired" | "rejected"
    reason: str


@dataclass(frozen=True)
class SourceCheck:
    """Rows that passed the source-CRS checks (2D, valid, oriented) and the issues met so far."""

    frame: geopandas.GeoDataFrame
    issues: tuple[Issue, ...]
    read: int
    oriented: int
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- helpers


def polygonal_part(geom: Any) -> Any:
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
            sub = polygonal_part(part)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _repair(geom: Any, tolerance: float) -> tuple[Any | None, str]:
    """Repair an invalid polygon: (repaired geometry, reason) or (None, why it is rejected)."""
    import shapely

    why = shapely.is_valid_reason(geom)
    before = float(shapely.area(geom))
    part = polygonal_part(shapely.make_valid(geom))
    after = float(part.area) if part is not None else 0.0
    if part is None or after <= 0:
        if before <= 0:
            return None, f"zero area (degenerate polygon: {why})"
        return None, f"invalid geometry ({why}) has no polygonal part after repair"
    change = abs(after - before) / max(after, before)
    if change > tolerance:
        return None, (f"invalid geometry ({why}): repair would change the area by {change:.1%} "
                      f"(tolerance {tolerance:.1%})")
    return part, f"invalid geometry ({why}) repaired with make_valid (area change {change:.2%})"


def cell_text(value: Any) -> str | None:
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


def _ids(frame: geopandas.GeoDataFrame) -> list[str | None]:
    return [cell_text(v) for v in frame["parcel_id"].tolist()]


def lonlat(frame: geopandas.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of each geometry's representative point (NaN where not transformable)."""
    import geopandas as gpd
    import shapely

    pts = shapely.point_on_surface(np.asarray(frame.geometry.values, dtype=object))
    ll = gpd.GeoSeries(pts, crs=frame.crs).to_crs(4326)
    x = np.array(ll.x, dtype=float)
    y = np.array(ll.y, dtype=float)
    bad = ~(np.isfinite(x) & np.isfinite(y)) | (np.abs(x) > 180) | (np.abs(y) > 90)
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


def choose_epsg(frame: geopandas.GeoDataFrame) -> tuple[int, list[str]]:
    """The UTM zone of the parcels' median centre, and warnings when the parcels span zones."""
    x, y = lonlat(frame)
    ok = np.isfinite(x)
    if not ok.any():
        raise InputError("no parcel has a usable geometry: cannot choose a working CRS")
    lon, lat = float(np.median(x[ok])), float(np.median(y[ok]))
    code = utm_epsg(lon, lat)
    zones: dict[int, int] = {}
    for a, b in zip(x[ok].tolist(), y[ok].tolist(), strict=True):
        z = utm_epsg(a, b)
        zones[z] = zones.get(z, 0) + 1
    warnings = []
    if len(zones) > 1:
        spread = ", ".join(f"EPSG:{z} {n}" for z, n in sorted(zones.items()))
        warnings.append(f"the parcels span {len(zones)} UTM zones ({spread} parcels); working in EPSG:{code}, "
                        f"the zone of their median centre ({lon:.3f}, {lat:.3f})")
    return code, warnings


# --------------------------------------------------------------------------- source CRS


def check_source(frame: geopandas.GeoDataFrame, rules: Rules | None = None) -> SourceCheck:
    """Geometry checks in the file's own CRS (see the module docstring); raises on a wrong CRS label."""
    import geopandas as gpd
    import shapely

    rules = rules or Rules()
    if frame.crs is None:
        raise InputError("the parcels have no CRS: assign one to the file (e.g. ogr2ogr -a_srs EPSG:25832 "
                         "fixed.gpkg input.gpkg) and import it again")
    read = len(frame)
    rows = frame["row"].to_numpy()
    ids = _ids(frame)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    issues: list[Issue] = []
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for i in np.flatnonzero(bad):
        issues.append(Issue(int(rows[i]), ids[i], "rejected", "null or empty geometry"))

    kinds = np.full(len(geoms), -1)
    kinds[~bad] = shapely.get_type_id(geoms[~bad])
    for i in np.flatnonzero(~bad & ~np.isin(kinds, (3, 6))):  # not Polygon / MultiPolygon
        g = geoms[i]
        kind = g.geom_type
        part = polygonal_part(g) if kind == "GeometryCollection" else None
        if part is None:
            what = "GeometryCollection without polygons" if kind == "GeometryCollection" else kind
            issues.append(Issue(int(rows[i]), ids[i], "rejected", f"non-polygon geometry ({what})"))
            bad[i] = True
        else:
            geoms[i] = part
            issues.append(Issue(int(rows[i]), ids[i], "repaired", "polygonal parts kept from GeometryCollection"))
    for i in np.flatnonzero(~bad):
        if ids[i] is None:
            issues.append(Issue(int(rows[i]), None, "rejected", "missing parcel id"))
            bad[i] = True

    live = np.flatnonzero(~bad)
    has_z = shapely.has_z(geoms[live])
    has_m = shapely.has_m(geoms[live])
    for k in np.flatnonzero(has_z | has_m):
        i = live[k]
        dims = " and ".join(d for d, on in (("Z", has_z[k]), ("M", has_m[k])) if on)
        geoms[i] = shapely.force_2d(geoms[i])
        issues.append(Issue(int(rows[i]), ids[i], "repaired", f"{dims} coordinates dropped (parcels are 2D)"))

    live = np.flatnonzero(~bad)
    if live.size:
        valid = shapely.is_valid(geoms[live])
        areas = shapely.area(geoms[live])
        for k in np.flatnonzero(valid & ~(areas > 0)):
            i = live[k]
            issues.append(Issue(int(rows[i]), ids[i], "rejected", "zero area (degenerate polygon)"))
            bad[i] = True
        for k in np.flatnonzero(~valid):
            i = live[k]
            fixed, reason = _repair(geoms[i], rules.repair_tolerance)
            if fixed is None:
                issues.append(Issue(int(rows[i]), ids[i], "rejected", reason))
                bad[i] = True
            else:
                geoms[i] = fixed
                issues.append(Issue(int(rows[i]), ids[i], "repaired", reason))

    live = np.flatnonzero(~bad)
    oriented = 0
    if live.size:
        before = geoms[live]
        after = shapely.orient_polygons(before, exterior_cw=False)
        changed = ~shapely.equals_exact(before, after, tolerance=0.0)
        oriented = int(changed.sum())
        geoms[live] = after
    keep = gpd.GeoDataFrame(frame.drop(columns=frame.geometry.name), geometry=list(geoms), crs=frame.crs)
    keep = keep.loc[~bad].copy()
    keep_issues, keep = _check_label(keep, rules)
    issues.extend(keep_issues)
    issues.sort(key=lambda i: i.row)
    if oriented:
        log.info("ring orientation normalised (exterior counter-clockwise) for %d parcel(s)", oriented)
    return SourceCheck(frame=keep, issues=tuple(issues), read=read, oriented=oriented)


def _check_label(frame: geopandas.GeoDataFrame, rules: Rules) -> tuple[list[Issue], geopandas.GeoDataFrame]:
    """Reject parcels outside their CRS's area of use; stop when most are (the label is wrong)."""
    if len(frame) == 0:
        return [], frame
    crs = frame.crs
    label = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.name
    if crs.is_geographic:
        minx, miny, maxx, maxy = frame.total_bounds
        if not (-180.5 <= minx and maxx <= 360.5 and -90.5 <= miny and maxy <= 90.5):
            raise InputError(
                f"the parcels' coordinates ({minx:.6g}, {miny:.6g}) .. ({maxx:.6g}, {maxy:.6g}) are not degrees, "
                f"but the file's CRS label is {label} ({crs.name}, geographic): the label is wrong; assign the "
                "right CRS (ogr2ogr -a_srs EPSG:<code>)")
    x, y = lonlat(frame)
    aou = crs.area_of_use
    inside = np.isfinite(x)
    if aou is not None:
        m = rules.area_of_use_margin_deg
        west, south, east, north = aou.bounds
        if west <= east:
            in_lon = (x >= west - m) & (x <= east + m)
        else:  # crosses the antimeridian
            in_lon = (x >= west - m) | (x <= east + m)
        inside &= in_lon & (y >= south - m) & (y <= north + m)
    n_out = int((~inside).sum())
    if n_out == 0:
        return [], frame
    rows = frame["row"].to_numpy()
    first = int(np.flatnonzero(~inside)[0])
    where = aou.name if aou is not None else "its valid range"
    if n_out * 2 > len(frame):
        at = (f"lon {x[first]:.4f}, lat {y[first]:.4f}" if np.isfinite(x[first])
              else "coordinates that cannot be transformed to longitude/latitude")
        raise InputError(
            f"{n_out} of {len(frame)} parcels lie outside the area of use of the file's CRS label {label} "
            f"({crs.name}: {where}); e.g. row {int(rows[first])} is at {at}: the CRS label is probably wrong; "
            "assign the right CRS (ogr2ogr -a_srs EPSG:<code>) and import again")
    ids = _ids(frame)
    issues = []
    for i in np.flatnonzero(~inside):
        at = f"lon {x[i]:.4f}, lat {y[i]:.4f}" if np.isfinite(x[i]) else "not transformable to lon/lat"
        issues.append(Issue(int(rows[i]), ids[i], "rejected",
                            f"outside the area of use of {label} ({at}): a stray or mislocated geometry"))
    return issues, frame.loc[inside].copy()


# --------------------------------------------------------------------------- working CRS


def check_working_crs(epsg: int, frame: geopandas.GeoDataFrame, rules: Rules | None = None) -> float:
    """Refuse a geographic, non-metric or area-distorting working CRS; returns the largest area error."""
    import geopandas as gpd
    import shapely
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    rules = rules or Rules()
    try:
        crs = CRS.from_epsg(int(epsg))
    except CRSError as exc:
        raise InputError(f"EPSG:{epsg} is not a known CRS") from exc
    if not crs.is_projected:
        raise InputError(f"EPSG:{epsg} ({crs.name}) is geographic (degrees); the working CRS must be projected "
                         "in metres: leave --epsg out to use the UTM zone of the parcels")
    units = {a.unit_name for a in crs.axis_info}
    if units - {"metre"}:
        raise InputError(f"EPSG:{epsg} ({crs.name}) measures in {', '.join(sorted(units))}; the working CRS "
                         "must be in metres")
    if len(frame) == 0:
        return 0.0
    x, y = lonlat(frame)
    ok = np.isfinite(x)
    if not ok.any():
        return 0.0
    sample = np.flatnonzero(ok)
    if sample.size > _DISTORTION_SAMPLE:
        extremes = [sample[np.nanargmin(x[sample])], sample[np.nanargmax(x[sample])],
                    sample[np.nanargmin(y[sample])], sample[np.nanargmax(y[sample])]]
        step = sample[:: max(1, sample.size // _DISTORTION_SAMPLE)]
        sample = np.unique(np.concatenate([step, extremes]))
    lon0, lat0 = float(np.median(x[ok])), float(np.median(y[ok]))
    sub = frame.iloc[sample]
    equal_area = CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} +ellps=GRS80 +units=m +no_defs")
    ref = shapely.area(np.asarray(gpd.GeoSeries(sub.geometry.values, crs=frame.crs).to_crs(equal_area).values))
    got = shapely.area(np.asarray(gpd.GeoSeries(sub.geometry.values, crs=frame.crs).to_crs(crs).values))
    # parcels the area bounds will reject (a stray vertex 4,000 km away) do not describe the AOI
    usable = np.isfinite(got) & np.isfinite(ref) & (ref >= rules.min_area_m2) & (ref <= rules.max_area_m2)
    if not usable.any():
        return 0.0
    ratio = got[usable] / ref[usable]
    err = np.abs(ratio - 1.0)
    worst = int(np.argmax(err))
    if err[worst] > rules.distortion_tolerance:
        row = int(sub["row"].to_numpy()[usable][worst])
        utm = utm_epsg(lon0, lat0)
        raise InputError(
            f"EPSG:{epsg} ({crs.name}) distorts parcel areas over this AOI by up to x{ratio[worst]:.3f} "
            f"(row {row}; median x{float(np.median(ratio)):.3f}), beyond the {rules.distortion_tolerance:.1%} "
            f"tolerance: use an equal-area or local projected CRS, e.g. the UTM zone EPSG:{utm} (the default)")
    return float(err[worst])


def check_working(
    src: SourceCheck, epsg: int, rules: Rules | None = None
) -> tuple[geopandas.GeoDataFrame, tuple[Issue, ...]]:
    """Reproject rows that passed :func:`check_source` and apply the working-CRS checks.

    Returns the kept rows (row, parcel_id, crop_code, crop_name, area_m2, geometry) and all issues.
    """
    import geopandas as gpd
    import shapely

    rules = rules or Rules()
    issues = list(src.issues)
    frame = src.frame.to_crs(int(epsg)) if len(src.frame) else src.frame.set_crs(int(epsg), allow_override=True)
    rows = frame["row"].to_numpy()
    ids = _ids(frame)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    bad = np.zeros(len(frame), dtype=bool)
    if len(frame):
        b = shapely.bounds(geoms)
        broken = ~np.all(np.isfinite(b), axis=1)
        for i in np.flatnonzero(broken):
            issues.append(Issue(int(rows[i]), ids[i], "rejected", f"cannot be transformed to EPSG:{epsg}"))
        bad |= broken
        live = np.flatnonzero(~bad)
        valid = shapely.is_valid(geoms[live])
        for k in np.flatnonzero(~valid):
            i = live[k]
            fixed, reason = _repair(geoms[i], rules.repair_tolerance)
            if fixed is None:
                issues.append(Issue(int(rows[i]), ids[i], "rejected", f"after reprojection: {reason}"))
                bad[i] = True
            else:
                geoms[i] = fixed
                issues.append(Issue(int(rows[i]), ids[i], "repaired", f"after reprojection: {reason}"))
    areas = shapely.area(geoms) if len(frame) else np.zeros(0)
    live = np.flatnonzero(~bad)
    if live.size and float(np.median(areas[live])) < 1.0:
        label = src.frame.crs.to_epsg() or src.frame.crs.name
        raise InputError(
            f"the median parcel area in EPSG:{epsg} is {float(np.median(areas[live])):.3g} m2 (largest "
            f"{float(areas[live].max()):.3g} m2): the file's CRS label (EPSG:{label}) is probably wrong; "
            "assign the right CRS (ogr2ogr -a_srs EPSG:<code>) and import again")
    for i in live:
        a = float(areas[i])
        if a < rules.min_area_m2:
            issues.append(Issue(int(rows[i]), ids[i], "rejected",
                                f"area {a:.3g} m2 below the minimum of {rules.min_area_m2:g} m2"))
            bad[i] = True
        elif a > rules.max_area_m2:
            issues.append(Issue(int(rows[i]), ids[i], "rejected",
                                f"area {a / 1e4:,.1f} ha above the maximum of {rules.max_area_m2 / 1e4:,g} ha"))
            bad[i] = True
    first_row: dict[str | None, int] = {}
    for i in np.flatnonzero(~bad):
        pid = ids[i]
        if pid in first_row:
            bad[i] = True
            issues.append(Issue(int(rows[i]), pid, "rejected", f"duplicate parcel id; row {first_row[pid]} is kept"))
        else:
            first_row[pid] = int(rows[i])
    # a row rejected late (area, duplicate) is reported once, as rejected
    rejected_rows = {i.row for i in issues if i.action == "rejected"}
    issues = [i for i in issues if not (i.action == "repaired" and i.row in rejected_rows)]
    issues.sort(key=lambda i: i.row)
    out = gpd.GeoDataFrame(frame.drop(columns=frame.geometry.name), geometry=list(geoms), crs=frame.crs)
    out["area_m2"] = areas
    out = out.loc[~bad, ["row", "parcel_id", "crop_code", "crop_name", "area_m2", "geometry"]]
    return out.reset_index(drop=True), tuple(issues)
