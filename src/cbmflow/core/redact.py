"""Secrets never leave a process: scrub them from messages and from everything logged."""

from __future__ import annotations

import logging
import os
import re

# user:password@ in a URL DSN; greedy up to the last '@' of the token, so an unencoded '@', '/',
# ':' or '?' in the password is covered too.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s]*@", re.IGNORECASE)
# password=... as a key=value pair ('quoted value' or a bare word) or a URL query parameter.
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The text with every DSN password replaced by ``***`` (URL, ``?password=`` and key=value forms)."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))


def secrets() -> list[str]:
    """The secrets this process knows (DSN password, S3 secret key and session token), longest first."""
    from cbmflow.core.config import database_dsn

    found: list[str] = []
    try:
        dsn = database_dsn()
        pw = None
        if _URL_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn):  # else there is no password to parse
            import psycopg

            pw = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        if pw:
            found.append(str(pw))
    except Exception:  # noqa: BLE001 - an unparsable DSN has no password we can name
        pass
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD"):
        if os.environ.get(var):
            found.append(os.environ[var])
    # URL-encoded forms appear in DSNs
    from urllib.parse import quote

    found += [quote(s, safe="") for s in list(found)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str) -> str:
    """The text with every known secret and any DSN password replaced by ``***``."""
    for s in secrets():
        text = text.replace(s, "***")
    return redact_dsn(text)


class ScrubSecrets(logging.Filter):
    """A logging filter that replaces known secrets in messages and tracebacks by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as it is
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info:
            import traceback

            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return True


def install_log_scrubber() -> None:
    """Scrub secrets from everything the root logger's handlers write."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubSecrets) for f in handler.filters):
            handler.addFilter(ScrubSecrets())
