"""Exact-answer tests of the marker detectors, rules and evaluation on hand-made series."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cbmflow.core.errors import InputError
from cbmflow.markers import DEFAULTS, evaluate
from cbmflow.markers.bare_soil import bare_periods, ploughing
from cbmflow.markers.gaps import evidence_gaps
from cbmflow.markers.harvest import harvest_weeks
from cbmflow.markers.mowing import coherence_rises, fuse, ndvi_drops, remove_spikes
from cbmflow.markers.rules import evaluate_rules, load_rules
from cbmflow.markers.signals import Candidate, Marker, S1Orbit, iso, orbit_anomaly

B = dt.date(2024, 6, 1).toordinal()  # day 0 of every hand-made series
P = DEFAULTS.mowing


def d(n: float) -> str:
    return iso(B + n)


# ----------------------------------------------------------------------------- mowing, S2

def test_ndvi_drop_with_regrowth_is_one_event_dated_between_the_observations() -> None:
    days = B + np.array([0, 5, 10, 15, 20, 25, 30])
    ndvi = np.array([0.7, 0.72, 0.4, 0.45, 0.55, 0.65, 0.7])
    (c,) = ndvi_drops(days, ndvi, P)
    assert (c.start, c.end, c.day) == (B + 5, B + 10, B + 7.5)
    assert c.confidence == 1.0  # drop 0.32 >= 2 x min_drop
    assert c.detail == {"ndvi_before": 0.72, "ndvi_low": 0.4, "regrowth": True}


def test_ndvi_fall_over_several_observations_is_one_event() -> None:
    (c,) = ndvi_drops(B + np.array([0, 5, 10, 20]), np.array([0.8, 0.6, 0.45, 0.6]), P)
    assert (c.start, c.end) == (B + 0, B + 5)
    assert c.detail["ndvi_low"] == 0.45


def test_ndvi_drop_rules_out_sparse_canopy_long_gaps_and_no_regrowth() -> None:
    assert ndvi_drops(B + np.array([0, 5, 10]), np.array([0.35, 0.2, 0.35]), P) == []  # below min_ndvi_before
    assert ndvi_drops(B + np.array([0, 40, 50]), np.array([0.7, 0.4, 0.6]), P) == []  # 40-day gap
    senescence = ndvi_drops(B + np.array([0, 5, 10, 20, 30]), np.array([0.7, 0.5, 0.45, 0.45, 0.44]), P)
    assert senescence == []  # it fell and never came back


def test_ndvi_drop_at_the_end_of_the_data_is_unconfirmed() -> None:
    (c,) = ndvi_drops(B + np.array([0, 5, 10]), np.array([0.7, 0.7, 0.55]), P)
    assert c.confidence == pytest.approx(0.75 * 0.7)
    assert c.detail["regrowth"] is False


def test_one_off_dip_is_a_spike_not_a_cut() -> None:
    days, ndvi = B + np.array([0, 5, 10, 15]), np.array([0.7, 0.4, 0.7, 0.7])
    assert remove_spikes(days, ndvi, P).tolist() == [True, False, True, True]
    assert ndvi_drops(days, ndvi, P) == []
    # the same dip recovered only after 30 days is a cut with regrowth
    assert len(ndvi_drops(B + np.array([0, 5, 30]), np.array([0.7, 0.4, 0.7]), P)) == 1


def test_ndvi_drop_outside_the_season_is_ignored() -> None:
    days = B + np.array([0, 5, 10, 15])
    ndvi = np.array([0.7, 0.7, 0.4, 0.6])
    assert ndvi_drops(days, ndvi, P, season=(B + 20, B + 100)) == []
    assert len(ndvi_drops(days, ndvi, P, season=(B, B + 100))) == 1


# ----------------------------------------------------------------------------- mowing, S1

def test_coherence_step_above_a_flat_trend_is_one_alarm() -> None:
    days = B + np.array([0, 6, 12, 18, 24, 30], dtype=float)
    coh = np.array([0.3, 0.3, 0.3, 0.3, 0.5, 0.5])
    (c,) = coherence_rises(days, coh, P)
    # pair of the alarm is (18, 24]: the cut came after the previous pair began (12) and before 18
    assert (c.start, c.end, c.day) == (B + 12, B + 18, B + 15)
    assert c.confidence == 1.0
    assert c.detail == {"coh_rise": 0.2, "coh_sigma": 0.02}


def test_coherence_on_its_trend_or_below_the_increase_gives_no_alarm() -> None:
    days = B + np.arange(0, 36, 6, dtype=float)
    assert coherence_rises(days, np.array([0.2, 0.25, 0.3, 0.35, 0.4, 0.45]), P) == []
    assert coherence_rises(days, np.array([0.3, 0.3, 0.3, 0.3, 0.37, 0.37]), P) == []  # +0.07 < 0.08


def test_coherence_alarm_needs_k_sigma_over_noisy_history() -> None:
    days = B + np.arange(0, 36, 6, dtype=float)
    noisy = np.array([0.2, 0.4, 0.2, 0.4, 0.5, 0.5])  # residual sigma ~0.13: +0.2 is not 1.96 sigma
    assert coherence_rises(days, noisy, P) == []


# ----------------------------------------------------------------------------- fusion

def test_fuse_joins_nearby_evidence_and_keeps_the_rest() -> None:
    s2 = [Candidate(B + 100, B + 98, B + 102, 0.6, "S2")]
    s1 = [Candidate(B + 104, B + 100, B + 108, 0.5, "S1"), Candidate(B + 150, B + 147, B + 153, 0.7, "S1")]
    from dataclasses import replace

    a, b = fuse(s2, s1, replace(P, s1_alone_min_conf=0.0, fuse_date="overlap"))
    assert (a.event_date, a.start_date, a.end_date, a.sources) == (d(101), d(100), d(102), ("S2", "S1"))
    assert a.confidence == pytest.approx(0.8)
    assert (b.event_date, b.sources, b.confidence) == (d(150), ("S1",), 0.7)
    # defaults: S1 confirms (confidence) but S2 dates; an S1 rise alone needs confidence >= 0.95
    (c,) = fuse(s2, s1, P)
    assert (c.event_date, c.sources, c.confidence) == (d(100), ("S2", "S1"), pytest.approx(0.8))
    s1[1] = Candidate(B + 150, B + 147, B + 153, 0.96, "S1")
    assert [m.event_date for m in fuse(s2, s1, P)] == [d(100), d(150)]


def test_fuse_keeps_the_most_confident_events_apart_and_at_most_n() -> None:
    s1 = [Candidate(B + 100, B + 99, B + 101, 0.9, "S1"), Candidate(B + 105, B + 104, B + 106, 0.5, "S1"),
          Candidate(B + 130, B + 129, B + 131, 0.6, "S1")]
    from dataclasses import replace

    q = replace(P, s1_alone_min_conf=0.0)
    assert [m.event_date for m in fuse([], s1, q)] == [d(100), d(130)]
    assert [m.event_date for m in fuse([], s1, replace(q, max_events=1))] == [d(100)]


# ----------------------------------------------------------------------------- bare soil, ploughing

BS = DEFAULTS.bare_soil


def test_bare_period_needs_the_minimum_duration() -> None:
    days = B + np.array([0, 5, 10, 15, 20, 25])
    ndvi = np.array([0.6, 0.6, 0.2, 0.15, 0.2, 0.5])
    (m,) = bare_periods(days, ndvi, BS)
    assert (m.marker, m.start_date, m.end_date, m.confidence) == ("bare_soil", d(10), d(20), 0.85)
    assert m.detail == {"observations": 3, "ndvi_max": 0.2}
    assert bare_periods(B + np.array([0, 5, 10, 15]), np.array([0.6, 0.2, 0.2, 0.6]), BS) == []  # 5 days


def test_ploughing_is_the_entry_into_bare_soil_and_s1_corroborates_it() -> None:
    days = B + np.array([0, 5, 10, 15, 20, 25])
    ndvi = np.array([0.6, 0.6, 0.2, 0.15, 0.2, 0.5])
    (m,) = ploughing(days, ndvi, BS)
    assert (m.event_date, m.start_date, m.end_date, m.sources, m.confidence) == (d(7.5), d(5), d(10), ("S2",), 0.6)
    vv = (B + np.array([0, 3, 6, 12, 15], dtype=float), np.array([0.0, 0.0, 0.0, 2.0, 2.0]))
    (m,) = ploughing(days, ndvi, BS, vv=vv)
    assert m.sources == ("S2", "S1") and m.confidence == 0.85 and m.detail["vv_rise_db"] == 2.0
    # bare from the first observation on: no entry seen, no ploughing
    assert ploughing(days[2:], ndvi[2:], BS) == []


# ----------------------------------------------------------------------------- harvest

HP = DEFAULTS.harvest
SEASON = (float(B), float(B + 69))


def test_harvest_is_the_first_week_ndvi_falls_from_the_peak() -> None:
    days = B + np.arange(0, 70, 5, dtype=float)
    ndvi = np.where(days - B <= 30, 0.8, 0.3)
    empty = (np.zeros(0), np.zeros(0))
    (m,) = harvest_weeks((days, ndvi), empty, empty, HP, SEASON)
    assert (m.event_date, m.start_date, m.end_date, m.sources, m.confidence) == (d(32.5), d(30), d(35), ("S2",), 0.6)
    ratio = (days, np.where(days - B <= 30, 0.0, -2.0))
    (m,) = harvest_weeks((days, ndvi), ratio, empty, HP, SEASON)
    assert m.sources == ("S2", "S1") and m.confidence == 0.9 and m.detail["vhvv_drop"] is True


def test_no_harvest_without_a_canopy_and_s1_alone_needs_both_signs() -> None:
    days = B + np.arange(0, 70, 5, dtype=float)
    empty = (np.zeros(0), np.zeros(0))
    assert harvest_weeks((days, np.full(len(days), 0.3)), empty, empty, HP, SEASON) == []
    s1d = B + np.arange(0, 70, 6, dtype=float)
    ratio = (s1d, np.where(s1d - B < 35, 0.0, -2.0))
    coh = (s1d, np.where(s1d - B < 35, 0.3, 0.5))
    assert harvest_weeks(empty, ratio, empty, HP, SEASON) == []
    (m,) = harvest_weeks(empty, ratio, coh, HP, SEASON)
    assert (m.event_date, m.sources, m.confidence, m.detail["week"]) == (d(38), ("S1",), 0.5, 5)


# ----------------------------------------------------------------------------- gaps

def test_gaps_longer_than_the_threshold_become_no_evidence_markers() -> None:
    a, b = evidence_gaps(B + np.array([10.0, 15, 50, 55]), B, B + 100, 20, "S2")
    assert (a.marker, a.event_date, a.start_date, a.end_date, a.sources) == ("no_evidence", None, d(15), d(50), ("S2",))
    assert a.detail == {"sensor": "S2", "days": 35}
    assert (b.start_date, b.end_date, b.detail["days"]) == (d(55), d(100), 45)
    (whole,) = evidence_gaps(np.zeros(0), B, B + 100, 20, "S1")
    assert (whole.start_date, whole.end_date) == (d(0), d(100))
    assert evidence_gaps(B + np.arange(0, 101, 20.0), B, B + 100, 20, "S2") == []  # exactly 20: not longer


# ----------------------------------------------------------------------------- per-orbit referencing

def test_orbit_anomaly_references_each_orbit_to_its_own_median() -> None:
    a = S1Orbit("A", np.array([1.0, 3.0]), coh_days=np.array([1.0, 3.0]), coh_vv=np.array([0.2, 0.4]),
                coh_vh=np.array([0.2, 0.4]))
    b = S1Orbit("B", np.array([2.0]), coh_days=np.array([2.0]), coh_vv=np.array([0.9]), coh_vh=np.array([0.9]))
    days, vals, orbit = orbit_anomaly((a, b), "coh")
    assert days.tolist() == [1.0, 2.0, 3.0]
    assert vals == pytest.approx([-0.1, 0.0, 0.1])
    assert orbit.tolist() == [0, 1, 0]


# ----------------------------------------------------------------------------- rules

def _m(marker: str, day: str | None, start: str | None = None, end: str | None = None, sources=("S2",)) -> Marker:
    return Marker(marker, day, start or day, end or day, 1.0, sources)


def test_rules_per_crop() -> None:
    rules = load_rules()
    mown = [_m("mowing", "2024-06-10")]
    assert [(c.rule, c.status) for c in evaluate_rules(rules, 2024, "grassland", "x", mown)] == [
        ("grassland_mowing", "compliant"), ("grassland_no_ploughing", "compliant")]
    status = {c.rule: c.status for c in evaluate_rules(rules, 2024, "grassland", "x", [])}
    assert status["grassland_mowing"] == "not_compliant"
    # no mowing seen, but S2 saw nothing from 1 May to 31 August: not enough evidence
    blind = [_m("no_evidence", None, "2024-05-01", "2024-08-31")]
    status = {c.rule: c.status for c in evaluate_rules(rules, 2024, "grassland", "x", blind)}
    assert status["grassland_mowing"] == "not_enough_evidence"
    # an S1 gap does not blind an S2 rule
    s1_blind = [_m("no_evidence", None, "2024-05-01", "2024-08-31", sources=("S1",))]
    assert {c.rule: c.status for c in evaluate_rules(rules, 2024, "grassland", "x", s1_blind)}[
        "grassland_mowing"] == "not_compliant"
    ploughed = {c.rule: c for c in evaluate_rules(rules, 2024, "fallow", "y", [_m("ploughing", "2024-05-02")])}
    assert ploughed["fallow_no_ploughing"].status == "not_compliant"
    assert "2024-05-02" in ploughed["fallow_no_ploughing"].detail
    late = {c.rule: c.status for c in evaluate_rules(rules, 2024, "fallow", "y", [_m("ploughing", "2024-08-02")])}
    assert late["fallow_no_ploughing"] == "compliant"
    (nm,) = evaluate_rules(rules, 2024, "maize", "411", [])
    assert (nm.rule, nm.status) == ("*", "not_monitored")


def test_rules_match_crop_codes_and_reject_bad_tables(tmp_path: Path) -> None:
    f = tmp_path / "rules.csv"
    f.write_text("rule,crop_groups,crop_codes,marker,requirement,min_count,window_start,window_end,evidence,"
                 "max_gap_share,description\nmaize_harvest,,411;412,harvest,at_least,1,08-01,11-30,S2,0.5,x\n")
    (r,) = load_rules(f)
    assert r.applies(None, "411") and not r.applies("maize", "999")
    f.write_text(f.read_text().replace("at_least", "sometimes"))
    with pytest.raises(InputError, match="requirement"):
        load_rules(f)
    f.write_text("rule,marker\nx,mowing\n")
    with pytest.raises(InputError, match="lacks column"):
        load_rules(f)


# ----------------------------------------------------------------------------- evaluation and params

def test_event_matching_is_one_to_one_within_the_window() -> None:
    truth = {"1": ["2020-07-10", "2020-09-09"], "2": ["2020-06-13"]}
    det = {"1": ["2020-07-12", "2020-07-13", "2020-09-25"], "2": [], "3": ["2020-05-01"]}
    s = evaluate.score(det, truth, (-3, 3))
    assert (s.tp, s.fp, s.fn) == (1, 2, 2)
    assert (s.precision, s.recall) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    s = evaluate.score(det, truth, (-3, 20))
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.f1 == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert evaluate.date_errors(det, truth) == [2, 16]


def test_params_overrides_are_typed_and_checked() -> None:
    p = DEFAULTS.with_overrides({"mowing.min_drop": "0.15", "mowing.use_s1": "false", "gaps.s2_min_gap_days": 30})
    assert (p.mowing.min_drop, p.mowing.use_s1, p.gaps.s2_min_gap_days) == (0.15, False, 30)
    assert DEFAULTS.mowing.min_drop == 0.1  # the defaults are untouched
    with pytest.raises(InputError, match="unknown marker parameter"):
        DEFAULTS.with_overrides({"mowing.nonsense": 1})


# ----------------------------------------------------------------------------- mowing, S2 against the expected curve

def test_cut_against_expected_curve_is_dated_at_the_first_low_image() -> None:
    from cbmflow.markers.mowing import ndvi_cuts

    days = B + np.array([0, 5, 10, 15, 20, 25, 30, 40])
    ndvi = np.array([0.85, 0.8, 0.86, 0.84, 0.6, 0.62, 0.7, 0.8])
    (c,) = ndvi_cuts(days, ndvi, np.ones(8), P)
    assert (c.day, c.start, c.end) == (B + 20, B + 15, B + 20)  # date_fraction 1.0: the first low image
    # expect_quantile 0.75 of 0.80, 0.84, 0.85, 0.86 (the 20 days before)
    assert c.detail["ndvi_expected"] == pytest.approx(0.85) and c.detail["regrowth"] is True


def test_gradual_fall_cloudy_low_and_no_regrowth_are_not_cuts() -> None:
    from cbmflow.markers.mowing import ndvi_cuts

    days = B + np.array([0, 10, 20, 30, 40, 50, 60, 70])
    gradual = np.array([0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.6, 0.62])  # grazing / senescence
    assert ndvi_cuts(days, gradual, np.ones(8), P) == []
    cut = np.array([0.85, 0.85, 0.85, 0.55, 0.6, 0.7, 0.8, 0.85])
    assert len(ndvi_cuts(days, cut, np.ones(8), P)) == 1
    one_low = np.array([0.85, 0.85, 0.85, 0.5, 0.85, 0.85, 0.85, 0.85])
    assert len(ndvi_cuts(days, one_low, np.ones(8), P)) == 1  # clear: a cut with regrowth
    hazy = np.ones(8)
    hazy[3] = 0.3  # 70 % of the parcel cloudy on the low image: dropped (min_weight 0.5)
    assert ndvi_cuts(days, one_low, hazy, P) == []
    end = np.array([0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.5])  # last image low, no later image
    assert ndvi_cuts(days, end, np.ones(8), P) == []


def test_haze_dips_slow_falls_cloud_gaps_and_autumn_rises_are_judged() -> None:
    from cbmflow.markers.mowing import ndvi_cuts

    days = B + np.array([0, 5, 10, 15, 18, 25, 30, 40, 50])
    season = (float(B - 60), float(B + 200))
    haze = np.array([0.85, 0.86, 0.85, 0.6, 0.75, 0.84, 0.85, 0.85, 0.86])  # 3 days later 60 % back: haze
    assert ndvi_cuts(days, haze, np.ones(9), P, season) == []
    cut = np.array([0.85, 0.86, 0.85, 0.6, 0.61, 0.66, 0.72, 0.8, 0.85])  # stays low, regrows over weeks
    assert len(ndvi_cuts(days, cut, np.ones(9), P, season)) == 1
    # a 0.35 drop across a 30-day cloud gap is a cut dated at the first low image; a 0.16 one is not judged
    gd = B + np.array([0, 5, 10, 40, 45, 55, 65])
    (c,) = ndvi_cuts(gd, np.array([0.85, 0.86, 0.85, 0.5, 0.52, 0.65, 0.8]), np.ones(7), P, season)
    assert c.day == B + 40 and c.start == B + 10
    assert ndvi_cuts(gd, np.array([0.85, 0.86, 0.85, 0.69, 0.7, 0.75, 0.8]), np.ones(7), P, season) == []
    # the sward was falling for weeks before the last step: drought or grazing, not a cut
    slow = np.array([0.9, 0.87, 0.84, 0.81, 0.71, 0.7, 0.72, 0.78, 0.82])
    assert ndvi_cuts(days, slow, np.ones(9), P, season) == []
    assert len(ndvi_cuts(days, slow, np.ones(9), replace(P, min_sharpness=0.0), season)) == 1
    # a low whose only "regrowth" comes after the season's end is autumn senescence
    autumn = (float(B - 60), float(B + 35))
    late = np.array([0.85, 0.86, 0.85, 0.84, 0.85, 0.85, 0.6, 0.58, 0.7])
    assert len(ndvi_cuts(days, late, np.ones(9), P, season)) == 1
    assert ndvi_cuts(days, late, np.ones(9), P, autumn) == []


def test_season_evidence_says_not_mown_only_with_enough_clear_images() -> None:
    from cbmflow.markers.season import season_evidence
    from cbmflow.markers.signals import ParcelSignals, S2Series

    y = 2024
    days = np.arange(dt.date(y, 4, 1).toordinal(), dt.date(y, 10, 31).toordinal(), 10).astype(float)
    n = len(days)
    flat = S2Series(days=days, b04=np.full(n, 0.03), b08=np.full(n, 0.4), scl=None, count=np.full(n, 50))
    sig = ParcelSignals("p", y, s2=flat)
    assert season_evidence(sig, [], DEFAULTS).status == "not_mown"
    few = S2Series(days=days[::4], b04=np.full(len(days[::4]), 0.03), b08=np.full(len(days[::4]), 0.4), scl=None,
                   count=np.full(len(days[::4]), 50))
    assert season_evidence(ParcelSignals("p", y, s2=few), [], DEFAULTS).status == "not_enough_evidence"
    cut = Marker("mowing", f"{y}-06-01", None, None, 0.8, ("S2",))
    ev = season_evidence(sig, [cut], DEFAULTS)
    assert (ev.status, ev.cuts) == ("mown", ((f"{y}-06-01", 0.8),))
    cloudy = S2Series(days=days, b04=np.full(n, 0.03), b08=np.full(n, 0.4), scl=None, count=np.full(n, 50),
                      cloud=np.full(n, 0.8))
    assert season_evidence(ParcelSignals("p", y, s2=cloudy), [], DEFAULTS).status == "not_enough_evidence"


def test_evaluate_date_error_distribution_and_season_agreement() -> None:
    e = evaluate.error_distribution([0, 0, 2, 5, 19, -2])
    assert e["n"] == 6 and e["median"] == 1.0
    assert e["histogram"] == {"-3..-1": 1, "0": 2, "1..3": 1, "4..7": 1, "8..14": 0, "15..20": 1}
    agree = evaluate.season_agreement({"a": "mown", "b": "not_mown", "c": "not_enough_evidence"},
                                      {"a": ["2024-06-01"], "b": [], "c": [], "d": ["2024-07-01"]})
    assert agree == {"mown": {"mown": 1, "no_signals": 1}, "not_mown": {"not_mown": 1, "not_enough_evidence": 1}}


def test_s1_alone_events_only_where_s2_was_blind_when_asked() -> None:
    from cbmflow.markers.mowing import s2_blind

    s2_days = B + np.array([0.0, 5, 10, 40, 45])
    assert not s2_blind(B + 7, s2_days, 25) and s2_blind(B + 20, s2_days, 25) and s2_blind(B + 7, s2_days, 0)
    rise = Candidate(day=B + 20, start=B + 14, end=B + 26, confidence=0.99, source="S1")
    assert len(fuse([], [rise], P, s2_days)) == 1  # default: a confident rise stands alone anywhere
    gated = replace(P, s1_alone_s2_gap_days=25)
    assert len(fuse([], [rise], gated, s2_days)) == 1  # inside a 30-day S2 gap
    seen = Candidate(day=B + 7, start=B + 1, end=B + 13, confidence=0.99, source="S1")
    assert fuse([], [seen], gated, s2_days) == []  # S2 saw the sward on days 5 and 10 and no cut


def test_mown_agreement_counts_parcel_seasons() -> None:
    a = evaluate.mown_agreement({"a": ["2024-06-01"], "b": [], "c": ["2024-07-01"]},
                                {"a": ["2024-06-02"], "b": ["2024-06-10"], "c": [], "d": []})
    assert (a["mown_detected"], a["mown_missed"], a["not_mown_detected"], a["not_mown_clear"]) == (1, 1, 1, 1)
    assert a["n"] == 4 and a["accuracy"] == 0.5


def test_a_weak_s2_drop_is_a_cut_only_when_s1_confirms_it() -> None:
    from cbmflow.markers.mowing import fuse
    from cbmflow.markers.params import DEFAULTS as P
    from cbmflow.markers.signals import Candidate

    p = P.mowing
    strong = Candidate(day=737600.0, start=737595.0, end=737600.0, confidence=0.6, source="S2")
    weak = Candidate(day=737650.0, start=737645.0, end=737650.0, confidence=0.3, source="S2")
    near_strong = Candidate(day=737603.0, start=737600.0, end=737605.0, confidence=0.5, source="S2")
    rise = Candidate(day=737654.0, start=737650.0, end=737656.0, confidence=0.6, source="S1")
    assert [m.sources for m in fuse([strong], [], p, None, [weak])] == [("S2",)]  # no S1: the weak drop is nothing
    out = fuse([strong], [rise], p, None, [weak, near_strong])
    assert [(m.event_date, m.sources) for m in out] == [("2020-06-24", ("S2",)), ("2020-08-13", ("S2", "S1"))]
    assert out[1].detail.get("weak") is True  # dated by S2 (08-13), not by the coherence rise (08-17)
