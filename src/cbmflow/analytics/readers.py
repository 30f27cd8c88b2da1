"""Wide per-parcel feature tables from other systems (WorldCereal extractions), for ``classify --features``.

The wide-table contract (docs/analytics.md, "Features from any source"): one row per parcel, a
``parcel_id`` column, a ``crop`` column (the declaration, any code or name), optionally
``crop_name``, ``area_m2``, ``pid``; every other numeric column is a feature. Time series columns
are named ``<GROUP>_p<NNN>`` with ``NNN`` an ordered period index (5-day periods, months, ...),
e.g. ``VV_p003`` (dB), ``VH_p003`` (dB), ``VHVV_p003`` (dB), ``B08_p003`` (reflectance 0..1),
``NDVI_p003``; the report plots the VH, VV and VH/VV groups. Missing values may stay NaN (the
estimators take NaN natively) or be filled; ``<GROUP>_missing`` holds the filled fraction.

:func:`worldcereal_monthly` converts WorldCereal's point extractions (long table, one row per
sample and month, uint16 encodings) into that table; CLI ``cbmflow features worldcereal IN OUT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.features import interpolate_rows
from cbmflow.core.errors import InputError, NotFound

log = logging.getLogger(__name__)

NODATA = 65535
S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def s1_dn_to_db(dn: np.ndarray) -> np.ndarray:
    """WorldCereal's compressed S1 backscatter (uint16) to dB: 20*log10(DN) - 83; 0 and 65535 are NaN."""
    a = np.asarray(dn, dtype=np.float64)
    out = np.full(a.shape, np.nan)
    ok = (a > 0) & (a != NODATA)
    out[ok] = 20.0 * np.log10(a[ok]) - 83.0
    return out


def crop_names(classes_json: str | os.PathLike[str] | None) -> dict[str, str]:
    """WorldCereal code -> name (CROPTYPE0 table of wc_croptype_classes.json); empty without the file."""
    if classes_json is None or not Path(classes_json).exists():
        return {}
    tables = json.loads(Path(classes_json).read_text())
    return {str(k): str(v) for k, v in tables.get("CROPTYPE0", {}).items()}


def worldcereal_monthly(
    path: str | os.PathLike[str],
    *,
    classes_json: str | os.PathLike[str] | None = None,
    fill: str = "interpolate",
) -> pd.DataFrame:
    """A wide table (parcel_id, crop, crop_name, VV/VH/VHVV/S2/NDVI per month) from a WorldCereal extraction."""
    if fill not in ("interpolate", "none"):
        raise InputError(f"fill must be 'interpolate' or 'none', got {fill!r}")
    if not Path(path).exists():
        raise NotFound(f"file {path} does not exist")
    long = pd.read_parquet(path)
    need = ["sample_id", "timestamp", "ewoc_code", "S1-SIGMA0-VV", "S1-SIGMA0-VH"]
    missing = [c for c in need if c not in long.columns]
    if missing:
        raise InputError(f"{path} is not a WorldCereal extraction: columns {missing} missing; "
                         f"available: {', '.join(map(str, long.columns))}")
    codes = long.groupby("sample_id")["ewoc_code"].nunique()
    if (codes > 1).any():
        raise InputError(f"sample {codes[codes > 1].index[0]!r} has more than one ewoc_code")
    ts = pd.to_datetime(long["timestamp"])
    month = (ts.dt.year * 12 + ts.dt.month).to_numpy()
    long = long.assign(_period=month - month.min())
    periods = np.arange(int(long["_period"].max()) + 1)
    samples = np.sort(long["sample_id"].astype(str).unique())
    row_of = {s: i for i, s in enumerate(samples)}
    r = np.array([row_of[s] for s in long["sample_id"].astype(str)])
    c = long["_period"].to_numpy()

    def grid(values: np.ndarray) -> np.ndarray:
        g = np.full((len(samples), len(periods)), np.nan)
        g[r, c] = values
        return g

    series: dict[str, np.ndarray] = {
        "VV": grid(s1_dn_to_db(long["S1-SIGMA0-VV"].to_numpy())),
        "VH": grid(s1_dn_to_db(long["S1-SIGMA0-VH"].to_numpy())),
    }
    for b in S2_BANDS:
        col = f"S2-L2A-{b}"
        if col in long.columns:
            v = long[col].to_numpy().astype(np.float64)
            v[(v == NODATA) | (v <= 0)] = np.nan
            series[b] = grid(v / 10_000.0)
    if "B04" in series and "B08" in series:
        series["NDVI"] = (series["B08"] - series["B04"]) / (series["B08"] + series["B04"])
    missing_frac = {g: float(np.isnan(a).mean()) for g, a in series.items()}
    cols: dict[str, Any] = {}
    miss_cols: dict[str, Any] = {}
    for g, a in series.items():
        miss_cols[f"{g}_missing"] = np.isnan(a).mean(axis=1)
        if fill == "interpolate":
            a = interpolate_rows(a)
        series[g] = a
    series["VHVV"] = series["VH"] - series["VV"]
    for g, a in series.items():
        for j in periods:
            cols[f"{g}_p{j:03d}"] = a[:, j].astype(np.float32)
    first = long.drop_duplicates("sample_id").set_index(long.drop_duplicates("sample_id")["sample_id"].astype(str))
    code = first.loc[samples, "ewoc_code"].astype(str).to_numpy()
    names = crop_names(classes_json)
    out = pd.DataFrame({
        "parcel_id": samples,
        "crop": code,
        "crop_name": [names.get(x, f"ewoc {x}") for x in code],
        **cols,
        **miss_cols,
    })
    out.attrs["source"] = str(path)
    out.attrs["period_start"] = str(ts.min().date())
    out.attrs["period"] = "month"
    log.info("WorldCereal %s: %d parcels, %d months; missing fractions %s", path, len(out), len(periods),
             {k: round(v, 3) for k, v in missing_frac.items()})
    return out


def flanders(shared: str | os.PathLike[str] | None = None, *, fill: str = "interpolate") -> pd.DataFrame:
    """The shared real Flanders LPIS 2021 set (100 parcels, WorldCereal monthly S1+S2) as a wide table."""
    from cbmflow.core.config import shared_data_dir

    base = Path(shared) if shared else Path(shared_data_dir()) / "timeseries"
    return worldcereal_monthly(base / "wc_flanders_lpis2021_s1s2_monthly.parquet",
                               classes_json=base / "wc_croptype_classes.json", fill=fill)


def _cmd_worldcereal(args: argparse.Namespace) -> int:
    from cbmflow.analytics.season import write_parquet

    df = worldcereal_monthly(args.input, classes_json=args.classes, fill=args.fill)
    write_parquet(df, args.out)
    print(f"wide table: {len(df)} parcels, {df.shape[1]} columns, "
          f"{df['crop'].nunique()} crops -> {args.out}")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add `features worldcereal` to the cbmflow command."""
    p = subparsers.add_parser("features", help="convert per-parcel features from other systems to a wide table")
    sub = p.add_subparsers(dest="features_command", required=True)
    w = sub.add_parser("worldcereal", help="WorldCereal monthly point extraction (parquet) -> wide table")
    w.add_argument("input")
    w.add_argument("out")
    w.add_argument("--classes", default=None, help="wc_croptype_classes.json for crop names")
    w.add_argument("--fill", default="interpolate", choices=["interpolate", "none"],
                   help="fill gaps by linear interpolation along time (default) or leave NaN")
    w.set_defaults(func=_cmd_worldcereal)
