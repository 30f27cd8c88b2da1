"""The swap-evaluation harness, the WorldCereal loader and the harder simulator, on small tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cbmflow import cli
from cbmflow.analytics.evaluation import (
    evaluate_swaps,
    read_known_wrong,
    score_against,
    swap_declarations,
)
from cbmflow.core.errors import InputError


def _table(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Three well separated crops (plus noise columns): every swap is detectable."""
    rng = np.random.default_rng(seed)
    crop = rng.choice(["maize", "wheat", "grass"], size=n, p=[0.4, 0.35, 0.25])
    centre = {"maize": 0.0, "wheat": 4.0, "grass": 8.0}
    x = np.array([centre[c] for c in crop])[:, None] + rng.normal(0, 0.5, (n, 3))
    df = pd.DataFrame(np.hstack([x, rng.normal(size=(n, 2))]), columns=["VH_p000", "VH_p001", "VV_p000", "n1", "n2"])
    df.insert(0, "parcel_id", [f"P{i:03d}" for i in range(n)])
    df.insert(1, "crop", crop)
    df.insert(2, "crop_name", [c.upper() for c in crop])
    return df


def test_swap_declarations_exact() -> None:
    df = _table()
    out, truth = swap_declarations(df, 0.05, seed=3)
    assert truth.mislabelled.sum() == 8  # round(0.05 * 160)
    changed = out.crop.to_numpy() != df.crop.to_numpy()
    assert (changed == truth.mislabelled.to_numpy()).all()  # every swap changes the crop
    assert (out.crop_name == out.crop.str.upper()).all()  # the name follows the new crop
    again, truth2 = swap_declarations(df, 0.05, seed=3)
    assert again.equals(out) and truth2.equals(truth)  # deterministic by seed
    with pytest.raises(InputError, match="swap share must be within"):
        swap_declarations(df, 1.5, seed=0)


def test_harness_small_table_deterministic_and_perfect_on_separable_crops() -> None:
    df = _table()
    ev = evaluate_swaps(df, share=0.05, seeds=2, min_class_size=10, n_repeats=1)
    assert ev["seeds"] == 2 and ev["n_wrong_per_seed"]["mean"] == 8
    # 8 swapped of 160 = 5 %: the 5 % budget catches all of them, nothing else
    assert ev["recall"]["mean"] == 1.0 and ev["precision"]["mean"] == 1.0
    assert ev["red_pct"]["mean"] == 5.0
    c = ev["curve"]
    assert c["rate"][0] == 0.0 and c["recall"][0] == 0.0 and c["recall"][5] == 1.0
    assert all(a <= b for a, b in zip(c["recall"], c["recall"][1:], strict=False))  # non-decreasing
    ev2 = evaluate_swaps(df, share=0.05, seeds=2, min_class_size=10, n_repeats=1)
    assert ev2["runs"][0]["recall"] == ev["runs"][0]["recall"] and ev2["curve"] == ev["curve"]


def test_score_against_known_wrong_hand_worked() -> None:
    flags = pd.DataFrame({"parcel_id": ["a", "b", "c", "d"], "flag": ["red", "yellow", "green", "green"],
                          "score": [0.9, 0.8, 0.3, 0.1]})
    ev = score_against(flags, {"a", "c", "zz"}, rates=np.array([0.25, 0.5, 0.75]))
    assert ev["n_wrong"] == 2 and ev["n_wrong_not_classified"] == 1
    assert ev["recall"] == 0.5 and ev["precision"] == 1.0 and ev["red_pct"] == 25.0
    assert ev["curve"]["recall"] == [0.5, 0.5, 1.0]
    known = pd.DataFrame({"parcel_id": [1, 2, 3], "mislabelled": [True, False, True]})
    assert read_known_wrong(known) == {"1", "3"}


def test_classify_command_evaluates_swaps_and_known_wrong(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    df = _table()
    f_in = tmp_path / "f.parquet"
    df.to_parquet(f_in)
    pd.DataFrame({"parcel_id": ["P000", "P001"]}).to_parquet(tmp_path / "known.parquet")
    code = cli.main(["classify", "--features", str(f_in), "--evaluate-swaps", "0.05", "--seeds", "2",
                     "--min-class-size", "10", "--n-repeats", "1", "--report", str(tmp_path / "rep"),
                     "--known-wrong", str(tmp_path / "known.parquet"), "--out", str(tmp_path / "o.parquet")])
    assert code == 0
    out = capsys.readouterr().out
    assert "swapped 5.0 % of declarations, 2 seeds, 8 swapped per seed" in out
    assert "recall 1.000 +- 0.000" in out and "recall vs red rate: 1 %: " in out
    assert "red flags vs 2 known wrong declarations" in out
    html = (tmp_path / "rep" / "index.html").read_text()
    assert (tmp_path / "rep" / "recall_vs_red_rate_swaps.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "recall_vs_red_rate_known.png").exists()
    assert "Red and yellow parcels for the inspector" in html and "best other crop" in html
    # evaluation only: --out may be left out; without either it is an error
    assert cli.main(["classify", "--features", str(f_in)]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_worldcereal_loader_on_the_real_flanders_set(shared_data: Path) -> None:
    from cbmflow.analytics.readers import flanders, s1_dn_to_db

    assert s1_dn_to_db(np.array([10_000, 0, 65535])) == pytest.approx([-3.0, np.nan, np.nan], nan_ok=True)
    df = flanders(shared_data / "timeseries")
    assert len(df) == 100 and df.parcel_id.is_unique
    assert df.crop.value_counts().iloc[:2].tolist() == [30, 28]
    assert (df.loc[df.crop == "1101060000", "crop_name"] == "maize").all()
    for g in ("VV", "VH", "VHVV", "B08", "NDVI"):
        assert f"{g}_p000" in df.columns and f"{g}_p015" in df.columns
    vh = df[[f"VH_p{i:03d}" for i in range(16)]].to_numpy()
    assert np.isfinite(vh).all() and -30 < np.median(vh) < -8  # plausible dB
    assert 0.05 < df["NDVI_missing"].mean() < 0.3  # ~14 % of S2 values are nodata
    raw = flanders(shared_data / "timeseries", fill="none")
    assert np.isnan(raw[[c for c in raw.columns if c.startswith("B04_p")]].to_numpy()).any()


def test_harder_simulator_shape_imbalance_and_gaps() -> None:
    from cbmflow_sim.crops import simulate_crop_features

    df, truth = simulate_crop_features(600, seed=2, mislabel=0.05, period_days=10)
    assert len(df) == 600 and df.parcel_id.str.startswith("SIMH-").all() and df.attrs["simulated"]
    assert truth.mislabelled.sum() == 30
    share = df.crop.value_counts(normalize=True)
    assert share.iloc[0] > 0.15 and (share < 0.01).sum() >= 5  # dominant crops and a long tail
    assert 0.01 < df.VH_missing.mean() < 0.2 and 0.2 < df.NDVI_missing.mean() < 0.8  # 10-day periods
    feats = df[[c for c in df.columns if "_p" in c]].to_numpy()
    assert np.isfinite(feats).all()
    df2, _ = simulate_crop_features(600, seed=2, mislabel=0.05, period_days=10)
    assert df2.equals(df)


def _tenday_long(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A tiny hand-built long WorldCereal file at ten-day steps (3 samples x 9 dekads, a gap, empty B8A)."""
    rng = np.random.default_rng(3)
    rows = []
    dates = pd.date_range("2021-03-01", periods=3, freq="MS")
    for s in range(3):
        for m in dates:
            for day in (1, 11, 21):
                vv = int(rng.integers(1000, 9000))
                rows.append({"sample_id": f"S{s}", "timestamp": m + pd.Timedelta(days=day - 1),
                             "ewoc_code": 1101060000 + s, "S1-SIGMA0-VV": vv, "S1-SIGMA0-VH": vv // 2,
                             "S2-L2A-B04": int(rng.integers(200, 900)), "S2-L2A-B08": int(rng.integers(2000, 5000)),
                             "S2-L2A-B8A": 65535})
    long = pd.DataFrame(rows)
    long.loc[4, "S2-L2A-B04"] = 65535  # one missing S2 observation
    path = tmp_path / "wc_tenday.parquet"
    long.to_parquet(path)
    return path, long


def test_worldcereal_ten_day_long_file_keeps_every_observation(tmp_path: Path, caplog: Any) -> None:
    from cbmflow.analytics.readers import s1_dn_to_db, worldcereal_table

    path, long = _tenday_long(tmp_path)
    with caplog.at_level(logging.INFO, logger="cbmflow.analytics.readers"):
        df = worldcereal_table(path, fill="none")
    assert df.attrs["period"] == "dekad"
    vv = df[[c for c in df.columns if c.startswith("VV_p")]].to_numpy(np.float64)
    assert vv.shape == (3, 9)  # nine ten-day steps, not three months
    for s in range(3):
        expect = s1_dn_to_db(long.loc[long.sample_id == f"S{s}", "S1-SIGMA0-VV"].to_numpy())
        assert vv[s] == pytest.approx(expect, rel=1e-5)  # every step in order, none overwritten
    b04 = df[[c for c in df.columns if c.startswith("B04_p")]].to_numpy(np.float64)
    assert int(np.isfinite(b04).sum()) == int((long["S2-L2A-B04"] != 65535).sum())
    assert not any(c.startswith("B8A") for c in df.columns)
    assert "band B8A has no valid value" in caplog.text and "dekad" in caplog.text


def test_worldcereal_wide_ten_day_file_keeps_every_observation(shared_data: Path, tmp_path: Path) -> None:
    from cbmflow.analytics.readers import worldcereal_table

    path = shared_data / "timeseries" / "wc_flanders_2021_s1s2_10day_50.parquet"
    raw = pd.read_parquet(path)
    df = worldcereal_table(path, fill="none")
    assert len(df) == 50 and df.attrs["layout"] == "wide" and df.attrs["period"] == "dekad"  # from the dates
    for band, prefix in (("VV", "SAR-VV-ts"), ("VH", "SAR-VH-ts"), ("B04", "OPTICAL-B04-ts")):
        src = raw[[c for c in raw.columns if c.startswith(prefix)]].to_numpy()
        got = df[[c for c in df.columns if c.startswith(f"{band}_p")]].to_numpy(np.float64)
        assert got.shape == src.shape == (50, 49)
        assert (np.isfinite(got) == ((src != 65535) & (src > 0))).all()
    assert not any(c.startswith("B8A_") for c in df.columns)  # all-empty in the file: dropped, no crash
    monthly = raw.iloc[:5].copy()
    monthly["end_date"] = pd.to_datetime(monthly["start_date"]) + pd.Timedelta(days=30 * 48)
    m = tmp_path / "monthly_wide.parquet"
    monthly.to_parquet(m)
    assert worldcereal_table(m, fill="none").attrs["period"] == "month"


def test_swap_comparison_both_schemes_and_baselines_on_the_same_swaps(tmp_path: Path, capsys: Any) -> None:
    from cbmflow.analytics.evaluation import compare_on_swaps

    df = _table()
    rows = compare_on_swaps(df, share=0.05, seeds=2, min_class_size=10, n_repeats=1)
    assert [(r["scheme"], r["method"]) for r in rows] == [
        (s, m) for s in ("frequency", "uniform") for m in ("cbmflow check", "RF ranking", "HGB ranking")]
    for r in rows:
        ev = r["evaluation"]
        assert r["seeds"] == 2 and ev["scheme"] == r["scheme"] and ev["n_wrong_per_seed"]["mean"] == 8
        assert r["recall_at_5"]["mean"] == 1.0 and r["recall_at_8"]["mean"] == 1.0  # separable crops
        assert set(r["recall_at_5"]) >= {"mean", "ci95"}
    f_in = tmp_path / "f.parquet"
    df.to_parquet(f_in)
    assert cli.main(["classify", "--features", str(f_in), "--evaluate-swaps", "0.05", "--seeds", "2",
                     "--baselines", "--swap-schemes", "uniform", "--min-class-size", "10", "--n-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "swaps uniform   cbmflow check (2 seeds): recall top 5 % 1.000 +- 0.000, top 8 % 1.000" in out
    assert "swaps uniform   RF ranking" in out and "swaps uniform   HGB ranking" in out and "frequency" not in out


def test_classify_command_options_reach_the_policy() -> None:
    """``--rare hierarchy`` (the default) can be named, and the flag options build the policy the run uses."""
    from cbmflow.analytics.flags import FlagPolicy
    from cbmflow.cli.analytics import _policy
    from cbmflow.cli.parser import build_parser

    args = build_parser("classify").parse_args(["classify", "--features", "f.parquet", "--rare", "hierarchy",
                                                "--threshold", "mean", "--red-rate", "0.05", "--yellow-rate", "0.1"])
    assert args.rare == "hierarchy"
    assert _policy(args) == FlagPolicy(threshold="mean", red_rate=0.05, yellow_rate=0.1)
    defaults = build_parser("classify").parse_args(["classify", "--features", "f.parquet"])
    assert _policy(defaults) == FlagPolicy()
