"""The one place where cbmflow meets Airflow: error mapping, connections, Assets.

The domain package never imports Airflow; DAG files call domain functions through :func:`run`,
which maps the cbmflow error family onto Airflow's task outcomes:

* ``outcome == "skip"``  -> ``AirflowSkipException`` (nothing to do; the task is skipped)
* ``outcome == "fail"``  -> ``AirflowFailException`` (bad input or defect; no retry)
* ``outcome == "retry"`` -> re-raised unchanged, so Airflow's retries (with backoff) apply
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cbmflow.core.errors import CbmError

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_CONN_ID = "cbmflow_db"
S3_CONN_ID = "cbmflow_s3"


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a domain function, translating cbmflow errors into Airflow task outcomes."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    try:
        return fn(*args, **kwargs)
    except CbmError as exc:
        name = type(exc).__name__
        if exc.outcome == "skip":
            raise AirflowSkipException(f"{name}: {exc}") from exc
        if exc.outcome == "fail":
            raise AirflowFailException(f"{name}: {exc}") from exc
        log.warning("transient %s, Airflow will retry: %s", name, exc)
        raise


def _connection(conn_id: str) -> Any | None:
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - an undefined connection is simply not used
        return None


# libpq parameters an Airflow postgres connection may carry in its extra (passed on in the DSN).
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name",
                 "options", "target_session_attrs", "keepalives", "keepalives_idle")


def database_dsn_from_connection(conn: Any) -> str:
    """A libpq URL for an Airflow postgres connection, every part percent-encoded (any password works)."""
    from urllib.parse import quote, urlencode

    user = quote(conn.login or "postgres", safe="")
    auth = f"{user}:{quote(conn.password, safe='')}@" if conn.password else f"{user}@"
    host = conn.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    extra = conn.extra_dejson or {}
    query = {k: str(extra[k]) for k in _LIBPQ_EXTRAS if extra.get(k) not in (None, "")}
    tail = f"?{urlencode(query, quote_via=quote)}" if query else ""
    return f"postgresql://{auth}{host}:{int(conn.port or 5432)}/{quote(conn.schema or 'cbmflow', safe='')}{tail}"


def _postgres_connection(conn_id: str) -> Any | None:
    """The connection as the postgres provider's hook sees it (None when undefined)."""
    try:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=conn_id).connection
    except Exception:  # noqa: BLE001 - an undefined connection is simply not used
        return None


def _s3_hook(conn_id: str) -> Any | None:
    """The amazon provider's S3Hook on the connection (None when the connection is undefined)."""
    if _connection(conn_id) is None:
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id)


def configure() -> None:
    """Export the results DB DSN and S3 settings from Airflow connections into the environment.

    ``cbmflow_db`` (postgres, read through the postgres provider's hook) sets ``CBMFLOW_DSN``, every
    part URL-encoded so a password with ``@ / : % ? #`` or spaces survives. ``cbmflow_s3`` (aws,
    ``endpoint_url`` in extra) sets the ``AWS_*`` variables from the amazon provider's
    ``S3Hook.get_credentials()``, so static keys, session tokens and ``role_arn`` (assumed through
    STS) all work. Where a connection is not defined, the environment is left as it is. Secrets are
    never logged.
    """
    from cbmflow.core.errors import ConfigError

    db = _postgres_connection(DB_CONN_ID)
    if db is not None and db.host:
        os.environ["CBMFLOW_DSN"] = database_dsn_from_connection(db)
        log.info("results database from connection %s (host %s, database %s)", DB_CONN_ID, db.host,
                 db.schema or "cbmflow")
    hook = _s3_hook(S3_CONN_ID)
    if hook is not None:
        config = hook.conn_config
        extra = config.extra_config or {}
        endpoint = config.endpoint_url or (extra.get("service_config", {}).get("s3", {}) or {}).get("endpoint_url")
        if not endpoint:
            # An aws connection without endpoint_url silently falls back to real AWS: refuse.
            raise ConfigError(f"Airflow connection {S3_CONN_ID} has no endpoint_url in its extra")
        try:
            creds = hook.get_credentials()
        except Exception as exc:  # noqa: BLE001 - STS or the credential chain failed
            from cbmflow.core.redact import scrub

            raise ConfigError(f"Airflow connection {S3_CONN_ID}: no S3 credentials ({type(exc).__name__}: "
                              f"{scrub(str(exc))})") from None
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        for var, value in (("AWS_ACCESS_KEY_ID", creds.access_key), ("AWS_SECRET_ACCESS_KEY", creds.secret_key),
                           ("AWS_SESSION_TOKEN", creds.token)):
            if value:
                os.environ[var] = value
            else:
                os.environ.pop(var, None)
        region = config.region_name or hook.conn_region_name
        if region:
            os.environ["AWS_DEFAULT_REGION"] = region
        log.info("object storage from connection %s (endpoint %s, %s credentials)", S3_CONN_ID, endpoint,
                 "session" if creds.token else "static")


def label_map_index(label: str) -> None:
    """Name the running mapped task instance in the UI (its ``map_index_template`` is ``{{ map_label }}``)."""
    from airflow.sdk import get_current_context

    get_current_context()["map_label"] = label  # type: ignore[typeddict-unknown-key]


MAP_LABEL = "{{ map_label }}"


def card_ready_asset(card_type: str) -> Any:
    """The Airflow Asset a CARD DAG publishes when new scenes of ``card_type`` are ready."""
    from airflow.sdk import Asset

    from cbmflow.catalogue.store import CARD_TYPES

    if card_type not in CARD_TYPES:
        raise ValueError(f"unknown card type {card_type!r}")
    return Asset(name=f"cbmflow_card_{card_type}", uri=f"cbmflow://card/{card_type}", group="cbmflow")


def signatures_asset() -> Any:
    """The Airflow Asset ``extract_signatures`` publishes when signatures were written."""
    from airflow.sdk import Asset

    return Asset(name="cbmflow_signatures", uri="cbmflow://signatures", group="cbmflow")


def test_dag(dag_id: str, conf: dict[str, Any], *, dags_folder: str, retries: int | None = 0) -> Any:
    """Run one DAG in-process with ``dag.test()``; raise ProcessingError unless it succeeds.

    ``retries=0`` (the default) makes a failing task fail the run at once instead of waiting out
    its retry delay, which is what a demo or a script wants.
    """
    from airflow.dag_processing.dagbag import DagBag

    from cbmflow.core.errors import ProcessingError

    bag = DagBag(dag_folder=dags_folder)
    if dag_id not in bag.dags:
        raise ProcessingError(f"DAG {dag_id} did not load from {dags_folder}: {bag.import_errors}")
    dag = bag.dags[dag_id]
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    from unittest import mock

    import airflow.sdk.execution_time.supervisor as supervisor

    # dag.test() runs each task in this process and prints its log; write it also where the
    # api-server reads task logs, so the run's tasks have their logs in the Airflow UI.
    in_process = supervisor.run_task_in_process
    with mock.patch.object(supervisor, "run_task_in_process", _logged_to_task_file(in_process)):
        dr = dag.test(run_conf=conf)
    failed = [f"{ti.task_id}[{ti.map_index}]" for ti in dr.get_task_instances() if ti.state == "failed"]
    if dr.state != "success":
        raise ProcessingError(f"DAG {dag_id} ended {dr.state}; failed tasks: {failed}")
    return dr


def task_log_path(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """Where the api-server reads a task instance's log (``[logging] base_log_folder``, default template)."""
    from airflow.configuration import conf

    folder = conf.get("logging", "base_log_folder")
    parts = [f"dag_id={dag_id}", f"run_id={run_id}", f"task_id={task_id}"]
    if map_index >= 0:
        parts.append(f"map_index={map_index}")
    return os.path.join(folder, *parts, f"attempt={max(int(try_number), 1)}.log")


class _JsonLinesHandler(logging.Handler):
    """Writes records as the JSON lines Airflow's task-log reader parses (timestamp, level, event)."""

    def __init__(self, path: str) -> None:
        super().__init__(level=logging.INFO)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def emit(self, record: logging.LogRecord) -> None:
        import json
        from datetime import UTC, datetime

        try:
            event = record.getMessage()
            if record.exc_info:
                event += "\n" + logging.Formatter().formatException(record.exc_info)
            line = {"timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
                    "level": record.levelname.lower(), "event": event, "logger": record.name}
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        except Exception:  # noqa: BLE001 - logging must never break the task
            self.handleError(record)

    def close(self) -> None:
        self._file.close()
        super().close()


def _logged_to_task_file(run_task_in_process: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap dag.test()'s in-process task runner so cbmflow's log lines land in the task's log file."""

    def run(ti: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
        path = task_log_path(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, getattr(ti, "try_number", 1))
        handler = _JsonLinesHandler(path)
        targets = [logging.getLogger("cbmflow"), logging.getLogger("airflow.task")]
        saved = [(lg, lg.level, lg.propagate) for lg in targets]
        for lg in targets:
            lg.addHandler(handler)
            lg.setLevel(logging.INFO)
            lg.propagate = False  # the demo's console stays as quiet as it was
        log.info("task %s%s of %s started in-process (dag.test)", ti.task_id,
                 f"[{ti.map_index}]" if ti.map_index >= 0 else "", ti.run_id)
        try:
            result = run_task_in_process(ti, task, *args, **kwargs)
            state = getattr(result, "state", None)
            state = getattr(state, "value", state)
            error = getattr(result, "error", None)
            if error is not None and "fail" in str(state).lower():
                log.error("task %s ended %s: %s: %s", ti.task_id, state, type(error).__name__, error)
            elif error is not None:
                log.info("task %s ended %s: %s", ti.task_id, state, error)
            else:
                log.info("task %s ended %s", ti.task_id, state)
            return result
        finally:
            for lg, level, propagate in saved:
                lg.removeHandler(handler)
                lg.setLevel(level)
                lg.propagate = propagate
            handler.close()

    return run


def card_params(**extra: Any) -> dict[str, Any]:
    """The Params every CARD DAG takes (window, AOI, output root, reprocess, STAC), plus extras."""
    from airflow.sdk import Param

    common: dict[str, Any] = {
        "start": Param(None, type=["null", "string"], description="window start (ISO date); default data interval start"),
        "end": Param(None, type=["null", "string"], description="window end, exclusive; default data interval end"),
        "lookback_days": Param(2, type="integer", minimum=0,
                               description="also retry unready scenes sensed up to N days before the window"),
        "footprint": Param(None, type=["null", "string"],
                           description="only scenes intersecting this footprint (WKT, EPSG:4326); empty = all"),
        "card_root": Param(None, type=["null", "string"], description="CARD root URI; default $CBMFLOW_CARD_ROOT"),
        "reprocess": Param(False, type="boolean", description="also redo ready/extracted scenes"),
        "stac_source": Param(None, type=["null", "string"], description="STAC API URL or ItemCollection to discover first"),
    }
    return {**common, **extra}


def card_publish_and_verify(card_type: str, ids: Any, after: Any) -> Any:
    """Wire the tail every CARD DAG ends with: verify, then publish (the Asset outlet).

    ``verify`` runs whatever happened upstream and fails the run, naming each scene and its error,
    when ``discover`` did not finish or any scene of ``ids`` is not ready. ``publish`` emits
    ``card_ready_asset(card_type)`` only when no task failed and verify passed (and skips itself
    when no scene became ready: nothing to do), so a failed run never publishes an Asset event.
    """
    from airflow.sdk import task

    @task(task_id="verify", trigger_rule="all_done")
    def verify(scene_ids: list[int] | None) -> dict[str, int]:
        from cbmflow.card import jobs as card
        from cbmflow.core.errors import ProcessingError

        configure()

        def _verify() -> dict[str, int]:
            if scene_ids is None:
                raise ProcessingError("discover did not finish (see its log): no scene was verified")
            if not scene_ids:
                log.info("nothing to do: no %s scene awaited processing", card_type)
            return card.raise_for_failed(scene_ids)

        return run(_verify)

    @task(task_id="publish", outlets=[card_ready_asset(card_type)], trigger_rule="none_failed")
    def publish(scene_ids: list[int] | None) -> dict[str, list[int]]:
        from cbmflow.card import jobs as card

        configure()
        return run(card.publish, scene_ids or [])

    verified = verify(ids)
    after >> verified
    published = publish(ids)
    [after, verified] >> published
    return published


def web_auth() -> tuple[Callable[..., Any], Callable[[str], str], Callable[[Any], bool], Callable[[Any], str]]:
    """The api-server's own user dependency, login-URL builder, edit check and user name, for the web app.

    ``get_user`` is what Airflow's REST API and UI routes use: the ``_token`` cookie the UI sets, or
    an ``Authorization: Bearer`` JWT, validated with the api-server's JWT secret. A user may record
    decisions when the auth manager lets them edit DAGs (``PUT`` on DAGs: SimpleAuthManager's User,
    Op and Admin roles; FAB's equivalents), viewers only read.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    def login_url(next_url: str) -> str:
        return str(get_auth_manager().get_url_login(next_url=next_url))

    def can_edit(user: Any) -> bool:
        try:
            return bool(get_auth_manager().is_authorized_dag(method="PUT", user=user))
        except Exception:  # noqa: BLE001 - an auth manager that cannot answer: read-only
            log.warning("auth manager could not say whether %s may edit: read-only", user, exc_info=True)
            return False

    def user_name(user: Any) -> str:
        getter = getattr(user, "get_name", None)
        return str(getter() if callable(getter) else getattr(user, "username", user))

    return get_user, login_url, can_edit, user_name


def extract_concurrency() -> int | None:
    """How many ``extract`` tasks of a DAG may run at once (``max_active_tis_per_dag``).

    ``$CBMFLOW_EXTRACT_CONCURRENCY`` when set (``scripts/cluster.sh`` and docker-compose derive it
    from workers x worker concurrency); otherwise no cap under a distributed executor (the workers'
    slots bound it, so it grows with workers) and 2 on a single machine (LocalExecutor).
    """
    value = os.environ.get("CBMFLOW_EXTRACT_CONCURRENCY", "").strip()
    if value:
        n = int(value)
        if n < 1:
            raise ValueError(f"CBMFLOW_EXTRACT_CONCURRENCY must be >= 1, got {value!r}")
        return n
    executor = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    return None if executor.endswith(("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor")) else 2


def retry_delay(default_seconds: float = 30.0) -> Any:
    """The first retry's delay (``$CBMFLOW_RETRY_DELAY_S``, else the default) as a timedelta."""
    from datetime import timedelta

    return timedelta(seconds=float(os.environ.get("CBMFLOW_RETRY_DELAY_S") or default_seconds))


def task_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The preamble of every task: connections into the environment, then the run's params as a dict."""
    configure()
    return dict(params or {})


def card_discover(card_type: str) -> Any:
    """The ``discover`` task every CARD DAG starts with (call inside the DAG; returns its XComArg)."""
    from airflow.sdk import task

    @task(task_id="discover")
    def discover(params: dict[str, Any] | None = None, data_interval_start: Any = None,
                 data_interval_end: Any = None) -> list[Any]:
        from cbmflow.card import jobs as card

        p = task_params(params)
        start, end = card.window(p.get("start"), p.get("end"), data_interval_start, data_interval_end,
                                 lookback_days=int(p.get("lookback_days") or 0))
        if card_type == "c6":  # scenes come in (reference, secondary) pairs
            return run(card.discover_pairs, start=start, end=end, reprocess=bool(p.get("reprocess")),
                       aoi_wkt=p.get("footprint"), stac_source=p.get("stac_source"))
        return run(card.discover, card_type, start=start, end=end, reprocess=bool(p.get("reprocess")),
                   aoi_wkt=p.get("footprint"), stac_source=p.get("stac_source"), limit=p.get("max_scenes"))

    return discover()


def _utc(value: Any) -> Any:
    """An aware UTC datetime, or None (the one ISO-date parser, :func:`cbmflow.core.dates.to_utc`)."""
    from cbmflow.core.dates import to_utc

    return to_utc(value, what="run date")


def run_season(params: dict[str, Any] | None, *, logical_date: Any = None, data_interval_start: Any = None,
               run_after: Any = None) -> int:
    """The season (parcel year) of a run: ``params.year``, else the year of its data, never the calendar's."""
    from cbmflow.core.errors import InputError

    p = params or {}
    if p.get("year"):
        return int(p["year"])
    for value in (data_interval_start, logical_date, run_after):
        if value is not None:
            return int(_utc(value).year)
    raise InputError("the run has no year param, logical date, data interval or run_after: no season to work on")


def extraction_scope(params: dict[str, Any] | None, *, run_type: Any = None, logical_date: Any = None,
                     data_interval_start: Any = None, data_interval_end: Any = None,
                     run_after: Any = None) -> dict[str, Any]:
    """The (year, sensing window, card type, AOIs) an extraction run covers, from its params and its dates.

    ``start``/``end`` params win; a backfill run without them covers its data interval (so a backfill
    over a date range redoes the scenes sensed in that range); any other run covers its whole season.
    The year is ``params.year``, else the year of the data interval / logical date, never today's.
    """
    p = params or {}
    start, end = p.get("start") or None, p.get("end") or None
    kind = str(getattr(run_type, "value", run_type) or "")
    s, e = _utc(data_interval_start), _utc(data_interval_end)
    if kind == "backfill" and start is None and end is None and s is not None and e is not None and e > s:
        start, end = s.isoformat(), e.isoformat()
    year = run_season(p, logical_date=logical_date, data_interval_start=data_interval_start, run_after=run_after)
    if not p.get("year") and start is not None:
        year = int(_utc(start).year)
    aoi = str(p.get("aoi") or "").strip()
    return {"year": year, "start": start, "end": end, "card_type": p.get("card_type") or "all",
            "aois": [aoi] if aoi else None, "run_type": kind}


def scope_from_context(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`extraction_scope` of the running task's DAG run."""
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    dr = ctx.get("dag_run")
    return extraction_scope(
        params if params is not None else ctx.get("params"), run_type=getattr(dr, "run_type", None),
        logical_date=ctx.get("logical_date") or getattr(dr, "logical_date", None),
        data_interval_start=ctx.get("data_interval_start") or getattr(dr, "data_interval_start", None),
        data_interval_end=ctx.get("data_interval_end") or getattr(dr, "data_interval_end", None),
        run_after=getattr(dr, "run_after", None))


def marker_seasons(params: dict[str, Any] | None, ctx: Any) -> tuple[list[int], list[str] | None, str]:
    """(seasons, AOIs or None = every AOI, where they came from) for a ``detect_markers`` run.

    ``params.year``/``aoi`` win; else the ``years``/``aois`` the triggering ``cbmflow_signatures``
    Asset events name; else the year of the run's logical date / data interval / run_after.
    """
    p = params or {}
    aoi = str(p.get("aoi") or "").strip()
    if p.get("year"):
        return [int(p["year"])], [aoi] if aoi else None, "the year param"
    years: set[int] = set()
    aois: set[str] = set()
    events = ctx.get("triggering_asset_events") if ctx else None
    for evs in (events or {}).values():
        for ev in evs:
            extra = getattr(ev, "extra", None) or {}
            years.update(int(y) for y in extra.get("years") or [])
            aois.update(str(a) for a in extra.get("aois") or [])
    if years:
        return sorted(years), [aoi] if aoi else (sorted(aois) or None), "the triggering cbmflow_signatures event(s)"
    dr = ctx.get("dag_run") if ctx else None
    year = run_season(None, logical_date=(ctx or {}).get("logical_date") or getattr(dr, "logical_date", None),
                      data_interval_start=(ctx or {}).get("data_interval_start"),
                      run_after=getattr(dr, "run_after", None))
    return [year], [aoi] if aoi else None, "the run's logical date"
