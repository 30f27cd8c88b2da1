from __future__ import annotations

import pytest

from cbmflow.core import storage
from cbmflow.core.errors import CbmError, ConfigError, NothingToDo, TransientError


def test_error_outcomes() -> None:
    assert CbmError("x").outcome == "fail"
    assert TransientError("x").outcome == "retry"
    assert NothingToDo("x").outcome == "skip"


def test_parse_s3_and_local(tmp_path) -> None:
    u = storage.parse("s3://bucket/a/b.tif")
    assert (u.scheme, u.bucket, u.key) == ("s3", "bucket", "a/b.tif")
    assert storage.gdal_path("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"
    assert storage.parse("/vsis3/bkt/k.tif") == storage.Uri("s3", "bkt", "k.tif")
    p = tmp_path / "x.tif"
    assert storage.gdal_path(str(p)) == str(p)
    assert storage.join("s3://b/pre/", "x", "y.tif") == "s3://b/pre/x/y.tif"


def test_parse_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="unsupported URI scheme"):
        storage.parse("gs://bucket/key")
    with pytest.raises(ConfigError, match="no bucket"):
        storage.parse("s3:///key")


def test_is_cog_rejects_a_plain_tiled_geotiff(tmp_path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from cbmflow.core import cog

    data = np.ones((1100, 1100), dtype="float32")
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=1100, height=1100, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(0, 0, 10, 10), tiled=True,
                       blockxsize=512, blockysize=512) as dst:
        dst.write(data, 1)
        dst.build_overviews([2, 4])
    assert cog.is_cog(str(plain)) is False  # tiled with overviews, but not in COG layout
    written = cog.write_cog(str(tmp_path / "c.tif"), data, crs="EPSG:32633",
                            transform=from_origin(0, 0, 10, 10), nodata=None)
    assert cog.is_cog(written) is True


def test_cog_predictor_is_floating_point_for_floats_and_differencing_for_integers(tmp_path) -> None:
    """Floats keep the floating-point predictor (3: 10 % smaller real S1 files), integers predictor 2."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from cbmflow.core import cog

    rng = np.random.default_rng(0)
    for dtype, expected in (("float32", "3"), ("uint16", "2")):
        data = (rng.random((600, 600)) * 1000).astype(dtype)
        uri = cog.write_cog(str(tmp_path / f"{dtype}.tif"), data, crs="EPSG:32633",
                            transform=from_origin(0, 0, 10, 10), nodata=None)
        with rasterio.open(uri) as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == expected, dtype
            assert src.profile["compress"] == "zstd"
            np.testing.assert_array_equal(src.read(1), data)
