"""Simulated CARD archive written to the moto S3 server and read back through GDAL /vsis3/."""

from __future__ import annotations

import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
from shapely.geometry import box

from cbmflow.core import cog, storage
from cbmflow_sim.archive import simulate_season

pytestmark = pytest.mark.integration


def test_simulate_to_s3_and_read_back(s3_bucket: str, tmp_path: Path) -> None:
    # four parcels declared in Austrian Lambert (EPSG:31287): reprojected to UTM 33N
    parcels = gpd.GeoDataFrame(
        {"id": [1, 2, 3, 4], "crop": ["SILOMAIS", "WINTERGERSTE", "KLEEGRAS", "GRÜNBRACHE"]},
        geometry=[box(525000 + i * 300, 485000, 525000 + i * 300 + 200, 485150) for i in range(4)],
        crs="EPSG:31287",
    )
    out = f"{s3_bucket}/archive"
    res = simulate_season(parcels, aoi="at_s3", season=2025, out=out, id_col="id", crop_col="crop",
                          start="07-01", end="07-02", card_types=("bs", "s2"), s2_clouds=(0.3,), mislabel=0.25,
                          workers=1)
    assert res.epsg == 32633
    assert res.items_uri == f"{s3_bucket}/archive/at_s3/2025/items.json"
    keys = storage.list_uris(f"{s3_bucket}/archive/at_s3/2025/", ".tif")
    assert len(keys) == res.n_rasters == 2 + 6  # one ascending BS scene (VV, VH) + one S2 scene
    items = list(pystac.ItemCollection.from_dict(json.loads(storage.read_bytes(res.items_uri))))
    assert sorted(i.properties["cbmflow:card_type"] for i in items) == ["bs", "s2"]
    hrefs = sorted(a.href for i in items for a in i.assets.values())
    assert hrefs == keys and all(h.startswith("s3://") for h in hrefs)
    s2 = next(i for i in items if i.properties["cbmflow:card_type"] == "s2")
    with storage.rasterio_env():
        assert cog.is_cog(s2.assets["SCL"].href)
        with storage.open_raster(s2.assets["SCL"].href) as src:
            scl = src.read(1)
            assert src.tags()["CBMFLOW_SIMULATED"] == "true"
            assert src.crs.to_epsg() == 32633 and src.shape == res.shape
        assert np.isin(scl, (8, 9, 10)).mean() * 100 == pytest.approx(s2.properties["eo:cloud_cover"], abs=0.01)
        bs = next(i for i in items if i.properties["cbmflow:card_type"] == "bs")
        with storage.open_raster(bs.assets["VV"].href) as src:
            window = src.read(1, window=((0, 16), (0, 16)))
            assert window.dtype == np.float32 and np.isfinite(window).all() and (window > 0).all()
    truth = pd.read_parquet(io.BytesIO(storage.read_bytes(res.truth_uri)))
    assert list(truth["parcel_id"]) == ["1", "2", "3", "4"] and truth["mislabelled"].sum() == 1
    local = storage.download(res.parcels_uri, tmp_path / "declared.gpkg")
    declared = gpd.read_file(local)
    assert declared.crs.to_epsg() == 32633
    assert list(declared["crop"]) == list(truth["declared_crop"])
