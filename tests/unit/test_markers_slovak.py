"""Real-data guard: S2 mowing on the shared Slovak grassland plots (2021-2023) holds its measured level.

The figures are those of the defaults in cbmflow.markers.params, which leave-region-out tuning
chose in every fold (``benchmarks/tune_mowing_sk.py``: pooled held-out region -3/+20 d precision
0.758, recall 0.675, F1 0.714). Runs in a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def result(shared_data: Path) -> dict:
    if not (shared_data / "mowing" / "gmd_train_s2.parquet").exists():
        pytest.fail(f"shared Slovak mowing data not found under {shared_data / 'mowing'}")
    sys.path.insert(0, str(BENCH))
    try:
        import mowing_sk
    finally:
        sys.path.remove(str(BENCH))
    return mowing_sk.run({}, verbose=False)


def test_slovak_s2_mowing_precision_and_recall(result: dict) -> None:
    late, day = result["m3p20"], result["pm3"]
    assert result["cuts"] == 209 and result["not_mown"] == 37  # the recorded plot-years with S2 signals
    # landed detector on the same plots: precision 0.32, recall 0.41 at -3/+20 d
    assert late["precision"] >= 0.75 and late["recall"] >= 0.67 and late["f1"] >= 0.71, late
    assert day["precision"] >= 0.61 and day["recall"] >= 0.55, day
    for r in ("LR", "NB", "NS"):
        assert result[f"m3p20_{r}"]["f1"] >= 0.68, (r, result[f"m3p20_{r}"])


def test_slovak_not_mown_verdicts_are_rarely_wrong(result: dict) -> None:
    agree = result["season_agreement"]
    assert agree["not_mown"].get("not_mown", 0) >= 12  # of 37 recorded not-mown plot-years
    assert agree["mown"].get("not_mown", 0) <= 16  # of 201 mown plot-years
