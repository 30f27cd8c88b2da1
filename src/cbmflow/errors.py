"""The one error family of cbmflow.

Every error carries an ``outcome`` that says what an orchestrator should do with it:

* ``fail``  - bad input or a defect; retrying will not help (a corrupt file, a bad column).
* ``retry`` - transient; retrying later may succeed (network, a locked row, a busy server).
* ``skip``  - nothing to do; not an error for the run (no scenes in the window).

The mapping onto Airflow exceptions lives in one place: :mod:`cbmflow.airflow_adapter`.
"""

from __future__ import annotations

from typing import Literal

Outcome = Literal["fail", "retry", "skip"]


class CbmError(Exception):
    """Base class of all cbmflow errors."""

    outcome: Outcome = "fail"


class ConfigError(CbmError):
    """A setting, connection or environment variable is missing or wrong."""


class InputError(CbmError):
    """User-supplied input is unusable (file, column, geometry, CRS, parameter)."""


class NotFound(CbmError):
    """A named thing (file, object, bucket, scene, AOI) does not exist."""


class CorruptData(CbmError):
    """A file exists but cannot be read as what it claims to be."""


class ToolMissing(CbmError):
    """An external program (SNAP gpt, Sen2Cor) is not installed here."""


class ProcessingError(CbmError):
    """An external or internal processing step failed on valid input."""


class TransientError(CbmError):
    """A temporary failure: worth retrying."""

    outcome: Outcome = "retry"


class NothingToDo(CbmError):
    """There is no work for this run (not a failure)."""

    outcome: Outcome = "skip"
