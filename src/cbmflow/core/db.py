"""The results database: connections, versioned schema migrations, year partitions."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cbmflow.core.config import database_dsn, include_dir
from cbmflow.core.errors import ConfigError, DatabaseUnavailable
from cbmflow.core.redact import redact_dsn

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Serialises concurrent `db upgrade` runs (any constant works; this one spells "cbmf").
_MIGRATION_LOCK = 0x63626D66


def connect(dsn: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection to the results database."""
    target = dsn or database_dsn()
    try:
        # TCP keepalives: a claim held by a worker whose host vanished (no FIN) is released by the
        # server within ~1 minute instead of the kernel's 2-hour default. DSN values win.
        return psycopg.connect(target, autocommit=autocommit, **_keepalives(target))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the results database {_redact(target)}: {exc}".strip()
        ) from exc


def _keepalives(dsn: str) -> dict[str, Any]:
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}
    want = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    return {k: v for k, v in want.items() if k not in given}


@contextmanager
def transaction(dsn: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    conn = connect(dsn)
    try:
        with conn.transaction():
            yield conn
    finally:
        conn.close()


def _redact(dsn: str) -> str:
    """The text with every DSN password replaced by ``***`` (URL, ``?password=`` and key=value forms)."""
    return redact_dsn(dsn)


def migrations_dir() -> Path:
    """The folder of versioned schema files."""
    return include_dir() / "sql"


def available_migrations() -> list[tuple[str, Path]]:
    """Schema files as (version, path), in order."""
    found = []
    for path in sorted(migrations_dir().glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise ConfigError(f"schema file {path.name} is not named NNN_name.sql")
        found.append((m.group(1), path))
    return found


def create_database(dsn: str | None = None) -> bool:
    """Create the database named in the DSN if it does not exist; True if created."""
    info = psycopg.conninfo.conninfo_to_dict(dsn or database_dsn())
    name = info.get("dbname")
    if not name:
        raise ConfigError("the database DSN names no database (dbname)")
    admin = dict(info, dbname="postgres")
    with psycopg.connect(psycopg.conninfo.make_conninfo(**admin), autocommit=True) as conn:  # type: ignore[arg-type]
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        log.info("created database %s", name)
        return True


def drop_database(dsn: str) -> None:
    """Drop the database named in the DSN (tests only)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    admin = dict(info, dbname="postgres")
    with psycopg.connect(psycopg.conninfo.make_conninfo(**admin), autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(info["dbname"])))
        )


def upgrade(dsn: str | None = None) -> list[str]:
    """Apply every schema file not yet applied; returns the versions applied now."""
    applied_now: list[str] = []
    with connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, path in available_migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[call-overload]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, path.name),
                    )
                log.info("applied schema %s", path.name)
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            conn.commit()
    return applied_now


def applied_versions(dsn: str | None = None) -> list[str]:
    """The schema versions recorded as applied."""
    with connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


# One lock for every partition creation, whatever the year: two writers attaching two new years at
# once would each hold the default partition (moving its rows) while waiting for the other's.
PARTITION_LOCK = 0x70617274  # "part"


def ensure_year_partition(conn: psycopg.Connection, year: int) -> None:
    """Create the signatures partition for a year if missing (rows in the default move over).

    Creation is serialised across all years by one transaction-scoped advisory lock; call it in a
    short transaction of its own (:func:`ensure_year_partition_committed`) before a long write, so
    the lock on ``signatures_default`` is not held for the write's duration.
    """
    name = f"signatures_{int(year)}"
    exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    if exists and exists[0] is not None:
        return
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
    # Look again with a fresh snapshot of pg_class: to_regclass reads the catalog cache, which an
    # advisory lock does not refresh, so it can miss a partition another writer has just committed.
    exists = conn.execute("SELECT 1 FROM pg_class WHERE oid = ANY(SELECT c.oid FROM pg_class c JOIN pg_namespace n "
                          "ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = current_schema())",
                          (name,)).fetchone()
    if exists is not None:
        return
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE signatures INCLUDING DEFAULTS)").format(ident))
    # Rows of this year that landed in the default partition move into the new one.
    conn.execute(
        sql.SQL(
            "WITH m AS (DELETE FROM signatures_default WHERE year = %s RETURNING *) "
            "INSERT INTO {} SELECT * FROM m"
        ).format(ident),
        (int(year),),
    )
    conn.execute(
        sql.SQL("ALTER TABLE signatures ATTACH PARTITION {} FOR VALUES IN ({})").format(
            ident, sql.Literal(int(year))
        )
    )


def ensure_year_partition_committed(dsn: str | None, year: int) -> None:
    """Create the year's signatures partition, if missing, in its own committed transaction."""
    with transaction(dsn) as conn:
        ensure_year_partition(conn, year)
