"""Fault-injection hooks for the cluster tests (never active in production).

``pause(point)`` blocks while the file ``$CBMFLOW_TEST_HOOK_DIR/<point>.pause`` exists, after
writing ``<point>.<pid>.waiting`` there so a test knows which process is paused, and where. Points:
``read`` (a scene's raster is being opened: the extraction claim is held) and ``copy`` (inside the
binary COPY of a scene's rows). ``CBMFLOW_TEST_COPY_PAUSE`` (seconds) makes the COPY write small
chunks and sleep after each, so a writer can be killed in the middle of it.

The hooks are armed once, when this module is imported, and only when one of the two variables
is set: in production :data:`ARMED` is False, :func:`pause` is a single global test, and the sink
takes its plain path (8 MiB chunks, no hook call per chunk).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

HOOK_DIR_ENV = "CBMFLOW_TEST_HOOK_DIR"
COPY_PAUSE_ENV = "CBMFLOW_TEST_COPY_PAUSE"
MAX_PAUSE_S = 600.0

log = logging.getLogger(__name__)

_HOOK_DIR = os.environ.get(HOOK_DIR_ENV) or ""
COPY_PAUSE_S = float(os.environ.get(COPY_PAUSE_ENV) or 0)
ARMED = bool(_HOOK_DIR or COPY_PAUSE_S)


def pause(point: str) -> None:
    """Test hook: wait while ``<hook dir>/<point>.pause`` exists (no-op unless armed at import)."""
    if not _HOOK_DIR:
        return
    folder = _HOOK_DIR
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


def copy_chunk(index: int) -> None:
    """Test hook after each COPY chunk: the ``copy`` pause point, then the configured sleep."""
    if index == 0:
        pause("copy")
    if COPY_PAUSE_S:
        log.warning("test hook %s: pausing %.1f s inside the COPY", COPY_PAUSE_ENV, COPY_PAUSE_S)
        time.sleep(COPY_PAUSE_S)
