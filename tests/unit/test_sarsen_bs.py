"""Fast parts of the sarsen CARD-BS engine: ids, keys, SAFE and DEM checks, errors, CLI wiring.

Nothing here runs sarsen's terrain correction (that is tests/integration/test_sarsen_bs.py):
every error below is raised before any processing starts.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from cbmflow.card import backscatter as sarsen_bs
from cbmflow.core.errors import InputError, NotFound

PID = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371"


@pytest.fixture(scope="module")
def grd(shared_data: Path) -> Path:
    return shared_data / "s1" / "sarsen_grd" / f"{PID}.SAFE"


@pytest.fixture(scope="module")
def rome_dem(shared_data: Path) -> Path:
    return shared_data / "s1" / "sarsen_grd" / "Rome-30m-DEM.tif"


def _write_dem(path: Path, lon0: float, lat0: float, crs: str | None = "EPSG:4326") -> Path:
    """A 10x10 geographic DEM of 100 m heights with its top-left corner at lon0/lat0."""
    profile = {"driver": "GTiff", "width": 10, "height": 10, "count": 1, "dtype": "float32",
               "crs": crs, "transform": from_origin(lon0, lat0, 0.01, 0.01)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 10, 10), 100.0, dtype=np.float32))
    return path


# --- product ids and keys --------------------------------------------------------------------

def test_parse_product_id_fields() -> None:
    p = sarsen_bs.parse_product_id(PID + ".SAFE")
    assert p.product_id == PID
    assert (p.mission, p.mode, p.product_type, p.resolution, p.level) == ("S1B", "IW", "GRD", "H", 1)
    assert p.polarisations == ("VV", "VH")
    assert p.start == datetime(2021, 12, 23, 5, 11, 22, tzinfo=UTC)
    assert p.stop == datetime(2021, 12, 23, 5, 11, 47, tzinfo=UTC)
    assert (p.absolute_orbit, p.datatake, p.unique_id) == (30148, "039993", "5371")
    # (30148 - 27) mod 175 + 1 = 22, the relativeOrbitNumber in the SAFE's manifest
    assert p.relative_orbit == 22


def test_parse_product_id_s1a_relative_orbit_matches_its_manifest(shared_data: Path) -> None:
    import re
    import zipfile

    with zipfile.ZipFile(shared_data / "s1" / "S1A_IW_GRDH_20210119_metadata_only.zip") as z:
        name = next(n for n in z.namelist() if n.endswith("manifest.safe"))
        manifest = z.read(name).decode()
    p = sarsen_bs.parse_product_id(name.split("/")[0])
    rel = re.search(r'relativeOrbitNumber type="start">(\d+)<', manifest)
    assert rel is not None
    # (36201 - 73) mod 175 + 1 = 79
    assert (p.mission, p.absolute_orbit, p.relative_orbit) == ("S1A", 36201, int(rel.group(1)))
    assert p.relative_orbit == 79


def test_parse_product_id_slc_and_unknown_offset() -> None:
    p = sarsen_bs.parse_product_id(
        "S1C_IW_SLC__1SSV_20250309T173000_20250309T173027_004979_006379_ABCD")
    assert (p.product_type, p.resolution, p.polarisations) == ("SLC", "_", ("VV",))
    assert p.relative_orbit is None


@pytest.mark.parametrize("bad", ["", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU",
                                 "S1B_IW_GRDH_1SDV_20211223T051122_030148_039993_5371"])
def test_parse_product_id_rejects_other_names(bad: str) -> None:
    with pytest.raises(InputError, match="not a Sentinel-1 product id"):
        sarsen_bs.parse_product_id(bad)


def test_output_uri_is_deterministic_for_local_and_s3(tmp_path: Path) -> None:
    assert sarsen_bs.output_uri("s3://card/bs/2021/12/23/", PID, "vv") == \
        f"s3://card/bs/2021/12/23/{PID}_VV.tif"
    assert sarsen_bs.output_uri(str(tmp_path / "bs"), PID, "VH") == str(tmp_path / "bs" / f"{PID}_VH.tif")
    with pytest.raises(InputError, match="object key"):
        sarsen_bs.output_uri("s3://card/bs", "a/b", "VV")


@pytest.mark.parametrize(("lon", "lat", "epsg"), [(12.5, 42.0, 32633), (-8.5, 53.3, 32629),
                                                  (15.0, -30.0, 32733), (179.9, 10.0, 32660)])
def test_utm_epsg(lon: float, lat: float, epsg: int) -> None:
    assert sarsen_bs.utm_epsg(lon, lat) == epsg


# --- SAFE checks -----------------------------------------------------------------------------

def test_read_safe_manifest(grd: Path) -> None:
    info = sarsen_bs.read_safe(grd)
    assert (info.product_id, info.product_type, info.mode) == (PID, "GRD", "IW")
    assert info.polarisations == ("VV", "VH")
    assert (info.relative_orbit, info.orbit_direction) == (22, "descending")
    assert info.start_time == "2021-12-23T05:11:22.594441"
    # manifest gml:coordinates are lat,lon pairs; the WKT is lon lat, closed
    assert info.footprint_wkt == (
        "POLYGON ((14.925448 40.876698, 11.865704 41.281048, 12.189661 42.780445, "
        "15.321935 42.376778, 14.925448 40.876698))")


def test_available_polarisations_are_those_with_files(grd: Path) -> None:
    # the manifest lists VV and VH, but only the VV measurement is in this test SAFE
    assert sarsen_bs.available_polarisations(grd) == {"VV": "IW/VV"}


def test_missing_safe_is_notfound(tmp_path: Path, rome_dem: Path) -> None:
    missing = tmp_path / f"{PID}.SAFE"
    with pytest.raises(NotFound, match=PID):
        sarsen_bs.sarsen_backscatter(missing, rome_dem, out_uri=str(tmp_path / "out"))


def test_folder_without_manifest_is_inputerror(tmp_path: Path, rome_dem: Path) -> None:
    (tmp_path / "x.SAFE").mkdir()
    with pytest.raises(InputError, match="no manifest.safe"):
        sarsen_bs.sarsen_backscatter(tmp_path / "x.SAFE", rome_dem, out_uri=str(tmp_path))


def test_garbage_manifest_is_inputerror(tmp_path: Path, rome_dem: Path) -> None:
    safe = tmp_path / "junk.SAFE"
    safe.mkdir()
    (safe / "manifest.safe").write_text("this is not xml")
    with pytest.raises(InputError, match="not a readable SAFE manifest"):
        sarsen_bs.sarsen_backscatter(safe, rome_dem, out_uri=str(tmp_path))


def test_zip_file_is_inputerror(tmp_path: Path, rome_dem: Path) -> None:
    z = tmp_path / f"{PID}.zip"
    z.write_bytes(b"PK")
    with pytest.raises(InputError, match="unzipped"):
        sarsen_bs.sarsen_backscatter(z, rome_dem, out_uri=str(tmp_path))


def test_slc_safe_is_inputerror(tmp_path: Path, grd: Path, rome_dem: Path) -> None:
    slc = tmp_path / "S1B_IW_SLC__1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
    slc.mkdir()
    text = (grd / "manifest.safe").read_text()
    assert "<s1sarl1:productType>GRD<" in text
    (slc / "manifest.safe").write_text(text.replace("<s1sarl1:productType>GRD<",
                                                    "<s1sarl1:productType>SLC<"))
    with pytest.raises(InputError, match="SLC product; the sarsen CARD-BS engine needs a GRD"):
        sarsen_bs.sarsen_backscatter(slc, rome_dem, out_uri=str(tmp_path / "out"))


def test_polarisation_not_in_product_lists_available(tmp_path: Path, grd: Path, rome_dem: Path) -> None:
    with pytest.raises(InputError, match=r"VH not in .*available: VV$"):
        sarsen_bs.sarsen_backscatter(grd, rome_dem, out_uri=str(tmp_path), polarisations=("VV", "VH"))
    assert not list(tmp_path.iterdir())


def test_bad_radiometry_and_measurement_group(tmp_path: Path, grd: Path, rome_dem: Path) -> None:
    with pytest.raises(InputError, match="correct_radiometry='sigma0'"):
        sarsen_bs.sarsen_backscatter(grd, rome_dem, out_uri=str(tmp_path), correct_radiometry="sigma0")
    with pytest.raises(InputError, match="measurement_group 'IW'"):
        sarsen_bs.sarsen_backscatter(grd, rome_dem, out_uri=str(tmp_path), measurement_group="IW")


# --- DEM checks ------------------------------------------------------------------------------

def test_missing_dem_is_notfound(tmp_path: Path, grd: Path) -> None:
    with pytest.raises(NotFound, match="no-such-dem.tif"):
        sarsen_bs.sarsen_backscatter(grd, tmp_path / "no-such-dem.tif", out_uri=str(tmp_path))


def test_dem_not_covering_scene_is_inputerror(tmp_path: Path, grd: Path) -> None:
    dem = _write_dem(tmp_path / "austria.tif", 15.0, 48.3)  # far north of the Rome scene
    with pytest.raises(InputError, match="austria.tif .* does not cover the scene footprint"):
        sarsen_bs.sarsen_backscatter(grd, dem, out_uri=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_dem_without_crs_and_unreadable_dem(tmp_path: Path, grd: Path) -> None:
    with pytest.raises(InputError, match="has no CRS"):
        sarsen_bs.sarsen_backscatter(grd, _write_dem(tmp_path / "nocrs.tif", 12.5, 42.0, crs=None),
                                     out_uri=str(tmp_path))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="junk.tif is not a readable raster"):
        sarsen_bs.sarsen_backscatter(grd, junk, out_uri=str(tmp_path))


def test_target_grid_snapped_and_covering_the_dem(grd: Path, rome_dem: Path) -> None:
    info = sarsen_bs.read_safe(grd)
    epsg, t, width, height = sarsen_bs.target_grid(info.footprint_wkt, rome_dem, epsg=None,
                                                   resolution=60.0)
    assert epsg == 32633  # Rome, 12.5 E: UTM zone 33 north
    assert (t.a, t.e, t.b, t.d) == (60.0, -60.0, 0.0, 0.0)
    assert t.c % 60 == 0 and t.f % 60 == 0
    with rasterio.open(rome_dem) as src:  # the DEM lies wholly inside the scene footprint
        left, bottom, right, top = transform_bounds(src.crs, "EPSG:32633", *src.bounds, densify_pts=21)
    assert t.c <= left < t.c + 60 and t.f - 60 < top <= t.f
    assert t.c + width * 60 - 60 < right <= t.c + width * 60
    assert t.f - height * 60 <= bottom < t.f - height * 60 + 60
    with pytest.raises(InputError, match="resolution must be positive"):
        sarsen_bs.target_grid(info.footprint_wkt, rome_dem, epsg=32633, resolution=0)


# --- command line ----------------------------------------------------------------------------

def test_card_sarsen_parses_its_arguments() -> None:
    from cbmflow.cli import card as card_cli
    from cbmflow.cli.parser import build_parser

    argv = ["SAFE", "DEM", "--out", "s3://b/bs", "--pol", "VV", "--pol", "VH", "--epsg", "32633",
            "--resolution", "20", "--radiometry", "none"]
    args = build_parser("card").parse_args(["card", "sarsen", *argv])
    assert (args.safe, args.dem, args.out, args.pol) == ("SAFE", "DEM", "s3://b/bs", ["VV", "VH"])
    assert (args.epsg, args.resolution, args.radiometry) == (32633, 20.0, "none")
    assert args.func is card_cli._cmd_sarsen


def test_card_sarsen_reports_missing_safe(tmp_path: Path, rome_dem: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from cbmflow.cli.parser import main

    missing = tmp_path / "gone.SAFE"
    assert main(["card", "sarsen", str(missing), str(rome_dem), "--out", str(tmp_path)]) == 2
    assert f"Sentinel-1 SAFE {missing} does not exist" in capsys.readouterr().err


def test_safe_copy_without_measurement_has_no_polarisation(tmp_path: Path, grd: Path,
                                                           rome_dem: Path) -> None:
    # real manifest and annotations, measurement TIFF removed: nothing to process
    safe = tmp_path / grd.name
    shutil.copytree(grd, safe, ignore=shutil.ignore_patterns("*.tiff"))
    with pytest.raises(InputError, match="VV not in .*available: none"):
        sarsen_bs.sarsen_backscatter(safe, rome_dem, out_uri=str(tmp_path / "out"))


def test_chunk_size_never_leaves_a_tiny_tail() -> None:
    from cbmflow.card.backscatter import _chunk_size

    assert _chunk_size(1135, 900) == 1136  # small grids: one chunk, a multiple of 16
    for w, h in ((3183, 2159), (10980, 10980), (4097, 2049), (2049, 5000)):
        c = _chunk_size(w, h)
        assert c % 16 == 0 and all(n % c == 0 or n % c >= 256 for n in (w, h)), (w, h, c)
