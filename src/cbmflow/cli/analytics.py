"""The analytics commands: `season` (periods, classification, flags from PostGIS), `classify` (a wide
features file) and `features` (other systems' tables to a wide table)."""

from __future__ import annotations

import argparse
from typing import Any

from cbmflow.analytics.classify import (
    DEFAULT_CLASS_WEIGHT,
    DEFAULT_ESTIMATOR,
    DEFAULT_MIN_CLASS_SIZE,
    DEFAULT_RARE,
)
from cbmflow.analytics.flags import SCORES, THRESHOLDS, FlagPolicy
from cbmflow.analytics.readers import worldcereal_table
from cbmflow.analytics.season import classify_file, run_season, season_periods
from cbmflow.core.errors import InputError

# --- command line -------------------------------------------------------------------------------


def _print_summary(metrics: dict[str, Any]) -> None:
    c = metrics["flag_counts"]
    print(f"classified {metrics['n_classified']} parcels, {len(metrics['classes'])} classes, "
          f"accuracy {metrics['accuracy']:.3f}; green {c['green']} yellow {c['yellow']} "
          f"red {c['red']} ({metrics['red_pct']:.1f} % red)")
    excl = {k: v for k, v in metrics.get("excluded", {}).items() if v}
    if excl:
        print("excluded: " + ", ".join(f"{k} {v}" for k, v in excl.items()))
    for m in metrics.get("messages", []):
        print(m)
    ev = metrics.get("evaluation")
    if ev:
        print(f"red flags vs truth: precision {ev['precision']:.3f}, recall {ev['recall']:.3f}, "
              f"{ev['red_pct']:.1f} % red")
    kw = metrics.get("known_wrong_evaluation")
    if kw:
        print(f"red flags vs {kw['n_wrong']} known wrong declarations: recall {kw['recall']:.3f}, "
              f"precision {kw['precision']:.3f} at {kw['red_pct']:.1f} % red; recall of red or yellow "
              f"{kw['recall_red_or_yellow']:.3f}")
    sw = metrics.get("swap_evaluation")
    if sw:
        r, p, red = sw["recall"], sw["precision"], sw["red_pct"]
        print(f"swapped {100 * sw['share']:.1f} % of declarations, {sw['seeds']} seeds, "
              f"{sw['n_wrong_per_seed']['mean']:.0f} swapped per seed: red {red['mean']:.1f} % of parcels, "
              f"recall {r['mean']:.3f} +- {r['std']:.3f} (min {r['min']:.2f}, max {r['max']:.2f}), "
              f"precision {p['mean']:.3f} +- {p['std']:.3f}")
        c = sw["curve"]
        pts = [i for i, x in enumerate(c["rate"]) if round(100 * x) in (1, 2, 5, 10, 15, 20, 30)]
        print("recall vs red rate: " + ", ".join(f"{100 * c['rate'][i]:.0f} %: {c['recall'][i]:.2f}" for i in pts))
    for row in metrics.get("swap_comparison", []):
        r5, r8 = row["recall_at_5"], row["recall_at_8"]
        print(f"swaps {row['scheme']:9s} {row['method']:13s} ({row['seeds']} seeds): recall top 5 % "
              f"{r5['mean']:.3f} +- {r5['ci95']:.3f}, top 8 % {r8['mean']:.3f} +- {r8['ci95']:.3f} (95 % CI)")


def _policy(args: argparse.Namespace) -> Any:
    from cbmflow.analytics.flags import FlagPolicy

    return FlagPolicy(method=args.flag_method, red_rate=args.red_rate, yellow_rate=args.yellow_rate,
                      red_max_prob=args.red_max_prob, yellow_max_prob=args.yellow_max_prob, score=args.score,
                      threshold=args.threshold)


DEFAULT_POLICY = FlagPolicy()


def _cmd_classify(args: argparse.Namespace) -> int:
    if not args.out and not args.evaluate_swaps:
        raise InputError("--out is required (unless only evaluating with --evaluate-swaps)")
    _, metrics = classify_file(
        args.features, args.out, report_dir=args.report, truth_uri=args.truth, class_col=args.class_col,
        known_wrong_uri=args.known_wrong, evaluate_swaps=args.evaluate_swaps, seeds=args.seeds,
        swap_schemes=tuple(x for x in args.swap_schemes.split(",") if x) if args.swap_schemes else None,
        baselines=args.baselines,
        min_class_size=args.min_class_size, min_area=args.min_area, estimator=args.estimator,
        seed=args.seed, n_jobs=args.n_jobs, policy=_policy(args), rare=args.rare,
        n_repeats=args.n_repeats, class_weight=None if args.class_weight == "none" else args.class_weight,
    )
    _print_summary(metrics)
    if args.out:
        print(f"flags: {args.out}")
    if metrics.get("report_uri"):
        print(f"report: {metrics['report_uri']}")
    return 0


def _cmd_periods(args: argparse.Namespace) -> int:
    n = season_periods(args.aoi, args.year, period_days=args.period_days, cloud_max=args.cloud_max,
                       dsn=args.dsn)
    print(f"period means {args.aoi} {args.year}: {n} rows ({args.period_days}-day periods)")
    return 0


def _cmd_season_classify(args: argparse.Namespace) -> int:
    run = run_season(
        args.aoi, args.year, period_days=args.period_days, cloud_max=args.cloud_max,
        compute_periods=not args.skip_periods, by=args.by, min_class_size=args.min_class_size,
        min_area=args.min_area, estimator=args.estimator, seed=args.seed, truth_uri=args.truth,
        report_dir=args.report, n_jobs=args.n_jobs, dsn=args.dsn,
    )
    _print_summary(run.metrics)
    print(f"run: {run.run_id}")
    print(f"report: {run.report_uri}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-class-size", type=int, default=DEFAULT_MIN_CLASS_SIZE,
                   help=f"parcels a class needs (default {DEFAULT_MIN_CLASS_SIZE})")
    p.add_argument("--min-area", type=float, default=None, help="exclude parcels under this area (m2)")
    p.add_argument("--estimator", default=DEFAULT_ESTIMATOR, choices=["ens", "rf+et", "hgb", "rf", "et"],
                   help=f"model(s) of the out-of-fold probabilities; ens = mean of rf, et and hgb (default {DEFAULT_ESTIMATOR})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--truth", default=None, help="truth parquet (parcel_id, mislabelled) to evaluate")


def _register_main(subparsers: Any) -> None:
    """Add `classify` and `season periods|classify` to the cbmflow command."""
    p = subparsers.add_parser("classify", help="classify parcels from a wide features parquet and flag outliers")
    p.add_argument("--features", required=True, help="parquet: parcel_id, crop, numeric feature columns")
    p.add_argument("--out", default=None, help="output parquet: parcel_id, declared, predicted, probability, flag, "
                   "declared_probability, best_other, best_other_probability, score, reason")
    p.add_argument("--report", default=None, help="folder (local or s3://) for the HTML report")
    p.add_argument("--class-col", default=None,
                   help="column with the class of each declaration (e.g. a crop group); default: the crop")
    p.add_argument("--evaluate-swaps", type=float, default=None, metavar="SHARE",
                   help="also swap this share of declarations (e.g. 0.05) --seeds times and report recall/precision")
    p.add_argument("--seeds", type=int, default=5, help="repetitions of --evaluate-swaps (default 5)")
    p.add_argument("--swap-schemes", default=None,
                   help="with --evaluate-swaps: comma-separated swap schemes, uniform,frequency (default: frequency "
                        "only; both when --baselines)")
    p.add_argument("--baselines", action="store_true",
                   help="with --evaluate-swaps: also the RF and HGB ranking baselines on the same swaps")
    p.add_argument("--known-wrong", default=None,
                   help="parquet of known wrong declarations (parcel_id[, mislabelled]) to score the flags against")
    p.add_argument("--flag-method", default="budget", choices=["budget", "threshold", "jrc"],
                   help="budget: top red-rate by suspicion (default); threshold: calibrated probability; "
                        "jrc: unanimous-disagreement rule")
    p.add_argument("--score", default=DEFAULT_POLICY.score, choices=list(SCORES),
                   help=f"suspicion score ranking the parcels (default {DEFAULT_POLICY.score}; docs/analytics.md section 4)")
    p.add_argument("--red-rate", type=float, default=DEFAULT_POLICY.red_rate,
                   help=f"budget: at most this share of parcels red (default {DEFAULT_POLICY.red_rate})")
    p.add_argument("--yellow-rate", type=float, default=DEFAULT_POLICY.yellow_rate,
                   help=f"budget: share yellow after red (default {DEFAULT_POLICY.yellow_rate})")
    p.add_argument("--threshold", default=DEFAULT_POLICY.threshold, choices=list(THRESHOLDS),
                   help=f"confident score: each class's yardstick (default {DEFAULT_POLICY.threshold}; "
                        "docs/analytics.md section 4)")
    p.add_argument("--red-max-prob", type=float, default=0.05,
                   help="threshold: red at or below this calibrated declared-crop probability")
    p.add_argument("--yellow-max-prob", type=float, default=0.25,
                   help="threshold: yellow at or below this calibrated declared-crop probability")
    p.add_argument("--rare", default=DEFAULT_RARE, choices=["hierarchy", "score", "group", "exclude"],
                   help=f"crops under --min-class-size: pooled by crop group (hierarchy), checked against known "
                        f"crops (score), pooled into one class 'other' (group) or excluded; default {DEFAULT_RARE}")
    p.add_argument("--n-repeats", type=int, default=3, help="repetitions of the K-fold (default 3)")
    p.add_argument("--class-weight", default=DEFAULT_CLASS_WEIGHT or "none", choices=["balanced", "none"])
    _common(p)
    p.set_defaults(func=_cmd_classify)

    s = subparsers.add_parser("season", help="season analytics from the results database")
    ssub = s.add_subparsers(dest="season_command", required=True)
    sp = ssub.add_parser("periods", help="(re)compute period means from signatures")
    sp.add_argument("--aoi", required=True)
    sp.add_argument("--year", type=int, required=True)
    sp.add_argument("--period-days", type=int, default=5)
    sp.add_argument("--cloud-max", type=float, default=None, help="max cloudy fraction for S2 observations")
    sp.add_argument("--dsn", default=None)
    sp.set_defaults(func=_cmd_periods)
    sc = ssub.add_parser("classify", help="period means -> features -> classify & flag -> report")
    sc.add_argument("--aoi", required=True)
    sc.add_argument("--year", type=int, required=True)
    sc.add_argument("--period-days", type=int, default=5)
    sc.add_argument("--cloud-max", type=float, default=None)
    sc.add_argument("--skip-periods", action="store_true", help="use the stored period means as they are")
    sc.add_argument("--by", default="group", choices=["group", "crop"],
                    help="classes: crop groups of the declared crop names (default) or declared crops")
    sc.add_argument("--report", default=None, help="report folder (default $CBMFLOW_REPORT_DIR/<aoi>/<year>/run_<id>)")
    sc.add_argument("--dsn", default=None)
    _common(sc)
    sc.set_defaults(func=_cmd_season_classify)


def _cmd_worldcereal(args: argparse.Namespace) -> int:
    from cbmflow.analytics.season import write_parquet

    df = worldcereal_table(args.input, classes_json=args.classes, fill=args.fill)
    write_parquet(df, args.out)
    print(f"wide table: {len(df)} parcels, {df.shape[1]} columns, "
          f"{df['crop'].nunique()} crops -> {args.out}")
    return 0


def _register_features(subparsers: Any) -> None:
    """Add `features worldcereal` to the cbmflow command."""
    p = subparsers.add_parser("features", help="convert per-parcel features from other systems to a wide table")
    sub = p.add_subparsers(dest="features_command", required=True)
    w = sub.add_parser("worldcereal", help="WorldCereal point extraction (long or wide parquet, at its own time step) -> wide table")
    w.add_argument("input")
    w.add_argument("out")
    w.add_argument("--classes", default=None, help="wc_croptype_classes.json for crop names")
    w.add_argument("--fill", default="interpolate", choices=["interpolate", "none"],
                   help="fill gaps by linear interpolation along time (default) or leave NaN")
    w.set_defaults(func=_cmd_worldcereal)


def register_cli(subparsers: Any) -> None:
    """Add this group's sub-commands."""
    _register_main(subparsers)
    _register_features(subparsers)
