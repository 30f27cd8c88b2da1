"""Season analytics end to end: period means -> features -> classification & flags -> report.

Runs are stored in ``classification_runs`` and ``parcel_flags``; the report is HTML + PNGs in a
folder (local or S3). Commands: ``cbmflow classify`` (any wide features file) and
``cbmflow season periods|classify`` (from the results database).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cbmflow.analytics.classify import (
    DEFAULT_ESTIMATOR,
    DEFAULT_MIN_CLASS_SIZE,
    FLAG_COLUMNS,
    classify_frame,
    evaluate_flags,
)
from cbmflow.analytics.features import build_features
from cbmflow.analytics.flags import FlagPolicy
from cbmflow.analytics.periods import compute_period_means
from cbmflow.analytics.report import write_report
from cbmflow.core import db, storage
from cbmflow.core.errors import CorruptData, InputError, NotFound

__all__ = [
    "SeasonRun", "add_crop_groups", "classify_file", "classify_season", "evaluate_flags", "read_parquet",
    "report_run", "run_season", "season_features", "season_periods",
    "store_run", "write_parquet",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeasonRun:
    """The outcome of one season's classification run."""

    run_id: int
    report_uri: str | None
    flag_counts: dict[str, int]
    n_classified: int
    excluded: dict[str, int]
    evaluation: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)


def work_dir() -> str:
    """Base folder/URI for intermediate files (see :func:`cbmflow.core.storage.work_uri`)."""
    return storage.work_uri()


def reports_dir() -> str:
    """Base folder/URI for reports (see :func:`cbmflow.core.storage.report_uri`)."""
    return storage.report_uri()


def read_parquet(uri: str) -> pd.DataFrame:
    """A parquet table from a local path or s3:// URI."""
    u = storage.parse(uri)
    if not u.is_s3 and not os.path.exists(u.key):
        raise NotFound(f"file {uri} does not exist")
    try:
        data = storage.read_bytes(uri)
        return pd.read_parquet(io.BytesIO(data))
    except (OSError, ValueError) as exc:
        raise CorruptData(f"{uri} is not a readable parquet file: {exc}") from exc


def write_parquet(df: pd.DataFrame, uri: str) -> str:
    """Write a table as parquet to a local path or s3:// URI; returns the URI."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return storage.write_bytes(uri, buf.getvalue())


def classify_file(
    features_uri: str,
    out_uri: str | None,
    *,
    report_dir: str | None = None,
    truth_uri: str | None = None,
    known_wrong_uri: str | None = None,
    evaluate_swaps: float | None = None,
    seeds: int = 5,
    swap_schemes: tuple[str, ...] | None = None,
    baselines: bool = False,
    class_col: str | None = None,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    min_area: float | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    seed: int = 0,
    n_jobs: int = 1,
    **classify_kwargs: Any,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Classify a wide features parquet (parcel_id, crop, numeric features) and write the flags parquet.

    With ``evaluate_swaps`` (a share) the check is also run ``seeds`` times on copies with that share
    of declarations swapped (``metrics["swap_evaluation"]``); with ``known_wrong_uri`` the flags are
    scored against those parcels (``metrics["known_wrong_evaluation"]``). With ``swap_schemes`` or
    ``baselines`` the swaps run under each scheme and the RF/HGB ranking baselines on the same swaps
    (``metrics["swap_comparison"]``: recall at 5 % and 8 % with 95 % CIs). Both give recall and
    precision at the red rate and the recall-vs-red-rate curve (a PNG in the report).
    """
    from cbmflow.analytics.evaluation import evaluate_swaps as run_swaps
    from cbmflow.analytics.evaluation import read_known_wrong, score_against

    df = read_parquet(features_uri)
    kwargs = dict(class_col=class_col, min_class_size=min_class_size, min_area=min_area, estimator=estimator,
                  n_jobs=n_jobs, **classify_kwargs)
    flags, metrics = classify_frame(df, seed=seed, **kwargs)
    if out_uri:
        write_parquet(flags_for_file(flags), out_uri)
    if truth_uri:
        metrics["evaluation"] = evaluate_flags(flags, read_parquet(truth_uri))
    if known_wrong_uri:
        ev = score_against(flags, read_known_wrong(read_parquet(known_wrong_uri)))
        ev["at_rate"] = metrics["params"]["red_rate"]
        metrics["known_wrong_evaluation"] = ev
    if evaluate_swaps:
        from cbmflow.analytics.evaluation import compare_on_swaps

        policy = classify_kwargs.get("policy")
        at_rate = (policy or FlagPolicy()).red_rate
        if swap_schemes is None and not baselines:
            metrics["swap_evaluation"] = run_swaps(df, share=evaluate_swaps, seeds=seeds, first_seed=seed,
                                                   at_rate=at_rate, **kwargs)
        else:
            rows = compare_on_swaps(df, schemes=tuple(swap_schemes or ("uniform", "frequency")),
                                    baselines=baselines, share=evaluate_swaps, seeds=seeds, first_seed=seed,
                                    at_rate=at_rate, **kwargs)
            metrics["swap_evaluation"] = rows[0]["evaluation"]
            metrics["swap_comparison"] = [{k: v for k, v in r.items() if k != "evaluation"} for r in rows]
    if report_dir:
        metrics["report_uri"] = write_report(
            report_dir, flags, metrics, df, title=f"Classification of {os.path.basename(features_uri)}",
            evaluation=metrics.get("evaluation"), seed=seed,
        )
    return flags, metrics


def season_periods(
    aoi: str, year: int, *, period_days: int = 5, cloud_max: float | None = None, dsn: str | None = None
) -> int:
    """Recompute the period means of a season in the results database; returns rows written."""
    with db.connect(dsn) as conn:
        n = compute_period_means(conn, aoi, year, period_days=period_days, cloud_max=cloud_max)
        conn.commit()
    return n


def season_features(aoi: str, year: int, out_uri: str | None = None, *, dsn: str | None = None) -> dict[str, Any]:
    """Build a season's feature table and write it as parquet; returns uri, parcel and exclusion counts."""
    with db.connect(dsn) as conn:
        feats = build_features(conn, aoi, year)
    out_uri = out_uri or storage.join(work_dir(), aoi, str(year), "features.parquet")
    write_parquet(feats, out_uri)
    excluded = dict(feats.attrs.get("excluded", {}))
    # Exclusion counts travel with the file too (pandas keeps attrs in parquet metadata).
    return {"uri": out_uri, "n_parcels": len(feats), "excluded": excluded}


_STORED = ("pid", "parcel_id", "declared", "declared_class", "predicted", "probability",
           "declared_probability", "agree_count", "n_predictions", "flag", "declared_name", "best_other",
           "best_other_probability", "score", "suspicion_rank", "reason", "predicted_name", "evidence")


def _opt(v: Any, kind: Any) -> Any:
    return None if v is None or (isinstance(v, float) and v != v) else kind(v)


def _evidence(v: Any) -> str | None:
    """A flag's evidence list as JSON text for COPY into the jsonb column (None stays NULL)."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, str):
        return v
    return json.dumps(list(v))


def flags_for_file(flags: pd.DataFrame) -> pd.DataFrame:
    """The flags table as written to a parquet file: FLAG_COLUMNS, with the evidence as JSON text."""
    out = flags[[c for c in FLAG_COLUMNS if c in flags.columns]].copy()
    if "evidence" in out.columns:
        out["evidence"] = [_evidence(v) for v in out["evidence"]]
    return out


def store_run(
    conn: psycopg.Connection,
    aoi: str | None,
    year: int | None,
    flags: pd.DataFrame,
    metrics: dict[str, Any],
    params: dict[str, Any],
) -> int:
    """Insert a classification run and its per-parcel flags; returns the run id."""
    if "pid" not in flags.columns:
        raise InputError("flags have no 'pid' column: only database parcels can be stored in parcel_flags")
    row = conn.execute(
        "INSERT INTO classification_runs (aoi, year, params, metrics) VALUES (%s, %s, %s, %s) RETURNING run_id",
        (aoi, year, Jsonb(params), Jsonb(metrics)),
    ).fetchone()
    assert row is not None
    run_id = int(row[0])
    cols = list(_STORED)
    flags = flags.copy()
    for c, default in (("declared_name", None), ("best_other", None), ("best_other_probability", None),
                       ("score", None), ("suspicion_rank", None), ("reason", ""), ("predicted_name", None),
                       ("evidence", None)):
        if c not in flags.columns:
            flags[c] = default
    with conn.cursor() as cur, cur.copy(
        sql.SQL("COPY parcel_flags (run_id, {}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, cols)))
    ) as copy:
        for rec in flags[cols].itertuples(index=False):
            copy.write_row((run_id, int(rec[0]), str(rec[1]), str(rec[2]), str(rec[3]), str(rec[4]),
                            float(rec[5]), float(rec[6]), int(rec[7]), int(rec[8]), str(rec[9]),
                            _opt(rec[10], str), _opt(rec[11], str), _opt(rec[12], float), _opt(rec[13], float),
                            _opt(rec[14], int), _opt(rec[15], str), _opt(rec[16], str), _evidence(rec[17])))
    return run_id


def add_crop_groups(feats: pd.DataFrame) -> tuple[pd.DataFrame, str | None, str]:
    """Add a ``crop_group`` column (cbmflow.core.crops groups of the declared names); returns the class column and a note."""
    from cbmflow.core.crops import crop_group

    names = feats["crop_name"] if "crop_name" in feats.columns else feats["crop"]
    names = names.where(names.notna() & (names.astype(str).str.strip() != ""), feats["crop"])
    groups = [crop_group(str(v)) if pd.notna(v) else None for v in names]
    out = feats.assign(crop_group=groups)
    known = {g for g in groups if g is not None and g != "other"}
    if len(known) < 2:
        return feats, None, (
            "crop names map to fewer than 2 known crop groups; classifying declared crops instead"
        )
    return out, "crop_group", f"classes are crop groups ({', '.join(sorted(known))})"


def classify_season(
    aoi: str,
    year: int,
    features_uri: str,
    *,
    by: str = "group",
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    min_area: float | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    seed: int = 0,
    truth_uri: str | None = None,
    n_jobs: int = 1,
    dsn: str | None = None,
) -> int:
    """Classify a season's stored features, flag every parcel and store the run; returns the run id."""
    if by not in ("group", "crop"):
        raise InputError(f"by must be 'group' or 'crop', got {by!r}")
    feats = read_parquet(features_uri)
    class_col: str | None = None
    note = "classes are declared crops"
    if by == "group":
        feats, class_col, note = add_crop_groups(feats)
    flags, metrics = classify_frame(
        feats, class_col=class_col, min_class_size=min_class_size, min_area=min_area,
        estimator=estimator, seed=seed, n_jobs=n_jobs,
    )
    metrics["messages"] = [note] + list(metrics.get("messages", []))
    if truth_uri:
        metrics["evaluation"] = evaluate_flags(flags, read_parquet(truth_uri))
    metrics["features_uri"] = features_uri
    params = dict(metrics["params"], features_uri=features_uri, truth_uri=truth_uri)
    with db.connect(dsn) as conn:
        run_id = store_run(conn, aoi, year, flags, metrics, params)
        conn.commit()
    log.info("classification run %d for %s %s: %s", run_id, aoi, year, metrics["flag_counts"])
    return run_id


def report_run(run_id: int, *, out_dir: str | None = None, dsn: str | None = None) -> str:
    """Write the report of a stored run (using its features file) and record its URI; returns it."""
    with db.connect(dsn) as conn:
        row = conn.execute(
            "SELECT aoi, year, metrics FROM classification_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"classification run {run_id} does not exist")
        aoi, year, metrics = row
        flags = pd.DataFrame(
            conn.execute(
                sql.SQL("SELECT {} FROM parcel_flags WHERE run_id = %s ORDER BY pid").format(
                    sql.SQL(", ").join(map(sql.Identifier, _STORED))),
                (run_id,),
            ).fetchall(),
            columns=list(_STORED),
        )
        from cbmflow.markers.store import parcel_summaries  # activity markers of the red parcels

        marks = parcel_summaries(conn, str(aoi), int(year), [int(p) for p in flags.loc[flags["flag"] == "red", "pid"]])
    features = None
    furi = metrics.get("features_uri")
    if furi:
        try:
            features = read_parquet(furi)
        except NotFound:
            log.warning("features file %s of run %d is gone: report without time series", furi, run_id)
    out_dir = out_dir or storage.join(reports_dir(), str(aoi), str(year), f"run_{run_id}")
    uri = write_report(
        out_dir, flags, metrics, features, title=f"cbmflow classification run {run_id}: {aoi} {year}",
        evaluation=metrics.get("evaluation"), markers=marks,
    )
    with db.connect(dsn) as conn:
        conn.execute("UPDATE classification_runs SET report_uri = %s WHERE run_id = %s", (uri, run_id))
        conn.commit()
    return uri


def run_season(
    aoi: str,
    year: int,
    *,
    period_days: int = 5,
    cloud_max: float | None = None,
    compute_periods: bool = True,
    by: str = "group",
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    min_area: float | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    seed: int = 0,
    truth_uri: str | None = None,
    report_dir: str | None = None,
    n_jobs: int = 1,
    dsn: str | None = None,
) -> SeasonRun:
    """Period means, features, classification, flags and report for one season; returns the run."""
    if compute_periods:
        season_periods(aoi, year, period_days=period_days, cloud_max=cloud_max, dsn=dsn)
    feats = season_features(aoi, year, dsn=dsn)
    run_id = classify_season(
        aoi, year, feats["uri"], by=by, min_class_size=min_class_size, min_area=min_area,
        estimator=estimator, seed=seed, truth_uri=truth_uri, n_jobs=n_jobs, dsn=dsn,
    )
    uri = report_run(run_id, out_dir=report_dir, dsn=dsn)
    with db.connect(dsn) as conn:
        row = conn.execute("SELECT metrics FROM classification_runs WHERE run_id = %s", (run_id,)).fetchone()
    metrics = row[0] if row else {}
    return SeasonRun(
        run_id=run_id, report_uri=uri, flag_counts=metrics.get("flag_counts", {}),
        n_classified=metrics.get("n_classified", 0), excluded=metrics.get("excluded", {}),
        evaluation=metrics.get("evaluation"), metrics=metrics,
    )
