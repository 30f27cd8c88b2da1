"""The cbmflow web app (FastAPI): parcel view, flag list, scene problems and their JSON API.

Served by Airflow's api-server through the ``cbmflow_api`` plugin, behind Airflow's own login: the
user dependency is the api-server's (the ``_token`` cookie the Airflow UI sets, or a Bearer JWT),
handed in by :func:`cbmflow.airflow_adapter.web_auth`. The app reads the results database as the
read-only role ``cbmflow_reader`` (``CBMFLOW_API_DSN``; default: ``CBMFLOW_DSN`` with that user).
"""

# No ``from __future__ import annotations`` here: FastAPI must see the route annotations (local
# Annotated aliases) as real objects, not strings it cannot resolve.
import csv
import html
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo

from cbmflow.core.config import database_dsn
from cbmflow.core.errors import CbmError, ConfigError, InputError, NotFound, TransientError
from cbmflow.web import chips, decisions, queries

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
READER_ROLE = "cbmflow_reader"
INT32 = 2_147_483_647
BIGINT_JS = 9_007_199_254_740_991  # largest integer a browser's JSON keeps exactly
AOI_RE = r"^[a-z0-9_]{1,63}$"
TEXT_RE = r"^[^\x00-\x1f\x7f]{1,200}$"  # ids and search terms: printable, any script, no controls
PAGES = ("flags.html", "parcel.html", "scenes.html", "docs.html")


def api_dsn() -> str:
    """The DSN the web app reads with: CBMFLOW_API_DSN, else CBMFLOW_DSN as the read-only role."""
    explicit = os.environ.get("CBMFLOW_API_DSN")
    if explicit:
        return explicit
    info = conninfo.conninfo_to_dict(database_dsn())
    info["user"] = READER_ROLE
    info.pop("password", None)
    return conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def aoi_access() -> dict[str, list[str]] | None:
    """The per-AOI read scopes (CBMFLOW_AOI_ACCESS, JSON): None when unset (everyone reads every AOI).

    Keys are Airflow user names, ``role:<Airflow role>`` or ``*`` (everyone); values are AOI names,
    ``"*"`` meaning all. A user reads the union of their entries; a user with none reads no AOI.
    """
    import json

    text = os.environ.get("CBMFLOW_AOI_ACCESS", "").strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"CBMFLOW_AOI_ACCESS is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, list) and all(isinstance(a, str) for a in v)
                                            for v in raw.values()):
        raise ConfigError('CBMFLOW_AOI_ACCESS must map names to lists of AOIs: {"ines": ["at"], "role:admin": ["*"]}')
    return {str(k): list(v) for k, v in raw.items()}


def allowed_aois(name: str, roles: Sequence[str]) -> frozenset[str] | None:
    """The AOIs a user may read (None: all of them) under CBMFLOW_AOI_ACCESS."""
    access = aoi_access()
    if access is None:
        return None
    keys = ["*", name, *(f"role:{r.lower()}" for r in roles)]
    aois = {a for k, v in access.items() if k.lower() in {x.lower() for x in keys} for a in v}
    return None if "*" in aois else frozenset(aois)


def _roles_of(user: Any) -> list[str]:
    role = getattr(user, "role", None)
    roles = [str(role)] if role else []
    roles += [str(getattr(r, "name", r)) for r in (getattr(user, "roles", None) or [])]
    return roles


def basemap() -> dict[str, str | None]:
    """The optional XYZ basemap (CBMFLOW_BASEMAP_URL with {z}/{x}/{y}) and its attribution."""
    url = os.environ.get("CBMFLOW_BASEMAP_URL") or None
    if url and (not re.match(r"^https?://[^\s\"'<>]+$", url) or "{z}" not in url):
        log.warning("CBMFLOW_BASEMAP_URL ignored: not an http(s) XYZ template with {z}/{x}/{y}")
        url = None
    return {"url": url, "attribution": os.environ.get("CBMFLOW_BASEMAP_ATTRIBUTION") or None}


def content_security_policy() -> str:
    """The CSP of every response: this origin only (plus the basemap's tile host, if configured)."""
    img = "'self' data: blob:"
    tiles = basemap()["url"]
    if tiles:
        parts = urlsplit(tiles)
        host = parts.netloc
        if "{" in host:  # {s}.tile.example.org: any subdomain of the tile host
            host = "*." + host.split("}", 1)[1].lstrip(".")
        img += f" {parts.scheme}://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {img}; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )


def _connect() -> Generator[psycopg.Connection, None, None]:
    try:
        conn = psycopg.connect(api_dsn(), autocommit=True, connect_timeout=5,
                               options="-c statement_timeout=60000 -c default_transaction_read_only=on")
    except psycopg.OperationalError as exc:
        raise TransientError(f"the results database is unreachable: {str(exc).splitlines()[0]}") from exc
    try:
        yield conn
    finally:
        conn.close()


def create_app(
    user_dependency: Callable[..., Any] | None = None,
    login_url: Callable[[str], str] | None = None,
    can_edit: Callable[[Any], bool] | None = None,
    user_name: Callable[[Any], str] | None = None,
) -> Any:
    """Build the web app around an authentication dependency (the plugin passes Airflow's: ``web_auth()``).

    ``can_edit(user)`` says whether a logged-in user may record decisions (default: nobody);
    ``user_name(user)`` is the name stored with a decision.
    """
    from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
    from fastapi import Path as P
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if user_dependency is None:
        raise ConfigError("create_app needs an authentication dependency: "
                          "create_app(*cbmflow.airflow_adapter.web_auth()) inside Airflow")

    app = FastAPI(
        title="cbmflow web API", version="2",
        description="Parcels, flags, time series, chips and scene problems of cbmflow, and the inspectors' "
        "decisions (the only write: users whose Airflow role may edit DAGs). "
        "Authentication: the Airflow UI session (cookie `_token`) or `Authorization: Bearer <JWT>` "
        "from the api-server's `/auth/token`.",
        docs_url=None, redoc_url=None, openapi_url=None,  # docs are served offline at /docs
    )
    User = Annotated[Any, Depends(user_dependency)]
    may_edit = can_edit or (lambda u: False)
    name_of = user_name or (lambda u: str(getattr(u, "username", None) or u))
    Conn = Annotated[psycopg.Connection, Depends(_connect)]

    def _allowed(u: User) -> frozenset[str] | None:
        return allowed_aois(name_of(u), _roles_of(u))

    Allowed = Annotated[frozenset[str] | None, Depends(_allowed)]

    def _scoped(request: Request, allowed: Allowed) -> None:
        # per-AOI read scoping: a parcel, run or AOI outside the user's AOIs "does not exist"
        if allowed is None:
            return
        pp = request.path_params
        found: list[str | None] = []
        if "aoi" in pp:
            found.append(str(pp["aoi"]))
        lookups = (("pid", "SELECT aoi FROM parcels WHERE pid = %s"),
                   ("run_id", "SELECT aoi FROM classification_runs WHERE run_id = %s"))
        wanted = [(q, int(pp[k])) for k, q in lookups if k in pp and str(pp[k]).isdigit() and int(pp[k]) <= INT32 * 4]
        if wanted:
            gen = _connect()
            conn = next(gen)
            try:
                for q, v in wanted:
                    row = conn.execute(q, (v,)).fetchone()
                    if row is not None:
                        found.append(row[0])
            finally:
                gen.close()
        if any(a not in allowed for a in found):
            raise NotFound("not found (or not in your AOIs)")

    user = Depends(_scoped)
    Pid = Annotated[int, P(ge=1, le=INT32, description="internal parcel id")]
    Aoi = Annotated[str, P(pattern=AOI_RE, description="AOI name")]
    Year = Annotated[int, P(ge=1900, le=2200)]
    RunQ = Annotated[int | None, Query(ge=1, le=BIGINT_JS, description="classification run (default: newest)")]

    # --- errors: 4xx for bad input, 503 for an unreachable database, never a bare 500 ----------
    def _err(status: int, detail: str) -> Any:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(CbmError)
    async def _cbm(request: Request, exc: CbmError) -> Any:
        if isinstance(exc, NotFound):
            return _err(404, str(exc))
        if isinstance(exc, InputError):
            return _err(422, str(exc))
        if isinstance(exc, TransientError | ConfigError):
            return _err(503, str(exc))
        return _err(503, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(psycopg.OperationalError)
    async def _pg_down(request: Request, exc: psycopg.OperationalError) -> Any:
        log.warning("results database error: %s", exc)
        return _err(503, "the results database is unavailable")

    @app.exception_handler(psycopg.errors.InsufficientPrivilege)
    async def _pg_priv(request: Request, exc: Exception) -> Any:
        log.error("the API role cannot read a table: %s", exc)
        return _err(503, "the API's database role cannot read this table (run `cbmflow db upgrade`)")

    @app.exception_handler(psycopg.DataError)
    async def _pg_data(request: Request, exc: psycopg.DataError) -> Any:
        return _err(422, f"invalid value: {str(exc).splitlines()[0]}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        page = not request.url.path.removeprefix(request.scope.get("root_path", "")).startswith("/api")
        if exc.status_code in (401, 403) and page and request.method == "GET" and login_url is not None:
            root, path = request.scope.get("root_path", ""), request.url.path
            target = (path if path.startswith(root + "/") else root + path) + (
                f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(login_url(target), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        msgs = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _err(422, "; ".join(msgs) or "invalid request")

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[..., Any]) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = content_security_policy()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        if "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    # --- pages ---------------------------------------------------------------------------------
    def page(name: str, request: Request) -> Any:
        text = (STATIC / name).read_text(encoding="utf-8")
        base = html.escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
        return Response(text.replace("{{BASE}}", base), media_type="text/html; charset=utf-8")

    @app.get("/", include_in_schema=False, dependencies=[user])
    def home(request: Request) -> Any:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/flags", status_code=303)

    @app.get("/flags", include_in_schema=False, dependencies=[user])
    def flags_page(request: Request) -> Any:
        return page("flags.html", request)

    @app.get("/parcel/{pid}", include_in_schema=False, dependencies=[user])
    def parcel_page(request: Request, pid: Pid) -> Any:
        return page("parcel.html", request)

    @app.get("/parcel/{aoi}/{year}/{parcel_id:path}", include_in_schema=False, dependencies=[user])
    def parcel_page_by_id(request: Request, aoi: Aoi, year: Year, parcel_id: str) -> Any:
        return page("parcel.html", request)

    @app.get("/scenes", include_in_schema=False, dependencies=[user])
    def scenes_page(request: Request) -> Any:
        return page("scenes.html", request)

    @app.get("/docs", include_in_schema=False, dependencies=[user])
    def docs_page(request: Request) -> Any:
        return page("docs.html", request)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[user])
    def openapi() -> Any:
        return app.openapi()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- JSON API ------------------------------------------------------------------------------
    @app.get("/api/health", dependencies=[user], tags=["meta"])
    def health(c: Conn) -> dict[str, Any]:
        """Database reachability and the chip cache counters."""
        queries.db_now(c)
        return {"database": "ok", "chips": chips.stats()}

    @app.get("/api/config", dependencies=[user], tags=["meta"])
    def config() -> dict[str, Any]:
        """Settings the pages need (the optional basemap)."""
        return {"basemap": basemap(), "cloud_max": queries.DEFAULT_CLOUD_MAX}

    @app.get("/api/aois", dependencies=[user], tags=["parcels"])
    def aois(c: Conn, allowed: Allowed) -> list[dict[str, Any]]:
        """AOIs with their CRS and parcel counts per year."""
        from cbmflow.web import timeseries

        return [a for a in timeseries.list_aois(c) if allowed is None or a["name"] in allowed]

    @app.get("/api/aois/{aoi}/{year}/parcels", dependencies=[user], tags=["parcels"])
    def parcels(aoi: Aoi, year: Year, c: Conn, limit: Annotated[int, Query(ge=1, le=5000)] = 100,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[dict[str, Any]]:
        """Parcels of an AOI and year (paged)."""
        from cbmflow.web import timeseries

        return timeseries.list_parcels(c, aoi, year, limit=limit, offset=offset)

    @app.get("/api/aois/{aoi}/{year}/parcels.geojson", dependencies=[user], tags=["parcels"])
    def parcels_geojson(aoi: Aoi, year: Year, c: Conn, run_id: RunQ = None,
                        bbox: Annotated[str | None, Query(max_length=120,
                                                          description="minlon,minlat,maxlon,maxlat")] = None,
                        limit: Annotated[int, Query(ge=1, le=20000)] = 5000) -> dict[str, Any]:
        """The AOI's parcels with their flag as GeoJSON (EPSG:4326) for the map."""
        return queries.parcels_geojson(c, aoi, year, run_id=run_id, bbox=_bbox(bbox), limit=limit)

    @app.get("/api/aois/{aoi}/{year}/parcels/{parcel_id}", dependencies=[user], tags=["parcels"])
    def parcel_by_id(aoi: Aoi, year: Year, parcel_id: Annotated[str, P(pattern=TEXT_RE)],
                     c: Conn) -> dict[str, Any]:
        """A parcel by its declared id."""
        return queries.parcel(c, queries.find_parcel(c, aoi, year, parcel_id))

    @app.get("/api/search", dependencies=[user], tags=["parcels"])
    def search(q: Annotated[str, Query(pattern=TEXT_RE)], c: Conn, allowed: Allowed,
               aoi: Annotated[str | None, Query(pattern=AOI_RE)] = None,
               year: Annotated[int | None, Query(ge=1900, le=2200)] = None,
               limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, Any]]:
        """Parcels whose declared id starts with q, or whose pid is q."""
        return queries.search_parcels(c, q, aoi=aoi, year=year, limit=limit, allowed=allowed)

    @app.get("/api/parcels/{pid}", dependencies=[user], tags=["parcels"])
    def parcel(pid: Pid, c: Conn, run_id: RunQ = None) -> dict[str, Any]:
        """A parcel: attributes, geometry (EPSG:4326), bbox and its flag with the reason."""
        out = queries.parcel(c, pid)
        out["flag"] = queries.parcel_flag(c, pid, run_id)
        out["decisions"] = decisions.history(c, pid)
        return out

    @app.get("/api/parcels/{pid}/seasons", dependencies=[user], tags=["parcels"])
    def parcel_seasons(pid: Pid, c: Conn) -> list[dict[str, Any]]:
        """The same field in the AOI's other years (same parcel id, or overlapping): declaration, flag, decision."""
        queries.parcel(c, pid)
        return queries.seasons(c, pid)

    @app.get("/api/parcels/{pid}/timeseries", dependencies=[user], tags=["time series"])
    def series(pid: Pid, c: Conn,
               band: Annotated[list[Annotated[str, Query(max_length=16)]] | None, Query(max_length=20)] = None,
               card_type: Literal["bs", "c6", "s2"] | None = None) -> dict[str, Any]:
        """Every observation of a parcel (linear values), by date then band."""
        from cbmflow.web import timeseries

        queries.parcel(c, pid)
        obs = timeseries.series(c, pid, bands=band, card_type=card_type)
        return {"pid": pid, "observations": [o.as_dict() for o in obs]}

    @app.get("/api/parcels/{pid}/chart", dependencies=[user], tags=["time series"])
    def chart(pid: Pid, c: Conn, run_id: RunQ = None,
              cloud_max: Annotated[float, Query(ge=0, le=1)] = queries.DEFAULT_CLOUD_MAX) -> dict[str, Any]:
        """The timeline of a parcel: S1 dB by orbit, VH/VV, coherence, NDVI with cloud state,
        5-day means, peers of the same crop, markers and the flag."""
        return queries.chart(c, pid, run_id=run_id, cloud_max=cloud_max)

    @app.get("/api/parcels/{pid}/chips", dependencies=[user], tags=["chips"])
    def chip_list(pid: Pid, c: Conn) -> list[dict[str, Any]]:
        """The scenes with a chip of this parcel (S1 VV, S2 true colour), by date."""
        return queries.chip_scenes(c, pid)

    @app.get("/api/parcels/{pid}/chips/{obsid}.png", dependencies=[user], tags=["chips"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def chip(pid: Pid, obsid: Annotated[int, P(ge=1, le=INT32)], c: Conn) -> Response:
        """A PNG of the parcel (outlined) and its surroundings on one scene."""
        assets, card, epsg, wkt = queries.chip_source(c, pid, obsid)
        png = chips.chip_png(pid, obsid, assets, card, epsg, wkt)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/runs", dependencies=[user], tags=["flags"])
    def runs(c: Conn, allowed: Allowed) -> list[dict[str, Any]]:
        """Classification runs, newest first, with their flag counts."""
        return [r for r in queries.list_runs(c) if allowed is None or r["aoi"] in allowed]

    FlagQ = Annotated[list[Literal["red", "yellow", "green"]] | None, Query(max_length=3)]
    CropQ = Annotated[str | None, Query(pattern=TEXT_RE)]
    ProbQ = Annotated[float | None, Query(ge=0, le=1)]
    DecisionQ = Annotated[Literal[("undecided", "decided", *decisions.OUTCOMES)] | None,  # type: ignore[valid-type]
                          Query(description="undecided, decided or one outcome")]
    SortQ = Annotated[str, Query(pattern=r"^[a-z_]{1,40}$")]
    RunP = Annotated[int, P(ge=1, le=BIGINT_JS)]

    def _filter(flag: Sequence[str] | None, crop: str | None, predicted: str | None, min_prob: float | None,
                max_prob: float | None, max_declared_prob: float | None, q: str | None,
                decision: str | None, default: tuple[str, ...] = ("red", "yellow")) -> queries.FlagFilter:
        return queries.FlagFilter(flags=tuple(flag or default), crop=crop, predicted=predicted,
                                  min_prob=min_prob, max_prob=max_prob, max_declared_prob=max_declared_prob,
                                  q=q, decision=decision)

    @app.get("/api/runs/{run_id}/flags", dependencies=[user], tags=["flags"])
    def flags(run_id: RunP, c: Conn, flag: FlagQ = None,
              crop: CropQ = None, predicted: CropQ = None, min_prob: ProbQ = None, max_prob: ProbQ = None,
              max_declared_prob: ProbQ = None, q: CropQ = None, decision: DecisionQ = None,
              sort: SortQ = "rank", order: Literal["asc", "desc"] = "asc",
              limit: Annotated[int, Query(ge=1, le=5000)] = 200,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
        """Flags of a run (default red and yellow, in suspicion rank order) with their latest decision."""
        flt = _filter(flag, crop, predicted, min_prob, max_prob, max_declared_prob, q, decision)
        return queries.list_flags(c, run_id, flt, sort=sort, order=order, limit=limit, offset=offset)

    @app.get("/api/runs/{run_id}/queue/{pid}", dependencies=[user], tags=["flags"])
    def queue(run_id: RunP, pid: Pid, c: Conn, flag: FlagQ = None,
              crop: CropQ = None, predicted: CropQ = None, min_prob: ProbQ = None, max_prob: ProbQ = None,
              max_declared_prob: ProbQ = None, q: CropQ = None, decision: DecisionQ = None,
              sort: SortQ = "rank", order: Literal["asc", "desc"] = "asc") -> dict[str, Any]:
        """The parcel's position in the queue (default: red parcels by rank) and its previous and next parcel."""
        flt = _filter(flag, crop, predicted, min_prob, max_prob, max_declared_prob, q, decision, default=("red",))
        return queries.queue_neighbours(c, run_id, pid, flt, sort=sort, order=order)

    @app.get("/api/runs/{run_id}/flags.{fmt}", dependencies=[user], tags=["flags"],
             response_class=Response,
             responses={200: {"content": {"text/csv": {}, "application/geopackage+sqlite3": {}}}})
    def flags_export(run_id: RunP, fmt: Literal["csv", "gpkg"], c: Conn,
                     flag: FlagQ = None, crop: CropQ = None, predicted: CropQ = None,
                     min_prob: ProbQ = None, max_prob: ProbQ = None, max_declared_prob: ProbQ = None,
                     q: CropQ = None, decision: DecisionQ = None, sort: SortQ = "rank",
                     order: Literal["asc", "desc"] = "asc") -> Response:
        """The filtered flags as CSV or GeoPackage (geometry in the AOI's CRS) with score, rank and decision."""
        flt = _filter(flag, crop, predicted, min_prob, max_prob, max_declared_prob, q, decision)
        rows, epsg = queries.export_flags(c, run_id, flt, sort=sort, order=order)
        name = f"cbmflow_flags_run{run_id}"
        if fmt == "csv":
            return Response(_csv(rows), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        return Response(_gpkg(rows, epsg), media_type="application/geopackage+sqlite3",
                        headers={"Content-Disposition": f'attachment; filename="{name}.gpkg"'})

    # --- decisions: the one write ------------------------------------------------------------------
    class DecisionIn(BaseModel):
        outcome: Literal[tuple(decisions.OUTCOMES)]  # type: ignore[valid-type]
        corrected_crop: Annotated[str | None, Field(max_length=100, pattern=TEXT_RE)] = None
        note: Annotated[str, Field(max_length=decisions.NOTE_MAX)] = ""
        run_id: Annotated[int | None, Field(ge=1, le=BIGINT_JS)] = None

    @app.get("/api/me", tags=["meta"])
    def me(u: User) -> dict[str, Any]:
        """The logged-in user and whether they may record decisions."""
        return {"user": name_of(u), "can_decide": bool(may_edit(u)), "outcomes": decisions.OUTCOMES}

    @app.get("/api/parcels/{pid}/decisions", dependencies=[user], tags=["decisions"])
    def decision_history(pid: Pid, c: Conn) -> list[dict[str, Any]]:
        """Every decision on the parcel's declaration, newest first."""
        queries.parcel(c, pid)
        return decisions.history(c, pid)

    @app.post("/api/parcels/{pid}/decisions", tags=["decisions"], status_code=201)
    def decide(pid: Pid, request: Request, u: User, c: Conn,
               body: Annotated[DecisionIn, Body()]) -> dict[str, Any]:
        """Record a decision (append-only); only users whose Airflow role may edit DAGs."""
        if not may_edit(u):
            raise HTTPException(status_code=403, detail="your Airflow role may only read: decisions need a "
                                "role that may edit DAGs (User, Op or Admin)")
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(status_code=403, detail="cross-origin request refused")
        if not decisions.available(c):
            raise ConfigError("the decisions table is missing: run `cbmflow db upgrade` (schema 011)")
        d = decisions.Decision(pid=pid, outcome=body.outcome, decided_by=name_of(u), run_id=body.run_id,
                               corrected_crop=body.corrected_crop, note=body.note)
        return decisions.record(c, d)

    @app.get("/api/scenes/problems", dependencies=[user], tags=["scenes"])
    def scene_problems(c: Conn, allowed: Allowed, aoi: Annotated[str | None, Query(pattern=AOI_RE)] = None,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> dict[str, Any]:
        """Failed and no-data scenes per AOI and day, with their error and the DAG run that redoes them."""
        out = queries.scene_problems(c, aoi=aoi, limit=limit)
        if allowed is not None:
            out["items"] = [i for i in out["items"] if i.get("aoi") in allowed]
        return out

    return app


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise InputError("bbox must be minlon,minlat,maxlon,maxlat") from exc
    if len(v) != 4 or not (-180 <= v[0] < v[2] <= 180 and -90 <= v[1] < v[3] <= 90):
        raise InputError("bbox must be minlon,minlat,maxlon,maxlat within -180..180, -90..90")
    return v[0], v[1], v[2], v[3]


_CSV_COLUMNS = ("rank", "run_id", "pid", "parcel_id", "declared", "crop_name", "declared_class", "predicted",
                "predicted_name", "probability", "declared_probability", "score", "agree_count", "n_predictions",
                "flag", "area_m2", "reason", "decision", "corrected_crop", "decision_note", "decided_by",
                "decided_at")
# OWASP CSV injection: a cell starting with one of these is run as a formula by spreadsheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: Any) -> Any:
    """A CSV cell made formula-safe (OWASP): text starting with = + - @ tab or CR gets a leading quote."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_CSV_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(k)) for k in _CSV_COLUMNS])
    return buf.getvalue().encode("utf-8")


def _gpkg(rows: list[dict[str, Any]], epsg: int) -> bytes:
    import geopandas as gpd
    import shapely

    frame = gpd.GeoDataFrame(
        [{k: r.get(k) for k in _CSV_COLUMNS} for r in rows],
        columns=list(_CSV_COLUMNS),
        geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]) if rows else [],
        crs=f"EPSG:{epsg}",
    )
    with tempfile.TemporaryDirectory(prefix="cbmflow-gpkg-") as tmp:
        path = Path(tmp) / "flags.gpkg"
        frame.to_file(path, driver="GPKG", layer="flags", engine="pyogrio")
        return path.read_bytes()
