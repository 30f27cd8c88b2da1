"""Simulated CARD archive: grid, COG layout, labels, determinism, mislabels, clouds, JRC value ranges."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from shapely.geometry import box

from cbmflow import cli
from cbmflow.core import cog
from cbmflow.core.crops import crop_group
from cbmflow.core.errors import InputError
from cbmflow_sim.archive import SimulationResult, jrc_reference, simulate_season, synthetic_parcels

# Six parcels of distinct crop groups (AT crop names), 200 m x 150 m, in UTM 33N on the 10 m grid.
CROPS = [
    ("101", "WINTERWEICHEN"), ("102", "KÖRNERMAIS"), ("103", "MÄHWIESE/-WEIDE DREI UND MEHR NUTZUNGEN"),
    ("104", "WINTERRAPS"), ("105", "ZUCKERRÜBEN"), ("106", "SOMMERGERSTE"),
]
GROUPS = ["winter_cereal", "maize", "grassland", "rapeseed", "sugar_beet", "spring_cereal"]


def tiny_parcels(n: int = 6, crops: list[tuple[str, str]] | None = None) -> gpd.GeoDataFrame:
    crops = crops or CROPS
    x0, y0 = 525000.0, 5350000.0
    geoms = [box(x0 + (i % 3) * 250, y0 + (i // 3) * 200, x0 + (i % 3) * 250 + 200, y0 + (i // 3) * 200 + 150)
             for i in range(n)]
    return gpd.GeoDataFrame({
        "pid": [f"P{i + 1}" for i in range(n)],
        "code": [crops[i % len(crops)][0] for i in range(n)],
        "name": [crops[i % len(crops)][1] for i in range(n)],
    }, geometry=geoms, crs="EPSG:32633")


def run(tmp: Path, **kw: object) -> SimulationResult:
    args: dict[str, object] = dict(aoi="tiny", season=2025, out=str(tmp), id_col="pid", crop_col="code",
                                   crop_name_col="name", seed=3, start="06-01", end="06-10", workers=1)
    args.update(kw)
    parcels = args.pop("parcels", tiny_parcels())
    return simulate_season(parcels, **args)  # type: ignore[arg-type]


def items_of(res: SimulationResult) -> list[pystac.Item]:
    return list(pystac.ItemCollection.from_dict(json.loads(Path(res.items_uri).read_text())))


def read(uri: str) -> np.ndarray:
    with rasterio.open(uri) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    # S2 dates 06-02 (clear) and 06-07 (70 % cloud); S1 asc 06-01, 06-07; desc 06-03, 06-09
    return run(tmp_path_factory.mktemp("tiny"), s2_clouds=(0.0, 0.7), mislabel=0.5)


def test_crop_groups_of_real_names() -> None:
    expected = {
        "WINTERWEICHEN": "winter_cereal", "KÖRNERMAIS": "maize", "SILOMAIS": "maize",
        "MÄHWIESE/-WEIDE ZWEI NUTZUNGEN": "grassland", "KLEEGRAS": "grassland", "GRÜNBRACHE": "fallow",
        "WINTERTRITICALE": "winter_cereal", "GLÖZ HECKE / UFERGEHÖLZ": "other",
        "Vårbyg": "spring_cereal", "Vinterraps": "rapeseed", "Silomajs": "maize", "Hestebønner": "legumes",
        "Permanent græs, normalt udbytte": "grassland", "Brak, sommerslåning": "fallow",
        "Skovlandbrug med permanent græs": "grassland", "Vinterrug": "winter_cereal",
        "Mais, snij-": "maize", "Aardappelen, consumptie": "potato", "Grasland, blijvend": "grassland",
        "Sloot": "other", "Zuckerrüben": "sugar_beet", "": "other", "4711": "other",
    }
    assert {k: crop_group(k) for k in expected} == expected


def test_grid_crs_and_layout(tiny: SimulationResult) -> None:
    assert tiny.epsg == 32633  # 15.3E -> UTM 33N
    a, _, x0, _, e, y1 = tiny.transform
    assert (a, e) == (10.0, -10.0) and x0 % 10 == 0 and y1 % 10 == 0
    bounds = tiny_parcels().to_crs(32633).total_bounds
    rows, cols = tiny.shape
    assert x0 <= bounds[0] - 200 < x0 + 10 and y1 - 10 < bounds[3] + 200 <= y1
    assert x0 + cols * 10 >= bounds[2] + 200 and y1 - rows * 10 <= bounds[1] - 200
    # 2 S1 dates per orbit x (bs + c6) + 2 S2 dates
    assert tiny.n_scenes == 10
    assert tiny.n_rasters == 4 * 2 + 4 * 2 + 2 * 6
    assert tiny.root.endswith("tiny/2025")


def test_cogs_are_valid_tagged_and_typed(tiny: SimulationResult) -> None:
    expected = {"VV": ("float32", None), "VH": ("float32", None), "COH_VV": ("float32", None),
                "COH_VH": ("float32", None), "B02": ("uint16", 0), "B08": ("uint16", 0), "B11": ("uint16", 0),
                "SCL": ("uint8", 0)}
    seen = set()
    for item in items_of(tiny):
        for band, asset in item.assets.items():
            assert Path(asset.href).name == f"{item.id}_{band}.tif"
            assert Path(asset.href).parent.name == item.properties["cbmflow:card_type"]
            if band not in expected:
                continue
            seen.add(band)
            assert cog.is_cog(asset.href)
            with rasterio.open(asset.href) as src:
                dtype, nodata = expected[band]
                assert src.dtypes[0] == dtype
                assert np.isnan(src.nodata) if nodata is None else src.nodata == nodata
                assert src.crs.to_epsg() == 32633
                assert tuple(src.transform)[:6] == tiny.transform
                assert src.shape == tiny.shape
                assert src.tags()["CBMFLOW_SIMULATED"] == "true"
                assert src.tags()["CBMFLOW_PRODUCT_ID"] == item.id
                assert src.descriptions[0] == band
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                data = src.read(1)
            if band in ("COH_VV", "COH_VH"):
                assert 0 < data.min() and data.max() < 1
            if band == "VV":
                assert np.isfinite(data).all() and data.min() > 0
    assert seen == set(expected)


def test_items_carry_the_brief_properties(tiny: SimulationResult) -> None:
    items = items_of(tiny)
    assert len(items) == tiny.n_scenes
    for item in items:
        p = item.properties
        assert "SIM" in item.id
        assert p["cbmflow:simulated"] is True
        assert p["cbmflow:card_type"] in ("bs", "c6", "s2")
        assert p["cbmflow:tile"] == "33UWP"
        assert p["proj:epsg"] == 32633 and tuple(p["proj:shape"]) == tiny.shape
        assert tuple(p["proj:transform"]) == tiny.transform
        assert item.datetime is not None and p["platform"].startswith("sentinel-")
        assert p["sat:orbit_state"] in ("ascending", "descending") and isinstance(p["sat:relative_orbit"], int)
        assert all(a.roles == ["data"] for a in item.assets.values())
    bs = [i for i in items if i.properties["cbmflow:card_type"] == "bs"]
    assert {i.properties["sat:orbit_state"] for i in bs} == {"ascending", "descending"}
    assert [i.id for i in bs][0] == "S1A_SIM_TINY_BS_20250601T165030_R073_ASC"
    assert {i.properties["cbmflow:card_type"] for i in items} == {"bs", "c6", "s2"}


def test_scl_clear_and_cloudy_dates(tiny: SimulationResult) -> None:
    s2 = sorted((i for i in items_of(tiny) if i.properties["cbmflow:card_type"] == "s2"), key=lambda i: i.datetime)
    clear, cloudy = (read(i.assets["SCL"].href) for i in s2)
    assert set(np.unique(clear)) <= {4, 5, 6}
    assert s2[0].properties["eo:cloud_cover"] == 0.0
    cloud_share = np.isin(cloudy, (8, 9, 10)).mean()
    assert cloud_share == pytest.approx(0.7, abs=0.03)
    assert s2[1].properties["eo:cloud_cover"] == pytest.approx(cloud_share * 100, abs=0.01)
    assert {3, 8, 9} <= set(np.unique(cloudy))  # shadows, medium and high probability clouds
    b04_clear, b04_cloudy = (read(i.assets["B04"].href) for i in s2)
    assert np.median(b04_cloudy[cloudy == 9]) > 5 * np.median(b04_clear)  # bright clouds
    assert np.median(b04_cloudy[cloudy == 3]) < np.median(b04_clear)  # dark shadows


def test_parcels_are_homogeneous_and_differ_from_background(tiny: SimulationResult) -> None:
    s2 = sorted((i for i in items_of(tiny) if i.properties["cbmflow:card_type"] == "s2"), key=lambda i: i.datetime)
    b08 = read(s2[0].assets["B08"].href).astype(float) / 10000
    parcels = tiny_parcels().to_crs(32633)
    from rasterio.transform import Affine

    ids = rasterize(((g, i + 1) for i, g in enumerate(parcels.geometry)), out_shape=tiny.shape,
                    transform=Affine(*tiny.transform), dtype="int32")
    means = [b08[ids == i + 1].mean() for i in range(6)]
    for i in range(6):
        px = b08[ids == i + 1]
        assert px.size == 300  # 20 x 15 pixels
        assert px.std() / px.mean() < 0.06  # one field, one crop
    # early June: winter wheat and rapeseed canopies are closed, maize and sugar beet barely emerged
    assert means[0] > 0.3 and means[3] > 0.3 and means[1] < 0.3 and means[4] < 0.3
    background = b08[ids == 0]
    assert background.std() / background.mean() > 0.2  # forest, urban, water, verges
    scl = read(s2[0].assets["SCL"].href)
    assert set(np.unique(scl[ids == 0])) == {4, 5, 6}  # vegetation, urban (not vegetated), water


def test_mislabel_exact_and_signals_from_true_crop(tiny: SimulationResult, tmp_path: Path) -> None:
    truth = pd.read_parquet(tiny.truth_uri)
    assert list(truth.columns[:4]) == ["parcel_id", "declared_crop", "true_crop", "mislabelled"]
    assert truth["mislabelled"].sum() == 3  # round(0.5 * 6)
    wrong = truth[truth["mislabelled"]]
    assert (wrong["declared_crop"] != wrong["true_crop"]).all()
    assert (wrong["declared_group"] != wrong["true_group"]).all()
    right = truth[~truth["mislabelled"]]
    assert (right["declared_crop"] == right["true_crop"]).all()
    assert list(truth["true_crop"]) == [c for c, _ in CROPS]
    declared = gpd.read_file(tiny.parcels_uri)
    assert declared.crs.to_epsg() == 32633
    assert list(declared.columns[:3]) == ["pid", "code", "name"]
    assert list(declared["code"]) == list(truth["declared_crop"])
    names = dict(CROPS)
    assert list(declared["name"]) == [names[c] for c in declared["code"]]  # code and name move together
    # the rasters do not depend on the declarations: same seed without mislabels gives the same pixels
    clean = run(tmp_path, bands=("VV",), card_types=("bs",))
    vv_mis = [i for i in items_of(tiny) if i.properties["cbmflow:card_type"] == "bs"][0]
    vv_clean = items_of(clean)[0]
    assert vv_mis.id == vv_clean.id
    assert np.array_equal(read(vv_mis.assets["VV"].href), read(vv_clean.assets["VV"].href))


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kw = dict(card_types=("bs", "s2"), end="06-03")
    a, b = run(tmp_path / "a", **kw), run(tmp_path / "b", **kw)
    c = run(tmp_path / "c", seed=4, **kw)
    ia, ib, ic = items_of(a), items_of(b), items_of(c)
    assert [i.id for i in ia] == [i.id for i in ib] == [i.id for i in ic]
    for x, y, z in zip(ia, ib, ic, strict=True):
        for band in x.assets:
            ax, ay, az = read(x.assets[band].href), read(y.assets[band].href), read(z.assets[band].href)
            assert ax.tobytes() == ay.tobytes()
            assert ax.tobytes() != az.tobytes()
    assert Path(a.truth_uri).read_bytes() == Path(b.truth_uri).read_bytes()


def test_bad_inputs_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'crop'.*available columns: pid, code, name"):
        run(tmp_path, crop_col="crop")
    p = tiny_parcels()
    p.loc[2, "pid"] = "P1"
    with pytest.raises(InputError, match="duplicate parcel ids.*P1"):
        run(tmp_path, parcels=p)
    with pytest.raises(InputError, match="same crop"):
        run(tmp_path, parcels=tiny_parcels(crops=[("1", "KLEEGRAS")]), mislabel=0.2)
    with pytest.raises(InputError, match="no CRS"):
        run(tmp_path, parcels=tiny_parcels().set_crs(None, allow_override=True))
    with pytest.raises(InputError, match="band"):
        run(tmp_path, card_types=("bs",), bands=("B04",))


def test_synthetic_parcels_layout() -> None:
    gdf = synthetic_parcels(2000, seed=5, min_ha=1.0, max_ha=5.0)
    assert len(gdf) == 2000 and gdf.crs.to_epsg() == 32632
    assert list(gdf.columns) == ["parcel_id", "crop_code", "crop_name", "geometry"]
    assert gdf["parcel_id"].is_unique
    geoms = gdf.geometry.to_numpy()
    assert shapely.is_valid(geoms).all()
    area = shapely.area(geoms)
    assert area.min() >= 1e4 * (1 - 1e-9) and area.max() <= 5e4 * (1 + 1e-9)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    assert (left == right).all()  # only self-intersections: no two parcels touch or overlap
    shares = gdf["crop_name"].map(crop_group).value_counts(normalize=True)
    assert shares["grassland"] == pytest.approx(0.30, abs=0.04)
    assert shares.index[0] == "grassland"
    again = synthetic_parcels(2000, seed=5)
    assert shapely.equals_exact(again.geometry.to_numpy(), geoms, tolerance=0).all()


def test_cli_parcels_then_season(tmp_path: Path) -> None:
    out = tmp_path / "syn.gpkg"
    assert cli.main(["simulate", "parcels", "--n", "12", "--out", str(out), "--seed", "2"]) == 0
    assert len(gpd.read_file(out)) == 12
    rc = cli.main(["simulate", "--aoi", "syn", "--season", "2024", "--parcels", str(out), "--id-col", "parcel_id",
                   "--crop-col", "crop_name", "--out", str(tmp_path / "arch"), "--start", "05-01", "--end", "05-02",
                   "--card-types", "bs", "--bands", "VV", "--mislabel", "0.25"])
    assert rc == 0
    truth = pd.read_parquet(tmp_path / "arch/syn/2024/truth.parquet")
    assert truth["mislabelled"].sum() == 3
    assert sorted(p.name for p in (tmp_path / "arch/syn/2024/bs").iterdir()) == [
        "S1A_SIM_SYN_BS_20240501T165030_R073_ASC_VV.tif"]
    assert cli.main(["simulate", "--aoi", "x"]) == 2  # missing options: one clear error


@pytest.fixture(scope="module")
def grass_season(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, gpd.GeoDataFrame]:
    crops = [("1", "MÄHWIESE/-WEIDE DREI UND MEHR NUTZUNGEN")]
    parcels = tiny_parcels(9, crops=crops)
    res = run(tmp_path_factory.mktemp("grass"), parcels=parcels, start="01-01", end="12-31", revisit_days=12,
              s2_revisit_days=15, s2_clouds=False)
    return res, parcels


def test_grassland_matches_jrc_ranges(grass_season: tuple[SimulationResult, gpd.GeoDataFrame],
                                      shared_data: Path) -> None:
    ref = jrc_reference(shared_data / "jrc_cbm_signatures")
    res, parcels = grass_season
    from rasterio.transform import Affine

    ids = rasterize(((g, i + 1) for i, g in enumerate(parcels.to_crs(res.epsg).geometry)), out_shape=res.shape,
                    transform=Affine(*res.transform), dtype="int32").ravel()
    n = len(parcels)
    rows = []
    for item in items_of(res):
        month = item.datetime.month  # type: ignore[union-attr]
        for band, asset in item.assets.items():
            data = read(asset.href).astype(float).ravel()
            for i in range(1, n + 1):
                px = data[ids == i]
                rows.append((item.properties["sat:orbit_state"], month, band, i, px.mean(), px.std() / px.mean()))
    df = pd.DataFrame(rows, columns=["orbit", "month", "band", "parcel", "mean", "cv"])
    for band, key in (("VV", "vv"), ("VH", "vh")):
        b = df[df["band"] == band]
        # within-parcel variability (speckle + texture) as in the JRC parcels
        assert ref[f"{key}_cv_p05"] <= b["cv"].median() <= ref[f"{key}_cv_p95"]
        # seasonal dynamics: per-parcel p90 - p10 of the dB parcel means (both orbits, as the JRC series)
        db = 10 * np.log10(b["mean"])
        spread = db.groupby(b["parcel"]).agg(lambda x: np.percentile(x, 90) - np.percentile(x, 10))
        assert ref[f"{key}_db_spread_min"] * 0.8 <= spread.median() <= ref[f"{key}_db_spread_max"] * 1.2
    for band, key in (("COH_VV", "coh_vv"), ("COH_VH", "coh_vh")):
        summer = df[(df["band"] == band) & df["month"].between(5, 9)]["mean"]
        assert ref[f"{key}_summer_p05"] <= summer.median() <= ref[f"{key}_summer_p95"]
        allyear = df[df["band"] == band]["mean"]
        assert ref[f"{key}_p01"] <= allyear.median() <= ref[f"{key}_p99"]
    for band in ("B04", "B08"):
        refl = df[df["band"] == band]["mean"] / 10000
        inside = refl.between(ref[f"{band}_clear_p01"], ref[f"{band}_clear_p99"]).mean()
        assert inside >= 0.9


def test_two_aois_simulated_for_the_same_dates_have_distinct_product_ids() -> None:
    from cbmflow_sim.archive import _schedule

    a = {x.product_id for x in _schedule(2025, "05-01", "05-20", ("bs", "c6", "s2"), 6, 5, "33UWP", "at")}
    b = {x.product_id for x in _schedule(2025, "05-01", "05-20", ("bs", "c6", "s2"), 6, 5, "33UWP", "sim")}
    assert a and b and not (a & b)
    assert all("_SIM_AT_" in p for p in a)
