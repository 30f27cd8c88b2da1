"""The web side of cbmflow: the parcel view, the flag list and the scene-problems page with their API.

Routes, auth wiring, chips and static assets live here; ``plugins/cbmflow_api.py`` only registers
:func:`create_app` with Airflow's api-server.
"""

from __future__ import annotations

from cbmflow.web.app import api_dsn, create_app

__all__ = ["api_dsn", "create_app"]
