"""Fault-injection hooks for the cluster tests (never active in production).

``pause(point)`` blocks while the file ``$CBMFLOW_TEST_HOOK_DIR/<point>.pause`` exists, after
writing ``<point>.<pid>.waiting`` there so a test knows which process is paused, and where. Without
``CBMFLOW_TEST_HOOK_DIR`` (production) it returns at once. Points: ``read`` (a scene's raster is
being opened: the extraction claim is held) and ``copy`` (inside the binary COPY of a scene's rows).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

HOOK_DIR_ENV = "CBMFLOW_TEST_HOOK_DIR"
MAX_PAUSE_S = 600.0

log = logging.getLogger(__name__)


def pause(point: str) -> None:
    """Test hook: wait while ``<hook dir>/<point>.pause`` exists (no-op unless CBMFLOW_TEST_HOOK_DIR is set)."""
    folder = os.environ.get(HOOK_DIR_ENV)
    if not folder:
        return
    flag = Path(folder) / f"{point}.pause"
    if not flag.exists():
        return
    marker = Path(folder) / f"{point}.{os.getpid()}.waiting"
    marker.touch()
    log.warning("test hook: paused at %r while %s exists", point, flag)
    deadline = time.monotonic() + MAX_PAUSE_S
    try:
        while flag.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        marker.unlink(missing_ok=True)
