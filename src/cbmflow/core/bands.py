"""Band names and their smallint codes in the ``signatures`` table (mirrors the ``bands`` table)."""

from __future__ import annotations

from cbmflow.core.errors import InputError

BAND_CODES: dict[str, int] = {
    "VV": 1, "VH": 2, "COH_VV": 3, "COH_VH": 4,
    "B01": 10, "B02": 11, "B03": 12, "B04": 13, "B05": 14, "B06": 15, "B07": 16,
    "B08": 17, "B8A": 18, "B09": 19, "B11": 20, "B12": 21, "SCL": 30,
}
BAND_NAMES: dict[int, str] = {v: k for k, v in BAND_CODES.items()}

# The bands each CARD type carries (SCL is not a signature band: it feeds scl_histograms).
CARD_BANDS: dict[str, tuple[str, ...]] = {
    "bs": ("VV", "VH"),
    "c6": ("COH_VV", "COH_VH"),
    "s2": ("B02", "B03", "B04", "B08", "B11", "SCL"),
}

# Sentinel-2 Scene Classification classes (0..11).
SCL_CLASSES: dict[int, str] = {
    0: "no_data", 1: "saturated_defective", 2: "dark_area_pixels", 3: "cloud_shadows",
    4: "vegetation", 5: "not_vegetated", 6: "water", 7: "unclassified",
    8: "cloud_medium_probability", 9: "cloud_high_probability", 10: "thin_cirrus", 11: "snow",
}
SCL_CLOUDY: frozenset[int] = frozenset({0, 1, 3, 8, 9, 10})  # excluded by the default cloud mask


def code(name: str) -> int:
    """The smallint code of a band name."""
    try:
        return BAND_CODES[name]
    except KeyError:
        raise InputError(f"unknown band {name!r}; known: {', '.join(BAND_CODES)}") from None


def name(band_code: int) -> str:
    """The band name of a smallint code."""
    try:
        return BAND_NAMES[band_code]
    except KeyError:
        raise InputError(f"unknown band code {band_code}") from None
