"""Suspicion score, budget and threshold flags: exact answers on hand-built probability tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbmflow.analytics.flags import (
    FlagPolicy,
    apply_temperature,
    budget_flags,
    declared_and_best_other,
    fit_temperature,
    recall_curve,
    suspicion_score,
    threshold_flags,
)
from cbmflow.core.errors import InputError

# 6 parcels x 3 classes (mean out-of-fold probabilities); declared class per parcel, -1 = rare crop
P = np.array([
    [0.90, 0.05, 0.05],  # declared 0, certain                        -> score (1+0.05-0.90)/2 = 0.075
    [0.10, 0.80, 0.10],  # declared 0, class 1 likely                 -> (1+0.80-0.10)/2 = 0.85
    [0.40, 0.35, 0.25],  # declared 1, class 0 slightly more likely   -> (1+0.40-0.35)/2 = 0.525
    [0.20, 0.20, 0.60],  # declared 2, confident                      -> (1+0.20-0.60)/2 = 0.30
    [0.05, 0.05, 0.90],  # rare crop: p_d = 1 - 0.90 = 0.10           -> (1+0.90-0.10)/2 = 0.90
    [0.34, 0.33, 0.33],  # rare crop: p_d = 0.66, p_o = 0.34          -> (1+0.34-0.66)/2 = 0.34
])
Y = np.array([0, 0, 1, 2, -1, -1])


def test_declared_and_best_other_and_score_hand_worked() -> None:
    p_d, other, p_o = declared_and_best_other(P, Y)
    assert p_d == pytest.approx([0.90, 0.10, 0.35, 0.60, 0.10, 0.66])
    assert other.tolist() == [1, 1, 0, 0, 2, 0]  # ties: the first class
    assert p_o == pytest.approx([0.05, 0.80, 0.40, 0.20, 0.90, 0.34])
    assert suspicion_score(p_d, p_o) == pytest.approx([0.075, 0.85, 0.525, 0.30, 0.90, 0.34])
    assert suspicion_score(p_d, p_o, "declared") == pytest.approx([0.10, 0.90, 0.65, 0.40, 0.90, 0.34])
    with pytest.raises(InputError, match="unknown score 'x'"):
        suspicion_score(p_d, p_o, "x")
    with pytest.raises(InputError, match="do not match"):
        declared_and_best_other(P, Y[:3])


def test_rare_crop_is_not_safe_because_rare() -> None:
    # a rare-crop parcel that looks like a known crop is the most suspicious of all
    p_d, _, p_o = declared_and_best_other(P, Y)
    s = suspicion_score(p_d, p_o)
    assert int(np.argmax(s)) == 4


def test_budget_flags_exact_counts_floor_and_ties() -> None:
    s = np.array([0.075, 0.85, 0.525, 0.30, 0.90, 0.34])
    # 6 parcels: red round(0.34*6)=2, yellow round(0.67*6)-2=2
    assert budget_flags(s, 0.34, 0.33).tolist() == ["green", "red", "yellow", "green", "red", "yellow"]
    # the floor: a red needs a score above red_min_score; the 3rd in line (0.525) passes 0.5, not 0.6
    assert budget_flags(s, 0.5, 0.0).tolist() == ["green", "red", "red", "green", "red", "green"]
    assert budget_flags(s, 0.5, 0.0, red_min_score=0.6).tolist() == [
        "green", "red", "yellow", "green", "red", "green"]
    # ties at the boundary: stable order (the first in the table wins), counts stay exact
    t = np.array([0.9, 0.8, 0.8, 0.8, 0.1])
    assert budget_flags(t, 0.4, 0.2).tolist() == ["red", "red", "yellow", "green", "green"]
    assert budget_flags(np.array([]), 0.05, 0.1).tolist() == []


def test_class_relative_hand_worked() -> None:
    from cbmflow.analytics.flags import class_relative

    s = np.array([0.9, 0.7, 0.6, 0.2, 0.1, 0.3, 0.8])
    g = np.array(["a", "a", "a", "b", "b", "b", "r"])
    # a: median 0.7; b: median 0.2; r (1 parcel < min_size 2): the median of all, 0.6
    assert class_relative(s, g, min_size=2) == pytest.approx([0.7, 0.5, 0.4, 0.5, 0.4, 0.6, 0.7])
    # without min_size a lone parcel is its own median: always 0.5
    assert class_relative(s, g)[-1] == pytest.approx(0.5)


def test_threshold_flags_and_temperature() -> None:
    p_d = np.array([0.02, 0.04, 0.10, 0.30, 0.60])
    p_o = np.array([0.90, 0.01, 0.50, 0.60, 0.30])
    # 0.04 <= 0.05 but no other crop is more probable -> only yellow
    assert threshold_flags(p_d, p_o, 0.05, 0.25).tolist() == ["red", "yellow", "yellow", "green", "green"]
    # temperature: over-confident probabilities on noisy declarations are softened (T > 1) ...
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    noisy = np.where(rng.random(n) < 0.25, 1 - y, y)  # 25 % of declarations disagree
    p = np.where(noisy[:, None] == np.arange(2)[None, :], 0.99, 0.01)
    t = fit_temperature(p, y)
    assert t > 1.5
    cal = apply_temperature(p, t)
    assert cal.sum(axis=1) == pytest.approx(np.ones(n))
    # ... to about the observed 75 % agreement
    assert cal[np.arange(n), noisy].mean() == pytest.approx(0.75, abs=0.03)
    assert fit_temperature(p, np.full(n, -1)) == 1.0


def test_policy_validation() -> None:
    assert FlagPolicy().method == "budget" and FlagPolicy().red_rate == 0.08 and FlagPolicy().yellow_rate == 0.07
    assert FlagPolicy().threshold == "pool_loo"
    with pytest.raises(InputError, match="unknown threshold 'median'"):
        FlagPolicy(threshold="median")
    with pytest.raises(InputError, match="shrink must be >= 0"):
        FlagPolicy(shrink=-1)
    with pytest.raises(InputError, match="unknown flag method 'vote'"):
        FlagPolicy(method="vote")
    with pytest.raises(InputError, match="red_rate must be within 0..1"):
        FlagPolicy(red_rate=5)
    with pytest.raises(InputError, match="red_rate \\+ yellow_rate must be <= 1"):
        FlagPolicy(red_rate=0.6, yellow_rate=0.6)


def test_recall_curve_hand_worked() -> None:
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    wrong = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    rec, prec = recall_curve(s, wrong, np.array([0.0, 0.1, 0.2, 0.3, 1.0]))
    assert rec == pytest.approx([0.0, 1 / 3, 1 / 3, 2 / 3, 1.0])
    assert prec == pytest.approx([0.0, 1.0, 0.5, 2 / 3, 0.3])


def test_flags_table_columns_from_classify(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cbmflow.analytics.classify import FLAG_COLUMNS, classify_frame

    rng = np.random.default_rng(1)
    n = 120
    y = rng.choice(["a", "b"], n)
    x = (y == "a").astype(float)[:, None] * 3 + rng.normal(0, 1, (n, 4))
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)]).assign(parcel_id=[f"P{i}" for i in range(n)], crop=y)
    df.loc[0, "crop"] = "rare"
    flags, metrics = classify_frame(df, min_class_size=10, n_repeats=1, seed=0)
    assert set(FLAG_COLUMNS) <= set(flags.columns)
    assert metrics["n_rare_scored"] == 1 and metrics["flag_counts"]["red"] <= round(0.08 * n)
    rare = flags[flags.parcel_id == "P0"].iloc[0]
    assert rare.declared == "rare" and "rare (1 parcels < 10): no model" in rare.reason
    red = flags[flags.flag == "red"]
    assert (red.best_other_probability > red.declared_probability).all()
    assert (flags.loc[flags.flag == "green", "reason"] == "").all()


def test_confident_score_thresholds_hand_worked() -> None:
    """A crop is judged against its class mean; a pool of rare crops against its other members, shrunk."""
    from cbmflow.analytics.flags import confident_score

    # crop "a": 4 parcels; pool "other 11": 3 parcels; min_size 2 -> every group is big enough
    p_d = np.array([0.8, 0.6, 0.6, 0.4, 0.5, 0.3, 0.1])
    groups = np.array(["a", "a", "a", "a", "other 11", "other 11", "other 11"])
    overall = p_d.mean()  # 3.3 / 7
    mean = confident_score(p_d, groups, 2, pooled={"other 11"}, threshold="mean")
    # class means: a 0.6, pool 0.3
    assert mean == pytest.approx([0.0, 0.0, 0.0, 1 - 0.4 / 0.6, 0.0, 0.0, 1 - 0.1 / 0.3])
    loo = confident_score(p_d, groups, 2, pooled={"other 11"})  # default pool_loo
    # crops keep their class mean; each pooled parcel: (sum of the others + 2 * overall) / (2 + 2)
    t = (np.array([0.4, 0.6, 0.8]) + 2 * overall) / 4
    assert loo[:4] == pytest.approx(mean[:4])
    assert loo[4:] == pytest.approx(1 - np.minimum(1, np.array([0.5, 0.3, 0.1]) / t))
    # the pool's weakest parcel is more suspicious than under the class mean (it no longer lowers its own yardstick)
    assert loo[6] > mean[6]
    assert confident_score(p_d, groups, 2, pooled={"other 11"}, threshold="pool_overall")[4:] == pytest.approx(
        1 - np.minimum(1, np.array([0.5, 0.3, 0.1]) / overall))
    # not named as a pool -> a crop like any other
    assert confident_score(p_d, groups, 2)[4:] == pytest.approx(mean[4:])
    # shrink pulls a crop's yardstick towards the overall mean: a's (2.4 + 4 * overall) / 8
    t_a = (2.4 + 4 * overall) / 8
    assert confident_score(p_d, groups, 2, threshold="mean", shrink=4)[3] == pytest.approx(1 - 0.4 / t_a)
    with pytest.raises(InputError, match="unknown threshold"):
        confident_score(p_d, groups, 2, threshold="q0.5")


def test_prune_suspects_caps_each_class_at_half() -> None:
    from cbmflow.analytics.classify import prune_suspects

    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.95, 0.1])
    y = np.array([0, 0, 0, 0, 1, 1, -1, 1])
    # 50 % of 8 = 4 suspects, but class 0 (4 parcels) gives at most 2 and the rare parcel (-1) none
    got = prune_suspects(score, y, 0.5)
    assert got.tolist() == [True, True, False, False, True, False, False, False]
    assert not prune_suspects(score, y, 0.0).any()
