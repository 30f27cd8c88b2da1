"""The local cluster's health check tells a stopped worker from a healthy one (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from cbmflow_dev.cluster import Cluster


def _worker(folder: Path, name: str, *, ready: bool) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (folder / f"{name}.pid").write_text(str(proc.pid))
    (folder / "logs").mkdir(exist_ok=True)
    text = "=== start\n[celery] worker-x@host ready.\n" if ready else "=== start\nconnecting\n"
    (folder / "logs" / f"{name}.log").write_text(text)
    return proc


def test_health_reports_stopped_starting_and_healthy_workers(tmp_path: Path) -> None:
    procs = [_worker(tmp_path, "worker-1", ready=True), _worker(tmp_path, "worker-2", ready=True),
             _worker(tmp_path, "worker-3", ready=False)]
    try:
        os.kill(procs[1].pid, signal.SIGKILL)  # worker-2 lost: its log still says "ready."
        procs[1].wait()
        time.sleep(0.1)
        c = Cluster("http://127.0.0.1:9", tmp_path, workers=4)  # worker-4 never started
        h = c.health()
        assert h["worker-1"] == "healthy"
        assert h["worker-2"] == "stopped"
        assert h["worker-3"] == "starting"
        assert h["worker-4"] == "stopped"
        assert "api-server" in h  # nothing listens on port 9
        assert not c.healthy()
    finally:
        for p in procs:
            p.kill()
            p.wait()
