"""The long-table marker input (CSV / Parquet) reads what the JRC files hold and names every bad row."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from cbmflow.cli import main
from cbmflow.core.errors import InputError
from cbmflow.markers import DEFAULTS, io, longtable
from cbmflow.markers.mowing import detect_mowing
from cbmflow.markers.signals import ParcelSignals

CLOUDY = (3, 8, 9, 10, 11)


def to_rows(sigs: list[ParcelSignals]) -> list[dict[str, object]]:
    """The signals as long-table rows (S2 bands with the SCL cloud share, S1 per orbit)."""
    rows: list[dict[str, object]] = []
    for s in sigs:
        assert s.s2 is not None
        cf = s.s2.cloud_fraction(CLOUDY)
        for k, d in enumerate(s.s2.days):
            for band, arr in (("B04", s.s2.b04), ("B08", s.s2.b08)):
                rows.append({"parcel_id": s.parcel, "date": dt.date.fromordinal(int(d)).isoformat(), "band": band,
                             "mean": float(arr[k]), "count": int(s.s2.count[k]), "cloud_fraction": float(cf[k])})
        for o in s.s1:
            if o.coh_days is None:
                continue
            for k, d in enumerate(o.coh_days):
                for band, arr in (("COH_VV", o.coh_vv), ("COH_VH", o.coh_vh)):
                    if arr is not None:
                        rows.append({"parcel_id": s.parcel, "date": dt.date.fromordinal(int(d)).isoformat() + "T17:00:00",
                                     "band": band, "mean": float(arr[k]), "count": 90, "orbit": o.orbit})
    return rows


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    cols = ["parcel_id", "date", "band", "mean", "count", "orbit", "cloud_fraction"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def jrc(shared_data: Path) -> list[ParcelSignals]:
    return io.read_tsdir(shared_data / "jrc_cbm_signatures" / "tsdir")


def test_long_table_of_the_jrc_files_gives_the_same_mowing_events(jrc: list[ParcelSignals], tmp_path: Path) -> None:
    f = write(tmp_path / "long.csv", to_rows(jrc))
    assert longtable.is_long_table(f)
    got = {s.parcel: s for s in longtable.read_long_table(f)}
    assert sorted(got, key=int) == [s.parcel for s in jrc]
    for s in jrc:
        g = got[s.parcel]
        assert g.year == 2020 and g.s2 is not None and len(g.s2.days) == len(s.s2.days)  # type: ignore[union-attr]
        assert [o.orbit for o in g.s1] == [o.orbit for o in s.s1 if o.coh_days is not None]
        assert [m.event_date for m in detect_mowing(g, DEFAULTS)] == [m.event_date for m in detect_mowing(s, DEFAULTS)]


def test_parquet_and_the_cli_read_it(jrc: list[ParcelSignals], tmp_path: Path) -> None:
    import pandas as pd

    f = tmp_path / "long.parquet"
    pd.DataFrame(to_rows(jrc[:2])).to_parquet(f)
    out = tmp_path / "m.csv"
    assert main(["markers", "--signatures", str(f), "--out", str(out)]) == 0
    assert {r["parcel"] for r in csv.DictReader(out.open())} == {"1", "2"}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("date", "2020-13-01", "column 'date'"),
    ("band", "B99", "unknown band"),
    ("mean", "abc", "column 'mean'"),
    ("mean", "4500", "not a reflectance"),
    ("count", "-1", "column 'count'"),
    ("cloud_fraction", "1.5", "column 'cloud_fraction'"),
    ("parcel_id", "", "empty parcel id"),
])
def test_a_bad_row_is_named_by_file_row_and_column(jrc: list[ParcelSignals], tmp_path: Path, field: str,
                                                   value: str, message: str) -> None:
    rows = to_rows(jrc[:1])[:10]
    rows[4][field] = value
    f = write(tmp_path / "bad.csv", rows)
    with pytest.raises(InputError, match=message) as e:
        longtable.read_long_table(f)
    assert str(f) in str(e.value) and "row 6" in str(e.value)  # header = row 1, so the 5th data row is row 6
    assert main(["markers", "--signatures", str(f), "--out", str(tmp_path / "o.csv")]) == 2


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    f = tmp_path / "x.parquet"
    import pandas as pd

    pd.DataFrame({"parcel": ["a"], "date": ["2020-05-01"], "band": ["B04"]}).to_parquet(f)
    with pytest.raises(InputError, match=r"missing column\(s\) \['mean', 'count'\]"):
        longtable.read_long_table(f)
