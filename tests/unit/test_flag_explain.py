"""Exact answers of the per-class-threshold score and of the flag evidence on tiny hand-built data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbmflow.analytics.explain import evidence_words, flag_evidence, period_labeller
from cbmflow.analytics.flags import class_thresholds, odds_score

P = np.array([
    [0.6, 0.3, 0.1],  # declared 0
    [0.2, 0.7, 0.1],  # declared 1
    [0.5, 0.5, 0.0],  # declared 0
    [0.1, 0.2, 0.7],  # declared 2
    [0.8, 0.1, 0.1],  # declared 2: looks like 0
])
Y = np.array([0, 1, 0, 2, 2])


def test_class_thresholds_are_mean_self_confidence() -> None:
    t = class_thresholds(P, Y)
    assert t == pytest.approx([(0.6 + 0.5) / 2, 0.7, (0.7 + 0.1) / 2])


def test_odds_score_by_hand() -> None:
    score, best, r_d = odds_score(P, Y)
    t0, t1, t2 = 0.55, 0.7, 0.4
    # parcel 0: r = (0.6/t0, 0.3/t1, 0.1/t2); declared 0, best other is 1 (0.4286 > 0.25)
    assert best[0] == 1 and r_d[0] == pytest.approx(0.6 / t0)
    assert score[0] == pytest.approx((0.3 / t1) / (0.3 / t1 + 0.6 / t0))
    # parcel 4: declared 2 with p 0.1 (r 0.25), class 0 at 0.8 / 0.55 = 1.45: suspicious
    assert best[4] == 0 and score[4] == pytest.approx((0.8 / t0) / (0.8 / t0 + 0.1 / t2))
    # parcel 3: its own class fits better than any other for what is usual: below 0.5
    assert best[3] == 1 and score[3] == pytest.approx((0.2 / t1) / (0.2 / t1 + 0.7 / t2)) and score[3] < 0.5
    assert score.argmax() == 4 and ((score >= 0) & (score <= 1)).all()


def test_odds_score_rare_parcels() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, -1, -1])  # two parcels of rare crops without a class
    score, best, r_d = odds_score(p, y)
    t = np.array([0.9, 0.8])
    # rare: r_d = (1 - p_o) / mean(1 - p_o over rare parcels); p_o from the best other by r
    assert best[2] == 0 and best[3] == 1  # 0.6/0.9 = 0.667 > 0.4/0.8 = 0.5; 0.7/0.8 > 0.3/0.9
    d = np.array([1 - 0.6, 1 - 0.7])
    assert r_d[2:] == pytest.approx(d / d.mean())
    assert score[2] == pytest.approx((0.6 / t[0]) / (0.6 / t[0] + d[0] / d.mean()))


def _features() -> pd.DataFrame:
    # 5 parcels declaring a, 3 declaring b; bands VH (3 months) and NDVI (3 months)
    vh1 = [-10.0, -11.0, -12.0, -13.0, -14.0]
    rows = []
    for i, v in enumerate(vh1):
        rows.append({"parcel_id": f"a{i}", "crop": "a", "VH_p000": -15.0, "VH_p001": v, "VH_p002": -15.0,
                     "NDVI_p000": 0.5, "NDVI_p001": 0.5, "NDVI_p002": 0.5})
    for i in range(3):
        rows.append({"parcel_id": f"b{i}", "crop": "b", "VH_p000": -15.0, "VH_p001": -19.0 - i, "VH_p002": -15.0,
                     "NDVI_p000": 0.5, "NDVI_p001": 0.5, "NDVI_p002": 0.8})
    # the flagged parcel: declared a, VH in month 1 like b, NDVI like a
    rows.append({"parcel_id": "x", "crop": "a", "VH_p000": -15.0, "VH_p001": -20.0, "VH_p002": -15.0,
                 "NDVI_p000": 0.5, "NDVI_p001": 0.5, "NDVI_p002": 0.5})
    df = pd.DataFrame(rows)
    df.attrs.update(period_start="2022-09-01", period="month")
    return df


def test_flag_evidence_exact() -> None:
    df = _features()
    cls = df["crop"].tolist()
    ev = flag_evidence(df, cls, [8], ["a"], ["b"], label=period_labeller(df.attrs))
    # peers of x: a0..a4 (x itself left out); VH_p001: p25 -13, median -12, p75 -11, spread 2 / 1.349
    assert ev[8] == [{
        "period": "2022-10-01", "band": "VH", "value": -20.0, "declared_p25": -13.0, "declared_p75": -11.0,
        "predicted_median": -20.0, "z": round((-20.0 + 12.0) / (2.0 / 1.349), 2),
    }]
    assert evidence_words(ev[8], "winter wheat") == "VH on 2022-10-01 is 5.4 sd below the winter wheat parcels"


def test_flag_evidence_order_cap_and_no_peers() -> None:
    df = _features()
    df.loc[8, "NDVI_p002"] = 0.9  # also unlike a's NDVI (spread at the 0.01 floor): the most contradicting
    df.loc[8, "VH_p000"] = -16.0  # VH a little off in month 0 too (a's VH_p000 is flat: spread 0.3 dB floor)
    ev = flag_evidence(df, df["crop"].tolist(), [8, 5], ["a", "b"], ["b", "a"], label=period_labeller(df.attrs),
                       max_items=5)
    bands = [(it["band"], it["period"]) for it in ev[8]]
    assert bands == [("NDVI", "2022-11-01"), ("VH", "2022-10-01"), ("VH", "2022-09-01")]
    assert ev[8][0]["z"] == pytest.approx(40.0) and ev[8][2]["z"] == pytest.approx(-1 / 0.3, abs=0.01)
    # a0's peers are a1..a4 and x (VH_p001 -11..-14, -20: p25 -14, median -13, p75 -12); elsewhere a0 sits on
    # its peers' median (z 0), which is never evidence; no dates known: period labels
    assert flag_evidence(df, df["crop"].tolist(), [0], ["a"], ["b"])[0] == [
        {"period": "p001", "band": "VH", "value": -10.0, "declared_p25": -14.0, "declared_p75": -12.0,
         "predicted_median": -20.0, "z": round((-10.0 + 13.0) / (2.0 / 1.349), 2)}]
    one = df.iloc[[0, 5, 6, 7]].reset_index(drop=True)
    assert flag_evidence(one, one["crop"].tolist(), [0], ["a"], ["b"]) == {0: []}  # no other parcel of a


def test_period_labels() -> None:
    assert period_labeller({"period_start": "2020-11-21", "period": "dekad"})(2) == "2020-12-11"
    assert period_labeller({"period_start": "2021-09-01", "period": "month"})(16) == "2023-01-01"
    assert period_labeller({"year": 2024, "period_days": 5})(2) == "2024-01-11"
    assert period_labeller({})(7) == "p007"


def test_classify_frame_explains_each_red_flag_by_name() -> None:
    from cbmflow.analytics.classify import classify_frame

    rng = np.random.default_rng(3)
    n = 60
    crop = np.array(["1101060000"] * 30 + ["2001020022"] * 30)
    vh = np.where(crop == "1101060000", -12.0, -20.0)[:, None] * np.array([0.0, 1.0, 0.0])[None, :]
    vh = vh + np.array([-15.0, 0.0, -15.0])[None, :] + rng.normal(0, 0.5, (n, 3))
    df = pd.DataFrame(vh, columns=["VH_p000", "VH_p001", "VH_p002"])
    df.insert(0, "parcel_id", [f"P{i}" for i in range(n)])
    df.insert(1, "crop", crop)
    df.insert(2, "crop_name", np.where(crop == "1101060000", "maize", "longterm_meadows"))
    df.loc[0, ["crop", "crop_name"]] = ["2001020022", "longterm_meadows"]  # a maize parcel declared as meadow
    df.attrs.update(period_start="2022-04-01", period="month")
    flags, _ = classify_frame(df, min_class_size=10, n_repeats=1, seed=0, n_trees=50)
    x = flags.set_index("parcel_id").loc["P0"]
    assert x.flag == "red" and x.best_other == "1101060000" and x.predicted_name == "maize"
    assert x.reason.startswith("maize (p=") and "more likely than the declared longterm meadows" in x.reason
    assert "1101060000" not in x.reason and "2001020022" not in x.reason  # names, never codes
    first = x.evidence[0]
    assert (first["band"], first["period"]) == ("VH", "2022-05-01")  # VH in the 2nd month, maize-like
    assert first["z"] > 5 and first["declared_p25"] < -19 and abs(first["predicted_median"] + 12) < 0.5
    assert first["value"] == pytest.approx(df.loc[0, "VH_p001"], abs=1e-3)
    green = flags[flags.flag == "green"]
    assert green.evidence.isna().all() and (green.reason == "").all()


def test_rare_crops_pooled_by_crop_group_exact() -> None:
    from cbmflow.analytics.classify import _crop_words, crop_hierarchy, pool_rare_crops

    assert crop_hierarchy("1103020040") == ("1103", "11")
    assert crop_hierarchy("9120") == ("91", "9")
    assert crop_hierarchy("WWH", "winter wheat") == ("winter_cereal",)
    counts = {"1103010010": 3, "1103020060": 2,  # vegetables: 5 together -> their own pool
              "1101040012": 2, "1109000060": 1, "1106000010": 2,  # too few per group, 5 as temporary crops
              "2002030000": 2, "1500000000": 1}  # nothing to pool with: other
    pools = pool_rare_crops(counts, 5)
    assert pools == {"1103010010": "other 1103", "1103020060": "other 1103", "1101040012": "other 11",
                     "1109000060": "other 11", "1106000010": "other 11", "2002030000": "other",
                     "1500000000": "other"}
    names = {"1103000000": "vegetables_fruits"}
    assert _crop_words("other 1103", names) == "other vegetables fruits crops"
    assert _crop_words("other", names) == "other crops"
