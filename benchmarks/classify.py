"""Benchmark: train + flag N SIMULATED parcels (out-of-fold, 3 x 5-fold) and project to 560,000.

    .venv/bin/python benchmarks/classify.py --n 56000          # the measured run for the projection
    .venv/bin/python benchmarks/classify.py --n 5000 --quick   # a small smoke variant
    .venv/bin/python benchmarks/classify.py --n 3000 --compare # estimators side by side

Training cost is bounded: every model trains on at most ``max_train`` parcels (30,000), so for
N >= max_train / 0.8 the fit time no longer grows with N; prediction and bookkeeping grow
linearly. The projection to 560,000 parcels is therefore
``fit(measured, scaled to max_train if N was smaller) + (560,000 / N) * (predict + rest)``.
The features come from tests/unit/s1_synth.py (crop phenology, 5 % mislabelled, labelled SIM).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

TARGET = 560_000


def run(n: int, estimator: str, seed: int, max_train: int, n_jobs: int) -> dict:
    import sklearn.ensemble  # noqa: F401  - import cost is not part of the per-parcel time
    import sklearn.model_selection  # noqa: F401
    from s1_synth import synthetic_features

    from cbmflow.analytics.classify import classify_frame, evaluate_flags

    t = time.perf_counter()
    feats, truth = synthetic_features(n, seed=seed, mislabel=0.05)
    gen = time.perf_counter() - t
    t = time.perf_counter()
    flags, metrics = classify_frame(feats, estimator=estimator, seed=seed, max_train=max_train, n_jobs=n_jobs)
    total = time.perf_counter() - t
    ev = evaluate_flags(flags, truth)
    fit, pred = metrics["seconds"]["fit"], metrics["seconds"]["predict"]
    rest = max(total - fit - pred, 0.0)
    train_size = min(int(0.8 * n), max_train)
    # ET/RF fit ~ n log n: scale a smaller measured training set up to max_train
    import math

    scale = (max_train * math.log(max_train)) / (train_size * math.log(train_size)) if train_size < max_train else 1.0
    projected = fit * scale + (TARGET / n) * (pred + rest)
    return {
        "n": n, "estimator": estimator, "n_features": metrics["n_features"],
        "classes": len(metrics["classes"]), "cpus": os.cpu_count(), "n_jobs": n_jobs,
        "generate_s": round(gen, 1), "classify_s": round(total, 1), "fit_s": fit, "predict_s": pred,
        "rest_s": round(rest, 1), "train_size_per_model": train_size, "max_train": max_train,
        "projected_560k_s": round(projected, 1),
        "accuracy_vs_declared": round(metrics["accuracy"], 4),
        "flag_counts": metrics["flag_counts"],
        "red_pct": round(ev["red_pct"], 2), "red_precision": round(ev["precision"], 3),
        "red_recall": round(ev["recall"], 3), "red_or_yellow_recall": round(ev["recall_red_or_yellow"], 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=56_000)
    p.add_argument("--estimator", default="et", choices=["et", "rf", "hgb"])
    p.add_argument("--max-train", type=int, default=30_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="small smoke run (no projection claim)")
    p.add_argument("--compare", action="store_true", help="run et, rf and hgb on the same data")
    a = p.parse_args()
    ests = ["et", "rf", "hgb"] if a.compare else [a.estimator]
    for est in ests:
        res = run(a.n, est, a.seed, a.max_train, a.n_jobs)
        if a.quick:
            res["note"] = "quick smoke run: the projection from a small N is rough"
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
