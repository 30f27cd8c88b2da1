"""The one error family of cbmflow.

Every error carries an ``outcome`` that says what an orchestrator should do with it:

* ``fail``  - bad input or a defect; retrying will not help (a corrupt file, a bad column).
* ``retry`` - transient; retrying later may succeed (network, a locked row, a busy server).
* ``skip``  - nothing to do; not an error for the run (no scenes in the window).

The mapping onto Airflow exceptions lives in one place: :mod:`cbmflow.airflow_adapter`.
"""

from __future__ import annotations

from typing import Literal

Outcome = Literal["fail", "retry", "skip"]


class CbmError(Exception):
    """Base class of all cbmflow errors."""

    outcome: Outcome = "fail"


class ConfigError(CbmError):
    """A setting, connection or environment variable is missing or wrong."""


class InputError(CbmError):
    """User-supplied input is unusable (file, column, geometry, CRS, parameter)."""


class NotFound(CbmError):
    """A named thing (file, object, bucket, scene, AOI) does not exist."""


class CorruptData(CbmError):
    """A file exists but cannot be read as what it claims to be."""


class ToolMissing(CbmError):
    """An external program (SNAP gpt, Sen2Cor) is not installed here."""


class ProcessingError(CbmError):
    """An external or internal processing step failed on valid input."""


class TransientError(CbmError):
    """A temporary failure: worth retrying."""

    outcome: Outcome = "retry"


class NothingToDo(CbmError):
    """There is no work for this run (not a failure)."""

    outcome: Outcome = "skip"


class StorageUnavailable(TransientError):
    """Object storage did not answer properly (5xx, throttling, refused or timed-out connection)."""


class DatabaseUnavailable(TransientError):
    """The results database is unreachable or dropped the connection."""


# What GDAL (/vsis3/, /vsicurl/) and curl say when the storage service, not the file, is at fault.
_TRANSIENT_STORAGE_TEXT: tuple[str, ...] = (
    "http response code: 500", "http response code: 502", "http response code: 503",
    "http response code: 504", "http response code: 429",
    "slowdown", "slow down", "throttl", "serviceunavailable", "service unavailable",
    "internalerror", "requesttimeout", "request timeout",
    "curl error", "could not connect", "failed to connect", "connection refused",
    "connection reset", "connection timed out", "operation timed out", "timeout was reached",
    "timed out", "couldn't resolve host", "could not resolve host", "empty reply from server",
    "recv failure", "send failure", "ssl connect error", "network is unreachable",
    "no route to host", "temporary failure in name resolution",
)
# errno values of a network fault (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH,
# ECONNABORTED, EPIPE, EAGAIN) - portable names resolved at import.
_TRANSIENT_ERRNOS: frozenset[int] = frozenset(
    getattr(__import__("errno"), n) for n in
    ("ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNABORTED", "EPIPE", "EAGAIN")
    if hasattr(__import__("errno"), n)
)
_TRANSIENT_S3_CODES: frozenset[str] = frozenset({
    "500", "502", "503", "504", "429", "InternalError", "ServiceUnavailable", "SlowDown", "Throttling",
    "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed", "RequestLimitExceeded",
})


def is_transient_storage_text(message: str) -> bool:
    """Whether an error text (GDAL, curl, boto) describes a storage/network outage, not a bad file."""
    low = message.lower()
    return any(t in low for t in _TRANSIENT_STORAGE_TEXT)


def transient_cause(exc: BaseException) -> TransientError | None:
    """The retryable cbmflow error an exception stands for (outage of storage or database), else None.

    Walks the exception chain; classifies by type (psycopg OperationalError/InterfaceError, botocore
    connection errors and 5xx/throttling codes), errno and the GDAL/curl message text. A file that
    exists but cannot be decoded (corrupt TIFF, wrong format) is not transient.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, TransientError):
            return e
        if isinstance(e, CbmError) and e.outcome == "fail" and not is_transient_storage_text(str(e)):
            return None
        mod = type(e).__module__ or ""
        name = type(e).__name__
        if mod.startswith("psycopg") and name in _PSYCOPG_TRANSIENT or _is_psycopg_transient(e):
            return DatabaseUnavailable(f"results database unavailable: {name}: {e}".strip())
        if mod.startswith(("botocore", "urllib3", "s3transfer")):
            code = ""
            resp = getattr(e, "response", None)
            if isinstance(resp, dict):
                code = str(resp.get("Error", {}).get("Code", "")) or str(
                    resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _TRANSIENT_S3_CODES or name in _BOTO_TRANSIENT:
                return StorageUnavailable(f"object storage unavailable: {name}: {e}")
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return StorageUnavailable(f"network error: {name}: {e}")
        if isinstance(e, (TimeoutError, ConnectionError)):
            return StorageUnavailable(f"network error: {name}: {e}")
        if (name in ("RasterioIOError", "CPLE_HttpResponseError", "CPLE_AWSError", "CPLE_OpenFailedError",
                     "CPLE_FileIOError", "CPLE_AppDefinedError", "CorruptData", "NotFound")
                and is_transient_storage_text(str(e))):
            return StorageUnavailable(f"object storage unavailable: {e}")
        e = e.__cause__ or e.__context__
    return None


_PSYCOPG_TRANSIENT = frozenset({"OperationalError", "InterfaceError", "AdminShutdown", "CrashShutdown",
                                "CannotConnectNow", "ConnectionException", "ConnectionFailure",
                                "SerializationFailure", "DeadlockDetected", "LockNotAvailable",
                                "QueryCanceled", "TooManyConnections"})
_BOTO_TRANSIENT = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                             "ConnectionClosedError", "ConnectionError", "ProtocolError", "NewConnectionError",
                             "ResponseStreamingError", "IncompleteReadError"})


def _is_psycopg_transient(e: BaseException) -> bool:
    """psycopg's OperationalError family (connection lost, admin shutdown, lock/statement timeouts)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(e, psycopg.errors.ProgrammingError | psycopg.errors.DataError | psycopg.errors.IntegrityError):
        return False
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)
