"""The parcel time-series API and viewer (FastAPI), served by Airflow's api-server via a plugin.

Airflow does not put plugin apps behind its own auth: set ``CBMFLOW_API_TOKEN`` to require
``Authorization: Bearer <token>`` on every API call (the viewer page asks for it).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cbmflow import db, timeseries
from cbmflow.errors import CbmError, InputError, NotFound

VIEWER_HTML = Path(__file__).with_name("data") / "viewer.html"


def create_app() -> Any:
    """Build the FastAPI application."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Query
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="cbmflow parcel time series", version="1")

    def auth(authorization: str | None = Header(default=None)) -> None:
        token = os.environ.get("CBMFLOW_API_TOKEN")
        if not token:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given, token):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    def conn() -> Iterator[Any]:
        c = db.connect()
        try:
            yield c
        finally:
            c.close()

    def guard(fn: Any, *a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except NotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except InputError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except CbmError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @app.get("/", response_class=HTMLResponse)
    def viewer() -> str:
        return VIEWER_HTML.read_text()

    @app.get("/api/aois", dependencies=[Depends(auth)])
    def aois(c: Any = Depends(conn)) -> list[dict[str, Any]]:
        return guard(timeseries.list_aois, c)

    @app.get("/api/aois/{aoi}/{year}/parcels", dependencies=[Depends(auth)])
    def parcels(aoi: str, year: int, limit: int = Query(100, le=5000), offset: int = 0,
                c: Any = Depends(conn)) -> list[dict[str, Any]]:
        return guard(timeseries.list_parcels, c, aoi, year, limit=limit, offset=offset)

    @app.get("/api/parcels/{pid}", dependencies=[Depends(auth)])
    def parcel(pid: int, c: Any = Depends(conn)) -> dict[str, Any]:
        return guard(timeseries.parcel, c, pid)

    @app.get("/api/parcels/{pid}/timeseries", dependencies=[Depends(auth)])
    def series(pid: int, band: list[str] | None = Query(None), card_type: str | None = None,
               c: Any = Depends(conn)) -> dict[str, Any]:
        guard(timeseries.parcel, c, pid)
        obs = guard(timeseries.series, c, pid, bands=band, card_type=card_type)
        return {"pid": pid, "observations": [o.as_dict() for o in obs]}

    return app
