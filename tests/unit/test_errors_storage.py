from __future__ import annotations

import pytest

from cbmflow import storage
from cbmflow.errors import CbmError, ConfigError, NothingToDo, TransientError


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
