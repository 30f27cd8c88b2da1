"""Secrets with every awkward character: DSNs parse right, S3 credentials come from the amazon hook, nothing leaks.

A real PostgreSQL role is created with the password below. The server trusts local connections, so
libpq never sends it, but the DSN must still parse to exactly this host/user/password/dbname, and no
log, error, report or output of a real CLI run may contain it (or any recognisable piece of it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from cbmflow import airflow_adapter
from cbmflow.cli import exits as clierrors
from cbmflow.core.db import _redact

pytestmark = pytest.mark.integration

PASSWORD = "p@ss/w:rd 100%sure?#x y"
AWS_SECRET = "aws/se cret+key%?#@:z"
FRAGMENTS = (PASSWORD, quote(PASSWORD, safe=""), "p@ss", "w:rd", "100%sure", "sure?#x", AWS_SECRET,
             quote(AWS_SECRET, safe=""), "se cret+key")


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """airflow_adapter.configure() writes AWS_*/CBMFLOW_* into os.environ: give later tests theirs back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for piece in FRAGMENTS:
            assert piece not in text, f"secret fragment {piece!r} leaked in: {text[:2000]}"


@pytest.fixture()
def secret_role(clean_db: str) -> Iterator[str]:
    """A login role with the awkward password, allowed to use the session database."""
    role = f"cbmflow_secret_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(clean_db, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
        c.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
        c.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        c.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        with psycopg.connect(clean_db, autocommit=True) as c:
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


class _Records(logging.Handler):
    """Every record of a logger, formatted (Airflow's logging setup may stop propagation to caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _db_connection_env(role: str, dbname: str, port: int = 5432) -> str:
    return json.dumps({"conn_type": "postgres", "login": role, "password": PASSWORD, "host": "127.0.0.1",
                       "port": port, "schema": dbname, "extra": {"sslmode": "disable", "application_name": "cbm x"}})


def test_redact_covers_url_query_and_key_value_dsns() -> None:
    cases = {
        "postgresql://alice:p@ss/w:rd@db:5432/x": "postgresql://alice:***@db:5432/x",
        "postgresql://alice:100%25sure@h/db": "postgresql://alice:***@h/db",
        "postgresql://a@h/db?sslmode=require&password=s3cr%40t": "postgresql://a@h/db?sslmode=require&password=***",
        "host=h user=u password='a b\\' c' dbname=x": "host=h user=u password=*** dbname=x",
        "host=h password=abc dbname=x": "host=h password=*** dbname=x",
        "postgresql://postgres@127.0.0.1:5432/cbmflow": "postgresql://postgres@127.0.0.1:5432/cbmflow",
    }
    for dsn, want in cases.items():
        assert _redact(dsn) == want


def test_configure_builds_a_dsn_that_parses_to_the_role(monkeypatch: pytest.MonkeyPatch, clean_db: str,
                                                         secret_role: str, caplog: pytest.LogCaptureFixture) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(clean_db)["dbname"]
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_DB", _db_connection_env(secret_role, str(dbname)))
    monkeypatch.setenv("CBMFLOW_DSN", "unchanged")
    monkeypatch.delenv("AIRFLOW_CONN_CBMFLOW_S3", raising=False)
    records = _Records()
    logging.getLogger("cbmflow").addHandler(records)
    try:
        airflow_adapter.configure()
    finally:
        logging.getLogger("cbmflow").removeHandler(records)
    dsn = os.environ["CBMFLOW_DSN"]
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert (info["host"], info["port"], info["user"], info["password"], info["dbname"]) == (
        "127.0.0.1", "5432", secret_role, PASSWORD, dbname)
    assert (info["sslmode"], info["application_name"]) == ("disable", "cbm x")
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT current_user, current_database()").fetchone() == (secret_role, dbname)
    _assert_clean(caplog.text, records.text, _redact(dsn), clierrors.scrub(f"failed on {dsn}"))
    assert "results database from connection cbmflow_db (host 127.0.0.1" in records.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_secret_in_any_output_of_real_cli_runs(clean_db: str, secret_role: str, shared_data: Path,
                                                  tmp_path: Path) -> None:
    info = psycopg.conninfo.conninfo_to_dict(clean_db)

    class Conn:
        login, password, host, port, schema = secret_role, PASSWORD, "127.0.0.1", 5432, str(info["dbname"])
        extra_dejson: dict[str, str] = {}

    dsn = airflow_adapter.database_dsn_from_connection(Conn)
    Conn.port = _free_port()
    refused_dsn = airflow_adapter.database_dsn_from_connection(Conn)
    kv_dsn = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=str(_free_port()), user=secret_role,
                                            password=PASSWORD, dbname="x")
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_MAX_ATTEMPTS": "1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}
    nl = str(shared_data / "parcels" / "nl_brp_2023.gpkg")
    report = tmp_path / "report.csv"
    imp = ["parcels", "import", nl, "--aoi", "nl", "--year", "2023", "--id-col", "id", "--crop-col", "gewascode",
           "--report", str(report)]
    runs = [
        (dsn, ["-v", "db", "upgrade"], 0),
        (dsn, ["-v", *imp], 0),  # a real import as the role, debug logging on
        (dsn, ["-v", "db", "status"], 0),
        (refused_dsn, ["-v", *imp], 3),  # the database refuses: the error names it, not its password
        (kv_dsn, ["-v", "db", "status"], 3),  # key=value DSN
        (dsn, ["-v", "parcels", "import", "s3://cbm-secret/x.gpkg", *imp[3:]],
         3),  # refused S3 endpoint
    ]
    outputs = []
    for target, args, code in runs:
        res = subprocess.run([sys.executable, "-m", "cbmflow.cli.parser", *args], env={**env, "CBMFLOW_DSN": target},
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == code, (args, res.stderr[-2000:])
        outputs += [res.stdout, res.stderr]
    _assert_clean(*outputs, report.read_text())
    with psycopg.connect(clean_db) as c:
        assert c.execute("SELECT count(*) FROM parcels").fetchone()[0] == 100
    assert "cannot connect to the results database postgresql://" in outputs[7]
    assert f"{secret_role}:***@127.0.0.1" in outputs[7]


def test_s3_session_and_role_credentials_come_from_the_amazon_hook(monkeypatch: pytest.MonkeyPatch,
                                                                   s3_endpoint: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from cbmflow.core import storage

    monkeypatch.delenv("AIRFLOW_CONN_CBMFLOW_DB", raising=False)
    session = {"conn_type": "aws", "login": "ASIASESSION", "password": AWS_SECRET,
               "extra": {"endpoint_url": s3_endpoint, "aws_session_token": "tok/en+" + AWS_SECRET}}
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_S3", json.dumps(session))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                "AWS_DEFAULT_REGION"):  # configure() sets them: restored after the test
        monkeypatch.setenv(var, os.environ.get(var, "x"))
    records = _Records()
    logging.getLogger("cbmflow").addHandler(records)
    airflow_adapter.configure()
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == ("ASIASESSION", AWS_SECRET)
    assert os.environ["AWS_SESSION_TOKEN"] == "tok/en+" + AWS_SECRET
    assert storage.s3_settings().session_token == "tok/en+" + AWS_SECRET

    # role_arn: the hook assumes the role through STS (moto's, on loopback) and hands out session credentials
    role = {"conn_type": "aws", "login": "AKIDBASE", "password": AWS_SECRET,
            "extra": {"endpoint_url": s3_endpoint, "role_arn": "arn:aws:iam::123456789012:role/cbmflow",
                      "region_name": "eu-central-1", "service_config": {"sts": {"endpoint_url": s3_endpoint}}}}
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_S3", json.dumps(role))
    try:
        airflow_adapter.configure()
    finally:
        logging.getLogger("cbmflow").removeHandler(records)
    assert os.environ["AWS_ACCESS_KEY_ID"].startswith("ASIA") and os.environ["AWS_ACCESS_KEY_ID"] != "AKIDBASE"
    assert os.environ["AWS_SESSION_TOKEN"] and os.environ["AWS_SECRET_ACCESS_KEY"] != AWS_SECRET
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-central-1"
    name = f"role-{uuid.uuid4().hex[:8]}"
    storage.s3_client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    storage.write_bytes(f"s3://{name}/k.txt", b"ok")
    assert storage.read_bytes(f"s3://{name}/k.txt") == b"ok"
    assert records.text.count("session credentials") == 2
    _assert_clean(caplog.text, records.text)


@pytest.mark.system
def test_no_secret_in_the_logs_of_a_dag_run(airflow_db: str, clean_db: str, secret_role: str, shared_data: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    """import_parcels with the cbmflow_db connection holding the awkward password; every log file is grepped."""
    import importlib.util

    from cbmflow.core.config import project_root

    dbname = str(psycopg.conninfo.conninfo_to_dict(clean_db)["dbname"])
    monkeypatch.setenv("AIRFLOW_CONN_CBMFLOW_DB", _db_connection_env(secret_role, dbname))
    monkeypatch.setenv("CBMFLOW_DSN", os.environ["CBMFLOW_DSN"])  # configure() overwrites it; restored after
    spec = importlib.util.spec_from_file_location("import_parcels_dag", project_root() / "dags" / "import_parcels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    conf = {"file": str(shared_data / "parcels" / "nl_brp_2023.gpkg"), "aoi": "nl", "year": 2023, "id_col": "id",
            "crop_col": "gewascode", "report": str(tmp_path / "dag-report.csv")}
    records = _Records()  # whatever reaches Python logging, in case Airflow's task logging sends it elsewhere
    loggers = [logging.getLogger(), logging.getLogger("cbmflow"), logging.getLogger("airflow.task")]
    for lg in loggers:
        lg.addHandler(records)
    try:
        ok = module.import_parcels().test(run_conf=conf)
        bad = module.import_parcels().test(run_conf=dict(conf, id_col="nope"))  # a failing task logs its error too
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    assert (ok.state, bad.state) == ("success", "failed")
    with psycopg.connect(clean_db) as c:
        assert c.execute("SELECT count(*), min(source) FROM parcels").fetchone() == (100, "nl_brp_2023.gpkg")
    out, err = capfd.readouterr()
    logs = [p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*") if p.is_file()
            and p.suffix in (".log", ".json", "")]
    _assert_clean(out, err, records.text, *logs, (tmp_path / "dag-report.csv").read_text())
    # the logs were really captured: configure()'s line is there (without the password)
    assert "results database from connection cbmflow_db" in out + err + records.text + "".join(logs)
