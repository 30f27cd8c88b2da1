"""Evaluation of the declaration check on a labelled set: swap declarations, run the check, count hits.

An agency's verified parcels (or any labelled wide table) are taken as correct; for each seed a
share of the declarations is swapped to another crop (drawn from the declared crops' own
frequencies, like a real wrong declaration), the full check runs (out-of-fold classification,
scores, flags), and the swapped parcels are the truth: recall and precision of the red flags,
and of the top ``rate`` of the suspicion ranking for every rate (the recall-vs-red-rate curve).
With a file of known wrong declarations the same is reported against them (no swapping).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.classify import classify_frame
from cbmflow.analytics.flags import recall_curve
from cbmflow.core.errors import InputError

log = logging.getLogger(__name__)

SWAP_SCHEMES: tuple[str, ...] = ("frequency", "uniform")
RATES = np.round(np.arange(0.0, 0.301, 0.01), 4)


def swap_declarations(
    df: pd.DataFrame, share: float, seed: int, *, crop_col: str = "crop", id_col: str = "parcel_id",
    name_col: str | None = "crop_name", scheme: str = "frequency",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A copy with ``round(share*n)`` declarations swapped to another crop, and the truth table.

    The new crop is drawn from the other declared crops with their declared frequencies
    (``scheme="frequency"``, like a real wrong declaration) or uniformly (``scheme="uniform"``, so
    rare crops are drawn as often as common ones); ``crop_name`` follows the new crop.
    Truth: ``parcel_id, mislabelled, true_crop, declared``.
    """
    if not 0.0 < share < 1.0:
        raise InputError(f"swap share must be within (0, 1), got {share}")
    if scheme not in SWAP_SCHEMES:
        raise InputError(f"unknown swap scheme {scheme!r}; choose one of {', '.join(SWAP_SCHEMES)}")
    if crop_col not in df.columns:
        raise InputError(f"column {crop_col!r} missing; available columns: {', '.join(map(str, df.columns))}")
    rng = np.random.default_rng(seed)
    out = df.copy()
    crops = out[crop_col].astype(str).to_numpy()
    valid = np.flatnonzero(out[crop_col].notna().to_numpy())
    values, counts = np.unique(crops[valid], return_counts=True)
    if len(values) < 2:
        raise InputError("need at least 2 declared crops to swap declarations")
    k = int(round(share * len(valid)))
    chosen = rng.choice(valid, size=k, replace=False)
    new = crops.copy()
    for i in chosen:
        p = counts.astype(np.float64) if scheme == "frequency" else np.ones(len(values))
        p[values == crops[i]] = 0.0
        new[i] = rng.choice(values, p=p / p.sum())
    out[crop_col] = new
    if name_col and name_col in out.columns:
        name_of = dict(zip(crops[valid], out[name_col].astype(str).to_numpy()[valid], strict=True))
        names = out[name_col].astype(str).to_numpy().copy()
        names[chosen] = [name_of[c] for c in new[chosen]]
        out[name_col] = names
    wrong = np.zeros(len(out), dtype=bool)
    wrong[chosen] = True
    truth = pd.DataFrame({"parcel_id": out[id_col].to_numpy(), "mislabelled": wrong,
                          "true_crop": crops, "declared": new})
    return out, truth


def score_against(flags: pd.DataFrame, wrong_ids: set[str], rates: np.ndarray = RATES) -> dict[str, Any]:
    """Recall/precision of the red flags and the ranking curve against a set of wrong parcel ids."""
    ids = flags["parcel_id"].astype(str).to_numpy()
    wrong = np.isin(ids, list(wrong_ids))
    red = (flags["flag"] == "red").to_numpy()
    not_green = (flags["flag"] != "green").to_numpy()
    n_wrong = int(wrong.sum())
    recall, precision = recall_curve(flags["score"].to_numpy(), wrong, rates)
    return {
        "n_parcels": int(len(flags)),
        "n_wrong": n_wrong,
        "n_wrong_not_classified": int(len(wrong_ids) - n_wrong),
        "n_red": int(red.sum()),
        "red_pct": float(100.0 * red.mean()) if len(red) else 0.0,
        "recall": float((red & wrong).sum() / n_wrong) if n_wrong else 0.0,
        "precision": float((red & wrong).sum() / red.sum()) if red.sum() else 0.0,
        "recall_red_or_yellow": float((not_green & wrong).sum() / n_wrong) if n_wrong else 0.0,
        "curve": {"rate": [float(r) for r in rates], "recall": [float(v) for v in recall],
                  "precision": [float(v) for v in precision]},
    }


def _summary(values: list[float]) -> dict[str, float]:
    """Mean, sd, min, max and the half-width of a 95 % t confidence interval of the mean over seeds."""
    from scipy.stats import t as student_t

    a = np.asarray(values, dtype=np.float64)
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    ci = float(student_t.ppf(0.975, len(a) - 1) * sd / np.sqrt(len(a))) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": sd, "min": float(a.min()), "max": float(a.max()), "ci95": ci}


def evaluate_swaps(
    df: pd.DataFrame,
    *,
    share: float = 0.05,
    seeds: int = 5,
    first_seed: int = 0,
    at_rate: float = 0.05,
    crop_col: str = "crop",
    id_col: str = "parcel_id",
    scheme: str = "frequency",
    **classify_kwargs: Any,
) -> dict[str, Any]:
    """Swap ``share`` of the declarations ``seeds`` times, run the check each time and summarise the hits.

    Seed ``s`` swaps the same parcels to the same crops whatever the check's parameters, so methods
    run with the same seeds are compared on the same swaps. ``recall_at_5``/``recall_at_8``: recall
    in the top 5 % / 8 % of the suspicion ranking (mean, sd and 95 % CI over seeds).
    """
    if seeds < 1:
        raise InputError(f"seeds must be >= 1, got {seeds}")
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for s in range(first_seed, first_seed + seeds):
        swapped, truth = swap_declarations(df, share, 10_000 + s, crop_col=crop_col, id_col=id_col,
                                           scheme=scheme)
        t = time.perf_counter()
        flags, metrics = classify_frame(swapped, crop_col=crop_col, id_col=id_col, seed=s, **classify_kwargs)
        seconds = time.perf_counter() - t
        wrong_ids = set(truth.loc[truth["mislabelled"], "parcel_id"].astype(str))
        ev = score_against(flags, wrong_ids)
        rec_at, prec_at = recall_curve(flags["score"].to_numpy(),
                                       np.isin(flags["parcel_id"].astype(str), list(wrong_ids)),
                                       np.array([at_rate]))
        ev.update(seed=s, seconds=round(seconds, 3), accuracy=metrics["accuracy"],
                  recall_at_rate=float(rec_at[0]), precision_at_rate=float(prec_at[0]))
        runs.append(ev)
        log.info("swap seed %d: %d wrong, red %d (%.1f %%), recall %.2f precision %.2f; top %.0f %%: recall %.2f",
                 s, ev["n_wrong"], ev["n_red"], ev["red_pct"], ev["recall"], ev["precision"], 100 * at_rate,
                 ev["recall_at_rate"])
    curve_r = np.array([r["curve"]["recall"] for r in runs])
    curve_p = np.array([r["curve"]["precision"] for r in runs])
    return {
        "share": share, "seeds": seeds, "scheme": scheme,
        "recall_at_5": _summary([r["curve"]["recall"][5] for r in runs]),
        "recall_at_8": _summary([r["curve"]["recall"][8] for r in runs]),
        "at_rate": at_rate, "n_parcels": runs[0]["n_parcels"],
        "n_wrong_per_seed": _summary([r["n_wrong"] for r in runs]),
        "recall": _summary([r["recall"] for r in runs]),
        "precision": _summary([r["precision"] for r in runs]),
        "red_pct": _summary([r["red_pct"] for r in runs]),
        "recall_at_rate": _summary([r["recall_at_rate"] for r in runs]),
        "precision_at_rate": _summary([r["precision_at_rate"] for r in runs]),
        "recall_red_or_yellow": _summary([r["recall_red_or_yellow"] for r in runs]),
        "accuracy": _summary([r["accuracy"] for r in runs]),
        "curve": {"rate": [float(x) for x in RATES], "recall": curve_r.mean(axis=0).tolist(),
                  "recall_p10": np.percentile(curve_r, 10, axis=0).tolist(),
                  "recall_p90": np.percentile(curve_r, 90, axis=0).tolist(),
                  "precision": curve_p.mean(axis=0).tolist()},
        "seconds": round(time.perf_counter() - t0, 3),
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
    }


def ranking_baselines() -> dict[str, dict[str, Any]]:
    """The issue's plain baselines as classify_frame keyword arguments: RF / HGB ranking by 1 - OOF P(declared).

    No class weights, crops under 5 parcels pooled, one K-fold repetition, the top of the ranking red
    (benchmarks/flags.py compares against the same two).
    """
    from cbmflow.analytics.flags import FlagPolicy

    common: dict[str, Any] = dict(class_weight=None, rare="group", min_class_size=5, n_repeats=1,
                                  policy=FlagPolicy(score="declared", red_min_score=0.0))
    return {"RF ranking": dict(estimator="rf", **common), "HGB ranking": dict(estimator="hgb", n_trees=50, **common)}


def compare_on_swaps(
    df: pd.DataFrame,
    *,
    schemes: tuple[str, ...] = SWAP_SCHEMES,
    baselines: bool = True,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """:func:`evaluate_swaps` of the check under every swap scheme, and of the RF/HGB ranking baselines on the same swaps.

    One row per (scheme, method): ``scheme, method, seeds, recall_at_5, recall_at_8`` (mean and
    95 % CI over seeds), ``red_pct`` and the full evaluation under ``evaluation``.
    """
    rows = []
    base = ranking_baselines() if baselines else {}
    keep = {k: v for k, v in kwargs.items() if k in ("share", "seeds", "first_seed", "crop_col", "id_col", "n_jobs",
                                                      "cache", "min_area", "class_col")}
    for scheme in schemes:
        todo: list[tuple[str, dict[str, Any]]] = [("cbmflow check", kwargs)]
        todo += [(name, {**keep, **kw}) for name, kw in base.items()]
        for name, kw in todo:
            kw = {k: v for k, v in kw.items() if k != "scheme"}
            ev = evaluate_swaps(df, scheme=scheme, **kw)
            rows.append({"scheme": scheme, "method": name, "seeds": ev["seeds"], "recall_at_5": ev["recall_at_5"],
                         "recall_at_8": ev["recall_at_8"], "red_pct": ev["red_pct"], "evaluation": ev})
    return rows


def read_known_wrong(table: pd.DataFrame) -> set[str]:
    """Parcel ids of known wrong declarations: a ``parcel_id`` column, filtered by ``mislabelled`` if present."""
    if "parcel_id" not in table.columns:
        raise InputError(f"known-wrong table has no column 'parcel_id'; available: {', '.join(map(str, table.columns))}")
    if "mislabelled" in table.columns:
        table = table[table["mislabelled"].astype(bool)]
    return set(table["parcel_id"].astype(str))


def curve_png(evaluation: dict[str, Any], title: str = "Recall vs red rate") -> bytes:
    """The recall-vs-red-rate curve (mean, 10-90 % band over seeds; precision dashed) as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = evaluation["curve"]
    x = 100 * np.asarray(c["rate"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(x, c["recall"], color="#c62828", lw=2, label="recall")
    if "recall_p10" in c:
        ax.fill_between(x, c["recall_p10"], c["recall_p90"], color="#c62828", alpha=0.15,
                        label="recall 10-90 % over seeds")
    ax.plot(x, c["precision"], color="#1565c0", ls="--", label="precision")
    at = evaluation.get("at_rate")
    if at:
        ax.axvline(100 * at, color="grey", lw=0.8)
    ax.set_xlabel("parcels flagged red (% of parcels, highest suspicion first)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
