"""Sentinel-2 CARD-2A: harmonised L2A bands as COGs on one 10 m grid.

Harmonisation: from processing baseline 04.00 (products from 2022-01-25) ESA adds
``BOA_ADD_OFFSET`` (-1000 as written in the metadata, i.e. DN = reflectance * 10000 + 1000).
cbmflow removes it so signatures compare across years: ``DN' = DN + BOA_ADD_OFFSET`` for valid
pixels. DN 0 is no-data and stays 0; valid pixels that would become 0 or negative (dark targets
below the offset) are clipped to **1**, not 0, so they stay valid and are not confused with
no-data. Baselines before 04.00 pass unchanged. SCL is never offset.

Ingestion reads the bands named in a catalogue scene's ``source_assets`` (local or S3), and
resamples bands coarser than the finest one (B11 and SCL at 20 m) onto the finest grid with
nearest neighbour (SCL classes must not be averaged).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from cbmflow.core.errors import CorruptData, InputError, NotFound

OFFSET_BASELINE = "04.00"
OFFSET_FROM = date(2022, 1, 25)
DEFAULT_BOA_ADD_OFFSET = -1000
REFLECTANCE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11")
S2_BANDS: tuple[str, ...] = REFLECTANCE_BANDS + ("SCL",)
# band_id in MTD_MSIL2A.xml -> band name
MTD_BAND_IDS: dict[int, str] = {0: "B01", 1: "B02", 2: "B03", 3: "B04", 4: "B05", 5: "B06", 6: "B07",
                                7: "B08", 8: "B8A", 9: "B09", 10: "B10", 11: "B11", 12: "B12"}
# Asset keys used by catalogues (ESA/CDSE, Earth Search) for each CARD-2A band.
ASSET_ALIASES: dict[str, tuple[str, ...]] = {
    "B02": ("B02", "B02_10m", "blue"), "B03": ("B03", "B03_10m", "green"),
    "B04": ("B04", "B04_10m", "red"), "B08": ("B08", "B08_10m", "nir"),
    "B11": ("B11", "B11_20m", "swir16"), "SCL": ("SCL", "SCL_20m", "scl"),
}
METADATA_KEYS: tuple[str, ...] = ("MTD", "metadata", "product_metadata", "mtd_msil2a")
_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")


@dataclass(frozen=True)
class L2AMetadata:
    """What harmonisation needs from an L2A product's MTD_MSIL2A.xml."""

    baseline: str
    boa_add_offset: dict[str, int] = field(default_factory=dict)  # band name -> offset
    quantification: int = 10000


def _baseline_key(baseline: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,2})\.(\d{2})\s*", baseline)
    if not m:
        raise InputError(f"processing baseline {baseline!r} is not of the form NN.NN")
    return int(m.group(1)), int(m.group(2))


def needs_offset_removal(baseline: str) -> bool:
    """Whether a processing baseline carries the +1000 reflectance offset (04.00 and later)."""
    return _baseline_key(baseline) >= _baseline_key(OFFSET_BASELINE)


def read_l2a_metadata(xml: bytes | str) -> L2AMetadata:
    """Processing baseline, BOA_ADD_OFFSET per band and quantification from MTD_MSIL2A.xml content."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise CorruptData(f"MTD_MSIL2A.xml is not well-formed: {exc}") from None
    baseline = next((e.text for e in root.iter() if e.tag.endswith("PROCESSING_BASELINE") and e.text), None)
    if baseline is None:
        raise CorruptData("MTD_MSIL2A.xml has no PROCESSING_BASELINE")
    offsets: dict[str, int] = {}
    for e in root.iter():
        if e.tag.endswith("BOA_ADD_OFFSET") and e.get("band_id") is not None and e.text:
            band = MTD_BAND_IDS.get(int(e.get("band_id", "-1")))
            if band:
                offsets[band] = int(float(e.text))
    quant = next((int(float(e.text)) for e in root.iter()
                  if e.tag.endswith("BOA_QUANTIFICATION_VALUE") and e.text), 10000)
    return L2AMetadata(baseline.strip(), offsets, quant)


def harmonise(dn: np.ndarray, baseline: str, offset: int = DEFAULT_BOA_ADD_OFFSET) -> np.ndarray:
    """L2A reflectance DN without the baseline >= 04.00 offset; 0 stays no-data, results < 1 become 1."""
    data = np.asarray(dn)
    if not needs_offset_removal(baseline) or offset == 0:
        return data.astype(np.uint16, copy=True)
    shifted = data.astype(np.int32) + int(offset)
    out = np.clip(shifted, 1, 65535).astype(np.uint16)
    out[data == 0] = 0
    return out


def _asset(source_assets: Mapping[str, str], band: str) -> str | None:
    for key in ASSET_ALIASES[band]:
        if key in source_assets:
            return source_assets[key]
    return None


def scene_metadata(source_assets: Mapping[str, str], properties: Mapping[str, Any],
                   product_id: str) -> L2AMetadata:
    """The L2A metadata of a scene: its MTD asset, else STAC properties, else the N-number of its id."""
    from cbmflow.core import storage

    for key in METADATA_KEYS:
        if key in source_assets:
            return read_l2a_metadata(storage.read_bytes(source_assets[key]))
    baseline = properties.get("s2:processing_baseline") or properties.get("processing_baseline")
    if baseline is None:
        m = _BASELINE_IN_ID.search(product_id)
        if m:
            baseline = f"{m.group(1)}.{m.group(2)}"
    if baseline is None:
        raise InputError(f"scene {product_id}: processing baseline unknown (no MTD asset among "
                         f"{sorted(source_assets)}, no s2:processing_baseline property, no _Nxxxx_ in the id)")
    offset = properties.get("s2:boa_add_offset", properties.get("earthsearch:boa_offset_applied"))
    offsets = {b: int(offset) for b in REFLECTANCE_BANDS} if isinstance(offset, (int, float)) and not isinstance(offset, bool) else {}
    return L2AMetadata(str(baseline), offsets)


def ingest_l2a(
    source_assets: Mapping[str, str],
    metadata: L2AMetadata,
    out_uri_for: Callable[[str], str],
    *,
    tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Harmonise the L2A band assets present, resample to the finest grid, write COGs; band -> URI."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from cbmflow.core import storage
    from cbmflow.core.cog import write_cog

    present = {b: uri for b in S2_BANDS if (uri := _asset(source_assets, b)) is not None}
    if not any(b in present for b in REFLECTANCE_BANDS):
        raise InputError(f"no CARD-2A reflectance band among the source assets {sorted(source_assets)}; "
                         f"expected keys like {', '.join(ASSET_ALIASES['B04'])}")
    arrays: dict[str, tuple[np.ndarray, Any, Any]] = {}
    with storage.rasterio_env():
        for band, uri in present.items():
            try:
                with rasterio.open(storage.gdal_path(uri)) as src:
                    arrays[band] = (src.read(1), src.transform, src.crs)
            except rasterio.errors.RasterioIOError as exc:
                if not storage.exists(uri):
                    raise NotFound(f"band {band} asset {uri} does not exist") from None
                raise CorruptData(f"band {band} asset {uri} is not a readable raster: {exc}") from None
    ref_band = min(arrays, key=lambda b: (abs(arrays[b][1].a), S2_BANDS.index(b)))
    ref_arr, ref_tf, ref_crs = arrays[ref_band]
    outputs: dict[str, str] = {}
    for band, (arr, tf, crs) in arrays.items():
        if crs != ref_crs:
            raise InputError(f"band {band} is in {crs}, {ref_band} in {ref_crs}: one tile, one CRS expected")
        if arr.shape != ref_arr.shape or not tf.almost_equals(ref_tf):
            dst = np.zeros(ref_arr.shape, dtype=arr.dtype)
            reproject(arr, dst, src_transform=tf, src_crs=crs, dst_transform=ref_tf, dst_crs=ref_crs,
                      resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
            arr = dst
        if band == "SCL":
            data = arr.astype(np.uint8)
            note = "scene classification, unchanged"
        else:
            offset = metadata.boa_add_offset.get(band, DEFAULT_BOA_ADD_OFFSET)
            data = harmonise(arr, metadata.baseline, offset)
            note = (f"BOA_ADD_OFFSET {offset} removed (baseline {metadata.baseline}); DN<1 clipped to 1"
                    if needs_offset_removal(metadata.baseline) else f"baseline {metadata.baseline}: no offset")
        band_tags = {"CBMFLOW_CARD_TYPE": "s2", "CBMFLOW_BAND": band, "CBMFLOW_HARMONISATION": note,
                     "CBMFLOW_PROCESSING_BASELINE": metadata.baseline, **(tags or {})}
        uri = out_uri_for(band)
        with storage.rasterio_env():
            write_cog(uri, data, crs=ref_crs, transform=ref_tf, nodata=0, band_names=[band], tags=band_tags,
                      overview_resampling="NEAREST" if band == "SCL" else None)
        outputs[band] = uri
    return outputs
