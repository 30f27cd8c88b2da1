"""Sentinel-2 L1C -> L2A with ESA's Sen2Cor (``L2A_Process``), and discovery of its outputs."""

from __future__ import annotations

import re
from pathlib import Path

from cbmflow.card.snap import find_executable, run_command
from cbmflow.core.errors import NotFound, ProcessingError

SEN2COR_MISSING = ("Sen2Cor L2A_Process not found: install ESA Sen2Cor 2.11+ "
                   "(https://step.esa.int/main/snap-supported-plugins/sen2cor/) and put its bin on PATH "
                   "or set SEN2COR_HOME; see docs/operations.md")
DEFAULT_TIMEOUT_S = 2 * 3600
# CARD-2A bands and the Sen2Cor resolution folder each is taken from.
L2A_BAND_RESOLUTION: dict[str, int] = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20, "SCL": 20}
_BAND_FILE = re.compile(r"_(B\d[\dA]|SCL|AOT|WVP|TCI)_(10|20|60)m\.jp2$")


def find_l2a_process() -> Path:
    """The ``L2A_Process`` executable: on PATH, else ``$SEN2COR_HOME/bin``; ToolMissing if neither."""
    return find_executable("L2A_Process", "SEN2COR_HOME", SEN2COR_MISSING)


def l2a_command(l1c_safe: str | Path, output_dir: str | Path, *, exe: str | Path,
                resolution: int = 10) -> list[str]:
    """The argv that runs Sen2Cor on one L1C SAFE into output_dir."""
    if resolution not in (10, 20, 60):
        raise ValueError(f"Sen2Cor resolution must be 10, 20 or 60, got {resolution}")
    return [str(exe), "--resolution", str(resolution), "--output_dir", str(output_dir), str(l1c_safe)]


def find_l2a_safe(output_dir: str | Path) -> Path:
    """The single ``*MSIL2A*.SAFE`` folder Sen2Cor wrote into output_dir."""
    found = sorted(p for p in Path(output_dir).glob("*MSIL2A*.SAFE") if p.is_dir())
    if len(found) != 1:
        raise ProcessingError(f"expected one *MSIL2A*.SAFE in {output_dir}, found {[p.name for p in found]}")
    return found[0]


def l2a_band_files(l2a_safe: str | Path) -> dict[str, Path]:
    """CARD-2A band -> JP2 in ``GRANULE/*/IMG_DATA/R10m|R20m`` of an L2A SAFE (B02-B08 10 m, B11/SCL 20 m)."""
    safe = Path(l2a_safe)
    files: dict[str, Path] = {}
    for jp2 in safe.glob("GRANULE/*/IMG_DATA/R*m/*.jp2"):
        m = _BAND_FILE.search(jp2.name)
        if m and L2A_BAND_RESOLUTION.get(m.group(1)) == int(m.group(2)):
            files[m.group(1)] = jp2
    missing = [b for b in L2A_BAND_RESOLUTION if b not in files]
    if missing:
        raise NotFound(f"L2A product {safe.name} lacks band file(s) {', '.join(missing)} in GRANULE/*/IMG_DATA; "
                       f"found {', '.join(sorted(files)) or 'none'}")
    return dict(sorted(files.items()))


def run_sen2cor(l1c_safe: str | Path, output_dir: str | Path, *, resolution: int = 10,
                timeout: float = DEFAULT_TIMEOUT_S, exe: str | Path | None = None) -> Path:
    """Run Sen2Cor on an L1C SAFE; returns the L2A SAFE it wrote. ToolMissing without Sen2Cor."""
    program = Path(exe) if exe else find_l2a_process()
    if not Path(l1c_safe).exists():
        raise NotFound(f"L1C product {l1c_safe} does not exist")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    run_command(l2a_command(l1c_safe, output_dir, exe=program, resolution=resolution),
                timeout=timeout, tool="Sen2Cor L2A_Process")
    return find_l2a_safe(output_dir)
