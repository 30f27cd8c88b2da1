"""Benchmark: marker quality on the real JRC mowing dates and on thousands of SIMULATED events.

    nice -n 10 .venv/bin/python benchmarks/markers.py                 # every set (~10 min on a loaded machine)
    nice -n 10 .venv/bin/python benchmarks/markers.py --parcels 500 --quick   # quicker (no Slovak S2 grid)
    .venv/bin/python benchmarks/markers.py --json out.json

Every shared real set goes through ``cbmflow markers evaluate`` (the JRC tsdir as it is; the Slovak
plots written as JRC tsdir S2 files, the held-out camera set's shape) besides the direct scoring.

Prints cbmflow's event-level precision / recall / F1 next to the published figures:
mowing F1 0.55-0.74 across 10 algorithms on >5,000 events in 8 countries (MODCiX), 0.79 for De Vroey
et al. 2022 (S1 coherence + S2 NDVI, the Sen4CAP L4B method), JRC harvest dating within 10 days for
65.7 % of fields. Also the shared Slovak grassland plots (benchmarks/mowing_sk.py), scored
leave-region-out (benchmarks/tune_mowing_sk.py); the mowing S2 parameters were chosen that way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "jrc_cbm_signatures"

PUBLISHED = [
    ("mowing F1, 10 algorithms, >5,000 events, 8 countries (MODCiX)", "0.55-0.74"),
    ("mowing F1, S1 coherence + S2 NDVI (De Vroey et al. 2022, Sen4CAP L4B)", "0.79"),
    ("mowing F1, 257 events on 64 German meadows (Lobert et al. 2021)", "0.84"),
    ("harvest dated within 10 days (JRC, 2025)", "65.7 %"),
]
VARIANTS = {"fused S2+S1 (default)": {}, "S2 NDVI only": {"mowing.use_s1": False},
            "S1 coherence only": {"mowing.use_s2": False},
            "fused, no S1 confirmation of weak S2 drops": {"mowing.s1_confirm_min_drop": 0.0}}
GROUP_MIX = ["grassland"] * 4 + ["fallow", "winter_cereal", "spring_cereal", "maize", "sugar_beet", "potato",
                                  "rapeseed", "legumes"]


def jrc(folder: Path) -> dict:
    from cbmflow.markers import DEFAULTS, evaluate, io
    from cbmflow.markers.mowing import detect_mowing

    t = time.perf_counter()
    sigs = io.read_tsdir(folder / "tsdir")
    read_s = time.perf_counter() - t
    truth = io.read_foi_info(folder / "gtdir" / "FOIinfo.csv")
    out: dict = {"parcels": len(sigs), "events": sum(len(v) for v in truth.values()), "read_s": round(read_s, 2),
                 "variants": {}}
    for name, ov in VARIANTS.items():
        p = DEFAULTS.with_overrides(ov)
        det = {s.parcel: [m.event_date for m in detect_mowing(s, p) if m.event_date] for s in sigs}
        sc = evaluate.score_all(det, truth)
        out["variants"][name] = {k: v.as_dict() for k, v in sc.items()}
        out["variants"][name]["errors_m3p20"] = evaluate.date_errors(det, truth)
        out["variants"][name]["ci95_m3p20"] = parcel_bootstrap(det, truth)
    return out


def parcel_bootstrap(det: dict, truth: dict, n: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """95 % intervals of -3/+20 d precision, recall and F1 over bootstrap resamples of parcels."""
    import numpy as np

    from cbmflow.markers import evaluate

    per = []
    for k, tr in truth.items():
        d = det.get(k, [])
        tp = len(evaluate.match(d, tr, (-3, 20)))
        per.append((tp, len(d) - tp, len(tr) - tp))
    c = np.array(per, dtype=float)
    rng = np.random.default_rng(seed)
    res: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for _ in range(n):
        tp, fp, fn = c[rng.integers(0, len(c), len(c))].sum(axis=0)
        res["precision"].append(tp / max(tp + fp, 1))
        res["recall"].append(tp / max(tp + fn, 1))
        res["f1"].append(2 * tp / max(2 * tp + fp + fn, 1))
    return {k: [round(float(np.percentile(v, 2.5)), 3), round(float(np.percentile(v, 97.5)), 3)] for k, v in res.items()}


def simulated(n: int, seed: int) -> dict:
    import numpy as np

    from cbmflow.markers import detect_parcel, evaluate
    from cbmflow_sim.marker_signals import simulate_signals

    rng = np.random.default_rng(seed)
    groups = list(rng.choice(GROUP_MIX, n))
    t = time.perf_counter()
    sigs, truth = simulate_signals(groups, seed=seed)
    sim_s = time.perf_counter() - t
    t = time.perf_counter()
    found = {s.parcel: detect_parcel(s) for s in sigs}
    det_s = time.perf_counter() - t
    group = {s.parcel: s.crop_group for s in sigs}
    out: dict = {"parcels": n, "simulate_s": round(sim_s, 1), "detect_s": round(det_s, 2),
                 "parcels_per_s": round(n / det_s), "events": {}}
    for event in ("mowing", "harvest", "ploughing"):
        mown = event == "mowing"
        parcels = [p for p, g in group.items() if (g in ("grassland", "fallow")) == mown]
        tr = truth[truth.event == event].groupby("parcel_id").date.apply(list).to_dict()
        t_ = {p: tr.get(p, []) for p in parcels}
        d_ = {p: [m.event_date for m in found[p] if m.marker == event and m.event_date] for p in parcels}
        sc = evaluate.score_all(d_, t_)
        res = {k: v.as_dict() for k, v in sc.items()}
        within10 = evaluate.score(d_, t_, (-10, 10))
        res["dated_within_10d"] = round(within10.tp / max(within10.n_true, 1), 3)
        out["events"][event] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parcels", type=int, default=2000, help="simulated parcels")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=None, help="write the figures as JSON here")
    ap.add_argument("--quick", action="store_true", help="Slovak S2: score the defaults only (no grid)")
    args = ap.parse_args(argv)
    if not SHARED.exists():
        print(f"JRC sample not found at {SHARED}", file=sys.stderr)
        return 2
    j = jrc(SHARED)
    s = simulated(args.parcels, args.seed)
    sk: dict = {}
    if (SHARED.parent / "mowing" / "gmd_train_s2.parquet").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import tempfile

        import mowing_sk
        import tune_mowing_sk
        from cbmflow.cli import main as cli

        print("Slovak plots, S2 only, leave-region-out / leave-plot-out (parameters chosen on the other folds):")
        sk["s2"] = tune_mowing_sk.main(["--defaults-only"] if args.quick else [])
        print("\nSlovak plots, S2 fused with S1 coherence:")
        sk["fused"] = tune_mowing_sk.main(["--s1"])
        with tempfile.TemporaryDirectory() as tmp:
            truth_csv = mowing_sk.write_tsdir(Path(tmp))
            print("\ncbmflow markers evaluate on the Slovak plots written as JRC tsdir S2 files "
                  "(the held-out camera set's shape):")
            cli(["markers", "evaluate", "--truth", str(truth_csv), "--signatures", tmp])
        print()
        print("cbmflow markers evaluate on the JRC sample (S2 + S1, defaults):")
        cli(["markers", "evaluate", "--truth", str(SHARED / "gtdir" / "FOIinfo.csv"),
             "--signatures", str(SHARED / "tsdir")])
        print()
    print("Published figures")
    for what, fig in PUBLISHED:
        print(f"  {what:<74} {fig}")
    print(f"\ncbmflow on the REAL JRC sample: {j['parcels']} parcels, {j['events']} field-recorded mowing dates (NL 2020)")
    print(f"  {'variant':<24} {'window':<8} {'TP':>3} {'FP':>3} {'FN':>3} {'P':>6} {'R':>6} {'F1':>6}")
    for name, v in j["variants"].items():
        for key, label in (("pm3", "-3/+3"), ("m3p20", "-3/+20")):
            r = v[key]
            print(f"  {name:<24} {label:<8} {r['tp']:>3} {r['fp']:>3} {r['fn']:>3} {r['precision']:>6.3f} "
                  f"{r['recall']:>6.3f} {r['f1']:>6.3f}")
        ci = v["ci95_m3p20"]
        print(f"  {'':<24} 95 % CI over parcels (-3/+20): P {ci['precision']} R {ci['recall']} F1 {ci['f1']}")
    print(f"\ncbmflow on SIMULATED signatures: {s['parcels']} parcels, detection {s['detect_s']} s "
          f"({s['parcels_per_s']} parcels/s)")
    print(f"  {'event':<10} {'true':>5} {'window':<8} {'P':>6} {'R':>6} {'F1':>6}  within 10 d")
    for event, r in s["events"].items():
        for key, label in (("pm3", "-3/+3"), ("m3p20", "-3/+20")):
            x = r[key]
            print(f"  {event:<10} {x['n_true']:>5} {label:<8} {x['precision']:>6.3f} {x['recall']:>6.3f} "
                  f"{x['f1']:>6.3f}  {100 * r['dated_within_10d']:.1f} %")
    state_file = SHARED.parent / "timeseries" / "nl2020_b08_b11_b04_classified_1000.csv"
    if state_file.exists():
        from cbmflow.markers.bare_soil import check_state_file

        r = check_state_file(str(state_file))
        print("\nJRC state classifier (k-NN, k=5) on nl2020_b08_b11_b04_classified_1000.csv, 5-fold CV accuracy:")
        print(f"  on its RGB columns {r['acc_rgb_stratified']:.3f} (grouped by parcel {r['acc_rgb_grouped']:.3f}); "
              f"on its band means {r['acc_bands_stratified']:.3f} -> not adopted (docs/markers.md)")
    print("\n(simulated signals are cleaner than real fields: the JRC rows are the ones to compare with"
          " the published figures; see docs/markers.md)")
    if args.json:
        Path(args.json).write_text(json.dumps({"jrc": j, "simulated": s, "slovak": sk}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
