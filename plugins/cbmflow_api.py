"""Airflow plugin: serves the cbmflow parcel time-series API and viewer at /cbmflow on the api-server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cbmflow.api import create_app


class CbmflowApiPlugin(AirflowPlugin):
    """Mounts the parcel time-series API (FastAPI) under /cbmflow."""

    name = "cbmflow_api"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/cbmflow", "name": "cbmflow parcel time series"}]
    external_views = [
        {"name": "Parcel time series", "href": "/cbmflow/", "destination": "nav", "category": "browse"}
    ]
