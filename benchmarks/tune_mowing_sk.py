"""Leave-region-out tuning of the S2 mowing parameters on the shared Slovak plots (LR, NB, NS).

    nice .venv/bin/python benchmarks/tune_mowing_sk.py

For each region the grid point with the best −3/+20 d F1 on the OTHER two regions is scored on it;
the pooled held-out counts are the leave-region-out figure. Then the grid point best on all three
is printed (the defaults in cbmflow.markers.params should be it).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mowing_sk  # noqa: E402

GRID = {
    "mowing.cut_min_drop": [0.1, 0.12, 0.15],
    "mowing.min_support": [1.0, 1.5],
    "mowing.date_fraction": [0.5, 1.0],
    "mowing.spike_max_days": [12, 20],
    "mowing.expect_quantile": [0.5, 0.9],
}


def main() -> None:
    """Run the grid and print the leave-region-out figures."""
    from cbmflow.markers import DEFAULTS, evaluate
    from cbmflow.markers.mowing import detect_mowing

    truth, region = mowing_sk.load_truth()
    sigs = [s for s in mowing_sk.load_signals(keys=set(truth))]
    truth = {k: v for k, v in truth.items() if k in {s.parcel for s in sigs}}
    names = list(GRID)
    table = []
    for combo in itertools.product(*GRID.values()):
        p = DEFAULTS.with_overrides(dict(zip(names, combo, strict=False)))
        det = {s.parcel: [m.event_date for m in detect_mowing(s, p) if m.event_date] for s in sigs}
        per = {r: evaluate.score(det, {k: v for k, v in truth.items() if region[k] == r}, (-3, 20))
               for r in ("LR", "NB", "NS")}
        table.append((combo, per, det))
    tp = fp = fn = 0
    for r in ("LR", "NB", "NS"):
        def f1_others(row: tuple, r: str = r) -> float:
            t = sum(row[1][o].tp for o in row[1] if o != r)
            f = sum(row[1][o].fp for o in row[1] if o != r)
            n = sum(row[1][o].fn for o in row[1] if o != r)
            return 2 * t / max(2 * t + f + n, 1)
        best = max(table, key=f1_others)
        s = best[1][r]
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
        print(f"held-out {r}: chosen {dict(zip(names, best[0], strict=False))}: P {s.precision:.3f} R {s.recall:.3f} F1 {s.f1:.3f}")
    print(f"leave-region-out pooled -3/+20: TP {tp} FP {fp} FN {fn} P {tp / max(tp + fp, 1):.3f} "
          f"R {tp / max(tp + fn, 1):.3f} F1 {2 * tp / max(2 * tp + fp + fn, 1):.3f}")
    allbest = sorted(table, key=lambda row: -sum(2 * s.tp for s in row[1].values())
                     / max(sum(2 * s.tp + s.fp + s.fn for s in row[1].values()), 1))[:5]
    for combo, per, det in allbest:
        t = sum(s.tp for s in per.values())
        f = sum(s.fp for s in per.values())
        n = sum(s.fn for s in per.values())
        pm3 = evaluate.score(det, truth, (-3, 3))
        print(f"all regions {dict(zip(names, combo, strict=False))}: -3/+20 P {t / max(t + f, 1):.3f} R {t / max(t + n, 1):.3f} "
              f"F1 {2 * t / max(2 * t + f + n, 1):.3f}; ±3 P {pm3.precision:.3f} R {pm3.recall:.3f} F1 {pm3.f1:.3f}")


if __name__ == "__main__":
    main()
