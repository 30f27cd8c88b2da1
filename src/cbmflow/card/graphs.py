"""SNAP GPT graph templates in ``include/graphs/``: loading, validated filling and structural checks.

A template holds ``${name}`` placeholders. :func:`build_graph` fills them from a parameter mapping
after checking every value against :data:`PARAMETERS` (unknown names, missing required values
and values outside the allowed set are rejected with :class:`~cbmflow.core.errors.InputError`), and
rewrites the graph's structure for the optional steps: ``terrain_flattening=false`` and
``db=false`` remove the Terrain-Flattening / LinearToFromdB nodes of CARD-BS and re-link their
consumers; ``subswaths`` drops whole IW branches of CARD-COH6. Every parameter is documented in
``include/graphs/README.md``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cbmflow.core.config import include_dir
from cbmflow.core.errors import CorruptData, InputError, NotFound

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
GRAPH_NAMES: tuple[str, ...] = ("card_bs", "card_coh6")

# The SNAP operators cbmflow graphs may use (S1TBX / SNAP 10 names).
KNOWN_OPERATORS: frozenset[str] = frozenset({
    "Read", "Write", "Apply-Orbit-File", "Remove-GRD-Border-Noise", "ThermalNoiseRemoval",
    "Calibration", "Terrain-Flattening", "Terrain-Correction", "LinearToFromdB", "TOPSAR-Split",
    "Back-Geocoding", "Coherence", "TOPSAR-Deburst", "TOPSAR-Merge",
})

# The documented operator chains (topological order, ties broken by the order in the file).
BS_CHAIN: tuple[str, ...] = (
    "Read", "Apply-Orbit-File", "Remove-GRD-Border-Noise", "ThermalNoiseRemoval", "Calibration",
    "Terrain-Flattening", "Terrain-Correction", "LinearToFromdB", "Write",
)
COH6_SUBSWATH_CHAIN: tuple[str, ...] = (
    "Read", "TOPSAR-Split", "Apply-Orbit-File", "Back-Geocoding", "Coherence", "TOPSAR-Deburst",
)
COH6_TAIL: tuple[str, ...] = ("TOPSAR-Merge", "Terrain-Correction", "Write")

DEM_NAMES: tuple[str, ...] = (
    "SRTM 1Sec HGT", "SRTM 3Sec", "Copernicus 30m Global DEM", "Copernicus 90m Global DEM", "External DEM",
)
RESAMPLINGS: tuple[str, ...] = ("NEAREST_NEIGHBOUR", "BILINEAR_INTERPOLATION", "BICUBIC_INTERPOLATION")
ORBIT_TYPES: tuple[str, ...] = ("Sentinel Precise (Auto Download)", "Sentinel Restituted (Auto Download)")
POLARISATIONS: tuple[str, ...] = ("VV", "VH", "VV,VH", "HH", "HV", "HH,HV")
CALIBRATIONS: tuple[str, ...] = ("sigma0", "gamma0", "beta0")
SUBSWATHS: tuple[str, ...] = ("IW1", "IW2", "IW3")
_UTM = re.compile(r"^EPSG:32[67](0[1-9]|[1-5][0-9]|60)$")


@dataclass(frozen=True)
class ParamSpec:
    """One user parameter of a graph: meaning, default (None = required) and allowed values."""

    name: str
    doc: str
    default: str | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[str], str] | None = None  # normalises a value or raises InputError


def _bool(value: str) -> str:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return "true"
    if v in ("false", "0", "no"):
        return "false"
    raise InputError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> str:
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"expected a positive integer, got {value!r}") from None
    if n < 1 or str(n) != value.strip():
        raise InputError(f"expected a positive integer, got {value!r}")
    return str(n)


def _spacing(value: str) -> str:
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"pixel spacing must be 10 or 20 (metres), got {value!r}") from None
    if f not in (10.0, 20.0):
        raise InputError(f"pixel spacing must be 10 or 20 (metres), got {value!r}")
    return f"{f:.1f}"


def _utm(value: str) -> str:
    v = value.strip().upper()
    if v.isdigit():
        v = f"EPSG:{v}"
    if not _UTM.match(v):
        raise InputError(f"map projection must be a WGS 84 UTM zone 'EPSG:326xx' or 'EPSG:327xx', got {value!r}")
    return v


def _float(value: str) -> str:
    try:
        return repr(float(value))
    except ValueError:
        raise InputError(f"expected a number, got {value!r}") from None


def _nonempty(value: str) -> str:
    if not value.strip():
        raise InputError("value must not be empty")
    return value.strip()


def _subswaths(value: str) -> str:
    parts = [p.strip().upper() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in SUBSWATHS]
    if not parts or bad or len(set(parts)) != len(parts):
        raise InputError(f"subswaths must be a comma list of distinct {SUBSWATHS}, got {value!r}")
    return ",".join(sorted(parts))


_COMMON: tuple[ParamSpec, ...] = (
    ParamSpec("output", "output GeoTIFF-BigTIFF file written by the Write node", check=_nonempty),
    ParamSpec("polarisations", "polarisations to process", "VV,VH", POLARISATIONS),
    ParamSpec("orbit_type", "orbit file type of Apply-Orbit-File", ORBIT_TYPES[0], ORBIT_TYPES),
    ParamSpec("orbit_continue_on_fail", "continue with annotation orbits when no orbit file is found",
              "false", check=_bool),
    ParamSpec("dem_name", "DEM for terrain flattening/correction", "Copernicus 30m Global DEM", DEM_NAMES),
    ParamSpec("external_dem_file", "DEM GeoTIFF path; required iff dem_name is 'External DEM'", ""),
    ParamSpec("external_dem_nodata", "no-data value of the external DEM", "0.0", check=_float),
    ParamSpec("external_dem_apply_egm", "external DEM heights are geoid (EGM96) heights", "true", check=_bool),
    ParamSpec("dem_resampling", "DEM resampling", "BILINEAR_INTERPOLATION", RESAMPLINGS),
    ParamSpec("img_resampling", "image resampling of Terrain-Correction", "BILINEAR_INTERPOLATION", RESAMPLINGS),
    ParamSpec("map_projection", "output CRS: the AOI's UTM zone, 'EPSG:326xx' (N) or 'EPSG:327xx' (S)",
              check=_utm),
)

PARAMETERS: dict[str, dict[str, ParamSpec]] = {
    "card_bs": {p.name: p for p in (
        ParamSpec("input", "Sentinel-1 GRD product: .SAFE folder, its manifest.safe or the .zip",
                  check=_nonempty),
        *_COMMON,
        ParamSpec("calibration", "radiometric calibration output: sigma0, gamma0 or beta0 "
                  "(terrain_flattening needs beta0)", "beta0", CALIBRATIONS),
        ParamSpec("terrain_flattening", "insert Terrain-Flattening (output gamma0 flattened)", "true",
                  check=_bool),
        ParamSpec("db", "insert LinearToFromdB (output in dB; CARD convention is linear)", "false",
                  check=_bool),
        ParamSpec("pixel_spacing", "output pixel spacing in metres: 10 or 20", "10", check=_spacing),
    )},
    "card_coh6": {p.name: p for p in (
        ParamSpec("reference", "earlier Sentinel-1 IW SLC product (.SAFE, manifest.safe or .zip)",
                  check=_nonempty),
        ParamSpec("secondary", "later Sentinel-1 IW SLC product, 6 (or 12) days after the reference",
                  check=_nonempty),
        *_COMMON,
        ParamSpec("subswaths", "IW subswaths to process, e.g. 'IW1,IW2,IW3' or 'IW2'", "IW1,IW2,IW3",
                  check=_subswaths),
        ParamSpec("coh_win_az", "coherence window in azimuth (lines)", "5", check=_positive_int),
        ParamSpec("coh_win_rg", "coherence window in range (samples)", "20", check=_positive_int),
        ParamSpec("pixel_spacing", "output pixel spacing in metres: 10 or 20", "20", check=_spacing),
    )},
}

# Placeholders derived from user parameters (not settable directly).
DERIVED: dict[str, dict[str, str]] = {
    "card_bs": {
        "output_sigma_band": "true iff calibration == sigma0",
        "output_gamma_band": "true iff calibration == gamma0",
        "output_beta_band": "true iff calibration == beta0",
        "tc_source_bands": "Terrain-Correction input bands in polarisation order (fixes the output band order)",
    },
    "card_coh6": {},
}
# Parameters that change the graph's structure instead of filling a placeholder.
STRUCTURAL: dict[str, tuple[str, ...]] = {
    "card_bs": ("terrain_flattening", "db"),
    "card_coh6": ("subswaths",),
}


def graph_path(name: str) -> Path:
    """The template file of a graph (``include/graphs/<name>.xml``)."""
    if name not in GRAPH_NAMES:
        raise InputError(f"unknown graph {name!r}; known: {', '.join(GRAPH_NAMES)}")
    path = include_dir() / "graphs" / f"{name}.xml"
    if not path.exists():
        raise NotFound(f"graph template {path} does not exist")
    return path


def load_graph(name: str) -> str:
    """The raw template text of a graph."""
    return graph_path(name).read_text()


def placeholders(text: str) -> set[str]:
    """The ``${name}`` placeholders in a graph text."""
    return set(PLACEHOLDER.findall(text))


def resolve_parameters(name: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Validate user parameters against the graph's spec; returns every parameter as a string."""
    spec = PARAMETERS[graph_path(name).stem]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InputError(f"graph {name}: unknown parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(spec))}")
    out: dict[str, str] = {}
    for key, p in spec.items():
        raw = params.get(key)
        if raw is None:
            if p.default is None:
                raise InputError(f"graph {name}: parameter {key!r} is required ({p.doc})")
            raw = p.default
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if p.choices is not None and value not in p.choices:
            raise InputError(f"graph {name}: {key}={value!r} not allowed; choose one of {list(p.choices)}")
        if p.check is not None:
            try:
                value = p.check(value)
            except InputError as exc:
                raise InputError(f"graph {name}: {key}: {exc}") from None
        out[key] = value
    if (out["dem_name"] == "External DEM") != bool(out["external_dem_file"].strip()):
        raise InputError(f"graph {name}: external_dem_file must be set exactly when dem_name is "
                         f"'External DEM' (dem_name={out['dem_name']!r}, "
                         f"external_dem_file={out['external_dem_file']!r})")
    if name == "card_bs":
        if out["terrain_flattening"] == "true" and out["calibration"] != "beta0":
            raise InputError(f"graph card_bs: terrain_flattening needs calibration=beta0 "
                             f"(SNAP's Terrain-Flattening reads beta0), got calibration={out['calibration']}")
        for cal in CALIBRATIONS:
            out[f"output_{cal[:-1]}_band"] = "true" if out["calibration"] == cal else "false"
        prefix = "Gamma0" if out["terrain_flattening"] == "true" else out["calibration"].capitalize()
        out["tc_source_bands"] = ",".join(f"{prefix}_{pol}" for pol in out["polarisations"].split(","))
    return out


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {n.get("id", ""): n for n in root.findall("node")}


def _source_elements(node: ET.Element) -> list[ET.Element]:
    src = node.find("sources")
    return [] if src is None else [s for s in src if s.get("refid") is not None]


def sources_of(node: ET.Element) -> list[str]:
    """The node ids a graph node reads from, in order."""
    return [s.get("refid", "") for s in _source_elements(node)]


def _renumber_sources(node: ET.Element) -> None:
    for i, s in enumerate(_source_elements(node)):
        s.tag = "sourceProduct" if i == 0 else f"sourceProduct.{i}"


def remove_node(root: ET.Element, node_id: str) -> None:
    """Remove a single-source node and re-link its consumers to its source."""
    nodes = _nodes(root)
    node = nodes.get(node_id)
    if node is None:
        raise InputError(f"graph has no node {node_id!r}")
    srcs = sources_of(node)
    if len(srcs) != 1:
        raise InputError(f"node {node_id} has {len(srcs)} sources; only single-source nodes can be removed")
    for other in nodes.values():
        for s in _source_elements(other):
            if s.get("refid") == node_id:
                s.set("refid", srcs[0])
    root.remove(node)


def _drop_subswaths(root: ET.Element, keep: set[str]) -> None:
    for sw in SUBSWATHS:
        if sw in keep:
            continue
        for nid, node in list(_nodes(root).items()):
            if nid.endswith(f"-{sw}"):
                root.remove(node)
        for node in _nodes(root).values():
            src = node.find("sources")
            if src is None:
                continue
            for s in list(src):
                if s.get("refid", "").endswith(f"-{sw}"):
                    src.remove(s)
            _renumber_sources(node)
    if len(keep) == 1:
        remove_node(root, "TOPSAR-Merge")


def build_graph(name: str, params: Mapping[str, Any]) -> str:
    """The graph's XML with optional steps applied and every placeholder filled and validated."""
    values = resolve_parameters(name, params)
    root = ET.fromstring(load_graph(name))
    if name == "card_bs":
        if values["terrain_flattening"] == "false":
            remove_node(root, "Terrain-Flattening")
        if values["db"] == "false":
            remove_node(root, "LinearToFromdB")
    elif name == "card_coh6":
        _drop_subswaths(root, set(values["subswaths"].split(",")))
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    needed = placeholders(text)
    missing = sorted(needed - set(values))
    if missing:  # a template defect: a placeholder no parameter fills
        raise CorruptData(f"graph {name}: placeholder(s) {', '.join(missing)} have no parameter")
    text = PLACEHOLDER.sub(lambda m: escape(values[m.group(1)]), text)
    validate_graph(text)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def write_graph(name: str, params: Mapping[str, Any], path: str | Path) -> Path:
    """Build a graph and write it to a file (for ``gpt``); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_graph(name, params))
    return out


def topological_nodes(text: str) -> list[ET.Element]:
    """The graph's nodes in topological order, ties broken by their order in the file."""
    root = ET.fromstring(text)
    nodes = root.findall("node")
    order = {n.get("id", ""): i for i, n in enumerate(nodes)}
    by_id = {n.get("id", ""): n for n in nodes}
    indeg = {nid: len(sources_of(n)) for nid, n in by_id.items()}
    consumers: dict[str, list[str]] = {nid: [] for nid in by_id}
    for nid, n in by_id.items():
        for s in sources_of(n):
            if s not in by_id:
                raise CorruptData(f"graph node {nid} reads unknown node {s!r}")
            consumers[s].append(nid)
    ready = sorted((nid for nid, d in indeg.items() if d == 0), key=order.__getitem__)
    out: list[ET.Element] = []
    while ready:
        nid = ready.pop(0)
        out.append(by_id[nid])
        for c in consumers[nid]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
        ready.sort(key=order.__getitem__)
    if len(out) != len(nodes):
        raise CorruptData("graph has a cycle")
    return out


def operator_chain(text: str) -> list[str]:
    """The operators of a graph in topological order."""
    return [n.findtext("operator", "") for n in topological_nodes(text)]


def lineage(text: str, node_id: str) -> list[str]:
    """Operators on the first-source path from a Read node to ``node_id`` (inclusive)."""
    by_id = _nodes(ET.fromstring(text))
    if node_id not in by_id:
        raise InputError(f"graph has no node {node_id!r}")
    chain: list[str] = []
    current: str | None = node_id
    while current is not None:
        node = by_id[current]
        chain.append(node.findtext("operator", ""))
        srcs = sources_of(node)
        current = srcs[0] if srcs else None
    return chain[::-1]


def validate_graph(text: str) -> None:
    """Check a filled graph: well-formed SNAP XML, known operators, links, no cycle, one Write."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CorruptData(f"graph XML is not well-formed: {exc}") from None
    if root.tag != "graph" or not root.get("id") or root.findtext("version") != "1.0":
        raise CorruptData("graph XML needs <graph id=...> with <version>1.0</version>")
    left = placeholders(text)
    if left:
        raise CorruptData(f"graph has unfilled placeholder(s): {', '.join(sorted(left))}")
    ids = [n.get("id") for n in root.findall("node")]
    if len(ids) != len(set(ids)) or None in ids:
        raise CorruptData(f"graph node ids must be present and unique: {ids}")
    for n in root.findall("node"):
        op = n.findtext("operator", "")
        if op not in KNOWN_OPERATORS:
            raise CorruptData(f"graph node {n.get('id')}: unknown operator {op!r}")
        params = n.find("parameters")
        if params is None or params.get("class") != "com.bc.ceres.binding.dom.XppDomElement":
            raise CorruptData(f"graph node {n.get('id')}: needs <parameters class=\"com.bc.ceres.binding.dom.XppDomElement\">")
    chain = operator_chain(text)
    if chain.count("Write") != 1 or chain[-1] != "Write":
        raise CorruptData(f"graph must end in exactly one Write node, chain is {chain}")
