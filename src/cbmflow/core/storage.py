"""URIs for local paths and ``s3://`` objects on any S3 endpoint; GDAL and boto3 access to both."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbmflow.core.config import S3Settings, s3_settings
from cbmflow.core.errors import ConfigError, NotFound, StorageUnavailable, transient_cause


@dataclass(frozen=True)
class Uri:
    """A parsed storage location: a local path or an S3 bucket and key."""

    scheme: str  # "file" or "s3"
    bucket: str | None
    key: str  # for "file": the absolute path

    @property
    def is_s3(self) -> bool:
        """Whether the location is in object storage."""
        return self.scheme == "s3"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else self.key


def parse(uri: str | os.PathLike[str]) -> Uri:
    """Parse a local path, ``file://`` URL, ``s3://bucket/key`` or ``/vsis3/bucket/key``."""
    text = os.fspath(uri)
    if text.startswith("s3://") or text.startswith("/vsis3/"):
        rest = text[5:] if text.startswith("s3://") else text[7:]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ConfigError(f"S3 URI {text!r} names no bucket")
        return Uri("s3", bucket, key)
    if text.startswith("file://"):
        text = text[7:]
    if "://" in text:
        raise ConfigError(f"unsupported URI scheme in {text!r} (use a path or s3://bucket/key)")
    return Uri("file", None, str(Path(text).expanduser().resolve()))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local or S3 base URI."""
    u = parse(base)
    if u.is_s3:
        key = "/".join([u.key.rstrip("/")] + [p.strip("/") for p in parts]).lstrip("/")
        return f"s3://{u.bucket}/{key}"
    return str(Path(u.key).joinpath(*parts))


_DISTRIBUTED = ("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor", "CeleryKubernetesExecutor")


def _local_allowed() -> bool:
    executor = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    return not any(executor.endswith(name) for name in _DISTRIBUTED)


def work_uri(*parts: str) -> str:
    """Where intermediate work files go: ``$CBMFLOW_WORK_URI`` (shared object storage, e.g.
    ``s3://bucket/work``), else ``$CBMFLOW_WORK_DIR`` (an explicit local folder), else
    ``<project>/var/work`` on a single machine; refuses a local default under a distributed executor.
    """
    from cbmflow.core.config import project_root

    base = os.environ.get("CBMFLOW_WORK_URI") or os.environ.get("CBMFLOW_WORK_DIR")
    if not base:
        if not _local_allowed():
            raise ConfigError(
                "CBMFLOW_WORK_URI is not set: with a distributed executor work files must go to shared "
                "object storage (e.g. s3://bucket/work) so any worker can read them; set CBMFLOW_WORK_DIR "
                "only for a single machine"
            )
        base = str(project_root() / "var" / "work")
    return join(base, *parts) if parts else base


def report_uri(*parts: str) -> str:
    """Where reports go: ``$CBMFLOW_REPORT_URI``, else ``$CBMFLOW_REPORT_DIR`` (local folder), else
    ``$CBMFLOW_WORK_URI/reports``, else ``<project>/reports``.
    """
    from cbmflow.core.config import project_root

    base = os.environ.get("CBMFLOW_REPORT_URI") or os.environ.get("CBMFLOW_REPORT_DIR")
    if not base:
        if os.environ.get("CBMFLOW_WORK_URI"):
            base = join(os.environ["CBMFLOW_WORK_URI"], "reports")
        elif not _local_allowed():
            raise ConfigError("CBMFLOW_REPORT_URI (or CBMFLOW_WORK_URI) is not set: with a distributed executor "
                              "reports must go to shared object storage")
        else:
            base = str(project_root() / "reports")
    return join(base, *parts) if parts else base


def gdal_path(uri: str) -> str:
    """The path GDAL opens for a URI (``/vsis3/bucket/key`` for S3: ranged reads)."""
    u = parse(uri)
    return f"/vsis3/{u.bucket}/{u.key}" if u.is_s3 else u.key


def gdal_options(settings: S3Settings | None = None) -> dict[str, Any]:
    """GDAL configuration options for reading S3 objects with range requests."""
    s = settings or s3_settings()
    opts: dict[str, Any] = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.jp2,.vrt,.TIF",
        "GDAL_HTTP_MAX_RETRY": "3",
        "GDAL_HTTP_RETRY_DELAY": "1",
        "AWS_REGION": s.region,
    }
    if s.endpoint_url:
        opts.update(
            AWS_S3_ENDPOINT=s.host,
            AWS_HTTPS="YES" if s.https else "NO",
            AWS_VIRTUAL_HOSTING="FALSE",
        )
    return opts


@contextmanager
def rasterio_env(settings: S3Settings | None = None, **extra: Any) -> Iterator[None]:
    """A rasterio environment able to read ``/vsis3/`` on the configured endpoint."""
    import rasterio

    s = settings or s3_settings()
    session = _credentials_session(s) if s.access_key else None
    with rasterio.Env(session=session, **gdal_options(s), **extra):
        yield


def _credentials_session(s: S3Settings) -> Any:
    """A rasterio session that hands GDAL the configured S3 keys (what rasterio's AWSSession does, without boto3)."""
    opts = {"AWS_ACCESS_KEY_ID": s.access_key, "AWS_SECRET_ACCESS_KEY": s.secret_key}
    if s.session_token:
        opts["AWS_SESSION_TOKEN"] = s.session_token
    if s.region:
        opts["AWS_REGION"] = s.region
    if s.endpoint_url:
        opts["AWS_S3_ENDPOINT"] = s.host
    return _keys_session_class()(opts)


@functools.cache
def _keys_session_class() -> Any:
    """The rasterio session class of :func:`_credentials_session` (built once: rasterio is imported lazily)."""
    from rasterio.session import Session

    class _Keys(Session):  # type: ignore[misc]
        """Given S3 keys as GDAL's AWS_* options."""

        def __init__(self, opts: dict[str, Any]) -> None:
            self._opts = dict(opts)

        @classmethod
        def hascreds(cls, config: dict[str, Any]) -> bool:
            """Whether the GDAL configuration holds keys."""
            return "AWS_ACCESS_KEY_ID" in config and "AWS_SECRET_ACCESS_KEY" in config

        @property
        def credentials(self) -> dict[str, Any]:
            """The keys, as rasterio names them."""
            return {k.lower(): v for k, v in self._opts.items() if k != "AWS_S3_ENDPOINT"}

        def get_credential_options(self) -> dict[str, Any]:
            """The keys as GDAL configuration options."""
            return dict(self._opts)

    return _Keys


def import_rasterio_without_boto3() -> None:
    """Import rasterio without letting it load boto3 (~0.1 s): :func:`rasterio_env` gives GDAL the keys itself.

    For short processes (``cbmflow extract``). boto3 stays importable for everything else; only
    rasterio's own boto3 sessions are off, which GDAL's own AWS_* handling replaces.
    """
    import sys

    if "rasterio" in sys.modules or "boto3" in sys.modules:
        return
    sys.modules["boto3"] = None  # type: ignore[assignment]  # rasterio.session: `import boto3` -> ImportError
    try:
        import rasterio.session  # noqa: F401
    finally:
        del sys.modules["boto3"]


def open_raster(uri: str) -> Any:
    """Open a raster (local or S3) with rasterio; call inside :func:`rasterio_env`."""
    import rasterio
    from rasterio.errors import RasterioIOError

    from cbmflow.core import faults as testhooks

    testhooks.pause("read")
    try:
        return rasterio.open(gdal_path(uri))
    except RasterioIOError as exc:
        msg = str(exc)
        from cbmflow.core.errors import StorageUnavailable, is_transient_storage_text

        if any(s in msg for s in ("Connection refused", "Could not resolve host", "Failed to connect",
                                  "timed out", "Connection reset")):
            raise StorageUnavailable(f"cannot reach the S3 endpoint for raster {uri}: {msg}") from exc
        if is_transient_storage_text(msg):
            raise StorageUnavailable(f"raster {uri}: object storage unavailable: {msg}") from exc
        if "No such file" in msg or "does not exist" in msg or "HTTP response code: 404" in msg:
            raise NotFound(f"raster {uri} does not exist") from exc
        from cbmflow.core.errors import CorruptData

        raise CorruptData(f"raster {uri} cannot be read: {msg}") from exc


def s3_client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client on the configured endpoint."""
    import boto3

    s = settings or s3_settings()
    return boto3.client(
        "s3",
        endpoint_url=s.endpoint_url,
        region_name=s.region,
        aws_access_key_id=s.access_key,
        aws_secret_access_key=s.secret_key,
        aws_session_token=s.session_token,
    )


def _s3_error(exc: Exception, uri: str) -> Exception:
    from botocore.exceptions import ClientError, EndpointConnectionError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            return NotFound(f"bucket of {uri} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"object {uri} does not exist")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return ConfigError(f"access to {uri} denied ({code}); check the S3 credentials")
        return StorageUnavailable(f"S3 error on {uri}: {code}")
    if isinstance(exc, EndpointConnectionError):
        return StorageUnavailable(f"cannot reach the S3 endpoint for {uri}: {exc}")
    return transient_cause(exc) or exc


def exists(uri: str) -> bool:
    """Whether a file or object exists."""
    u = parse(uri)
    if not u.is_s3:
        return Path(u.key).exists()
    try:
        s3_client().head_object(Bucket=u.bucket, Key=u.key)
        return True
    except Exception as exc:  # noqa: BLE001
        err = _s3_error(exc, uri)
        if isinstance(err, NotFound) and "object" in str(err):
            return False
        raise err from exc


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object."""
    u = parse(uri)
    if not u.is_s3:
        try:
            return Path(u.key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"file {uri} does not exist") from exc
    try:
        return s3_client().get_object(Bucket=u.bucket, Key=u.key)["Body"].read()  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001
        raise _s3_error(exc, uri) from exc


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Write bytes to a file or object; returns the URI."""
    u = parse(uri)
    if not u.is_s3:
        Path(u.key).parent.mkdir(parents=True, exist_ok=True)
        try:
            Path(u.key).write_bytes(data)
        except OSError as exc:  # name the file (a full disk says only "No space left on device")
            raise OSError(exc.errno, exc.strerror, str(u)) from exc
        return str(u)
    try:
        s3_client().put_object(Bucket=u.bucket, Key=u.key, Body=data, ContentType=content_type)
    except Exception as exc:  # noqa: BLE001
        raise _s3_error(exc, uri) from exc
    return str(u)


def upload(local_path: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to a URI (local or S3); returns the URI."""
    u = parse(uri)
    src = Path(local_path)
    if not src.exists():
        raise NotFound(f"file {src} does not exist")
    if not u.is_s3:
        Path(u.key).parent.mkdir(parents=True, exist_ok=True)
        if Path(u.key) != src.resolve():
            shutil.copyfile(src, u.key)
        return str(u)
    ctype = "image/tiff; application=geotiff; profile=cloud-optimized" if src.suffix in (".tif", ".tiff") else "application/octet-stream"
    try:
        s3_client().upload_file(str(src), u.bucket, u.key, ExtraArgs={"ContentType": ctype})
    except Exception as exc:  # noqa: BLE001
        raise _s3_error(exc, uri) from exc
    return str(u)


def download(uri: str, local_path: str | os.PathLike[str]) -> Path:
    """Copy a file or object to a local path."""
    dest = Path(local_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    u = parse(uri)
    if not u.is_s3:
        if not Path(u.key).exists():
            raise NotFound(f"file {uri} does not exist")
        shutil.copyfile(u.key, dest)
        return dest
    try:
        s3_client().download_file(u.bucket, u.key, str(dest))
    except Exception as exc:  # noqa: BLE001
        raise _s3_error(exc, uri) from exc
    return dest


def list_uris(prefix: str, suffix: str = "") -> list[str]:
    """URIs under a prefix (all pages), optionally only those ending with suffix."""
    u = parse(prefix)
    if not u.is_s3:
        root = Path(u.key)
        if not root.exists():
            raise NotFound(f"folder {prefix} does not exist")
        return sorted(str(p) for p in root.rglob(f"*{suffix}") if p.is_file())
    out: list[str] = []
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=u.bucket, Prefix=u.key)
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(suffix):
                    out.append(f"s3://{u.bucket}/{obj['Key']}")
    except Exception as exc:  # noqa: BLE001
        raise _s3_error(exc, prefix) from exc
    return sorted(out)


def ensure_bucket(uri: str) -> None:
    """Create the bucket of an S3 URI if missing (local: create the folder)."""
    u = parse(uri)
    if not u.is_s3:
        Path(u.key).mkdir(parents=True, exist_ok=True)
        return
    client = s3_client()
    try:
        client.head_bucket(Bucket=u.bucket)
    except Exception:  # noqa: BLE001
        try:
            client.create_bucket(Bucket=u.bucket)
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, uri) from exc


def clear_http_cache() -> bool:
    """Forget what GDAL's /vsicurl/ and /vsis3/ layers cached (file existence, sizes, blocks) in this process.

    After an outage GDAL would otherwise keep answering "not a supported file" for an object it
    failed to reach, until the process ends. Returns False when GDAL's library cannot be found.
    """
    import ctypes

    import rasterio  # noqa: F401 - loads libgdal into the process

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgdal" in line and line.rstrip().endswith(".so")
                     or "libgdal" in line and ".so." in line}
    except OSError:
        return False
    cleared = False
    for path in sorted(paths):  # every GDAL in the process (rasterio's, pyogrio's, ...): each has its cache
        try:
            ctypes.CDLL(path).VSICurlClearCache()
            cleared = True
        except (OSError, AttributeError):
            continue
    return cleared
