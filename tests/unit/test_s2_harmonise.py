"""S2 harmonisation: the +1000 offset of processing baseline >= 04.00, exact DN answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cbmflow.card import optical as s2
from cbmflow.core.errors import InputError


def test_baseline_0301_unchanged() -> None:
    dn = np.array([[0, 800, 1000], [1500, 9000, 65535]], dtype=np.uint16)
    out = s2.harmonise(dn, "03.01")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, dn)


def test_baseline_0400_offset_removed_nodata_kept_low_values_clipped_to_one() -> None:
    dn = np.array([[1000, 1500, 0], [800, 1001, 11000]], dtype=np.uint16)
    out = s2.harmonise(dn, "04.00", -1000)
    # 1000 -> 0 would read as no-data: it is a valid (dark) pixel, so it becomes 1, as does 800.
    np.testing.assert_array_equal(out, np.array([[1, 500, 0], [1, 1, 10000]], dtype=np.uint16))
    assert out.dtype == np.uint16


def test_baseline_comparison() -> None:
    assert not s2.needs_offset_removal("02.14")
    assert not s2.needs_offset_removal("03.01")
    assert s2.needs_offset_removal("04.00")
    assert s2.needs_offset_removal("05.11")
    assert s2.needs_offset_removal("10.00")  # numeric, not string comparison
    with pytest.raises(InputError):
        s2.needs_offset_removal("N0400")


def test_read_real_mtd(shared_data: Path) -> None:
    meta = s2.read_l2a_metadata((shared_data / "s2" / "T29UNU_MTD_MSIL2A.xml").read_bytes())
    assert meta.baseline == "04.00"
    assert meta.quantification == 10000
    assert meta.boa_add_offset["B04"] == -1000 and meta.boa_add_offset["B11"] == -1000
    assert len(meta.boa_add_offset) == 13


def test_scene_metadata_from_properties_or_product_id() -> None:
    assert s2.scene_metadata({}, {"s2:processing_baseline": "03.01"}, "x").baseline == "03.01"
    m = s2.scene_metadata({}, {}, "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T170000")
    assert m.baseline == "04.00" and m.boa_add_offset == {}
    with pytest.raises(InputError, match="processing baseline unknown"):
        s2.scene_metadata({"B04": "x"}, {}, "S2A_SOMETHING")
