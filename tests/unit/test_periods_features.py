"""Feature table from period means: dB conversion, cross-ratio, interpolation, missing fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbmflow.analytics.features import feature_groups, features_from_period_means, interpolate_rows
from cbmflow.analytics.periods import period_bounds
from cbmflow.core.bands import BAND_CODES
from cbmflow.core.errors import InputError, NothingToDo

VV, VH, CVV, CVH = (BAND_CODES[b] for b in ("VV", "VH", "COH_VV", "COH_VH"))


def test_interpolate_rows_linear_inside_constant_at_edges() -> None:
    a = np.array([
        [np.nan, 1.0, np.nan, np.nan, 4.0, np.nan],
        [2.0, np.nan, np.nan, np.nan, np.nan, np.nan],
        [np.nan] * 6,
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    ])
    out = interpolate_rows(a)
    np.testing.assert_allclose(out[0], [1, 1, 2, 3, 4, 4])
    np.testing.assert_allclose(out[1], [2] * 6)
    assert np.isnan(out[2]).all()
    np.testing.assert_allclose(out[3], a[3])


def test_interpolate_rows_rejects_1d() -> None:
    with pytest.raises(InputError, match="2-d"):
        interpolate_rows(np.zeros(3))


def test_period_bounds() -> None:
    assert period_bounds(0, 5) == (1, 5)
    assert period_bounds(12, 5) == (61, 65)
    assert period_bounds(72, 5) == (361, 365)
    assert period_bounds(73, 5) == (366, 366)


def _means(rows: list[tuple[int, int, int, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["pid", "band", "period", "mean"])
    df["period_days"] = 5
    return df


PARCELS = pd.DataFrame({
    "pid": [1, 2, 3], "parcel_id": ["A", "B", "C"], "crop": ["wheat", "maize", "wheat"],
    "area_m2": [1e4, 2e4, 3e4],
})


def test_features_hand_worked() -> None:
    means = _means([
        (1, VV, 10, 0.1), (1, VV, 12, 0.01),
        (1, VH, 10, 0.01), (1, VH, 11, 0.001), (1, VH, 12, 0.01),
        (1, CVV, 10, 0.5), (1, CVV, 12, 0.7),
        (2, VV, 11, 0.1), (2, VH, 11, 0.01),
        (2, CVH, 10, 0.4), (2, CVH, 12, 0.6),
        (3, CVV, 11, 0.3),  # no VV/VH at all -> excluded
    ])
    f = features_from_period_means(PARCELS, means)
    assert f["parcel_id"].tolist() == ["A", "B"]
    assert f.attrs["excluded"] == {"no_valid_observations": 1}
    assert f.attrs["excluded_parcels"] == ["C"]
    assert f.attrs["periods"] == [10, 11, 12]
    g = feature_groups(list(f.columns))
    assert list(g) == ["VV", "VH", "VHVV", "COH_VV", "COH_VH"]
    assert g["VV"] == ["VV_p010", "VV_p011", "VV_p012"]

    def row(i: int, grp: str) -> list[float]:
        return f.loc[i, g[grp]].astype(float).tolist()

    assert row(0, "VV") == pytest.approx([-10, -15, -20], abs=1e-4)
    assert row(0, "VH") == pytest.approx([-20, -30, -20], abs=1e-4)
    assert row(0, "VHVV") == pytest.approx([-10, -15, 0], abs=1e-4)
    assert row(0, "COH_VV") == pytest.approx([0.5, 0.6, 0.7], abs=1e-6)
    assert row(0, "COH_VH") == pytest.approx([0.4, 0.5, 0.6], abs=1e-6)  # AOI median, none own
    assert row(1, "VV") == pytest.approx([-10, -10, -10], abs=1e-4)
    assert row(1, "VHVV") == pytest.approx([-10, -10, -10], abs=1e-4)
    assert row(1, "COH_VV") == pytest.approx([0.5, 0.6, 0.7], abs=1e-6)
    assert row(1, "COH_VH") == pytest.approx([0.4, 0.5, 0.6], abs=1e-6)
    miss = f[["VV_missing", "VH_missing", "VHVV_missing", "COH_VV_missing", "COH_VH_missing"]]
    assert miss.iloc[0].tolist() == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3, 1])
    assert miss.iloc[1].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1, 1 / 3])


def test_features_season_window_and_absent_group() -> None:
    means = _means([(1, VV, 5, 0.1), (1, VH, 5, 0.01), (1, VV, 20, 0.1), (1, VH, 20, 0.01),
                    (2, VV, 7, 0.1), (2, VH, 7, 0.01)])
    f = features_from_period_means(PARCELS, means, first_period=6, last_period=8)
    assert f.attrs["periods"] == [6, 7, 8]
    # no coherence at all in the AOI: the groups are left out, not invented
    assert not [c for c in f.columns if c.startswith("COH")]
    # parcel A has nothing inside the window -> excluded
    assert f["parcel_id"].tolist() == ["B"]
    assert f.attrs["excluded"]["no_valid_observations"] == 2


def test_features_errors() -> None:
    with pytest.raises(NothingToDo, match="VV/VH"):
        features_from_period_means(PARCELS, _means([(1, CVV, 3, 0.5)]))
    mixed = _means([(1, VV, 3, 0.1), (1, VH, 3, 0.01)])
    mixed.loc[1, "period_days"] = 10
    with pytest.raises(InputError, match="mix period lengths"):
        features_from_period_means(PARCELS, mixed)
    with pytest.raises(InputError, match="empty season"):
        features_from_period_means(PARCELS, _means([(1, VV, 3, 0.1), (1, VH, 3, 0.01)]),
                                   first_period=5, last_period=4)
