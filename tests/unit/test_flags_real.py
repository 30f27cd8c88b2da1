"""Real-data guard: on the 500 real Corsican parcels the default check beats the plain RF ranking.

Same swaps for both (5 % of the declarations moved to another crop drawn uniformly, seeds 0-2, as
benchmarks/flags.py does), one K-fold repetition and 100 trees to stay fast. The level is the one
the benchmark reached with these settings (docs/analytics.md section 7: 0.35 vs 0.25 over these
three seeds, 0.34 vs 0.22 over ten).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cbmflow.analytics.classify import classify_frame
from cbmflow.analytics.evaluation import swap_declarations
from cbmflow.analytics.flags import FlagPolicy, recall_curve
from cbmflow.analytics.readers import worldcereal_table


def test_default_beats_rf_ranking_on_real_corsica(shared_data: Path) -> None:
    base = shared_data / "timeseries"
    df = worldcereal_table(base / "wc_corsica_lpis2022_s1s2_monthly.geoparquet",
                           classes_json=base / "wc_croptype_classes.json")
    ranking = dict(estimator="rf", class_weight=None, rare="group", min_class_size=5,
                   policy=FlagPolicy(score="declared", red_min_score=0.0))
    got: dict[str, list[float]] = {"default": [], "rf": []}
    for s in range(3):
        swapped, truth = swap_declarations(df, 0.05, 10_000 + s, scheme="uniform")
        wrong_ids = truth.loc[truth["mislabelled"], "parcel_id"].astype(str).to_numpy()
        for name, kw in (("default", {}), ("rf", ranking)):
            flags, _ = classify_frame(swapped, seed=s, n_repeats=1, n_trees=100, explain=False, **kw)  # type: ignore[arg-type]
            wrong = np.isin(flags["parcel_id"].astype(str).to_numpy(), wrong_ids)
            got[name].append(float(recall_curve(flags["score"].to_numpy(), wrong, np.array([0.05]))[0][0]))
    default, rf = float(np.mean(got["default"])), float(np.mean(got["rf"]))
    assert default >= 0.33, got  # 0.347 measured: one swapped parcel of slack
    assert default >= rf + 0.08, got
