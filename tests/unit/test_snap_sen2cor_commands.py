"""SNAP gpt / esa_snappy and Sen2Cor runners: exact command lines and real subprocess handling.

The executables used here are TEST DOUBLES: tiny scripts named ``gpt`` / ``L2A_Process`` written
into tmp_path and put first on PATH. They stand in for the real programs (not installable here)
to exercise the runner's process handling: arguments, exit codes, stderr tails, timeouts and output
discovery. Their outputs are labelled ``CBMFLOW_SIMULATED=true`` and are never catalogued.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from cbmflow.card import sen2cor, snap
from cbmflow.core.errors import NotFound, ProcessingError, ToolMissing

PY = sys.executable

# Test double of SNAP's gpt: records argv, writes a 2-band float32 GeoTIFF to the -t target.
FAKE_GPT_OK = f"""#!{PY}
# TEST DOUBLE of ESA SNAP gpt (not SNAP): writes a simulated GeoTIFF to the -t target.
import json, sys
import numpy as np, rasterio
from rasterio.transform import from_origin
argv = sys.argv[1:]
open(sys.argv[0] + ".argv.json", "w").write(json.dumps(argv))
target = argv[argv.index("-t") + 1]
data = np.array([[[0.1, 0.2], [0.0, 0.4]], [[0.01, 0.02], [0.03, 0.0]]], dtype="float32")
with rasterio.open(target, "w", driver="GTiff", width=2, height=2, count=2, dtype="float32",
                   crs="EPSG:32633", transform=from_origin(500000, 5300000, 10, 10)) as dst:
    dst.write(data)
    dst.set_band_description(1, "Gamma0_VV")
    dst.set_band_description(2, "Gamma0_VH")
    dst.update_tags(CBMFLOW_SIMULATED="true")
print("Processing graph... done.")
"""

FAKE_GPT_FAIL = """#!/bin/sh
# TEST DOUBLE of ESA SNAP gpt: fails like gpt does on a bad product.
echo "Executing processing graph" >&2
i=0; while [ $i -lt 50 ]; do echo "INFO: padding line $i" >&2; i=$((i+1)); done
echo "Error: [NodeId: Read] Specified 'file' [/data/missing.SAFE] does not exist." >&2
exit 1
"""

FAKE_SLEEP = """#!/bin/sh
# TEST DOUBLE of a hanging external tool.
echo "started, now hanging" >&2
sleep 60
"""

FAKE_GPT_NOTHING = """#!/bin/sh
# TEST DOUBLE of gpt that exits 0 without writing its target.
exit 0
"""


def _install(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / name
    exe.write_text(body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


@pytest.fixture()
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holding only an empty folder (plus /bin for sh); SNAP_HOME and SEN2COR_HOME unset."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}/bin{os.pathsep}/usr/bin")
    monkeypatch.delenv("SNAP_HOME", raising=False)
    monkeypatch.delenv("SEN2COR_HOME", raising=False)
    return empty


def test_gpt_command_exact() -> None:
    argv = snap.gpt_command("/w/card_bs.xml", "/w/out.tif", gpt="/opt/snap/bin/gpt", threads=4, cache="8G")
    assert argv == ["/opt/snap/bin/gpt", "/w/card_bs.xml", "-q", "4", "-c", "8G", "-e", "-t", "/w/out.tif"]
    assert snap.gpt_command("g.xml", "t.tif", gpt="gpt") == ["gpt", "g.xml", "-q", "2", "-c", "4G", "-e", "-t", "t.tif"]
    with pytest.raises(ValueError):
        snap.gpt_command("g.xml", "t.tif", gpt="gpt", threads=0)


def test_gpt_missing_says_what_to_install(bare_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolMissing) as err:
        snap.find_gpt()
    assert str(err.value) == ("SNAP gpt not found: install ESA SNAP 10+ with the Sentinel-1 toolbox "
                              "(https://step.esa.int) or set SNAP_HOME; see docs/operations.md")
    with pytest.raises(ToolMissing, match="SNAP gpt not found"):
        snap.run_gpt(tmp_path / "g.xml", tmp_path / "o.tif")


def test_gpt_found_via_snap_home(bare_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = _install(tmp_path / "snap" / "bin", "gpt", FAKE_GPT_NOTHING)
    monkeypatch.setenv("SNAP_HOME", str(tmp_path / "snap"))
    assert snap.find_gpt() == exe


def test_run_gpt_with_test_double_writes_target(bare_path: Path, tmp_path: Path) -> None:
    import rasterio

    exe = _install(bare_path, "gpt", FAKE_GPT_OK)
    graph = tmp_path / "card_bs.xml"
    graph.write_text("<graph id='x'><version>1.0</version></graph>")
    target = tmp_path / "out" / "bs.tif"
    assert snap.find_gpt() == exe
    out = snap.run_gpt(graph, target, threads=3, cache="1G", timeout=60)
    assert out == target
    import json

    assert json.loads(Path(str(exe) + ".argv.json").read_text()) == [
        str(graph), "-q", "3", "-c", "1G", "-e", "-t", str(target)]
    with rasterio.open(target) as src:
        assert src.count == 2 and src.descriptions == ("Gamma0_VV", "Gamma0_VH")
        assert src.tags()["CBMFLOW_SIMULATED"] == "true"


def test_run_gpt_failure_carries_stderr_tail(bare_path: Path, tmp_path: Path) -> None:
    _install(bare_path, "gpt", FAKE_GPT_FAIL)
    with pytest.raises(ProcessingError) as err:
        snap.run_gpt(tmp_path / "g.xml", tmp_path / "o.tif", timeout=30)
    msg = str(err.value)
    assert "SNAP gpt exited with 1" in msg
    assert msg.endswith("Error: [NodeId: Read] Specified 'file' [/data/missing.SAFE] does not exist.")
    assert "padding line 49" in msg
    assert len(msg.split("stderr tail: ", 1)[1]) <= snap.STDERR_TAIL_CHARS


def test_run_gpt_exit_zero_without_output_is_an_error(bare_path: Path, tmp_path: Path) -> None:
    _install(bare_path, "gpt", FAKE_GPT_NOTHING)
    with pytest.raises(ProcessingError, match="exited 0 but wrote no product"):
        snap.run_gpt(tmp_path / "g.xml", tmp_path / "o.tif", timeout=30)


def test_run_gpt_timeout_kills_and_reports(bare_path: Path, tmp_path: Path) -> None:
    _install(bare_path, "gpt", FAKE_SLEEP)
    t0 = time.monotonic()
    with pytest.raises(ProcessingError) as err:
        snap.run_gpt(tmp_path / "g.xml", tmp_path / "o.tif", timeout=1)
    assert time.monotonic() - t0 < 20  # the whole process group was killed, not waited for
    assert "SNAP gpt timed out after 1 s" in str(err.value)
    assert str(err.value).endswith("stderr tail: started, now hanging")


def test_snappy_without_snap_is_tool_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match=r"esa_snappy cannot start: install ESA SNAP 10\+"):
        snap.run_snappy(tmp_path / "g.xml", tmp_path / "o.tif")


def test_run_graph_unknown_runner() -> None:
    with pytest.raises(ValueError, match="unknown SNAP runner"):
        snap.run_graph("g.xml", "o.tif", runner="docker")


# --- Sen2Cor ---------------------------------------------------------------------------------

FAKE_L2A_OK = f"""#!{PY}
# TEST DOUBLE of ESA Sen2Cor L2A_Process (not Sen2Cor): writes a simulated L2A SAFE skeleton.
import sys
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
argv = sys.argv[1:]
out = Path(argv[argv.index("--output_dir") + 1])
assert argv[argv.index("--resolution") + 1] == "10"
l1c = Path(argv[-1]).name
safe = out / l1c.replace("MSIL1C", "MSIL2A")
g = safe / "GRANULE" / "L2A_T33UWP_A000001_20240601T100000" / "IMG_DATA"
for band, res in [("B02", 10), ("B03", 10), ("B04", 10), ("B08", 10), ("B11", 20), ("SCL", 20), ("B01", 60)]:
    d = g / f"R{{res}}m"
    d.mkdir(parents=True, exist_ok=True)
    n = 40 // (res // 10) if res < 60 else 6
    with rasterio.open(d / f"T33UWP_20240601T100000_{{band}}_{{res}}m.jp2", "w", driver="JP2OpenJPEG",
                       width=n, height=n, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(600000, 5350000, res, res)) as dst:
        dst.write(np.full((1, n, n), 1500, dtype="uint16"))
(safe / "MTD_MSIL2A.xml").write_text("<x><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE></x>")
print("Progress[%]: 100.00 : L2A processing finished")
"""

FAKE_L2A_FAIL = """#!/bin/sh
# TEST DOUBLE of Sen2Cor failing.
echo "L2A_Process: product metadata file cannot be read" >&2
exit 1
"""


def test_l2a_command_exact() -> None:
    argv = sen2cor.l2a_command("/in/S2B_MSIL1C_X.SAFE", "/out", exe="/opt/sen2cor/bin/L2A_Process")
    assert argv == ["/opt/sen2cor/bin/L2A_Process", "--resolution", "10", "--output_dir", "/out",
                    "/in/S2B_MSIL1C_X.SAFE"]
    with pytest.raises(ValueError):
        sen2cor.l2a_command("a", "b", exe="L2A_Process", resolution=15)


def test_sen2cor_missing_says_what_to_install(bare_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match=r"Sen2Cor L2A_Process not found: install ESA Sen2Cor 2\.11\+"):
        sen2cor.find_l2a_process()
    with pytest.raises(ToolMissing, match="see docs/operations.md"):
        sen2cor.run_sen2cor(tmp_path / "x.SAFE", tmp_path / "out")


def test_run_sen2cor_with_test_double_and_output_discovery(bare_path: Path, tmp_path: Path) -> None:
    _install(bare_path, "L2A_Process", FAKE_L2A_OK)
    l1c = tmp_path / "S2A_MSIL1C_20240601T100000_N0510_R122_T33UWP_20240601T120000.SAFE"
    l1c.mkdir()
    safe = sen2cor.run_sen2cor(l1c, tmp_path / "out", timeout=120)
    assert safe.name == "S2A_MSIL2A_20240601T100000_N0510_R122_T33UWP_20240601T120000.SAFE"
    files = sen2cor.l2a_band_files(safe)
    assert list(files) == ["B02", "B03", "B04", "B08", "B11", "SCL"]
    assert files["B04"].parent.name == "R10m" and files["SCL"].parent.name == "R20m"
    assert files["B11"].name == "T33UWP_20240601T100000_B11_20m.jp2"


def test_run_sen2cor_failure_and_missing_input(bare_path: Path, tmp_path: Path) -> None:
    _install(bare_path, "L2A_Process", FAKE_L2A_FAIL)
    l1c = tmp_path / "S2A_MSIL1C_X.SAFE"
    with pytest.raises(NotFound, match="does not exist"):
        sen2cor.run_sen2cor(l1c, tmp_path / "out")
    l1c.mkdir()
    with pytest.raises(ProcessingError) as err:
        sen2cor.run_sen2cor(l1c, tmp_path / "out", timeout=30)
    assert "Sen2Cor L2A_Process exited with 1" in str(err.value)
    assert str(err.value).endswith("product metadata file cannot be read")


def test_l2a_band_files_names_missing_bands(tmp_path: Path) -> None:
    d = tmp_path / "S2A_MSIL2A_X.SAFE" / "GRANULE" / "L2A_T1" / "IMG_DATA" / "R10m"
    d.mkdir(parents=True)
    (d / "T33UWP_20240601T100000_B04_10m.jp2").write_bytes(b"")
    with pytest.raises(NotFound, match="lacks band file.s. B02, B03, B08, B11, SCL"):
        sen2cor.l2a_band_files(tmp_path / "S2A_MSIL2A_X.SAFE")
