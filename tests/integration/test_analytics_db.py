"""Season analytics against the real PostGIS: period means, features, runs, flags, report, CLI."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from cbmflow import cli
from cbmflow.analytics import season as analytics
from cbmflow.analytics.features import build_features
from cbmflow.analytics.periods import compute_period_means
from cbmflow.catalogue import store as catalogue
from cbmflow.catalogue.store import Scene
from cbmflow.core import db, storage
from cbmflow.core.bands import BAND_CODES
from cbmflow.core.crops import crop_group
from cbmflow.core.errors import NotFound, NothingToDo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from s1_synth import CROPS, simulate_profiles, synthetic_features  # noqa: E402

pytestmark = pytest.mark.integration
YEAR = 2025


def _aoi(conn: psycopg.Connection, name: str = "ana") -> None:
    conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES (%s, 32633, 1)", (name,))


def _parcel(conn: psycopg.Connection, parcel_id: str, crop: str, i: int, aoi: str = "ana") -> int:
    x = 500000 + 200 * (i % 50)
    y = 5000000 + 200 * (i // 50)
    row = conn.execute(
        "INSERT INTO parcels (aoi, year, parcel_id, crop_code, area_m2, geom, source) VALUES "
        "(%s, %s, %s, %s, 10000, ST_Multi(ST_MakeEnvelope(%s, %s, %s, %s, 32633)), 'test') RETURNING pid",
        (aoi, YEAR, parcel_id, crop, x, y, x + 100, y + 100),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _scene(name: str, card: str, when: datetime) -> Scene:
    ptype = {"bs": "CARD-BS", "c6": "CARD-COH6", "s2": "CARD-2A"}[card]
    return Scene(product_id=f"SIM_{name}", mission="S2A" if card == "s2" else "S1A", product_type=ptype,
                 card_type=card, sensing_time=when, simulated=True, status="extracted")


def _sig(conn: psycopg.Connection, rows: list[tuple[int, int, int, float, str]]) -> None:
    """rows: (pid, obsid, count, mean, band name)."""
    db.ensure_year_partition(conn, YEAR)
    with conn.cursor() as cur, cur.copy(
        "COPY signatures (pid, obsid, count, mean, std, min, max, p25, p50, p75, band, year) FROM STDIN"
    ) as copy:
        for pid, obsid, count, mean, band in rows:
            copy.write_row((pid, obsid, count, mean, 0, mean, mean, mean, mean, mean, BAND_CODES[band], YEAR))


def test_period_means_hand_worked(conn: psycopg.Connection) -> None:
    _aoi(conn)
    p1 = _parcel(conn, "P1", "maize", 0)
    p2 = _parcel(conn, "P2", "maize", 1)
    d = datetime(YEAR, 1, 1, 10, tzinfo=UTC)  # DOY 1
    ids = catalogue.upsert(conn, [
        _scene("a", "bs", d + timedelta(days=60)),  # DOY 61 -> period 12 (5-day), 6 (10-day)
        _scene("b", "bs", d + timedelta(days=63)),  # DOY 64 -> period 12, 6
        _scene("c", "bs", d + timedelta(days=65)),  # DOY 66 -> period 13, 6
        _scene("nan", "bs", d + timedelta(days=61)),
        _scene("s2clear", "s2", d + timedelta(days=61)),
        _scene("s2cloudy", "s2", d + timedelta(days=62)),
    ])
    a, b, c, nan = ids["SIM_a"], ids["SIM_b"], ids["SIM_c"], ids["SIM_nan"]
    clear, cloudy = ids["SIM_s2clear"], ids["SIM_s2cloudy"]
    _sig(conn, [
        (p1, a, 10, 0.1, "VV"), (p1, b, 30, 0.3, "VV"), (p1, c, 5, 0.5, "VV"),
        (p1, nan, 7, float("nan"), "VV"), (p2, a, 0, 0.9, "VV"),  # NaN and 0 pixels skipped
        (p1, clear, 20, 1000.0, "B04"), (p1, cloudy, 20, 3000.0, "B04"),
    ])
    hist = [0] * 12
    clear_h, cloudy_h = list(hist), list(hist)
    clear_h[0], clear_h[4] = 50, 95  # no-data pixels do not count; 95 vegetation
    clear_h[9] = 5  # 5 of 100 cloudy
    cloudy_h[4], cloudy_h[9] = 20, 80  # 80 % cloud
    conn.execute("INSERT INTO scl_histograms (pid, obsid, counts) VALUES (%s, %s, %s), (%s, %s, %s)",
                 (p1, clear, clear_h, p1, cloudy, cloudy_h))
    conn.commit()

    def rows() -> list[tuple]:
        return conn.execute(
            "SELECT pid, band, period, period_days, round(mean::numeric, 4)::float, n_obs, n_pixels "
            "FROM period_means ORDER BY pid, band, period").fetchall()

    assert compute_period_means(conn, "ana", YEAR) == 3
    # scene means averaged with equal weight: (0.1 + 0.3) / 2 = 0.2, not pixel-weighted 0.25
    assert rows() == [(p1, 1, 12, 5, 0.2, 2, 40), (p1, 1, 13, 5, 0.5, 1, 5), (p1, 13, 12, 5, 2000.0, 2, 40)]
    assert compute_period_means(conn, "ana", YEAR) == 3  # idempotent: replaced, not duplicated
    assert len(rows()) == 3
    assert compute_period_means(conn, "ana", YEAR, period_days=10) == 2
    assert rows() == [(p1, 1, 6, 10, 0.3, 3, 45), (p1, 13, 6, 10, 2000.0, 2, 40)]
    # cloud filter: only the clear S2 observation counts; S1 untouched
    assert compute_period_means(conn, "ana", YEAR, cloud_max=0.1) == 3
    assert rows() == [(p1, 1, 12, 5, 0.2, 2, 40), (p1, 1, 13, 5, 0.5, 1, 5), (p1, 13, 12, 5, 1000.0, 1, 20)]


def test_period_means_bad_input(conn: psycopg.Connection) -> None:
    _aoi(conn)
    _parcel(conn, "P1", "maize", 0)
    conn.commit()
    with pytest.raises(NothingToDo, match="no signatures for aoi ana year 2025"):
        compute_period_means(conn, "ana", YEAR)
    with pytest.raises(NotFound, match="AOI 'nope' does not exist \\(known: ana\\)"):
        compute_period_means(conn, "nope", YEAR)
    with pytest.raises(NothingToDo, match="no period means for aoi ana year 2025"):
        build_features(conn, "ana", YEAR)
    # "nothing to do" and an unknown AOI are both exit 2 with the reason on one line (clierrors)
    assert cli.main(["season", "periods", "--aoi", "ana", "--year", str(YEAR)]) == 2
    assert cli.main(["season", "periods", "--aoi", "nope", "--year", str(YEAR)]) == 2


def _season(conn: psycopg.Connection, crops: list[str], per_crop: int, wrong: list[int]) -> pd.DataFrame:
    """A SIMULATED season in the DB: parcels, S1 bs + c6 scenes every 6 days, signatures."""
    _aoi(conn)
    doy = np.arange(61, 300, 6).astype(float)
    sub = {c: replace(CROPS[c], share=1.0) for c in crops}
    parcels, bands = simulate_profiles(per_crop * len(crops), seed=5, mislabel=0.0, doy=doy, crops=sub)
    truth = parcels.attrs["truth"].copy()
    declared = parcels["crop"].to_numpy().copy()
    for i in wrong:  # declare the next crop of the list instead of the true one
        declared[i] = crops[(crops.index(truth.true_crop[i]) + 1) % len(crops)]
    truth["declared_crop"] = declared
    truth["mislabelled"] = truth["declared_crop"] != truth["true_crop"]
    pids = [_parcel(conn, pid, crop, i) for i, (pid, crop) in enumerate(zip(parcels.parcel_id, declared, strict=False))]
    pids.append(_parcel(conn, "EMPTY", crops[0], len(pids)))  # never observed
    t0 = datetime(YEAR, 1, 1, 5, tzinfo=UTC)
    scenes = [_scene(f"{card}_{int(d)}", card, t0 + timedelta(days=float(d) - 1))
              for d in doy for card in ("bs", "c6")]
    ids = catalogue.upsert(conn, scenes)
    rows = []
    for j, d in enumerate(doy):
        for card, names in (("bs", ("VV", "VH")), ("c6", ("COH_VV", "COH_VH"))):
            obsid = ids[f"SIM_{card}_{int(d)}"]
            for band in names:
                vals = bands[band][:, j]
                lin = 10 ** (vals / 10) if card == "bs" else vals
                rows += [(pids[i], obsid, 100, float(lin[i]), band) for i in range(len(lin))]
    _sig(conn, rows)
    conn.commit()
    return truth


def test_season_run_end_to_end(conn: psycopg.Connection, clean_db: str, tmp_path: Path) -> None:
    crops = ["grassland", "maize", "winter_wheat"]
    truth = _season(conn, crops, 30, [3, 40, 70])
    truth_uri = str(tmp_path / "truth.parquet")
    truth.to_parquet(truth_uri)
    run = analytics.run_season("ana", YEAR, truth_uri=truth_uri, report_dir=str(tmp_path / "rep"),
                               dsn=clean_db)
    assert run.n_classified == 90
    assert run.excluded["no_valid_observations"] == 1  # parcel EMPTY
    assert sum(run.flag_counts.values()) == 90
    assert run.evaluation is not None and run.evaluation["recall"] == 1.0
    flags = conn.execute(
        "SELECT parcel_id, declared, predicted, flag FROM parcel_flags WHERE run_id = %s AND flag = 'red' "
        "ORDER BY parcel_id", (run.run_id,)).fetchall()
    # exactly the three wrongly declared parcels are red, predicted as their true crop
    assert [f[0] for f in flags] == ["SIM-0000004", "SIM-0000041", "SIM-0000071"]
    for (_pid, declared, predicted, _), i in zip(flags, [3, 40, 70], strict=True):
        assert declared == truth.declared_crop[i]
        assert predicted == crop_group(truth.true_crop[i]) != crop_group(declared)
    assert "classes are crop groups (grassland, maize, winter_cereal)" in run.metrics["messages"]
    # schema 009: the evidence behind each red flag, for the inspector and the parcel view
    ev = conn.execute(
        "SELECT declared_name, best_other, best_other_probability, declared_probability, score, suspicion_rank, "
        "reason FROM parcel_flags WHERE run_id = %s AND flag = 'red' ORDER BY parcel_id", (run.run_id,)).fetchall()
    for (name, other, p_o, p_d, score, rank, reason), (_pid, declared, predicted, _) in zip(ev, flags, strict=True):
        assert name == declared and other == predicted and p_o > p_d and score > 0.5 and 1 <= rank <= 4
        assert reason.startswith(f"{predicted} (p=") and "more likely than the declared" in reason
    assert "Red and yellow parcels for the inspector" in Path(run.report_uri).read_text()
    assert conn.execute("SELECT count(*) FROM parcel_flags WHERE run_id = %s", (run.run_id,)).fetchone()[0] == 90
    stored = conn.execute("SELECT report_uri, metrics->'flag_counts', aoi, year FROM classification_runs "
                          "WHERE run_id = %s", (run.run_id,)).fetchone()
    assert stored[0] == run.report_uri == str(tmp_path / "rep" / "index.html")
    assert stored[2:] == ("ana", YEAR)
    html = Path(run.report_uri).read_text()
    for png in ("accuracy_per_class.png", "confusion_matrix.png", "flag_counts.png", "red_00.png"):
        assert png in html and (tmp_path / "rep" / png).stat().st_size > 1000
    assert "no valid observations" in html
    # a second run is a new run; the first stays
    assert cli.main(["season", "classify", "--aoi", "ana", "--year", str(YEAR), "--skip-periods",
                     "--report", str(tmp_path / "rep2")]) == 0
    assert conn.execute("SELECT count(*) FROM classification_runs").fetchone()[0] == 2


def test_classify_command_and_s3_report(tmp_path: Path, s3_bucket: str, capsys) -> None:
    feats, truth = synthetic_features(600, seed=4, mislabel=0.05)
    feats = feats.drop(columns=["pid"])
    f_in, f_out = tmp_path / "features.parquet", tmp_path / "flags.parquet"
    feats.to_parquet(f_in)
    truth.to_parquet(tmp_path / "truth.parquet")
    code = cli.main(["classify", "--features", str(f_in), "--out", str(f_out), "--report",
                     f"{s3_bucket}/reports/r1", "--min-class-size", "20",
                     "--truth", str(tmp_path / "truth.parquet")])
    assert code == 0
    out = pd.read_parquet(f_out)
    assert list(out.columns) == ["parcel_id", "declared", "predicted", "probability", "flag", "declared_probability",
                                 "best_other", "best_other_probability", "score", "reason", "predicted_name",
                                 "evidence"]
    assert len(out) == 600 and set(out.flag) <= {"green", "yellow", "red"}
    # schema 012 / issue 16: every red or yellow flag has its evidence (JSON text), green none
    flagged = out[out.flag != "green"]
    assert flagged.evidence.notna().all() and out.loc[out.flag == "green", "evidence"].isna().all()
    first = json.loads(flagged.evidence.iloc[0])[0]
    assert set(first) == {"period", "band", "value", "declared_p25", "declared_p75", "predicted_median", "z"}
    assert storage.exists(f"{s3_bucket}/reports/r1/index.html")
    assert storage.exists(f"{s3_bucket}/reports/r1/confusion_matrix.png")
    printed = capsys.readouterr().out
    assert "red flags vs truth: precision" in printed and f"report: {s3_bucket}/reports/r1/index.html" in printed
    # a features file without the crop column: one clear line, exit 2
    feats.drop(columns=["crop"]).to_parquet(tmp_path / "bad.parquet")
    assert cli.main(["classify", "--features", str(tmp_path / "bad.parquet"), "--out", str(f_out)]) == 2
    assert "column 'crop' missing; available columns: parcel_id" in capsys.readouterr().err
