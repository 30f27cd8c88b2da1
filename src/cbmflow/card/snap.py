"""Running SNAP graphs: the ``gpt`` command line in a subprocess, or esa_snappy in-process.

Both fail at once with :class:`~cbmflow.core.errors.ToolMissing` (saying what to install) where SNAP
is absent. :func:`run_command` is the shared subprocess runner (also used for Sen2Cor): it kills
the whole process group on timeout and puts the tail of stderr into the error.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cbmflow.core.errors import ProcessingError, ToolMissing

log = logging.getLogger(__name__)

GPT_MISSING = ("SNAP gpt not found: install ESA SNAP 10+ with the Sentinel-1 toolbox "
               "(https://step.esa.int) or set SNAP_HOME; see docs/operations.md")
SNAPPY_MISSING = ("esa_snappy cannot start: install ESA SNAP 10+ with the Sentinel-1 toolbox "
                  "(https://step.esa.int) and configure esa_snappy for it (snappy-conf); "
                  "see docs/operations.md")
STDERR_TAIL_CHARS = 2000
DEFAULT_THREADS = 2
DEFAULT_CACHE = "4G"
DEFAULT_TIMEOUT_S = 3 * 3600


def find_executable(name: str, home_env: str, missing: str) -> Path:
    """An external program: on PATH, else ``$<home_env>/bin/<name>``; ToolMissing(missing) if neither."""
    found = shutil.which(name)
    if found:
        return Path(found)
    home = os.environ.get(home_env)
    if home:
        candidate = Path(home) / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissing(missing)


def find_gpt() -> Path:
    """The ``gpt`` executable: on PATH, else ``$SNAP_HOME/bin/gpt``; ToolMissing if neither."""
    return find_executable("gpt", "SNAP_HOME", GPT_MISSING)


def gpt_command(
    graph_file: str | Path,
    target: str | Path,
    *,
    gpt: str | Path,
    threads: int = DEFAULT_THREADS,
    cache: str = DEFAULT_CACHE,
) -> list[str]:
    """The argv that runs a filled graph with gpt (``-q`` threads, ``-c`` tile cache, ``-e``, ``-t``)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return [str(gpt), str(graph_file), "-q", str(threads), "-c", str(cache), "-e", "-t", str(target)]


def _tail(data: bytes | str | None, limit: int = STDERR_TAIL_CHARS) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.strip()[-limit:]


def run_command(argv: Sequence[str], *, timeout: float, tool: str, cwd: str | Path | None = None) -> str:
    """Run an external tool; returns its stdout. ProcessingError (with stderr tail) on failure or timeout."""
    log.info("running %s", " ".join(argv))
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv built by us, no shell
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{tool} executable {argv[0]} not found: {exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise ProcessingError(
            f"{tool} timed out after {timeout:g} s: {' '.join(argv)}; stderr tail: {_tail(err) or '(empty)'}"
        ) from None
    if proc.returncode != 0:
        raise ProcessingError(
            f"{tool} exited with {proc.returncode}: {' '.join(argv)}; stderr tail: "
            f"{_tail(err) or _tail(out) or '(empty)'}"
        )
    return out.decode("utf-8", "replace")


def run_gpt(
    graph_file: str | Path,
    target: str | Path,
    *,
    threads: int = DEFAULT_THREADS,
    cache: str = DEFAULT_CACHE,
    timeout: float = DEFAULT_TIMEOUT_S,
    gpt: str | Path | None = None,
) -> Path:
    """Run a filled graph with gpt and return the written target; ToolMissing without SNAP."""
    exe = Path(gpt) if gpt else find_gpt()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    run_command(gpt_command(graph_file, target, gpt=exe, threads=threads, cache=cache),
                timeout=timeout, tool="SNAP gpt")
    if not target.exists() or target.stat().st_size == 0:
        raise ProcessingError(f"SNAP gpt exited 0 but wrote no product at {target} (graph {graph_file})")
    return target


def run_snappy(graph_file: str | Path, target: str | Path) -> Path:
    """Run a filled graph in-process through esa_snappy's GraphProcessor; ToolMissing without SNAP."""
    try:
        import esa_snappy  # noqa: F401 - starts the JVM; fails without a SNAP installation
        from esa_snappy import jpy
    except Exception as exc:  # noqa: BLE001 - any start-up failure means SNAP is not usable here
        raise ToolMissing(f"{SNAPPY_MISSING} ({type(exc).__name__}: {exc})") from exc
    graph_io = jpy.get_type("org.esa.snap.core.gpf.graph.GraphIO")
    processor = jpy.get_type("org.esa.snap.core.gpf.graph.GraphProcessor")
    file_reader = jpy.get_type("java.io.FileReader")
    pm = jpy.get_type("com.bc.ceres.core.ProgressMonitor")
    reader = file_reader(str(graph_file))
    try:
        graph = graph_io.read(reader)
        processor().executeGraph(graph, pm.NULL)
    except Exception as exc:  # noqa: BLE001 - Java exceptions arrive as RuntimeError
        raise ProcessingError(f"esa_snappy failed on graph {graph_file}: {exc}") from exc
    finally:
        reader.close()
    target = Path(target)
    if not target.exists():
        raise ProcessingError(f"esa_snappy finished but wrote no product at {target} (graph {graph_file})")
    return target


def run_graph(
    graph_file: str | Path,
    target: str | Path,
    *,
    runner: str = "gpt",
    threads: int = DEFAULT_THREADS,
    cache: str = DEFAULT_CACHE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Run a filled graph with the selected runner (``gpt`` or ``snappy``); returns the target."""
    if runner == "gpt":
        return run_gpt(graph_file, target, threads=threads, cache=cache, timeout=timeout)
    if runner == "snappy":
        return run_snappy(graph_file, target)
    raise ValueError(f"unknown SNAP runner {runner!r}; use 'gpt' or 'snappy'")
