"""Outage or bad file: errors.transient_cause on the texts and types GDAL, botocore and psycopg raise."""

from __future__ import annotations

import errno

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from cbmflow.core.errors import (
    CorruptData,
    DatabaseUnavailable,
    NotFound,
    StorageUnavailable,
    TransientError,
    transient_cause,
)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("text", [
    "CURL error: Failed to connect to 127.0.0.1 port 9000 after 0 ms: Could not connect to server",
    "HTTP response code: 503",
    "/vsis3/b/k.tif: HTTP response code: 500 - InternalError",
    "HTTP response code: 429",
    "SlowDown: Please reduce your request rate.",
    "CURL error: Operation timed out after 30000 milliseconds with 0 bytes received",
    "CURL error: Connection reset by peer",
])
def test_gdal_outage_texts_are_transient(text: str) -> None:
    from rasterio.errors import RasterioIOError

    err = CorruptData(f"raster s3://b/k.tif cannot be read: {text}")
    err.__cause__ = RasterioIOError(text)
    assert isinstance(transient_cause(err), StorageUnavailable)


@pytest.mark.parametrize("text", [
    "'/vsis3/b/k.tif' not recognized as being in a supported file format.",
    "TIFFReadEncodedTile() failed.",
    "k.tif: Read or write failed. IReadBlock failed at X offset 0, Y offset 0",
])
def test_bad_files_are_permanent(text: str) -> None:
    from rasterio.errors import RasterioIOError

    err = CorruptData(f"raster s3://b/k.tif cannot be read: {text}")
    err.__cause__ = RasterioIOError(text)
    assert transient_cause(err) is None
    assert transient_cause(NotFound("raster s3://b/k.tif does not exist")) is None


def test_botocore_errno_and_psycopg() -> None:
    assert isinstance(transient_cause(_client_error("SlowDown", 503)), StorageUnavailable)
    assert isinstance(transient_cause(_client_error("InternalError", 500)), StorageUnavailable)
    assert transient_cause(_client_error("AccessDenied", 403)) is None
    assert isinstance(transient_cause(EndpointConnectionError(endpoint_url="http://x")), StorageUnavailable)
    assert isinstance(transient_cause(ReadTimeoutError(endpoint_url="http://x")), StorageUnavailable)
    assert isinstance(transient_cause(OSError(errno.ECONNREFUSED, "refused")), StorageUnavailable)
    assert transient_cause(OSError(errno.ENOENT, "no file")) is None
    assert isinstance(transient_cause(psycopg.OperationalError("terminating connection due to administrator command")),
                      DatabaseUnavailable)
    assert transient_cause(psycopg.errors.UniqueViolation("dup")) is None
    wrapped = RuntimeError("scene 3")
    wrapped.__cause__ = psycopg.errors.DeadlockDetected("deadlock")
    assert isinstance(transient_cause(wrapped), DatabaseUnavailable)
    assert issubclass(StorageUnavailable, TransientError) and StorageUnavailable.outcome == "retry"
