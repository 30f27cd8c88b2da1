"""Real CLI runs (subprocesses) against a lost database, a refused S3 endpoint and a full disk: one line, exit code."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import rasterio
from affine import Affine

from cbmflow import cli
from cbmflow.cli import exits as clierrors

pytestmark = pytest.mark.integration

NL = "nl_brp_2023.gpkg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbmflow.cli.parser", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("cbmflow: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _import_args(shared_data: Path, tmp_path: Path, src: str | None = None) -> list[str]:
    return ["parcels", "import", src or str(shared_data / "parcels" / NL), "--aoi", "nl", "--year", "2023",
            "--id-col", "id", "--crop-col", "gewascode", "--report", str(tmp_path / "r.csv")]


# ------------------------------------------------------------------------ extract --id-col


def test_extract_accepts_the_geopackage_id_column_that_import_accepts(shared_data: Path, tmp_path: Path) -> None:
    nl = gpd.read_file(shared_data / "parcels" / NL).to_crs(32631)
    x0, y0, x1, y1 = nl.total_bounds
    width, height = int((x1 - x0) // 10) + 2, int((y1 - y0) // 10) + 2
    raster = tmp_path / "ones.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs="EPSG:32631", transform=Affine(10, 0, x0 - 5, 0, -10, y1 + 5)) as dst:
        dst.write(np.full((1, height, width), 7, dtype=np.uint16))
    out = tmp_path / "s.csv"
    code = cli.main(["extract", "--raster", str(raster), "--parcels", str(shared_data / "parcels" / NL),
                     "--id-col", "id", "--out", str(out)])
    assert code == 0
    import pandas as pd

    got = pd.read_csv(out)
    fids = set(gpd.read_file(shared_data / "parcels" / NL, fid_as_index=True).index.tolist())
    assert set(got["parcel_id"]) <= fids and len(got) >= 90  # ditches < 1 pixel centre have no row
    assert (got["mean"] == 7).all()


# ------------------------------------------------------------------------ lost database


@contextlib.contextmanager
def _locked(dsn: str, table: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # noqa: S608 - fixed names
        try:
            yield holder
        finally:
            holder.rollback()


def _terminate_when_waiting(dsn: str, app: str, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as admin:
        while time.monotonic() < deadline and proc.poll() is None:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'", (app,)
            ).fetchone()
            if row:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError(f"the command never waited on the lock: {proc.communicate()}")


@pytest.mark.parametrize(
    ("table", "argv"),
    [
        ("aois", "import"),
        ("parcels", ["db", "status"]),
        # signatures reads the AOI first (an unknown AOI fails before the catalogue is touched)
        ("aois", ["signatures", "--aoi", "nl", "--year", "2023"]),
    ],
)
def test_database_lost_mid_command_is_one_line_exit_3(clean_db: str, shared_data: Path, tmp_path: Path,
                                                      table: str, argv: list[str] | str) -> None:
    args = _import_args(shared_data, tmp_path) if argv == "import" else list(argv)
    app = f"cbmflow-test-{uuid.uuid4().hex[:8]}"
    with _locked(clean_db, table):
        proc = subprocess.Popen([sys.executable, "-m", "cbmflow.cli.parser", *args], env={**os.environ, "PGAPPNAME": app},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _terminate_when_waiting(clean_db, app, proc)
        _, err = proc.communicate(timeout=60)
    line = _one_line(err)
    assert proc.returncode == 3, err
    assert "lost the results database 127.0.0.1:5432/cbmflow_test_" in line
    assert "terminating connection due to administrator command" in line
    with psycopg.connect(clean_db) as c:
        assert c.execute("SELECT count(*) FROM parcels").fetchone()[0] == 0


def test_database_refused_at_start_is_one_line_exit_3(tmp_path: Path, shared_data: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{_free_port()}/cbmflow"
    for args in (["db", "status"], _import_args(shared_data, tmp_path), ["signatures", "--aoi", "x", "--year", "2023"]):
        res = _cli(args, {"CBMFLOW_DSN": dsn})
        assert res.returncode == 3, res.stderr
        assert "cannot connect to the results database" in _one_line(res.stderr)


# ------------------------------------------------------------------------ refused S3 endpoint


def test_refused_s3_endpoint_is_one_line_exit_3(clean_db: str, shared_data: Path, tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}", "AWS_MAX_ATTEMPTS": "1",
           "GDAL_HTTP_MAX_RETRY": "0"}
    runs = [
        _import_args(shared_data, tmp_path, "s3://cbm-in/parcels.gpkg"),
        ["parcels", "list-columns", "s3://cbm-in/parcels.gpkg"],
        ["extract", "--raster", "s3://cbm-in/scene.tif", "--parcels", str(shared_data / "parcels" / NL),
         "--id-col", "id", "--out", str(tmp_path / "o.csv")],
        _import_args(shared_data, tmp_path)[:-1] + ["s3://cbm-reports/r.csv"],  # the report cannot be written
    ]
    for args in runs:
        res = _cli(args, env)
        line = _one_line(res.stderr)
        assert res.returncode == 3, res.stderr
        assert "cannot reach the S3 endpoint" in line or "object storage unavailable" in line, line
    with psycopg.connect(clean_db) as c:  # the import whose report failed committed nothing
        assert c.execute("SELECT count(*) FROM parcels").fetchone()[0] == 0


# ------------------------------------------------------------------------ full disk


@pytest.fixture()
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs filled to the last byte (needs root, as CI runs; otherwise the test fails, loudly)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"the full-disk test needs to mount a 256 KiB tmpfs (root; euid {os.geteuid()}): "
                    f"{done.stderr.strip()}; run the suite as root, as CI does")
    try:
        with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_is_one_line_exit_4(clean_db: str, shared_data: Path, tmp_path: Path, full_dir: Path) -> None:
    res = _cli(_import_args(shared_data, tmp_path)[:-1] + [str(full_dir / "reports" / "r.csv")])
    line = _one_line(res.stderr)
    assert res.returncode == 4, res.stderr
    assert line.startswith("cbmflow: error: disk full") and "No space left on device" in line
    with psycopg.connect(clean_db) as c:  # the report is written before the commit: nothing imported
        assert c.execute("SELECT count(*) FROM parcels").fetchone()[0] == 0

    nl = gpd.read_file(shared_data / "parcels" / NL).to_crs(32631)
    x0, _, _, y1 = nl.total_bounds
    raster = tmp_path / "r.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=2000, height=1500, count=1, dtype="uint16",
                       crs="EPSG:32631", transform=Affine(10, 0, x0, 0, -10, y1)) as dst:
        dst.write(np.ones((1, 1500, 2000), dtype=np.uint16))
    res = _cli(["extract", "--raster", str(raster), "--parcels", str(shared_data / "parcels" / NL),
                "--id-col", "id", "--out", str(full_dir / "out.csv")])
    assert res.returncode == 4, res.stderr
    assert "disk full" in _one_line(res.stderr)


def test_dev_full_report_is_disk_full(clean_db: str, shared_data: Path, tmp_path: Path) -> None:
    res = _cli(_import_args(shared_data, tmp_path)[:-1] + ["/dev/full"])
    assert res.returncode == 4, res.stderr
    assert "disk full writing /dev/full" in _one_line(res.stderr)


# ------------------------------------------------------------------------ the mapping itself


def test_describe_maps_the_error_family_and_re_raises_bugs() -> None:
    from cbmflow.core.errors import InputError, NothingToDo, TransientError

    assert clierrors.describe(InputError("bad\ncolumn")) == ("bad column", 2)
    assert clierrors.describe(TransientError("busy")) == ("busy (temporary; run again later)", 3)
    assert clierrors.describe(NothingToDo("no scenes")) == ("no scenes", 2)  # a command that did nothing says so
    with pytest.raises(ZeroDivisionError):
        clierrors.describe(ZeroDivisionError("a bug keeps its traceback"))
