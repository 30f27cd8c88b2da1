"""The real local Celery cluster for the fault-injection suite, started once per session.

``scripts/cluster.sh up`` (the very script behind ``make cluster``) runs Airflow's api-server,
scheduler, dag-processor, triggerer and two Celery workers on free ports, with a private metadata
database, a private results database, a private Redis broker and a moto S3 server behind a TCP
proxy the tests can stop (an S3 outage: connection refused). Everything is stopped at the end, even
on failure. The broker is a private ``redis-server`` (no persistence, like the machine's own), so a
test can kill and restart it without touching anything else. Test settings: the task heartbeat
timeout is 12 s (default 300 s) so a killed worker's task is retried quickly, the first retry waits
3 s, and a task whose broker message was lost is sent again after 20 s queued (default 120 s).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
PG = "postgresql://postgres@127.0.0.1:5432"
HEARTBEAT_TIMEOUT_S = 12
RETRY_DELAY_S = 3
QUEUED_TIMEOUT_S = 20


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpProxy:
    """A loopback TCP proxy in front of the S3 server; ``stop()`` is an outage (refused, reset)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (again) on the same port."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every open connection: clients see resets, then refusals."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class LocalCluster:
    """Handles on the running cluster: REST client, results DSN, S3 proxy, hook folder, script env."""

    client: Any
    dsn: str
    proxy: TcpProxy
    hooks: Path
    folder: Path
    env: dict[str, str]
    bucket: str
    s3_direct: str
    broker: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def s3(self) -> Iterator[None]:
        """This process's boto3 and GDAL on the S3 server directly (not through the proxy)."""
        with s3_env(self.s3_direct):
            yield

    def script(self, *args: str) -> None:
        """Run scripts/cluster.sh with the cluster's environment."""
        subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), *args], env=self.env, check=True,
                       capture_output=True, text=True, timeout=120)

    def pid_of(self, component: str) -> int | None:
        """The PID (= process group) of a running component."""
        f = self.folder / f"{component}.pid"
        return int(f.read_text()) if f.exists() else None

    def worker_of(self, pid: int) -> str:
        """The worker component whose process tree holds ``pid``."""
        groups = {self.pid_of(f"worker-{i}"): f"worker-{i}" for i in (1, 2)}
        p = pid
        while p > 1:
            if os.getpgid(p) in groups:
                return groups[os.getpgid(p)]
            p = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        raise AssertionError(f"process {pid} belongs to no worker")

    def kill_worker(self, name: str) -> None:
        """kill -9 a worker's whole process tree: Celery main, pool, task supervisors, task processes."""
        leader = self.pid_of(name)
        assert leader is not None, name
        victims = _descendants(leader) | {leader}
        for p in victims:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        (self.folder / f"{name}.pid").unlink(missing_ok=True)

    def restart_worker(self, name: str, timeout: float = 120) -> None:
        """Start a worker again and wait until Celery reports it ready."""
        self.script("start", name)
        deadline = time.monotonic() + timeout
        while not self.client.worker_ready(name):
            assert time.monotonic() < deadline, f"{name} not ready after {timeout} s"
            time.sleep(1)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


class RedisBroker:
    """A private redis-server on a fixed loopback port: ``kill()`` is a lost broker (kill -9, every
    message gone, as Redis without persistence loses them), ``start()`` brings an empty one back."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL the cluster uses."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        """Start redis-server (no RDB, no AOF) and wait until it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        """kill -9 the broker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def purge(self, queue: str = "default") -> int:
        """Drop every message waiting in a Celery queue; returns how many there were."""
        import redis

        r = redis.Redis(host="127.0.0.1", port=self.port)
        n = int(r.llen(queue))
        r.delete(queue)
        return n

    def queue_length(self, queue: str = "default") -> int:
        """Messages waiting in a Celery queue (a Redis list)."""
        import redis

        return int(redis.Redis(host="127.0.0.1", port=self.port).llen(queue))


class _Session:
    """The cluster of this pytest session: started in the background when this folder is collected
    (so its ~70 s start overlaps the other tiers), waited for by the ``cluster`` fixture, and torn
    down in ``pytest_sessionfinish`` whatever happened."""

    def __init__(self) -> None:
        from cbmflow.core import db

        tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.folder = Path(tempfile.mkdtemp(prefix=f"cbmflow-cluster-{tag}-"))
        self.hooks = self.folder / "hooks"
        self.hooks.mkdir()
        self.results_dsn = f"{PG}/cbmflow_clustertest_{tag}"
        self.meta_db = f"cbmflow_airflow_clustertest_{tag}"
        self.prefix = f"cbmflow-test-{tag}:"
        self.bucket = f"cluster-{uuid.uuid4().hex[:8]}"
        self.timings: dict[str, float] = {}
        self.up: subprocess.Popen[str] | None = None
        self.stopped = False
        # moto S3 as its own process (it must not stall when pytest is busy), a stoppable proxy in front
        moto_port = free_port()
        self.moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                                      "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.s3_direct = f"http://127.0.0.1:{moto_port}"
        self.proxy = TcpProxy(moto_port)
        self.proxy.start()
        self.broker = RedisBroker(self.folder)
        self.broker.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CBMFLOW_", "AWS_"))}
        self.env.update(
            PYTHONDONTWRITEBYTECODE="1",
            WORKERS="2",
            CBMFLOW_WORKER_CONCURRENCY="2",
            CBMFLOW_CLUSTER_DIR=str(self.folder),
            CBMFLOW_API_PORT=str(free_port()),
            CBMFLOW_CLUSTER_META_DB=self.meta_db,
            CBMFLOW_DSN=self.results_dsn,
            CBMFLOW_REDIS_URL=self.broker.url,
            CBMFLOW_TASK_QUEUED_TIMEOUT=str(QUEUED_TIMEOUT_S),
            CBMFLOW_TASK_QUEUED_CHECK="3",
            CBMFLOW_CLUSTER_NAME=self.prefix.rstrip(":"),
            CBMFLOW_S3_ENDPOINT=f"http://127.0.0.1:{self.proxy.port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            CBMFLOW_WORK_URI=f"s3://{self.bucket}/work",
            CBMFLOW_TI_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT_S),
            CBMFLOW_TI_HEARTBEAT_CHECK="2",
            CBMFLOW_RETRY_DELAY_S=str(RETRY_DELAY_S),
            CBMFLOW_TEST_HOOK_DIR=str(self.hooks),
        )
        self.t0 = time.monotonic()
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        with s3_env(self.s3_direct):
            from cbmflow.core import storage

            storage.s3_client().create_bucket(Bucket=self.bucket)
        db.create_database(self.results_dsn)
        db.upgrade(self.results_dsn)
        self.up = subprocess.Popen(["bash", str(ROOT / "scripts" / "cluster.sh"), "up"], env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_up(self) -> None:
        """Wait for `cluster.sh up`; fail with the components' logs if it did not come up."""
        assert self.up is not None
        try:
            out, _ = self.up.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            self.up.kill()
            out = "cluster.sh up: timed out"
        if self.up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                             for p in sorted((self.folder / "logs").glob("*.log")))
            pytest.fail(f"cluster did not start:\n{out[-3000:]}\n{logs}")
        self.timings.setdefault("start_s", time.monotonic() - self.t0)

    def stop(self) -> None:
        """Stop every component, the S3 server and proxy; drop the private databases and Redis keys."""
        if self.stopped:
            return
        self.stopped = True
        from cbmflow.core import db

        if self.up is not None and self.up.poll() is None:
            self.up.kill()
        subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), "down"], env=self.env, capture_output=True,
                       timeout=120)
        self.proxy.stop()
        try:
            os.killpg(self.moto.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.broker.kill()
        if self.timings:  # measured start-up and recovery times, for docs/operations.md
            out = ROOT / "var" / "cluster-test-timings.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({k: round(v, 1) for k, v in self.timings.items()}
                                      | {"task_heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S}, indent=1))
        if os.environ.get("CBMFLOW_KEEP_CLUSTER_LOGS") and (self.folder / "logs").exists():
            keep = ROOT / "var" / "cluster-test-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(self.folder / "logs", keep, dirs_exist_ok=True)
        db.drop_database(self.results_dsn)
        db.drop_database(f"{PG}/{self.meta_db}")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def s3_env(endpoint: str) -> Iterator[None]:
    """Point this process's boto3/GDAL at an S3 endpoint for a while."""
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = old


_SESSION: _Session | None = None
if os.environ.get("CBMFLOW_CLUSTER_PRESTART", "1") != "0":
    _SESSION = _Session()  # started at collection: overlaps the rest of the suite
    atexit.register(_SESSION.stop)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SESSION is not None:
        _SESSION.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The running cluster (two workers); stopped at the end of the session whatever happens."""
    global _SESSION
    from cbmflow_dev.cluster import Cluster

    if _SESSION is None:
        _SESSION = _Session()
        atexit.register(_SESSION.stop)
    s = _SESSION
    s.wait_up()
    client = Cluster(f"http://127.0.0.1:{s.env['CBMFLOW_API_PORT']}", s.folder, workers=2)
    lc = LocalCluster(client=client, dsn=s.results_dsn, proxy=s.proxy, hooks=s.hooks, folder=s.folder,
                      env=s.env, bucket=s.bucket, s3_direct=s.s3_direct, broker=s.broker, timings=s.timings)
    client.wait_dag("extract_signatures")
    yield lc
