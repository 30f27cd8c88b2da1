"""Benchmark: how many swapped declarations the check catches at 5 % red, per method, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flags.py --set flanders --seeds 20
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flags.py --set sim --seeds 2 --sim-n 1000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flags.py --set flanders --seeds 3 --quick
    .venv/bin/python benchmarks/flags.py --compare-curves   # simulator vs real class curves

Sets: ``flanders`` = the REAL WorldCereal Flanders LPIS 2021 extraction (100 parcels, monthly S1+S2,
../shared/data/timeseries, cbmflow.analytics.readers.flanders); ``sim`` = the harder SIMULATED crop model
(cbmflow_sim.crops). For every seed the same 5 % of declarations are swapped for every method
(to another crop drawn with the declared frequencies); the numbers are recall and precision of
the red flags and the recall in the top 5 % of the suspicion ranking, mean +- sd over seeds, and
the fit time per run. Methods:

* ``old rule``: the pre-issue-11 check: ExtraTrees without class weights, rare crops folded into
  ``other``, JRC unanimous-disagreement red rule (3 x 5-fold), min_class_size 20;
* ``RF ranking``: a plain random forest ranking by the out-of-fold probability of the declared
  crop (rare crops folded into ``other``), top 5 % red: the issue's baseline;
* ``ET/RF/HGB budget``: the new check (class-weighted estimator, class-relative margin score,
  rare crops checked against the known crops, 5 % budget), one K-fold repetition;
* variants (without ``--quick``): 3 repetitions, no class weights, rare crops folded into
  ``other``, the plain ``1 - p(declared)`` and margin scores;
* ``ET threshold``: the new check with the calibrated-probability threshold instead of a budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import numpy as np

N_REPEATS = 1


def methods(min_class_size: int, quick: bool) -> list[tuple[str, dict[str, Any]]]:
    from cbmflow.analytics.flags import FlagPolicy

    out: list[tuple[str, dict[str, Any]]] = [
        ("old rule (ET, JRC, rare->other)", dict(estimator="et", class_weight=None, rare="group", min_class_size=20,
                                                 policy=FlagPolicy(method="jrc"), n_repeats=3)),
        ("RF ranking baseline", dict(estimator="rf", class_weight=None, rare="group", min_class_size=min_class_size,
                                     policy=FlagPolicy(score="declared", red_min_score=0.0), n_repeats=N_REPEATS)),
        ("ET budget (default score)", dict(estimator="et", min_class_size=min_class_size, n_repeats=N_REPEATS)),
        ("RF budget", dict(estimator="rf", min_class_size=min_class_size, n_repeats=N_REPEATS)),
        ("HGB budget", dict(estimator="hgb", min_class_size=min_class_size, n_repeats=N_REPEATS)),
        ("ET threshold", dict(estimator="et", min_class_size=min_class_size, n_repeats=N_REPEATS,
                              policy=FlagPolicy(method="threshold"))),
    ]
    if not quick:
        out += [
            ("ET budget, 3 repeats", dict(estimator="et", min_class_size=min_class_size, n_repeats=3)),
            ("ET budget, no class weight", dict(estimator="et", min_class_size=min_class_size, n_repeats=N_REPEATS,
                                                class_weight=None)),
            ("ET budget, rare->other", dict(estimator="et", min_class_size=min_class_size, n_repeats=N_REPEATS,
                                            rare="group")),
            ("ET budget, score 1-p(declared)", dict(estimator="et", min_class_size=min_class_size,
                                                    n_repeats=N_REPEATS, policy=FlagPolicy(score="declared"))),
            ("ET budget, margin score", dict(estimator="et", min_class_size=min_class_size,
                                             n_repeats=N_REPEATS, policy=FlagPolicy(score="margin"))),
        ]
    return out


def run_set(name: str, df: Any, seeds: int, min_class_size: int, quick: bool) -> list[dict[str, Any]]:
    from cbmflow.analytics.evaluation import evaluate_swaps

    rows = []
    for label, kw in methods(min_class_size, quick):
        t = time.perf_counter()
        ev = evaluate_swaps(df, share=0.05, seeds=seeds, at_rate=0.05, **kw)
        wall = time.perf_counter() - t
        row = {
            "set": name, "method": label, "parcels": ev["n_parcels"], "seeds": seeds,
            "swapped_per_seed": ev["n_wrong_per_seed"]["mean"],
            "red_pct": round(ev["red_pct"]["mean"], 2),
            "recall": round(ev["recall"]["mean"], 3), "recall_sd": round(ev["recall"]["std"], 3),
            "precision": round(ev["precision"]["mean"], 3),
            "recall_top5": round(ev["recall_at_rate"]["mean"], 3),
            "recall_top5_sd": round(ev["recall_at_rate"]["std"], 3),
            "recall_top10": round(ev["curve"]["recall"][10], 3),
            "recall_red_or_yellow": round(ev["recall_red_or_yellow"]["mean"], 3),
            "oof_accuracy": round(ev["accuracy"]["mean"], 3),
            "seconds_per_run": round(wall / seeds, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| set | method | red % | recall (red) | precision (red) | recall top 5 % | recall top 10 % "
            "| recall red+yellow | s / run |")
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['method']} | {r['red_pct']:.1f} | {r['recall']:.2f} ± {r['recall_sd']:.2f} "
            f"| {r['precision']:.2f} | {r['recall_top5']:.2f} ± {r['recall_top5_sd']:.2f} | {r['recall_top10']:.2f} "
            f"| {r['recall_red_or_yellow']:.2f} | {r['seconds_per_run']:.1f} |"
        )
    return "\n".join(lines)


def compare_curves() -> None:
    """Print per-class VH statistics of the real Flanders set and the harder simulator (docs/simulate-crops.md)."""
    from cbmflow.analytics.readers import flanders
    from cbmflow_sim.archive import jrc_reference
    from cbmflow_sim.crops import simulate_crop_features

    def stats(df: Any, name: str, classes: list[str]) -> None:
        vh = sorted(c for c in df.columns if c.startswith("VH_p"))
        vv = sorted(c for c in df.columns if c.startswith("VV_p"))
        print(f"== {name}: {len(df)} parcels; S2 (NDVI) missing {df['NDVI_missing'].mean():.3f}")
        for c in classes:
            sub = df[df.crop == c]
            a = sub[vh].to_numpy(float)
            med = np.nanmedian(a, axis=0)
            iqr = np.nanpercentile(a, 75, axis=0) - np.nanpercentile(a, 25, axis=0)
            amp = np.nanpercentile(a, 90, axis=1) - np.nanpercentile(a, 10, axis=1)
            print(f"  {c:12s} n={len(sub):4d} VH median {np.nanmin(med):6.1f}..{np.nanmax(med):6.1f} dB, "
                  f"amplitude {np.nanmax(med) - np.nanmin(med):4.1f}, within-class IQR {np.nanmedian(iqr):.2f}, "
                  f"per-parcel 10-90 {np.nanmedian(amp):.1f}, VV mean {np.nanmean(sub[vv].to_numpy(float)):.1f}")

    stats(flanders(fill="none"), "Flanders real (monthly)", ["1600000000", "2001020000", "1101060000", "1000000000"])
    sim, _ = simulate_crop_features(2000, seed=5, period_days=30)
    stats(sim, "harder sim (30-day periods)", ["GRP", "GRT", "MAI", "WWH", "WBA", "POT", "SBT"])
    weekly, _ = simulate_crop_features(1000, seed=5, period_days=7)
    for g in ("VH", "VV"):
        cols = [c for c in weekly.columns if c.startswith(g + "_p")]
        a = weekly.loc[weekly.crop == "GRP", cols].to_numpy(float)
        amp = np.percentile(a, 90, axis=1) - np.percentile(a, 10, axis=1)
        print(f"harder sim permanent grassland, weekly {g}: per-parcel 10-90 spread median {np.median(amp):.1f} dB")
    ref = jrc_reference()
    print(f"JRC grassland (2020) weekly per-parcel 10-90 spread: VH {ref['vh_db_spread_min']:.1f}..{ref['vh_db_spread_max']:.1f} dB, "
          f"VV {ref['vv_db_spread_min']:.1f}..{ref['vv_db_spread_max']:.1f} dB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", default="both", choices=["flanders", "sim", "both"])
    p.add_argument("--seeds", type=int, default=None, help="default: 20 (flanders), 2 (sim)")
    p.add_argument("--sim-n", type=int, default=1000)
    p.add_argument("--sim-period-days", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="only the main methods")
    p.add_argument("--compare-curves", action="store_true",
                   help="print class curves and spreads of Flanders vs the harder simulator, then stop")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if a.compare_curves:
        compare_curves()
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    print(f"cpus {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    rows: list[dict[str, Any]] = []
    if a.set in ("flanders", "both"):
        from cbmflow.analytics.readers import flanders

        rows += run_set("Flanders (real)", flanders(), a.seeds or 20, 10, a.quick)
    if a.set in ("sim", "both"):
        from cbmflow_sim.crops import simulate_crop_features

        df, _ = simulate_crop_features(a.sim_n, seed=5, period_days=a.sim_period_days)
        rows += run_set(f"harder sim ({a.sim_n}, SIMULATED)", df, a.seeds or 2, 20, a.quick)
    print()
    print(table(rows))
    _ = np  # numpy imported for the sklearn stack's warm-up
    return 0


if __name__ == "__main__":
    sys.exit(main())
