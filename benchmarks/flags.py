"""Benchmark: the default flag check vs the plain RF and HGB ranking baselines on every real set and the simulator.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/flags.py                 # all sets, 10 seeds, both schemes
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/flags.py --sets flanders --seeds 3 --trees 50
    .venv/bin/python benchmarks/flags.py --compare-curves   # simulator vs real class curves

Sets (``--sets``, comma-separated): ``corsica`` (REAL, 500 French LPIS 2022 parcels in Corsica, 45
crops, monthly S1+S2), ``flanders`` (REAL, 100 Flemish LPIS 2021 parcels, 16 crops, monthly),
``flemish10`` (REAL, 50 Flemish samples at ten-day steps, WorldCereal's wide layout, 15 classes),
all read with :func:`cbmflow.analytics.readers.worldcereal_table` from ``../shared/data/timeseries``, and
``sim`` (the harder SIMULATED crop model, :mod:`cbmflow_sim.crops`, ten-day periods).

For every set, swap scheme (``uniform``: the new crop drawn uniformly from the other declared
crops; ``frequency``: drawn with the declared frequencies) and seed, 5 % of the declarations are
swapped, identically for every method (:func:`cbmflow.analytics.evaluation.evaluate_swaps`). Reported: recall
of the swapped declarations in the top 5 % and 8 % of each method's suspicion ranking, mean and
95 % t-interval over seeds, the red share of the default's flags and the seconds per run. All
methods use the same tree count (``--trees``) and one K-fold repetition. Methods:

* ``default``: ``cbmflow classify``'s default check (:func:`cbmflow.analytics.classify.classify_frame` defaults);
* ``RF ranking`` / ``HGB ranking``: the issue's baseline, a random forest / HistGradientBoosting
  model (no class weights, crops under 5 parcels folded into ``other``) ranking by
  ``1 - P(declared crop)`` out of fold, top 5 % red;
* ``--previous``: also the previous default (ExtraTrees, class weights, class-relative margin score).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

SETS: tuple[str, ...] = ("corsica", "flanders", "flemish10", "sim")
SCHEMES: tuple[str, ...] = ("uniform", "frequency")


def methods(previous: bool) -> list[tuple[str, dict[str, Any]]]:
    """The compared checks as classify_frame keyword arguments (the default first, then the baselines)."""
    from cbmflow.analytics.flags import FlagPolicy

    ranking = dict(class_weight=None, rare="group", min_class_size=5, n_repeats=1,
                   policy=FlagPolicy(score="declared", red_min_score=0.0))
    out: list[tuple[str, dict[str, Any]]] = [
        ("default", {}),  # exactly classify_frame's defaults (3 K-fold repetitions)
        ("RF ranking", dict(estimator="rf", **ranking)),
        ("HGB ranking", dict(estimator="hgb", n_trees=50, **ranking)),
    ]
    alt = dict(estimator="rf+et", class_weight=None, min_class_size=5)
    out += [
        ("default, 1 repetition", dict(n_repeats=1)),
        ("default, red budget 5 %", dict(policy=FlagPolicy(red_rate=0.05, yellow_rate=0.10))),
        ("previous default (class-mean threshold, 5 % red)",
         dict(policy=FlagPolicy(threshold="mean", red_rate=0.05, yellow_rate=0.10))),
        ("rf+et, rare->hierarchy, 1 - p(declared)", dict(alt, rare="hierarchy", n_repeats=1,
                                                         policy=FlagPolicy(score="declared", red_min_score=0.0))),
        ("rf+et, rare->other, confident", dict(alt, rare="group", n_repeats=1,
                                               policy=FlagPolicy(score="confident", red_min_score=0.0))),
    ]
    if previous:
        out.append(("previous default (ET, relative)", dict(estimator="et", class_weight="balanced", rare="score",
                                                             min_class_size=10, n_repeats=1,
                                                             policy=FlagPolicy(score="relative", red_min_score=0.5))))
    return out


def candidates() -> list[tuple[str, dict[str, Any]]]:
    """The variants tried for the default (``--explore``), all scored on the same swaps and folds."""
    from cbmflow.analytics.flags import FlagPolicy

    out: list[tuple[str, dict[str, Any]]] = []
    for th in ("mean", "loo", "pool_overall", "pool_loo"):
        for m in (0, 5, 10, 20):
            out.append((f"default, threshold {th} shrink {m}", dict(policy=FlagPolicy(threshold=th, shrink=float(m)))))
    for share in (0.05, 0.1, 0.15):
        out.append((f"default, prune {share:.2f}", dict(prune=share)))
        out.append((f"default 1 rep, prune {share:.2f}", dict(prune=share, n_repeats=1)))
        out.append((f"rf+et rare=hierarchy5 declared 1 rep, prune {share:.2f}",
                    dict(prune=share, n_repeats=1, policy=FlagPolicy(score="declared", red_min_score=0.0))))
    for est in ("rf+et", "ens", "et", "rf"):
        for mcs in (5, 10):
            for score in ("declared", "confident", "odds", "margin", "blend"):
                out.append((f"{est} cw=none rare=hierarchy{mcs} {score}",
                            dict(estimator=est, class_weight=None, rare="hierarchy", min_class_size=mcs, n_repeats=1,
                                 policy=FlagPolicy(score=score, red_min_score=0.0))))
    for est in ("rf+et", "ens"):
        for score in ("declared", "confident", "odds"):
            out.append((f"{est} cw=none rare=group5 {score} +phenology",
                        dict(estimator=est, class_weight=None, rare="group", min_class_size=5, n_repeats=1,
                             phenology=True, policy=FlagPolicy(score=score, red_min_score=0.0))))
            out.append((f"{est} cw=none rare=group5 {score} x3",
                        dict(estimator=est, class_weight=None, rare="group", min_class_size=5, n_repeats=3,
                             policy=FlagPolicy(score=score, red_min_score=0.0))))
    for est in ("rf", "et", "rf+et", "ens"):
        for cw in (None, "balanced"):
            for rare, mcs in (("group", 5), ("score", 5), ("score", 10)):
                for score in ("declared", "confident", "odds", "relative", "cleanlab_nm", "cleanlab_sc"):
                    if score.startswith("cleanlab") and rare != "group":
                        continue
                    label = f"{est} cw={cw or 'none'} rare={rare}{mcs} {score}"
                    out.append((label, dict(estimator=est, class_weight=cw, rare=rare, min_class_size=mcs,
                                            n_repeats=1, policy=FlagPolicy(score=score, red_min_score=0.0))))
    return out


def load_set(name: str, sim_n: int = 600) -> Any:
    """A benchmark set as a wide table."""
    from cbmflow.analytics.readers import worldcereal_table
    from cbmflow.core.config import shared_data_dir

    base = os.path.join(shared_data_dir(), "timeseries")
    classes = os.path.join(base, "wc_croptype_classes.json")
    if name == "corsica":
        return worldcereal_table(os.path.join(base, "wc_corsica_lpis2022_s1s2_monthly.geoparquet"), classes_json=classes)
    if name == "flanders":
        return worldcereal_table(os.path.join(base, "wc_flanders_lpis2021_s1s2_monthly.parquet"), classes_json=classes)
    if name == "flemish10":
        return worldcereal_table(os.path.join(base, "wc_flanders_2021_s1s2_10day_50.parquet"))
    if name == "sim":
        from cbmflow_sim.crops import simulate_crop_features

        return simulate_crop_features(sim_n, seed=5, period_days=10)[0]
    raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")


class DiskCache(MutableMapping[str, Any]):
    """Out-of-fold probabilities as .npy files in a folder (``classify_frame(cache=...)``): re-runs only score."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key + ".npy")

    def __getitem__(self, key: str) -> Any:
        try:
            return np.load(self._path(key))
        except (OSError, ValueError) as exc:
            raise KeyError(key) from exc

    def __setitem__(self, key: str, value: Any) -> None:
        tmp = self._path(key) + ".tmp.npy"
        np.save(tmp, value)
        os.replace(tmp, self._path(key))

    def __delitem__(self, key: str) -> None:
        os.remove(self._path(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and os.path.exists(self._path(key))

    def __iter__(self) -> Iterator[str]:
        return (f[:-4] for f in os.listdir(self.root) if f.endswith(".npy") and ".tmp" not in f)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def crop_groups_of(df: Any) -> dict[str, str]:
    """The crop group of every declared crop: WorldCereal codes by their hierarchy prefix, names by core.crops."""
    from cbmflow.core.crops import crop_group

    out = {}
    for code, name in df.drop_duplicates("crop")[["crop", "crop_name"]].itertuples(index=False):
        c = str(code)
        if c.isdigit():
            out[c] = c[:4] if len(c) >= 10 else c[:2]
        else:
            out[c] = crop_group(str(name))
    return out


def run_set(name: str, df: Any, seeds: int, trees: int, previous: bool, schemes: tuple[str, ...],
            cache: MutableMapping[str, Any] | None, n_jobs: int, only: set[str] | None = None,
            extra: list[tuple[str, dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Every method on the same swaps of one set, both schemes; one row per (scheme, method).

    Seed ``s`` swaps the same parcels to the same crops for every method (``swap_declarations`` seed
    10000 + s, as ``evaluate_swaps``); the out-of-fold probabilities of a member model are fitted once
    per swap and reused by every method that has it (``cache``).
    """
    from cbmflow.analytics.classify import classify_frame
    from cbmflow.analytics.evaluation import _summary, score_against, swap_declarations
    from cbmflow.analytics.flags import recall_curve

    group_of = crop_groups_of(df)
    todo = [(label, kw) for label, kw in methods(previous) + (extra or []) if only is None or label in only]
    rows = []
    for scheme in schemes:
        acc: dict[str, dict[str, list[float]]] = {label: {} for label, _ in todo}
        t_scheme = time.perf_counter()
        for s in range(seeds):
            swapped, truth = swap_declarations(df, 0.05, 10_000 + s, scheme=scheme)
            wrong_ids = truth.loc[truth["mislabelled"], "parcel_id"].astype(str)
            wrong_set = set(wrong_ids)
            cross = truth.loc[truth["mislabelled"]]
            cross_ids = set(cross.loc[[group_of[str(a)] != group_of[str(b)] for a, b in
                                       zip(cross["true_crop"], cross["declared"], strict=True)], "parcel_id"].astype(str))
            for label, kw in todo:
                t = time.perf_counter()
                kw = dict(kw)
                size = kw.pop("n_trees", trees)
                flags, metrics = classify_frame(swapped, seed=s, n_trees=size, n_jobs=n_jobs, cache=cache, explain=False,
                                                **kw)
                ids = flags["parcel_id"].astype(str).to_numpy()
                wrong = np.isin(ids, wrong_ids.to_numpy())
                rec, _ = recall_curve(flags["score"].to_numpy(), wrong, np.array([0.05, 0.08]))
                a = acc[label]
                a.setdefault("r5", []).append(float(rec[0]))
                a.setdefault("r8", []).append(float(rec[1]))
                if cross_ids:
                    # group level: the share of the swaps that change the crop group (wheat -> maize, not
                    # one meadow to another) among the same top 5 % / 8 % of the ranking
                    g = np.isin(ids, list(cross_ids))
                    rg, _ = recall_curve(flags["score"].to_numpy(), g, np.array([0.05, 0.08]))
                    a.setdefault("g5", []).append(float(rg[0]))
                    a.setdefault("g8", []).append(float(rg[1]))
                a.setdefault("red", []).append(float(metrics["red_pct"]))
                # the measure: recall of the swapped declarations among the parcels flagged red
                ev = score_against(flags, wrong_set)
                a.setdefault("rr", []).append(ev["recall"])
                a.setdefault("rp", []).append(ev["precision"])
                a.setdefault("n_wrong", []).append(float(wrong.sum()))
                a.setdefault("n_cross", []).append(float(len(cross_ids)))
                a.setdefault("sec", []).append(time.perf_counter() - t)
        for label, _ in todo:
            a = acc[label]
            r5, r8, rr = _summary(a["r5"]), _summary(a["r8"]), _summary(a["rr"])
            g5 = _summary(a["g5"]) if a.get("g5") else {"mean": float("nan"), "ci95": float("nan")}
            g8 = _summary(a["g8"]) if a.get("g8") else {"mean": float("nan"), "ci95": float("nan")}
            row = {
                "set": name, "scheme": scheme, "method": label, "parcels": len(df), "seeds": seeds,
                "swapped_per_seed": float(np.mean(a["n_wrong"])),
                "cross_group_per_seed": float(np.mean(a["n_cross"])),
                "red_pct": round(float(np.mean(a["red"])), 2),
                "red_recall": round(rr["mean"], 3), "red_ci": round(rr["ci95"], 3),
                "red_precision": round(float(np.mean(a["rp"])), 3),
                "recall_5": round(r5["mean"], 3), "ci_5": round(r5["ci95"], 3),
                "recall_8": round(r8["mean"], 3), "ci_8": round(r8["ci95"], 3),
                "group_recall_5": round(g5["mean"], 3), "group_ci_5": round(g5["ci95"], 3),
                "group_recall_8": round(g8["mean"], 3), "group_ci_8": round(g8["ci95"], 3),
                "seconds_per_run": round(float(np.mean(a["sec"])), 2),
                "per_seed_5": [round(v, 3) for v in a["r5"]],
                "per_seed_8": [round(v, 3) for v in a["r8"]],
                "per_seed_red": [round(v, 3) for v in a["rr"]],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(f"# {name} {scheme}: {time.perf_counter() - t_scheme:.0f} s", flush=True)
    return rows


def paired(rows: list[dict[str, Any]], method: str = "default") -> list[str]:
    """Per set and scheme: ``method`` minus each baseline, seed by seed (same swaps), mean and 95 % t-interval."""
    from cbmflow.analytics.evaluation import _summary

    out = []
    by = {(r["set"], r["scheme"], r["method"]): r for r in rows}
    for (st, sc, m), r in by.items():
        if m != method:
            continue
        for base in ("RF ranking", "HGB ranking"):
            b = by.get((st, sc, base))
            if b is None:
                continue
            for at in ("5", "8"):
                d = _summary([x - y for x, y in zip(r[f"per_seed_{at}"], b[f"per_seed_{at}"], strict=True)])
                out.append(f"{st} {sc}: {method} - {base} at {at} %: {d['mean']:+.3f} ± {d['ci95']:.3f}")
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (recall in the top 5 % / 8 %, 95 % t-interval over seeds; group level)."""
    lines = ["| set | swaps | method | seeds | top 5 % | top 8 % | group level: top 5 % | top 8 % | s / run |",
             "|" + " --- |" * 9]
    for r in rows:
        lines.append(f"| {r['set']} | {r['scheme']} | {r['method']} | {r['seeds']} "
                     f"| {r['recall_5']:.2f} ± {r['ci_5']:.2f} | {r['recall_8']:.2f} ± {r['ci_8']:.2f} "
                     f"| {r['group_recall_5']:.2f} ± {r['group_ci_5']:.2f} | {r['group_recall_8']:.2f} ± "
                     f"{r['group_ci_8']:.2f} | {r['seconds_per_run']:.1f} |")
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
    """Run the benchmark and print one JSON line per (set, scheme, method), then the markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--schemes", default=",".join(SCHEMES), help="uniform,frequency (default both)")
    p.add_argument("--trees", type=int, default=100, help="trees (rf/et) and boosting iterations (hgb), all methods")
    p.add_argument("--sim-n", type=int, default=600)
    p.add_argument("--previous", action="store_true", help="also the previous default (ET, class-relative)")
    p.add_argument("--explore", action="store_true", help="also every candidate variant (candidates())")
    p.add_argument("--methods", default=None, help="only these method labels (comma-separated)")
    p.add_argument("--grep", default=None, help="only methods whose label contains one of these (comma-separated)")
    p.add_argument("--cache", default=os.path.join(".cache", "flags-oof"),
                   help="folder for the out-of-fold probabilities ('' = no cache)")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
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
    schemes = tuple(s for s in a.schemes.split(",") if s)
    cache = DiskCache(a.cache) if a.cache else None
    extra = candidates() if a.explore else []
    only: set[str] | None = None
    if a.methods or a.grep:
        labels = [lab for lab, _ in methods(a.previous) + extra]
        pats = [g for g in (a.grep or "").split(",") if g]
        only = {m for m in (a.methods or "").split(",") if m} | {lab for lab in labels if any(g in lab for g in pats)}
    rows: list[dict[str, Any]] = []
    for name in [s for s in a.sets.split(",") if s]:
        rows += run_set(name, load_set(name, a.sim_n), a.seeds, a.trees, a.previous, schemes, cache, a.n_jobs,
                        only, extra)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print()
    print(table(rows))
    print()
    print("\n".join(paired(rows)))
    _ = np  # numpy imported for the sklearn stack's warm-up
    return 0


if __name__ == "__main__":
    sys.exit(main())
