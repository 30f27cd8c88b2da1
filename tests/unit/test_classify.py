"""Classifier, out-of-fold flags and their evaluation, on SIMULATED S1 features with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from s1_synth import synthetic_features

from cbmflow.classify import FlagRule, apply_flag_rule, classify_frame, evaluate_flags
from cbmflow.errors import InputError


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_features(2500, seed=11, mislabel=0.05)


def test_flag_rule_hand_worked() -> None:
    # 3 repetitions x 4 parcels x 2 classes; every parcel declared class 0
    p = np.array([
        [[0.9, 0.1], [0.15, 0.85], [0.3, 0.7], [0.45, 0.55], [0.1, 0.9]],
        [[0.8, 0.2], [0.1, 0.9], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]],
        [[0.7, 0.3], [0.3, 0.7], [0.2, 0.8], [0.45, 0.55], [0.35, 0.65]],
    ])
    rule = FlagRule(red_min_agree=3, red_min_prob=0.6, red_max_declared_prob=0.2)
    pred, prob, dprob, agree, flag = apply_flag_rule(p, np.zeros(5, dtype=int), rule)
    assert pred.tolist() == [0, 1, 1, 1, 1]
    assert prob == pytest.approx([0.8, 0.81666667, 0.63333333, 0.55, 0.75])
    assert dprob == pytest.approx([0.8, 0.18333333, 0.36666667, 0.45, 0.25])
    assert agree.tolist() == [3, 3, 2, 3, 3]
    # P1: 3 agree against the declaration, p=0.82, declared 0.18 -> red; P2: only 2 of 3 agree;
    # P3: 3 agree but p=0.55 < 0.6; P4: declared class keeps 0.25 > 0.2 -> all three yellow;
    # P0 agrees confidently -> green
    assert flag.tolist() == ["green", "red", "yellow", "yellow", "yellow"]
    # the declared class is confidently predicted but its mean probability is low -> yellow
    q = np.array([[[0.52, 0.48]], [[0.51, 0.49]], [[0.30, 0.70]]])
    *_, f = apply_flag_rule(q, np.zeros(1, dtype=int), FlagRule(yellow_min_declared_prob=0.5))
    assert f.tolist() == ["yellow"]


def test_recall_and_red_share_on_synthetic_mislabels(synthetic) -> None:
    feats, truth = synthetic
    flags, metrics = classify_frame(feats, seed=0, n_jobs=1)
    assert list(flags.columns[:5]) == ["parcel_id", "declared", "predicted", "probability", "flag"]
    assert len(flags) == len(feats) == metrics["n_classified"]
    ev = evaluate_flags(flags, truth)
    assert ev["n_mislabelled"] == 125
    assert ev["recall"] >= 0.9, ev
    assert ev["red_pct"] <= 6.0, ev
    assert ev["precision"] >= 0.8, ev
    assert metrics["accuracy"] > 0.85
    assert sum(metrics["flag_counts"].values()) == len(flags)
    assert np.asarray(metrics["confusion"]).sum() == len(flags)
    # reds disagree with the declaration by construction; greens agree
    red = flags[flags.flag == "red"]
    assert (red.predicted != red.declared_class).all() and (red.agree_count == 3).all()
    green = flags[flags.flag == "green"]
    assert (green.predicted == green.declared_class).all()


def test_out_of_fold_predictions_do_not_memorise() -> None:
    # Pure noise features with random labels: a model predicting parcels it trained on would
    # score ~100 %; out-of-fold it cannot beat chance.
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(rng.normal(size=(n, 10)), columns=[f"f{i}" for i in range(10)])
    df.insert(0, "parcel_id", [f"P{i}" for i in range(n)])
    df.insert(1, "crop", rng.choice(["a", "b"], size=n))
    flags, metrics = classify_frame(df, min_class_size=20, seed=1)
    assert 0.35 < metrics["accuracy"] < 0.65
    # and nothing there is confident enough against the declaration to be red
    assert metrics["flag_counts"]["red"] == 0


def test_rare_classes_grouped_or_excluded_and_small_parcels_excluded(synthetic) -> None:
    feats, _ = synthetic
    df = feats.copy()
    df.loc[df.index[:12], "crop"] = "lupin"  # 12 parcels: rare
    df.loc[df.index[12:20], "crop"] = "hemp"  # 8 parcels: rare; 20 together -> 'other'
    df.loc[df.index[20:23], "crop"] = None  # no declaration
    df.loc[df.index[23:30], "area_m2"] = 100.0
    flags, metrics = classify_frame(df, min_class_size=20, min_area=500.0, n_repeats=3, seed=0)
    assert "other" in metrics["classes"]
    assert metrics["grouped_into_other"] == {"hemp": 8, "lupin": 12}
    assert any("grouped into class 'other'" in m for m in metrics["messages"])
    assert metrics["excluded"]["small_area"] == 7
    assert metrics["excluded"]["no_declaration"] == 3
    assert metrics["n_classified"] == len(df) - 10
    other = flags[flags.declared.isin(["lupin", "hemp"])]
    assert set(other.declared_class) == {"other"}
    # with a larger threshold the 20 rare parcels do not make a class either: excluded
    flags2, metrics2 = classify_frame(df.iloc[:600], min_class_size=25, seed=0)
    assert "other" not in metrics2["classes"]
    assert metrics2["excluded"]["rare_class"] >= 20
    assert any("excluded" in m for m in metrics2["messages"])
    assert not flags2.declared.isin(["lupin", "hemp"]).any()


def test_bad_input_messages(synthetic) -> None:
    feats, _ = synthetic
    with pytest.raises(InputError, match=r"column 'crop_name' missing; available columns: pid, parcel_id"):
        classify_frame(feats, crop_col="crop_name")
    with pytest.raises(InputError, match="no numeric feature columns"):
        classify_frame(feats[["parcel_id", "crop"]])
    with pytest.raises(InputError, match="duplicate parcel_id 'SIM-0000001'"):
        classify_frame(pd.concat([feats.iloc[:50], feats.iloc[:1]]))
    with pytest.raises(InputError, match="need at least 2 classes"):
        classify_frame(feats.assign(crop="wheat").iloc[:100])
    with pytest.raises(InputError, match="unknown estimator 'svm'"):
        classify_frame(feats.iloc[:300], estimator="svm")


def test_evaluate_flags_hand_worked() -> None:
    flags = pd.DataFrame({"parcel_id": ["a", "b", "c", "d", "e"],
                          "flag": ["red", "red", "green", "yellow", "green"]})
    truth = pd.DataFrame({"parcel_id": ["a", "b", "c", "d", "e", "f"],
                          "mislabelled": [True, False, True, False, False, True]})
    ev = evaluate_flags(flags, truth)
    assert ev["precision"] == 0.5
    assert ev["recall"] == 0.5  # of the 2 mislabelled parcels that were classified
    assert ev["recall_of_all_mislabelled"] == pytest.approx(1 / 3)
    assert ev["red_pct"] == 40.0
    assert ev["recall_red_or_yellow"] == 0.5
    with pytest.raises(InputError, match="truth table has no column 'mislabelled'"):
        evaluate_flags(flags, truth.drop(columns="mislabelled"))


def test_classes_from_a_group_column(synthetic) -> None:
    from cbmflow.analytics import add_crop_groups

    feats, _ = synthetic
    df = feats.iloc[:800]
    grouped, class_col, note = add_crop_groups(df)
    assert class_col == "crop_group" and note.startswith("classes are crop groups (grassland, legumes")
    flags, metrics = classify_frame(grouped, class_col="crop_group", seed=0)
    assert "winter_cereal" in metrics["classes"] and "winter_wheat" not in metrics["classes"]
    wheat = flags[flags.declared == "winter_wheat"]
    assert len(wheat) > 0 and set(wheat.declared_class) == {"winter_cereal"}
    # declared codes that name no known group: fall back to the declared crops, with a note
    codes = df.assign(crop=df["crop"].map({c: str(i) for i, c in enumerate(sorted(set(df.crop)))}))
    same, class_col, note = add_crop_groups(codes)
    assert class_col is None and same is codes and "classifying declared crops instead" in note
