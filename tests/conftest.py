"""Shared fixtures: a private PostGIS database, a moto S3 server on loopback, an Airflow home.

Each pytest session gets its own database (``cbmflow_test_<pid>``) and Airflow home, so
concurrent sessions never see each other's rows. Nothing here is a mock of PostgreSQL or S3:
the database is the real server on 127.0.0.1:5432 and S3 is moto's HTTP server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CBMFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))

# --- environment fixed before anything imports Airflow or boto3 -------------------------------
_SESSION_DIR = Path(tempfile.mkdtemp(prefix=f"cbmflow-test-{os.getpid()}-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["CBMFLOW_HOME"] = str(ROOT)
os.environ["CBMFLOW_SHARED_DATA"] = str(SHARED)
# Never let a test reach real AWS: credentials are fake and the endpoint is loopback.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # replaced by the s3 fixture
os.environ.pop("AWS_PROFILE", None)
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)

ADMIN_DSN = os.environ.get("CBMFLOW_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DSN = ADMIN_DSN.rsplit("/", 1)[0] + f"/cbmflow_test_{os.getpid()}"
os.environ["CBMFLOW_DSN"] = TEST_DSN
# Airflow's metadata database: PostgreSQL, as in production (one private database per session).
AIRFLOW_META_DSN = ADMIN_DSN.rsplit("/", 1)[0] + f"/cbmflow_af_test_{os.getpid()}"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = AIRFLOW_META_DSN.replace("postgresql://", "postgresql+psycopg2://", 1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
    if _AIRFLOW_DB_MADE:
        from cbmflow.core import db

        if "airflow.settings" in sys.modules:  # close Airflow's pooled connections before the drop ends them
            try:
                sys.modules["airflow.settings"].dispose_orm()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        db.drop_database(AIRFLOW_META_DSN)


_AIRFLOW_DB_MADE: list[bool] = []


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real sample data folder."""
    if not SHARED.exists():
        pytest.fail(f"shared sample data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a private, migrated PostGIS database for this session (dropped afterwards)."""
    from cbmflow.core import db

    db.drop_database(TEST_DSN)
    db.create_database(TEST_DSN)
    db.upgrade(TEST_DSN)
    yield TEST_DSN
    db.drop_database(TEST_DSN)


_KEEP_TABLES = {"schema_migrations", "bands", "spatial_ref_sys"}


@pytest.fixture()
def clean_db(pg_dsn: str) -> str:
    """The session database with every data table emptied; returns its DSN."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
            if r[0] not in _KEEP_TABLES
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
    return pg_dsn


@pytest.fixture()
def conn(clean_db: str) -> Iterator[object]:
    """A connection to the emptied session database (autocommit off)."""
    import psycopg

    with psycopg.connect(clean_db) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (real HTTP, ranged GETs); sets AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        if old is not None:
            os.environ["AWS_ENDPOINT_URL"] = old
        server.stop()


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server; returns ``s3://<name>``."""
    from cbmflow.core import storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.s3_client().create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Airflow's metadata database for this session in PostgreSQL, migrated (for dag.test())."""
    from cbmflow.core import db

    db.drop_database(AIRFLOW_META_DSN)
    db.create_database(AIRFLOW_META_DSN)
    _AIRFLOW_DB_MADE.append(True)
    env = dict(os.environ)
    airflow_bin = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow_bin), "db", "migrate"], env=env, check=True, capture_output=True)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
