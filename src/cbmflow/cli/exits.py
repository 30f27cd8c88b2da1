"""One line and an exit code for every failure a user can meet on the command line.

Exit codes (also in docs/operations.md):

* 0 - done;
* 2 - bad input or configuration, retrying will not help (cbmflow errors with outcome ``fail``), or
  nothing to do (:class:`~cbmflow.core.errors.NothingToDo`: a command that did nothing says so);
* 3 - temporary: the results database was lost or refused us, the S3 endpoint cannot be reached,
  or another :class:`~cbmflow.core.errors.TransientError`; run the command again later;
* 4 - the disk is full (or another operating-system error while reading/writing a file).

Messages never carry a secret: the database password, the S3 secret key and session token are
replaced by ``***`` wherever they appear (see :func:`scrub`). The traceback is logged at DEBUG
level (``cbmflow -v``).
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Iterator

from cbmflow.core.errors import CbmError
from cbmflow.core.redact import ScrubSecrets, install_log_scrubber, scrub, secrets

__all__ = ["EXIT_INPUT", "EXIT_OS", "EXIT_TEMPORARY", "ScrubSecrets", "describe", "handle",
           "install_log_scrubber", "scrub", "secrets"]

log = logging.getLogger(__name__)

EXIT_INPUT = 2
EXIT_TEMPORARY = 3
EXIT_OS = 4
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _database_target() -> str:
    from cbmflow.core.config import database_dsn

    try:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(database_dsn())
        return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
    except Exception:  # noqa: BLE001
        return "(unparsable CBMFLOW_DSN)"


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception that ended a command."""
    import psycopg

    try:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        s3_unreachable: tuple[type[BaseException], ...] = (
            EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
    except ImportError:  # pragma: no cover - botocore is a dependency
        s3_unreachable = ()
    chain = list(_chain(exc))
    # The lowest-level cause that we know decides; a cbmflow error at the top keeps its own words.
    for e in chain:
        if isinstance(e, OSError) and (e.errno in _DISK_FULL or "No space left on device" in str(e)):
            where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
            return f"disk full{where}: {e.strerror or 'No space left on device'}; free space and run again", EXIT_OS
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return f"disk full: {_first_line(e)}; free space and run again", EXIT_OS
    top = chain[0]
    if isinstance(top, CbmError):
        if top.outcome == "retry":
            return f"{_first_line(top)} (temporary; run again later)", EXIT_TEMPORARY
        return _first_line(top), EXIT_INPUT
    for e in chain:
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return (f"lost the results database {_database_target()}: {_first_line(e)} "
                    "(temporary; run again when the database is back)"), EXIT_TEMPORARY
        if s3_unreachable and isinstance(e, s3_unreachable):
            return f"cannot reach the S3 endpoint: {_first_line(e)} (temporary; run again later)", EXIT_TEMPORARY
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return (f"no S3 credentials ({_first_line(e)}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(or the cbmflow_s3 Airflow connection)"), EXIT_INPUT
        if isinstance(e, CbmError):
            return _first_line(e), EXIT_TEMPORARY if e.outcome == "retry" else EXIT_INPUT
    for e in chain:
        if isinstance(e, OSError):
            return f"{_first_line(e)}", EXIT_OS
    raise exc


def handle(exc: BaseException) -> tuple[str, int]:
    """Log the traceback (DEBUG) and return the scrubbed one-line message and exit code; re-raise bugs."""
    message, code = describe(exc)
    log.debug("command failed", exc_info=exc)
    return re.sub(r"\s+", " ", scrub(message)).strip(), code
