"""Airflow plugin: serves the cbmflow web app (flag list, parcel view, scene problems, API) at /cbmflow.

The app uses the api-server's own authentication (the Airflow UI's session); see cbmflow.web.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cbmflow.airflow_adapter import web_auth
from cbmflow.web import create_app


class CbmflowApiPlugin(AirflowPlugin):
    """Mounts the cbmflow web app under /cbmflow and adds it to Airflow's navigation."""

    name = "cbmflow_api"
    fastapi_apps = [{"app": create_app(*web_auth()), "url_prefix": "/cbmflow", "name": "cbmflow parcels and flags"}]
    external_views = [
        # url_route: the flag list opens inside Airflow's UI (an iframe of the same origin)
        {"name": "CbM flags", "href": "/cbmflow/flags", "destination": "nav", "nav_top_level": True,
         "url_route": "cbm-flags"},
        {"name": "Failed scenes", "href": "/cbmflow/scenes", "destination": "nav", "category": "browse",
         "url_route": "cbm-scenes"},
    ]
