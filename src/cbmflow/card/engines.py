"""CARD engines: a claimed scene in, band COGs under their deterministic keys out.

CARD-BS with ``sarsen`` (native, :mod:`cbmflow.card.backscatter`) or ``snap`` (graph ``card_bs``
through gpt or esa_snappy); CARD-COH6 with SNAP (graph ``card_coh6``); CARD-2A from ESA's L2A
(direct ingestion) or from L1C through Sen2Cor. Where SNAP or Sen2Cor is missing the scene is
marked failed with a message saying what to install, never with a fake product.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cbmflow.card.jobs import claim_scene, run_claimed
from cbmflow.card.keys import card_key, card_prefix, resolve_card_root
from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import storage
from cbmflow.core.errors import InputError, ProcessingError

log = logging.getLogger(__name__)

BS_ENGINES: tuple[str, ...] = ("sarsen", "snap")
SAFE_KEYS: tuple[str, ...] = ("safe", "SAFE", "product", "manifest", "zip")
POLARISATIONS: tuple[str, ...] = ("VV", "VH", "HH", "HV")


def _local_product(scene: Scene, tmp: Path) -> Path:
    """The scene's source product (SAFE folder or zip) as a local path (downloads an S3 zip)."""
    uri = next((scene.source_assets[k] for k in SAFE_KEYS if k in scene.source_assets), None)
    if uri is None:
        raise InputError(f"scene {scene.product_id}: no source product among source_assets "
                         f"{sorted(scene.source_assets)} (expected one of {', '.join(SAFE_KEYS)})")
    parsed = storage.parse(uri)
    if not parsed.is_s3:
        path = Path(parsed.key)
        if path.name == "manifest.safe":
            path = path.parent
        if not path.exists():
            from cbmflow.core.errors import NotFound

            raise NotFound(f"scene {scene.product_id}: source product {path} does not exist")
        return path
    if not parsed.key.endswith(".zip"):
        raise InputError(f"scene {scene.product_id}: S3 source {uri} must be a .zip product")
    return storage.download(uri, tmp / Path(parsed.key).name)


def _local_file(uri: str, tmp: Path) -> Path:
    parsed = storage.parse(uri)
    if parsed.is_s3:
        return storage.download(uri, tmp / Path(parsed.key).name)
    return Path(parsed.key)


def _utm_of(scene: Scene) -> int:
    if not scene.footprint_wkt:
        raise InputError(f"scene {scene.product_id}: no footprint to choose a UTM zone; pass epsg")
    from shapely import wkt

    from cbmflow.core.geo import utm_epsg

    c = wkt.loads(scene.footprint_wkt).centroid
    return utm_epsg(c.x, c.y)


def split_bands(product: Path, bands: Sequence[str], uri_for: Callable[[str], str],
                tags: dict[str, str], zero_is_nodata: bool = True) -> dict[str, str]:
    """Write each band of a SNAP GeoTIFF as a float32 COG (nodata NaN); band names from descriptions or order."""
    import numpy as np
    import rasterio

    from cbmflow.core.cog import write_cog

    out: dict[str, str] = {}
    with rasterio.open(product) as src:
        if src.count < len(bands):
            raise ProcessingError(f"{product.name} has {src.count} band(s), expected {len(bands)}: {list(bands)}")
        descriptions = [d or "" for d in src.descriptions]
        for i, band in enumerate(bands, start=1):
            pol = band.split("_")[-1]
            index = next((j + 1 for j, d in enumerate(descriptions) if pol in d.upper()), i)
            arr = src.read(index).astype(np.float32)
            if zero_is_nodata:
                arr[arr == 0] = np.nan
            if src.nodata is not None and not np.isnan(src.nodata):
                arr[arr == src.nodata] = np.nan
            uri = uri_for(band)
            with storage.rasterio_env():
                write_cog(uri, arr, crs=src.crs, transform=src.transform, nodata=float("nan"),
                          band_names=[band], tags={**tags, "CBMFLOW_SOURCE_BAND": descriptions[index - 1]})
            out[band] = uri
    return out


def _polarisations_of(scene: Scene, requested: Sequence[str]) -> tuple[str, ...]:
    declared = scene.properties.get("sar:polarizations") or scene.properties.get("polarisations")
    if declared:
        pols = tuple(p for p in requested if p in {str(x).upper() for x in declared})
        if not pols:
            raise InputError(f"scene {scene.product_id}: none of {list(requested)} in its polarisations {declared}")
        return pols
    return tuple(requested)


def process_bs_scene(
    scene_id: int,
    *,
    card_root: str | None = None,
    engine: str = "sarsen",
    dsn: str | None = None,
    reprocess: bool = False,
    dem: str | None = None,
    epsg: int | None = None,
    polarisations: Sequence[str] = ("VV", "VH"),
    resolution: float = 10.0,
    runner: str = "gpt",
    graph_params: dict[str, Any] | None = None,
    threads: int = 2,
    cache: str = "4G",
    timeout: float = 3 * 3600,
) -> dict[str, str]:
    """Make CARD-BS for one catalogue scene (sarsen or SNAP), publish COGs, mark it ready; band -> URI."""
    if engine not in BS_ENGINES:
        raise InputError(f"CARD-BS engine {engine!r} unknown; choose one of {BS_ENGINES}")
    root = resolve_card_root(card_root)
    scene = claim_scene(dsn, scene_id, reprocess)
    prefix = card_prefix(root, "bs", scene.sensing_time)

    def work() -> dict[str, str]:
        with tempfile.TemporaryDirectory(prefix="cbmflow-bs-") as tmpdir:
            tmp = Path(tmpdir)
            if engine == "sarsen":
                return _bs_sarsen(scene, tmp, prefix, dem, epsg, polarisations, resolution)
            return _bs_snap(scene, tmp, root, dem, epsg, polarisations, resolution, runner,
                            graph_params or {}, threads, cache, timeout)

    return run_claimed(dsn, scene, work)


def _bs_sarsen(scene: Scene, tmp: Path, prefix: str, dem: str | None, epsg: int | None,
               polarisations: Sequence[str], resolution: float) -> dict[str, str]:
    from cbmflow.card import backscatter as sarsen_bs

    dem_uri = dem or scene.properties.get("dem")
    if not dem_uri:
        raise InputError(f"scene {scene.product_id}: the sarsen engine needs a DEM GeoTIFF (param dem)")
    safe = _local_product(scene, tmp)
    available = sarsen_bs.available_polarisations(safe)
    pols = tuple(p for p in _polarisations_of(scene, polarisations) if p in available)
    if not pols:
        raise InputError(f"scene {scene.product_id}: none of {list(polarisations)} has measurement data in "
                         f"{safe.name}; available: {sorted(available) or 'none'}")
    return sarsen_bs.sarsen_backscatter(safe, _local_file(str(dem_uri), tmp), out_uri=prefix,
                                        product_id=scene.product_id, polarisations=pols, epsg=epsg,
                                        resolution=resolution)


def _bs_snap(scene: Scene, tmp: Path, root: str, dem: str | None, epsg: int | None,
             polarisations: Sequence[str], resolution: float, runner: str, graph_params: dict[str, Any],
             threads: int, cache: str, timeout: float) -> dict[str, str]:
    from cbmflow.card import graphs, snap

    if runner == "gpt":
        snap.find_gpt()  # fail at once, before any download, when SNAP is absent
    pols = _polarisations_of(scene, polarisations)
    params: dict[str, Any] = {
        "polarisations": ",".join(pols), "pixel_spacing": int(resolution),
        "map_projection": f"EPSG:{epsg or _utm_of(scene)}",
    }
    if dem:
        params.update({"dem_name": "External DEM", "external_dem_file": str(_local_file(dem, tmp))})
    params.update(graph_params)
    target = tmp / f"{scene.product_id}_bs.tif"
    params.update({"input": str(_local_product(scene, tmp)), "output": str(target)})
    graph_file = graphs.write_graph("card_bs", params, tmp / "card_bs.xml")
    snap.run_graph(graph_file, target, runner=runner, threads=threads, cache=cache, timeout=timeout)
    values = graphs.resolve_parameters("card_bs", params)
    tags = {"CBMFLOW_ENGINE": f"snap-{runner}", "CBMFLOW_CARD_TYPE": "bs", "CBMFLOW_PRODUCT_ID": scene.product_id,
            "CBMFLOW_CALIBRATION": values["calibration"] + ("+terrain-flattening" if values["terrain_flattening"] == "true" else ""),
            "CBMFLOW_UNITS": "dB" if values["db"] == "true" else "linear", "CBMFLOW_DEM": values["dem_name"]}
    return split_bands(target, pols, lambda b: card_key(root, "bs", scene.sensing_time, scene.product_id, b), tags)



def process_coh6_pair(
    secondary_id: int,
    reference_id: int,
    *,
    card_root: str | None = None,
    dsn: str | None = None,
    reprocess: bool = False,
    dem: str | None = None,
    epsg: int | None = None,
    polarisations: Sequence[str] = ("VV", "VH"),
    runner: str = "gpt",
    graph_params: dict[str, Any] | None = None,
    threads: int = 2,
    cache: str = "4G",
    timeout: float = 6 * 3600,
) -> dict[str, str]:
    """Make CARD-COH6 for a (reference, secondary) SLC pair with SNAP; assets go on the secondary's row."""
    from cbmflow.core import db

    root = resolve_card_root(card_root)
    with db.connect(dsn) as conn:
        reference = catalogue.get(conn, reference_id)
    scene = claim_scene(dsn, secondary_id, reprocess)

    def work() -> dict[str, str]:
        from cbmflow.card import graphs, snap

        if runner == "gpt":
            snap.find_gpt()
        with tempfile.TemporaryDirectory(prefix="cbmflow-coh6-") as tmpdir:
            tmp = Path(tmpdir)
            pols = _polarisations_of(scene, polarisations)
            params: dict[str, Any] = {"polarisations": ",".join(pols),
                                      "map_projection": f"EPSG:{epsg or _utm_of(scene)}"}
            if dem:
                params.update({"dem_name": "External DEM", "external_dem_file": str(_local_file(dem, tmp))})
            params.update(graph_params or {})
            target = tmp / f"{scene.product_id}_coh6.tif"
            params.update({"reference": str(_local_product(reference, tmp)),
                           "secondary": str(_local_product(scene, tmp)), "output": str(target)})
            graph_file = graphs.write_graph("card_coh6", params, tmp / "card_coh6.xml")
            snap.run_graph(graph_file, target, runner=runner, threads=threads, cache=cache, timeout=timeout)
            tags = {"CBMFLOW_ENGINE": f"snap-{runner}", "CBMFLOW_CARD_TYPE": "c6",
                    "CBMFLOW_PRODUCT_ID": scene.product_id, "CBMFLOW_REFERENCE": reference.product_id}
            return split_bands(target, [f"COH_{p}" for p in pols],
                               lambda b: card_key(root, "c6", scene.sensing_time, scene.product_id, b), tags)

    return run_claimed(dsn, scene, work)


def process_s2_scene(scene_id: int, *, card_root: str | None = None, dsn: str | None = None,
                     reprocess: bool = False, sen2cor_timeout: float = 2 * 3600) -> dict[str, str]:
    """Make CARD-2A for one S2 scene: ESA L2A directly, or L1C through Sen2Cor; band -> URI."""
    from cbmflow.card import optical as s2

    root = resolve_card_root(card_root)
    scene = claim_scene(dsn, scene_id, reprocess)

    def uri_for(band: str) -> str:
        return card_key(root, "s2", scene.sensing_time, scene.product_id, band)

    def work() -> dict[str, str]:
        tags = {"CBMFLOW_PRODUCT_ID": scene.product_id, "CBMFLOW_SOURCE_LEVEL": scene.product_type}
        if "L2A" in scene.product_type.upper():
            meta = s2.scene_metadata(scene.source_assets, scene.properties, scene.product_id)
            return s2.ingest_l2a(scene.source_assets, meta, uri_for,
                                 tags={**tags, "CBMFLOW_ENGINE": "esa-l2a"})
        if "L1C" not in scene.product_type.upper():
            raise InputError(f"scene {scene.product_id}: product type {scene.product_type!r} is neither L2A nor L1C")
        from cbmflow.card import sen2cor

        exe = sen2cor.find_l2a_process()  # fail at once when Sen2Cor is absent
        with tempfile.TemporaryDirectory(prefix="cbmflow-s2-") as tmpdir:
            tmp = Path(tmpdir)
            l2a = sen2cor.run_sen2cor(_local_product(scene, tmp), tmp / "l2a", exe=exe, timeout=sen2cor_timeout)
            files = sen2cor.l2a_band_files(l2a)
            meta = s2.read_l2a_metadata((l2a / "MTD_MSIL2A.xml").read_bytes())
            return s2.ingest_l2a({b: str(p) for b, p in files.items()}, meta, uri_for,
                                 tags={**tags, "CBMFLOW_ENGINE": "sen2cor"})

    return run_claimed(dsn, scene, work)


__all__ = ["BS_ENGINES", "POLARISATIONS", "SAFE_KEYS", "process_bs_scene", "process_coh6_pair", "process_s2_scene",
           "split_bands"]
