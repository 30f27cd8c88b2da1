"""Crop groups and their typical seasonal Sentinel-1/Sentinel-2 signal profiles (for simulation)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

GROUPS: tuple[str, ...] = (
    "winter_cereal", "spring_cereal", "maize", "grassland", "rapeseed",
    "sugar_beet", "potato", "legumes", "fallow", "other",
)

_CEREALS = (
    "weizen", "weichen", "gerste", "roggen", "triticale", "dinkel", "hafer", "getreide",
    "hvede", "byg", "rug", "spelt", "havre", "korn",
    "tarwe", "gerst", "rogge", "haver", "granen",
    "wheat", "barley", "rye", "oat", "cereal",
)

# Ordered rules: the first group whose keyword occurs in the normalised name wins.
# Names are lower-cased, umlauts kept (ä ö ü æ ø å), other accents stripped.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fallow", ("brache", "brak", "braak", "fallow", "natuurmengsel", "set-aside")),
    ("rapeseed", ("raps", "rapeseed", "koolzaad", "canola", "rübsen")),
    ("maize", ("mais", "majs", "maize", "corn")),
    ("sugar_beet", ("zuckerrübe", "zuckerruebe", "sukkerroe", "suikerbiet", "sugar beet", "sugarbeet", "bederoe")),
    ("potato", ("kartoffel", "aardappel", "potato", "kartofler")),
    ("grassland", (
        "wiese", "weide", "grünland", "gruenland", "kleegras", "feldfutter", "luzerne", "klee",
        "græs", "graes", "kløver", "lucerne", "gras", "grass", "pasture", "meadow", "alm",
    )),
    ("winter_cereal", ("winter", "vinter")),
    ("spring_cereal", _CEREALS),
    ("legumes", (
        "soja", "soy", "erbse", "ackerbohne", "bohne", "lupin", "linse", "wicke",
        "ærter", "bønne", "bælgsæd", "erwt", "bonen", "pea", "bean", "lentil",
    )),
)


def _normalise(text: str) -> str:
    keep = {"ä", "ö", "ü", "æ", "ø", "å"}
    out = []
    for ch in str(text).lower():
        if ch in keep:
            out.append(ch)
        else:
            out.append("".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)))
    return re.sub(r"\s+", " ", "".join(out)).strip()


def crop_group(name_or_code: str) -> str:
    """The crop group (one of GROUPS) of a crop name in German, Danish, Dutch or English; 'other' if unknown."""
    text = _normalise(name_or_code)
    if not text:
        return "other"
    if text in GROUPS:
        return text
    for group, words in _RULES:
        if group == "winter_cereal":
            if any(w in text for w in words) and (any(c in text for c in _CEREALS) or text in words):
                return group
            continue
        if any(w in text for w in words):
            return group
    return "other"


@dataclass(frozen=True)
class Profile:
    """Seasonal keypoints of one crop group: day of year, green cover, brown cover, VV dB, VH dB."""

    group: str
    doy: tuple[float, ...]
    green: tuple[float, ...]
    brown: tuple[float, ...]
    vv_db: tuple[float, ...]
    vh_db: tuple[float, ...]
    harvest_doy: float | None  # nominal harvest (or main cut); None for groups managed by mowing events
    cuts: tuple[int, int] = (0, 0)  # min/max number of mowing events per season

    def at(self, doy: np.ndarray) -> dict[str, np.ndarray]:
        """Interpolated green, brown, vv_db, vh_db at the given days of year (wrapping at year end)."""
        d = np.mod(np.asarray(doy, dtype=float), 365.0)
        xs = np.asarray(self.doy)
        return {
            k: np.interp(d, xs, np.asarray(getattr(self, k)))
            for k in ("green", "brown", "vv_db", "vh_db")
        }


def _p(group: str, rows: list[tuple[float, float, float, float, float]], harvest: float | None,
       cuts: tuple[int, int] = (0, 0)) -> Profile:
    doy, green, brown, vv, vh = (tuple(float(v) for v in c) for c in zip(*rows, strict=True))
    return Profile(group, doy, green, brown, vv, vh, harvest_doy=harvest, cuts=cuts)


# Keypoints (doy, green, brown, VV dB, VH dB). Levels follow the C-band gamma0 literature for
# central-European crops; dynamics (season amplitude ~4-6 dB) match the JRC CbM samples (see
# docs/simulation.md). Each parcel shifts its whole curve by a random phenology offset.
PROFILES: dict[str, Profile] = {
    "winter_cereal": _p("winter_cereal", [
        (0, .35, 0, -12, -19), (75, .40, 0, -12, -19), (110, .70, 0, -12.5, -17.5),
        (140, .92, 0, -14.5, -16.5), (165, .75, .15, -13.5, -17), (185, .20, .70, -11.5, -18),
        (198, .05, .30, -12, -20.5), (260, .10, .20, -11, -20), (280, .05, 0, -10.5, -21.5),
        (320, .30, 0, -12, -19.5), (365, .35, 0, -12, -19)], 197),
    "spring_cereal": _p("spring_cereal", [
        (0, .05, .10, -11, -20), (90, .02, 0, -10.5, -21.5), (120, .30, 0, -12, -19.5),
        (160, .88, 0, -14, -16.5), (190, .70, .20, -13, -17), (210, .20, .70, -11.5, -18),
        (222, .05, .30, -12, -20.5), (365, .10, .20, -11.5, -20)], 221),
    "maize": _p("maize", [
        (0, .05, .15, -11.5, -20), (110, .02, 0, -10.5, -22), (150, .12, 0, -11, -21),
        (180, .60, 0, -9.5, -17), (210, .92, 0, -8, -14), (245, .85, .10, -8.5, -14.5),
        (270, .50, .40, -9.5, -15.5), (280, .05, .30, -11, -19.5), (365, .05, .20, -11, -20)], 279),
    "grassland": _p("grassland", [
        (0, .45, .10, -11.5, -18), (90, .50, 0, -11, -17.5), (130, .75, 0, -11, -16.5),
        (300, .72, 0, -11, -16.5), (365, .45, .10, -11.5, -18)], None, (2, 4)),
    "rapeseed": _p("rapeseed", [
        (0, .55, 0, -10.5, -17), (75, .55, 0, -10.5, -17), (110, .85, 0, -9, -14.5),
        (130, .70, 0, -8, -13), (160, .80, .10, -8.5, -13.5), (185, .30, .60, -10, -15),
        (198, .05, .30, -12, -20), (240, .10, .10, -11, -20), (245, .05, 0, -10.5, -21),
        (300, .50, 0, -10.5, -17), (365, .55, 0, -10.5, -17)], 197),
    "sugar_beet": _p("sugar_beet", [
        (0, .05, .15, -11, -20), (100, .02, 0, -10.5, -22), (140, .10, 0, -11, -21.5),
        (175, .60, 0, -9, -16), (200, .95, 0, -7.5, -13.5), (270, .90, 0, -7.5, -13.5),
        (285, .05, .10, -10.5, -20), (365, .05, .10, -11, -20)], 284),
    "potato": _p("potato", [
        (0, .05, .10, -11, -20), (110, .02, 0, -9.5, -21), (145, .10, 0, -9.5, -20.5),
        (180, .85, 0, -9, -15), (215, .80, .10, -9.5, -15.5), (235, .30, .50, -10, -17.5),
        (250, .05, .20, -10.5, -20.5), (365, .05, .10, -11, -20)], 249),
    "legumes": _p("legumes", [
        (0, .05, .10, -11, -20), (100, .02, 0, -10.5, -21.5), (130, .20, 0, -11.5, -20),
        (165, .85, 0, -12, -16), (200, .50, .40, -11.5, -16.5), (220, .10, .60, -11, -18),
        (230, .05, .30, -11.5, -20), (365, .05, .20, -11, -20)], 229),
    "fallow": _p("fallow", [
        (0, .40, .20, -12, -19), (100, .45, .10, -12, -18.5), (160, .60, .10, -11.5, -17.5),
        (365, .40, .20, -12, -19)], None, (1, 1)),
    "other": _p("other", [
        (0, .45, .15, -10, -16), (120, .70, 0, -9, -15), (250, .70, .05, -9, -15),
        (365, .45, .15, -10, -16)], None),
}
