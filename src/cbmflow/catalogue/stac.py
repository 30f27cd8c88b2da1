"""STAC discovery: find Sentinel-1/2 scenes and CARD products and record them in the catalogue.

Sources: a STAC API (pystac-client, every page), or a static catalogue (``catalog.json`` /
collection with item links), an ItemCollection (search result) or a single Item, on disk or in
S3. Raw items (S1 GRD/SLC, S2 L1C/L2A) become ``discovered`` scenes with their source assets;
items carrying ``cbmflow:card_type`` become ``ready`` CARD products. An item lacking an expected
asset is recorded as ``failed`` with the missing assets named; an unreadable item (invalid JSON,
no datetime, no geometry) is reported and the other items continue.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core.bands import CARD_BANDS
from cbmflow.core.dates import to_utc
from cbmflow.core.errors import CbmError, InputError, NotFound, TransientError

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)

CARD_PRODUCT_TYPES = {"bs": "CARD-BS", "c6": "CARD-COH6", "s2": "CARD-2A"}
RAW_CARD_TYPES = {"GRD": "bs", "SLC": "c6", "L1C": "s2", "L2A": "s2"}
# Bands a raw product must offer to be processed into CARD.
EXPECTED_ASSETS: dict[str, tuple[str, ...]] = {
    "GRD": ("VV", "VH"),
    "SLC": ("VV", "VH"),
    "L1C": ("B02", "B03", "B04", "B08", "B11"),
    "L2A": ("B02", "B03", "B04", "B08", "B11", "SCL"),
}
# Earth Search v1 / stactools common names -> Sentinel-2 band names.
_S2_COMMON = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12", "scl": "SCL", "aot": "AOT", "wvp": "WVP",
    "visual": "TCI", "tci": "TCI",
}
_METADATA_KEYS = {
    "safe-manifest": "manifest", "safe_manifest": "manifest", "manifest": "manifest",
    "product-metadata": "product_metadata", "product_metadata": "product_metadata",
    "mtd": "product_metadata",
    "granule-metadata": "granule_metadata", "granule_metadata": "granule_metadata",
    "tileinfo_metadata": "granule_metadata",
}
_BAND_RE = re.compile(r"^(B\d[\dA]|SCL|AOT|WVP|TCI|VV|VH|HH|HV)(?:[_-](\d+)m)?$", re.IGNORECASE)
_KEPT_PROPERTIES = {
    "s2:processing_baseline": "processing_baseline",
    "processing:version": "processing_version",
    "eo:cloud_cover": "cloud_cover",
    "platform": "platform",
    "constellation": "constellation",
    "sat:absolute_orbit": "absolute_orbit",
    "s2:product_uri": "product_uri",
    "s2:datatake_id": "datatake_id",
    "s1:product_identifier": "product_identifier",
    "s1:datatake_id": "datatake_id",
    "s1:slice_number": "slice_number",
    "sar:instrument_mode": "instrument_mode",
    "sar:polarizations": "polarizations",
    "proj:epsg": "epsg",
    "proj:code": "proj_code",
    "start_datetime": "start_datetime",
    "end_datetime": "end_datetime",
    "earthsearch:boa_offset_applied": "boa_offset_applied",
    "s2:nodata_pixel_percentage": "nodata_pixel_percentage",
}


@dataclass(frozen=True)
class Problem:
    """An item (or a linked file) that could not be turned into a scene, and why."""

    where: str  # item id or file/URI
    error: str


@dataclass(frozen=True)
class Discovery:
    """What a discovery found: scenes, and the items it had to skip."""

    scenes: tuple[Scene, ...]
    problems: tuple[Problem, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- item -> Scene


def _mission(platform: str | None, item_id: str) -> str:
    if platform:
        m = re.search(r"sentinel[-_ ]?([12])([a-d])", platform, re.IGNORECASE)
        if m:
            return f"S{m.group(1)}{m.group(2).upper()}"
    m = re.match(r"^(S[12][A-D])_", item_id)
    if m:
        return m.group(1)
    raise InputError(f"STAC item {item_id}: cannot tell the mission (platform {platform!r})")


def _product_type(item: pystac.Item, mission: str) -> str:
    props = item.properties
    text = " ".join(str(x) for x in (item.id, item.collection_id or "", props.get("s2:product_type", "")))
    if mission.startswith("S1"):
        ptype = str(props.get("sar:product_type") or "").upper()
        if ptype in ("GRD", "SLC"):
            return ptype
        for candidate in ("GRD", "SLC"):
            if re.search(candidate, text, re.IGNORECASE):
                return candidate
    else:
        if re.search(r"S2MSI2A|MSIL2A|L2A", text, re.IGNORECASE):
            return "L2A"
        if re.search(r"S2MSI1C|MSIL1C|L1C", text, re.IGNORECASE):
            return "L1C"
    raise InputError(f"STAC item {item.id}: product type not recognised (need S1 GRD/SLC or S2 L1C/L2A)")


def _tile(item: pystac.Item, product_type: str) -> str | None:
    props = item.properties
    if props.get("cbmflow:tile"):
        return str(props["cbmflow:tile"])
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    code = props.get("grid:code")
    if code:
        return str(code).removeprefix("MGRS-")
    if props.get("mgrs:utm_zone") is not None and props.get("mgrs:latitude_band"):
        return f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props.get('mgrs:grid_square', '')}"
    m = re.search(r"_T(\d{2}[A-Z]{3})_", item.id)
    if m:
        return m.group(1)
    if product_type in ("GRD", "SLC"):
        rel = props.get("sat:relative_orbit")
        if rel is not None:
            frame = f"R{int(rel):03d}"
            if props.get("s1:slice_number"):
                frame += f"-S{int(props['s1:slice_number']):02d}"
            return frame
    return None


def _normalise_key(key: str) -> tuple[str, int] | None:
    """Band name and resolution rank (0 = native, else metres) of an asset key, or None."""
    low = key.lower()
    base, _, res = low.partition("_")
    if base in _S2_COMMON and (not res or re.fullmatch(r"\d+m", res)):
        return _S2_COMMON[base], int(res[:-1]) if res else 0
    m = _BAND_RE.match(key)
    if m:
        return m.group(1).upper(), int(m.group(2)) if m.group(2) else 0
    return None


def _resolve(href: str, base: str | None) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*://", href) or href.startswith("/") or base is None:
        return href
    if base.startswith("s3://") or re.match(r"^https?://", base):
        scheme, _, rest = base.partition("://")
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), href))}"
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), href))


def _source_assets(item: pystac.Item, base: str | None) -> dict[str, str]:
    bands: dict[str, tuple[int, str]] = {}
    meta: dict[str, str] = {}
    for key, asset in item.assets.items():
        href = _resolve(asset.href, base)
        if key.lower() in _METADATA_KEYS:
            meta[_METADATA_KEYS[key.lower()]] = href
            continue
        norm = _normalise_key(key)
        if norm is None:
            continue
        name, rank = norm
        if name not in bands or rank < bands[name][0]:
            bands[name] = (rank, href)
    out = {name: href for name, (_, href) in sorted(bands.items())}
    out.update(meta)
    return out


def _sensing_time(item: pystac.Item) -> datetime:
    t = item.datetime
    if t is None:
        start = item.properties.get("start_datetime")
        if not start:
            raise InputError(f"STAC item {item.id}: no datetime")
        return to_utc(start, what=f"STAC item {item.id} start_datetime")  # type: ignore[return-value]
    return to_utc(t)  # type: ignore[return-value]


def _footprint(item: pystac.Item) -> str:
    from shapely.geometry import shape

    if not item.geometry:
        raise InputError(f"STAC item {item.id}: no geometry")
    try:
        return str(shape(item.geometry).wkt)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"STAC item {item.id}: invalid geometry: {exc}") from exc


def _properties(item: pystac.Item) -> dict[str, Any]:
    props = {new: item.properties[old] for old, new in _KEPT_PROPERTIES.items() if old in item.properties}
    self_href = _self_href(item)
    if self_href:
        props["stac_href"] = self_href
    return props


def _self_href(item: pystac.Item) -> str | None:
    """The item's self link as written (never resolving other links over the network)."""
    for link in item.links:
        if link.rel == "self" and isinstance(link.target, str):
            return link.target
    return None


def scene_from_item(item: pystac.Item, *, base_href: str | None = None) -> Scene:
    """The catalogue scene of a STAC item (raw S1/S2 product or cbmflow CARD product)."""
    base = base_href or _self_href(item)
    props = item.properties
    sensing = _sensing_time(item)
    footprint = _footprint(item)
    mission = _mission(props.get("platform"), item.id)
    orbit = props.get("sat:orbit_state")
    direction = str(orbit).lower() if orbit else None
    if direction not in (None, "ascending", "descending"):
        direction = None
    rel = props.get("sat:relative_orbit")
    common: dict[str, Any] = dict(
        product_id=item.id,
        mission=mission,
        sensing_time=sensing,
        relative_orbit=int(rel) if rel is not None else None,
        orbit_direction=direction,
        footprint_wkt=footprint,
        collection=item.collection_id,
        properties=_properties(item),
    )
    card_type = props.get("cbmflow:card_type")
    if card_type is not None:
        if card_type not in CARD_PRODUCT_TYPES:
            raise InputError(f"STAC item {item.id}: cbmflow:card_type {card_type!r} not in {sorted(CARD_PRODUCT_TYPES)}")
        assets = {key: _resolve(a.href, base) for key, a in item.assets.items()
                  if not a.roles or "data" in a.roles}
        missing = [b for b in CARD_BANDS[card_type] if b not in assets]
        simulated = bool(props.get("cbmflow:simulated", False))
        common["properties"].update(
            {k: v for k, v in props.items() if k.startswith(("cbmflow:", "proj:")) and k != "cbmflow:card_type"}
        )
        if simulated:
            common["properties"]["simulated"] = True
        return Scene(
            **common,
            product_type=CARD_PRODUCT_TYPES[card_type],
            card_type=card_type,
            tile=_tile(item, CARD_PRODUCT_TYPES[card_type]),
            assets=assets,
            simulated=simulated,
            status="failed" if missing else "ready",
            last_error=f"missing asset(s) {', '.join(missing)} in item {item.id}" if missing else None,
        )
    product_type = _product_type(item, mission)
    source_assets = _source_assets(item, base)
    missing = [b for b in EXPECTED_ASSETS[product_type] if b not in source_assets]
    error = None
    if missing:
        error = (f"missing asset(s) {', '.join(missing)} in item {item.id} "
                 f"(has: {', '.join(sorted(item.assets)) or 'none'})")
    return Scene(
        **common,
        product_type=product_type,
        card_type=RAW_CARD_TYPES[product_type],
        tile=_tile(item, product_type),
        source_assets=source_assets,
        status="failed" if missing else "discovered",
        last_error=error,
    )


# --------------------------------------------------------------------------- reading sources


def _item_from_dict(data: Any, where: str) -> pystac.Item:
    import pystac

    if not isinstance(data, dict):
        raise InputError(f"STAC item in {where} is not a JSON object")
    item_id = data.get("id") or "(no id)"
    if data.get("type") != "Feature":
        raise InputError(f"STAC item {item_id} in {where}: type is {data.get('type')!r}, not 'Feature'")
    if not data.get("geometry"):
        raise InputError(f"STAC item {item_id} in {where}: no geometry")
    props = data.get("properties") or {}
    if not (props.get("datetime") or props.get("start_datetime")):
        raise InputError(f"STAC item {item_id} in {where}: no datetime")
    try:
        return pystac.Item.from_dict(data, preserve_dict=True, migrate=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"STAC item {item_id} in {where}: not a valid STAC item: {exc}") from exc


def _read_json(uri: str) -> Any:
    from cbmflow.core import storage

    if re.match(r"^https?://", uri):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri, timeout=60) as resp:  # noqa: S310 - STAC over HTTP
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"STAC document {uri} does not exist") from exc
            raise TransientError(f"HTTP {exc.code} fetching {uri}") from exc
        except OSError as exc:
            raise TransientError(f"cannot fetch {uri}: {exc}") from exc
    else:
        raw = storage.read_bytes(uri)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"STAC file {uri} is not valid JSON: {exc}") from exc


def _walk(uri: str, problems: list[Problem], seen: set[str]) -> Iterator[tuple[dict[str, Any], str]]:
    """(item dict, its file) for every item reachable from a static STAC document."""
    if uri in seen:
        return
    seen.add(uri)
    data = _read_json(uri)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "Feature":
        yield data, uri
    elif kind == "FeatureCollection":
        for feature in data.get("features") or []:
            yield feature, uri
    elif kind in ("Catalog", "Collection"):
        for link in data.get("links") or []:
            rel, href = link.get("rel"), link.get("href")
            if rel not in ("child", "item") or not href:
                continue
            target = _resolve(href, uri)
            try:
                yield from _walk(target, problems, seen)
            except CbmError as exc:
                if isinstance(exc, TransientError):
                    raise
                problems.append(Problem(target, str(exc)))
    else:
        raise InputError(f"STAC file {uri} is not an Item, ItemCollection, Catalog or Collection (type {kind!r})")


def _is_api(source: str) -> bool:
    return bool(re.match(r"^https?://", source)) and not source.lower().endswith((".json", ".geojson"))


def _api_items(
    source: str,
    *,
    collections: Sequence[str] | None,
    bbox: Sequence[float] | None,
    intersects_wkt: str | None,
    start: datetime | None,
    end: datetime | None,
    max_items: int | None,
) -> Iterator[dict[str, Any]]:
    import shapely
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(source)
    except APIError as exc:
        raise TransientError(f"STAC API {source} failed: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"cannot reach STAC API {source}: {exc}") from exc
    datetime_arg = None
    if start or end:
        datetime_arg = f"{start.isoformat() if start else '..'}/{end.isoformat() if end else '..'}"
    search = client.search(
        collections=list(collections) if collections else None,
        bbox=list(bbox) if bbox else None,
        intersects=shapely.geometry.mapping(shapely.from_wkt(intersects_wkt)) if intersects_wkt else None,
        datetime=datetime_arg,
        max_items=max_items,
    )
    try:
        yield from search.items_as_dicts()
    except APIError as exc:
        raise TransientError(f"STAC API {source} search failed: {exc}") from exc
    except OSError as exc:  # requests' connection errors are OSErrors
        raise TransientError(f"cannot reach STAC API {source}: {exc}") from exc


def _to_utc(t: datetime | None) -> datetime | None:
    return to_utc(t)


def discover_all(
    source: str,
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects_wkt: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_items: int | None = None,
) -> Discovery:
    """Scenes of the matching items of a STAC API or static source, and the items skipped."""
    import shapely

    start, end = _to_utc(start), _to_utc(end)
    area = None
    if bbox is not None:
        if len(bbox) != 4:
            raise InputError(f"bbox must be (west, south, east, north), got {bbox!r}")
        area = shapely.box(*bbox)
    if intersects_wkt:
        try:
            geom = shapely.from_wkt(intersects_wkt)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"intersects geometry is not valid WKT: {exc}") from exc
        area = geom if area is None else area.intersection(geom)
    problems: list[Problem] = []
    if _is_api(source):
        pairs: Iterable[tuple[dict[str, Any], str]] = (
            (d, source) for d in _api_items(
                source, collections=collections, bbox=bbox, intersects_wkt=intersects_wkt,
                start=start, end=end, max_items=max_items,
            )
        )
    else:
        pairs = _walk(source, problems, set())
    scenes: dict[str, Scene] = {}
    for data, where in pairs:
        try:
            item = _item_from_dict(data, where)
            if collections and item.collection_id not in collections:
                continue
            scene = scene_from_item(item, base_href=_self_href(item) or where)
        except CbmError as exc:
            if isinstance(exc, TransientError):
                raise
            item_id = data.get("id") if isinstance(data, dict) else None
            problems.append(Problem(str(item_id or where), str(exc)))
            log.warning("skipped STAC item: %s", exc)
            continue
        if start and scene.sensing_time < start:
            continue
        if end and scene.sensing_time >= end:
            continue
        if area is not None and scene.footprint_wkt and not shapely.from_wkt(scene.footprint_wkt).intersects(area):
            continue
        scenes[scene.product_id] = scene
        if max_items and len(scenes) >= max_items:
            break
    return Discovery(scenes=tuple(scenes.values()), problems=tuple(problems))


def discover(
    source: str,
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects_wkt: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_items: int | None = None,
) -> list[Scene]:
    """Scenes of the items of a STAC API, static catalogue, ItemCollection or Item matching the filters."""
    found = discover_all(
        source, collections=collections, bbox=bbox, intersects_wkt=intersects_wkt,
        start=start, end=end, max_items=max_items,
    )
    return list(found.scenes)


# --------------------------------------------------------------------------- catalogue


def catalogue_scenes(conn: psycopg.Connection, scenes: Iterable[Scene]) -> dict[str, int]:
    """Upsert scenes into the catalogue (one transaction); counts of new, known and failed scenes."""
    scenes = list(scenes)
    with conn.transaction():
        ids = [s.product_id for s in scenes]
        known = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT product_id, status, last_error FROM catalogue WHERE product_id = ANY(%s)", (ids,)
            )
        }
        # A scene's queue status is kept by upsert; new problem scenes enter as failed.
        inserted = catalogue.upsert(conn, scenes)
        failed = 0
        for s in scenes:
            before = known.get(s.product_id)
            if s.status == "failed" and s.last_error:
                failed += 1
                if before is None or before[0] == "discovered" or (
                    before[0] == "failed" and before[1] != s.last_error
                ):
                    catalogue.mark_failed(conn, inserted[s.product_id], s.last_error)
            elif before is not None and before[0] == "failed" and (before[1] or "").startswith("missing asset"):
                # the item now has what was missing: back into the queue
                catalogue.set_status(conn, inserted[s.product_id], s.status)
    new = sum(1 for s in scenes if s.product_id not in known)
    return {"new": new, "known": len(scenes) - new, "failed": failed, "total": len(scenes)}


def aoi_footprint_wkt(conn: psycopg.Connection, aoi: str) -> str:
    """The envelope of an AOI's parcels as WKT in EPSG:4326."""
    from cbmflow.parcels.store import get_aoi

    the_aoi = get_aoi(conn, aoi)
    row = conn.execute(
        "SELECT ST_AsText(ST_Transform(ST_Envelope(ST_Collect(geom)), 4326)) FROM parcels WHERE aoi = %s",
        (the_aoi.name,),
    ).fetchone()
    if row is None or row[0] is None:
        raise NotFound(f"AOI {aoi} has no parcels: import parcels first or give --bbox")
    return str(row[0])
