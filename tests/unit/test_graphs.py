"""SNAP graph templates: well-formed, documented chain, every placeholder filled, bad values rejected."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from cbmflow.card import graphs
from cbmflow.core.config import include_dir
from cbmflow.core.errors import InputError

BS = {"input": "/data/S1A_IW_GRDH_1SDV_X.SAFE", "output": "/tmp/out/bs.tif", "map_projection": "EPSG:32633"}
COH6 = {"reference": "/data/ref.SAFE", "secondary": "/data/sec.SAFE", "output": "/tmp/out/c6.tif",
        "map_projection": "EPSG:32633"}


@pytest.mark.parametrize("name", graphs.GRAPH_NAMES)
def test_template_is_well_formed_snap_xml(name: str) -> None:
    root = ET.parse(graphs.graph_path(name)).getroot()
    assert root.tag == "graph" and root.get("id") and root.findtext("version") == "1.0"
    for node in root.findall("node"):
        assert node.findtext("operator") in graphs.KNOWN_OPERATORS
        assert node.find("parameters").get("class") == "com.bc.ceres.binding.dom.XppDomElement"


@pytest.mark.parametrize("name", graphs.GRAPH_NAMES)
def test_every_placeholder_is_a_parameter_or_derived_and_documented(name: str) -> None:
    found = graphs.placeholders(graphs.load_graph(name))
    settable = set(graphs.PARAMETERS[name]) | set(graphs.DERIVED[name])
    assert found <= settable, found - settable
    readme = (include_dir() / "graphs" / "README.md").read_text()
    for p in settable:
        assert f"`{p}`" in readme, f"{p} not documented in include/graphs/README.md"


def test_bs_full_chain_in_documented_order_and_filled() -> None:
    xml = graphs.build_graph("card_bs", BS)
    assert graphs.operator_chain(xml) == [
        "Read", "Apply-Orbit-File", "Remove-GRD-Border-Noise", "ThermalNoiseRemoval", "Calibration",
        "Terrain-Flattening", "Terrain-Correction", "Write"]
    assert "${" not in xml
    root = ET.fromstring(xml)
    nodes = {n.get("id"): n for n in root.findall("node")}
    assert nodes["Read"].findtext("parameters/file") == BS["input"]
    assert nodes["Write"].findtext("parameters/file") == BS["output"]
    assert nodes["Write"].findtext("parameters/formatName") == "GeoTIFF-BigTIFF"
    assert nodes["Calibration"].findtext("parameters/outputBetaBand") == "true"
    assert nodes["Calibration"].findtext("parameters/outputSigmaBand") == "false"
    tc = nodes["Terrain-Correction"]
    assert tc.findtext("parameters/pixelSpacingInMeter") == "10.0"
    assert tc.findtext("parameters/mapProjection") == "EPSG:32633"
    assert tc.findtext("parameters/demName") == "Copernicus 30m Global DEM"
    assert graphs.sources_of(tc) == ["Terrain-Flattening"]


def test_bs_optional_steps_removed_and_relinked() -> None:
    xml = graphs.build_graph("card_bs", {**BS, "terrain_flattening": False, "calibration": "sigma0",
                                         "db": True, "pixel_spacing": 20, "dem_name": "SRTM 1Sec HGT"})
    assert graphs.operator_chain(xml) == [
        "Read", "Apply-Orbit-File", "Remove-GRD-Border-Noise", "ThermalNoiseRemoval", "Calibration",
        "Terrain-Correction", "LinearToFromdB", "Write"]
    nodes = {n.get("id"): n for n in ET.fromstring(xml).findall("node")}
    assert graphs.sources_of(nodes["Terrain-Correction"]) == ["Calibration"]
    assert graphs.sources_of(nodes["Write"]) == ["LinearToFromdB"]
    assert nodes["Calibration"].findtext("parameters/outputSigmaBand") == "true"
    assert nodes["Calibration"].findtext("parameters/outputBetaBand") == "false"
    assert nodes["Terrain-Correction"].findtext("parameters/pixelSpacingInMeter") == "20.0"
    assert nodes["Terrain-Correction"].findtext("parameters/demName") == "SRTM 1Sec HGT"


def test_external_dem_is_filled_and_escaped() -> None:
    xml = graphs.build_graph("card_bs", {**BS, "dem_name": "External DEM", "external_dem_file": "/dem/a&b.tif"})
    nodes = {n.get("id"): n for n in ET.fromstring(xml).findall("node")}
    assert nodes["Terrain-Correction"].findtext("parameters/externalDEMFile") == "/dem/a&b.tif"
    assert nodes["Terrain-Flattening"].findtext("parameters/externalDEMFile") == "/dem/a&b.tif"


@pytest.mark.parametrize(("params", "message"), [
    ({**BS, "speckle_filter": "Lee"}, "unknown parameter(s) speckle_filter"),
    ({k: v for k, v in BS.items() if k != "input"}, "'input' is required"),
    ({k: v for k, v in BS.items() if k != "map_projection"}, "'map_projection' is required"),
    ({**BS, "pixel_spacing": 15}, "pixel spacing must be 10 or 20"),
    ({**BS, "calibration": "gamma1"}, "calibration='gamma1' not allowed"),
    ({**BS, "calibration": "sigma0"}, "terrain_flattening needs calibration=beta0"),
    ({**BS, "map_projection": "EPSG:4326"}, "UTM zone"),
    ({**BS, "map_projection": "EPSG:32661"}, "UTM zone"),
    ({**BS, "dem_name": "SRTM 30Sec"}, "dem_name='SRTM 30Sec' not allowed"),
    ({**BS, "dem_name": "External DEM"}, "external_dem_file must be set"),
    ({**BS, "external_dem_file": "/dem.tif"}, "external_dem_file must be set"),
    ({**BS, "db": "maybe"}, "expected true or false"),
    ({**BS, "polarisations": "VV,HH"}, "polarisations='VV,HH' not allowed"),
])
def test_bs_invalid_parameters_rejected(params: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        graphs.build_graph("card_bs", params)


def test_coh6_all_subswaths_chain() -> None:
    xml = graphs.build_graph("card_coh6", COH6)
    assert "${" not in xml
    root = ET.fromstring(xml)
    nodes = {n.get("id"): n for n in root.findall("node")}
    chain = list(graphs.COH6_SUBSWATH_CHAIN)
    for sw in graphs.SUBSWATHS:
        assert graphs.lineage(xml, f"TOPSAR-Deburst-{sw}") == chain
        assert graphs.sources_of(nodes[f"Back-Geocoding-{sw}"]) == [f"Apply-Orbit-File-Ref-{sw}",
                                                                    f"Apply-Orbit-File-Sec-{sw}"]
        assert graphs.lineage(xml, f"Apply-Orbit-File-Sec-{sw}") == ["Read", "TOPSAR-Split", "Apply-Orbit-File"]
        assert nodes[f"TOPSAR-Split-Ref-{sw}"].findtext("parameters/subswath") == sw
        assert nodes[f"Coherence-{sw}"].findtext("parameters/cohWinAz") == "5"
        assert nodes[f"Coherence-{sw}"].findtext("parameters/cohWinRg") == "20"
    assert graphs.sources_of(nodes["TOPSAR-Merge"]) == ["TOPSAR-Deburst-IW1", "TOPSAR-Deburst-IW2",
                                                        "TOPSAR-Deburst-IW3"]
    assert graphs.lineage(xml, "Write") == chain + list(graphs.COH6_TAIL)
    assert nodes["Terrain-Correction"].findtext("parameters/pixelSpacingInMeter") == "20.0"
    assert nodes["Read-Reference"].findtext("parameters/file") == "/data/ref.SAFE"
    assert nodes["Read-Secondary"].findtext("parameters/file") == "/data/sec.SAFE"
    ops = graphs.operator_chain(xml)
    assert ops[:2] == ["Read", "Read"] and ops[-3:] == list(graphs.COH6_TAIL)
    assert ops.count("Coherence") == 3 and ops.count("TOPSAR-Split") == 6


def test_coh6_subswath_selection_and_window() -> None:
    xml = graphs.build_graph("card_coh6", {**COH6, "subswaths": "IW3,IW1", "coh_win_az": 3, "coh_win_rg": 12})
    nodes = {n.get("id"): n for n in ET.fromstring(xml).findall("node")}
    assert not [n for n in nodes if n.endswith("-IW2")]
    assert graphs.sources_of(nodes["TOPSAR-Merge"]) == ["TOPSAR-Deburst-IW1", "TOPSAR-Deburst-IW3"]
    merge_src = nodes["TOPSAR-Merge"].find("sources")
    assert [e.tag for e in merge_src] == ["sourceProduct", "sourceProduct.1"]
    assert nodes["Coherence-IW1"].findtext("parameters/cohWinAz") == "3"
    assert nodes["Coherence-IW3"].findtext("parameters/cohWinRg") == "12"

    one = graphs.build_graph("card_coh6", {**COH6, "subswaths": "IW2"})
    assert graphs.lineage(one, "Write") == list(graphs.COH6_SUBSWATH_CHAIN) + ["Terrain-Correction", "Write"]
    assert "TOPSAR-Merge" not in graphs.operator_chain(one)


@pytest.mark.parametrize(("params", "message"), [
    ({**COH6, "calibration": "beta0"}, "unknown parameter(s) calibration"),
    ({**COH6, "subswaths": "IW4"}, "subswaths must be"),
    ({**COH6, "coh_win_az": 0}, "positive integer"),
    ({**COH6, "pixel_spacing": 15}, "pixel spacing must be 10 or 20"),
    ({k: v for k, v in COH6.items() if k != "secondary"}, "'secondary' is required"),
])
def test_coh6_invalid_parameters_rejected(params: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        graphs.build_graph("card_coh6", params)


def test_unknown_graph_rejected() -> None:
    with pytest.raises(InputError, match="unknown graph"):
        graphs.build_graph("card_insar", {})


def test_validate_graph_catches_broken_links() -> None:
    xml = graphs.build_graph("card_bs", BS).replace('refid="Calibration"', 'refid="Calibraton"')
    with pytest.raises(Exception, match="unknown node 'Calibraton'"):
        graphs.validate_graph(xml)


def test_cli_prints_filled_graph_and_rejects_bad_value(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cbmflow import cli

    out = tmp_path / "bs.xml"
    assert cli.main(["card", "graph", "card_bs", "-p", "input=/d/S1.SAFE", "-p", "output=/o/bs.tif",
                     "-p", "map_projection=32633", "-p", "terrain_flattening=false", "-p", "calibration=sigma0",
                     "-o", str(out)]) == 0
    text = out.read_text()
    assert graphs.operator_chain(text) == ["Read", "Apply-Orbit-File", "Remove-GRD-Border-Noise",
                                           "ThermalNoiseRemoval", "Calibration", "Terrain-Correction", "Write"]
    assert "<mapProjection>EPSG:32633</mapProjection>" in text
    assert cli.main(["card", "graph", "card_bs", "-p", "input=a", "-p", "output=b", "-p", "map_projection=32633",
                     "-p", "pixel_spacing=15"]) == 2
    assert "pixel spacing must be 10 or 20" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "bands"), [
    ({}, "Gamma0_VV,Gamma0_VH"),
    ({"terrain_flattening": False, "calibration": "sigma0", "polarisations": "VH"}, "Sigma0_VH"),
    ({"terrain_flattening": False, "calibration": "beta0", "polarisations": "HH,HV"}, "Beta0_HH,Beta0_HV"),
])
def test_terrain_correction_band_order_follows_polarisations(extra: dict, bands: str) -> None:
    xml = graphs.build_graph("card_bs", {**BS, **extra})
    nodes = {n.get("id"): n for n in ET.fromstring(xml).findall("node")}
    assert nodes["Terrain-Correction"].findtext("parameters/sourceBands") == bands
