"""Benchmark: mowing events on the shared Slovak grassland plots (2021-2023), scored leave-region-out.

    nice .venv/bin/python benchmarks/mowing_sk.py [--set mowing.x=v ...] [--s1]

Reads ``../shared/data/mowing/`` (see its README; not copied into the project): S2 red/NIR with the
``mask`` band as cloud share, the dated cuts (``type`` k) and the not-mown plot-years (``type`` n).
Only plot-years with a record are scored. Prints precision / recall / F1 at ±3 d and −3/+20 d.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MOWING = ROOT.parent / "shared" / "data" / "mowing"


def load_truth(folder: Path = MOWING) -> tuple[dict[str, list[str]], dict[str, str]]:
    """{plot_year: [cut dates]} (empty list = recorded not mown) and {plot_year: region}."""
    con = sqlite3.connect(folder / "GMI_Long.gpkg")
    truth: dict[str, list[str]] = {}
    region: dict[str, str] = {}
    for plot, typ, date, reg, year in con.execute('SELECT PLOTID, type, date, id, year FROM "GMI_Long"'):
        key = f"{plot}_{int(year)}"
        truth.setdefault(key, [])
        region[key] = str(reg)
        if typ == "k" and date:
            truth[key].append(str(date)[:10])
    con.close()
    return truth, region


def load_signals(folder: Path = MOWING, keys: set[str] | None = None, s1: bool = False,
                 cloud: bool = True) -> list[Any]:
    """ParcelSignals per plot-year from the S2 (and optionally coherence) parquet files.

    ``cloud=False`` keeps only the acquisitions with values and no cloud share (an export of the
    clear acquisitions alone, as a tsdir without SCL histograms would be).
    """
    import pandas as pd

    from cbmflow.markers.signals import ParcelSignals, S1Orbit, S2Series

    s2 = pd.read_parquet(folder / "gmd_train_s2.parquet", columns=["PLOTID", "Date", "red", "nir", "mask"])
    s2["year"] = s2["Date"].str[:4].astype(int)
    coh: dict[str, Any] = {}
    if s1:
        c = pd.read_parquet(folder / "gmd_train_coh.parquet", columns=["PLOTID", "system:index", "b1", "b2"])
        c["end"] = c["system:index"].str.extract(r"_\d{8}-(\d{8})_")[0]
        c = c.dropna(subset=["end"])
        c["year"] = c["end"].str[:4].astype(int)
        coh = {k: g.sort_values("end") for k, g in c.groupby(["PLOTID", "year"])}
    out = []
    for (plot, year), g in s2.groupby(["PLOTID", "year"]):
        key = f"{plot}_{year}"
        if keys is not None and key not in keys:
            continue
        g = g.sort_values("Date")
        days = np.array([np.datetime64(d, "D").astype("datetime64[D]").astype(object).toordinal() for d in g["Date"]],
                        dtype=float)
        red = g["red"].to_numpy(float).copy()
        nir = g["nir"].to_numpy(float).copy()
        bad = (red == -9999) | (nir == -9999)
        red[bad] = np.nan
        nir[bad] = np.nan
        share = np.where(bad, 1.0, 1.0 - g["mask"].to_numpy(float))
        if not cloud:
            days, red, nir = days[~bad], red[~bad], nir[~bad]
        ser = S2Series(days=days, b04=red, b08=nir, scl=None, count=np.ones(len(days)),
                       cloud=share if cloud else None)
        orbits: tuple[Any, ...] = ()
        cg = coh.get((plot, year))
        if cg is not None and len(cg):
            cd = np.array([dt.date(int(e[:4]), int(e[4:6]), int(e[6:])).toordinal() for e in cg["end"]], dtype=float)
            b1, b2 = cg["b1"].to_numpy(float), cg["b2"].to_numpy(float)
            good = (b1 > -9999) & (b2 > -9999)
            orbits = (S1Orbit(orbit="coh", days=np.zeros(0), coh_days=cd[good], coh_vv=b1[good], coh_vh=b2[good]),)
        out.append(ParcelSignals(parcel=key, year=int(year), s2=ser, s1=orbits))
    return out


def write_tsdir(out: Path, folder: Path = MOWING, scl: bool = True) -> Path:
    """Write the recorded plot-years as JRC tsdir S2 files (``<plot>_<year>_s2_ts.csv``) and a truth CSV.

    This is the shape of the held-out camera set (S2 only, JRC tsdir): B04 = ``red``, B08 = ``nir``,
    one acquisition per row pair; acquisitions without values (-9999, masked at export) are left out;
    with ``scl`` the ``mask`` goes into the SCL histogram (clear -> class 4, not clear -> class 9).
    Returns the truth CSV (``parcel,date``; an empty date = recorded not mown).
    """
    import csv

    import pandas as pd

    truth, _ = load_truth(folder)
    out.mkdir(parents=True, exist_ok=True)
    s2 = pd.read_parquet(folder / "gmd_train_s2.parquet", columns=["PLOTID", "Date", "red", "nir", "mask"])
    s2 = s2[(s2["red"] != -9999) & (s2["nir"] != -9999)]
    s2["key"] = s2["PLOTID"] + "_" + s2["Date"].str[:4]
    hist = [f"hist.{k}" for k in range(12)]
    written = set()
    for key, g in s2[s2["key"].isin(set(truth))].groupby("key"):
        rows = []
        for r in g.sort_values("Date").itertuples(index=False):
            h = [0] * 12
            h[4 if r.mask == 1 else 9] = 1
            for band, value in (("B04", r.red), ("B08", r.nir)):
                rows.append([r.Date[:10], band, 1, value] + (h if scl else []))
        with open(out / f"{key}_s2_ts.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["date", "band", "count", "MEAN"] + (hist if scl else []))
            w.writerows(rows)
        written.add(key)
    truth_csv = out / "truth.csv"
    with open(truth_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["parcel", "date"])
        for key in sorted(written):
            for d in truth[key] or [""]:
                w.writerow([key, d])
    return truth_csv


def run(overrides: dict[str, Any], s1: bool = False, verbose: bool = True) -> dict[str, Any]:
    """Score the detector with the given parameter overrides on every recorded plot-year."""
    from cbmflow.markers import DEFAULTS, evaluate
    from cbmflow.markers.mowing import detect_mowing

    truth, region = load_truth()
    sigs = load_signals(keys=set(truth), s1=s1)
    p = DEFAULTS.with_overrides(overrides)
    det = {s.parcel: [m.event_date for m in detect_mowing(s, p) if m.event_date] for s in sigs}
    truth = {k: v for k, v in truth.items() if k in det}
    res: dict[str, Any] = {"plot_years": len(truth), "cuts": sum(len(v) for v in truth.values())}
    for name, sc in evaluate.score_all(det, truth).items():
        res[name] = sc.as_dict()
    for r in ("LR", "NB", "NS"):
        sub = {k: v for k, v in truth.items() if region[k] == r}
        res[f"m3p20_{r}"] = evaluate.score(det, sub, (-3, 20)).as_dict()
    from cbmflow.markers.season import season_evidence

    status = {s.parcel: season_evidence(s, detect_mowing(s, p), p).status for s in sigs}
    res["season_agreement"] = evaluate.season_agreement(status, truth)
    res["errors_m3p20"] = evaluate.error_distribution(evaluate.date_errors(det, truth, (-3, 20)))
    nm = [k for k, v in truth.items() if not v]
    res["not_mown_with_detection"] = sum(1 for k in nm if det.get(k))
    res["not_mown"] = len(nm)
    if verbose:
        for k in ("pm3", "m3p20"):
            s = res[k]
            print(f"{k}: TP {s['tp']} FP {s['fp']} FN {s['fn']} P {s['precision']} R {s['recall']} F1 {s['f1']}")
        for r in ("LR", "NB", "NS"):
            s = res[f"m3p20_{r}"]
            print(f"  {r}: P {s['precision']} R {s['recall']} F1 {s['f1']} (n {s['n_true']})")
        print(f"season verdicts: {res['season_agreement']}")
        print(f"date errors at -3/+20: {res['errors_m3p20']}")
        print(f"not mown plot-years with a detection: {res['not_mown_with_detection']} / {res['not_mown']}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--s1", action="store_true")
    a = ap.parse_args()
    ov = dict(x.split("=", 1) for x in a.set)
    run(ov, a.s1)
    sys.exit(0)
