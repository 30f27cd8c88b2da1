"""Every marker parameter in one place, with its published default and where it comes from.

Sources (full references in docs/markers.md):

* [JRC-SMP] JRC CbM ``scripts/signal_marker_processing`` (ec-jrc/cbm, BSD-3-Clause), its example
  configuration ``notebook/config/main.json``: season 04-01..10-31, S2 observations dropped when
  any pixel falls in SCL classes 3, 8, 9, 10, 11 (``cloud_pct > 0``), NDVI drop detector
  ``min_drop`` 0.1 / ``min_duration`` 14 days, coherence peak detector ``min_increase`` 0.08,
  data gaps ``min_gap_len`` 20 days, state change to state 4 ("maintained") ``min_duration``
  10 days, and the state classifier (k-NN, k = 5, on B08/B11/B04 stretched 1200-5700 /
  800-4100 / 150-2800 to 0-255) trained on ``nl2020_b08_b11_b04_classified_1000.csv``.
* [DeVroey2022] De Vroey, Radoux, Defourny (2022), grassland mowing detection from S1 6-day
  coherence and S2 NDVI (the Sen4CAP L4B method): coherence rises and NDVI drops after a cut.
* [CFAR] constant-false-alarm-rate thresholding: a residual is an alarm when it exceeds
  k times the local noise; for Gaussian noise k = 1.96 gives a 2.5 % one-sided false-alarm rate.

Anything marked ``ours`` is a cbmflow choice, not a published value; it was set before the
evaluation and not tuned on the JRC ground truth (see docs/markers.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cbmflow.core.errors import InputError


@dataclass(frozen=True)
class S2Params:
    """Which Sentinel-2 observations are usable."""

    cloud_classes: tuple[int, ...] = (3, 8, 9, 10, 11)  # [JRC-SMP] cloud_categories
    cloud_max: float = 0.0  # [JRC-SMP] drop when cloud_pct > 0
    min_count: int = 1  # ours: pixels the parcel needs in the scene


@dataclass(frozen=True)
class MowingParams:
    """Mowing from S2 NDVI drops and S1 6-day coherence rises, fused."""

    season_start: str = "04-01"  # [JRC-SMP]
    season_end: str = "10-31"  # [JRC-SMP]
    min_drop: float = 0.1  # [JRC-SMP] drop-detector min_drop (NDVI)
    min_ndvi_before: float = 0.6  # LRO (grid 0.4/0.5/0.6 with S1, 0.4/0.6 S2 alone): the expected level before a cut; Slovak S2 F1 0.842 vs 0.838 at 0.4 (FP 25 vs 28), JRC fused 0.606 with s1_confirm_min_drop: April green-up dips are not cuts
    max_drop_gap_days: int = 30  # ours: a drop across a longer gap is not dated
    regrowth_days: int = 45  # ours: the NDVI must rise again within this many days ...
    regrowth_min: float = 0.05  # ours: ... by at least this much above the low
    spike_max_days: int = 12  # ours: a dip recovered within this span is noise (haze, shadow)
    spike_tolerance: float = 0.05  # ours: "recovered" = back within this of the level before
    coh_pair_days: int = 6  # the coherence pair length; a record is dated by its second image
    coh_min_increase: float = 0.08  # [JRC-SMP] peak-detector min_increase
    coh_trend_days: int = 30  # ours: the local linear trend uses the records of the last 30 days
    coh_trend_min_points: int = 3  # ours
    coh_k: float = 1.96  # [CFAR] 2.5 % one-sided false-alarm rate under Gaussian noise
    coh_sigma_min: float = 0.02  # ours: noise floor of a parcel's mean coherence
    s1_alone_min_conf: float = 0.95  # JRC NL -3/+20 F1 0.51 at 0.95 vs 0.43 at 0 and 0.29 at 1.01 (S1 alone off); Slovak point-plot coherence alone is weak (F1 0.16). An S1 coherence rise without S2 support becomes an event only this confident
    s1_alone_s2_gap_days: int = 0  # ... and only where the clear S2 images around it are this many days apart (0 = anywhere). JRC NL -3/+20 fused F1 0.53 at 0, 0.45 at 25; Slovak fused 0.72 at 0, 0.81 at 25, 0.84 with S1 alone off (LRO: off in 3 of 3 folds). Kept at 0 for polygon parcels; use s1_alone_min_conf=1.01 for point plots
    fuse_date: str = "s2"  # Slovak -3/+20 F1 0.72 ("s2": S1 confirms, S2 dates) vs 0.67 ("overlap" of both intervals)
    fuse_days: int = 12  # ours: S2 and S1 evidence within this many days is one event
    s1_confirm_min_drop: float = 0.1  # an S2 drop this deep (below cut_min_drop) is a cut only when an S1 coherence rise within fuse_days confirms it (0 = off); Slovak S2+S1 all plots F1 0.839 at 0.1 vs 0.842 off (tied within the CI 0.80-0.88; LRO 1 of 3 folds), JRC fused 0.606 vs 0.562: kept for polygon parcels, see docs/markers.md
    min_separation_days: int = 14  # [JRC-SMP] min_duration: two cuts at least this far apart
    max_events: int = 5  # ours: at most this many mowing events per season
    use_s1: bool = True
    use_s2: bool = True
    s2_method: str = "expected"  # "expected" (ndvi_cuts) or "last" (ndvi_drops, the landed detector)
    cut_min_drop: float = 0.15  # LRO: NDVI below the expected curve (grids 0.10/0.12/0.15 and, with the filters below, 0.12/0.15; 0.15 in 3 of 3 folds both times)
    expect_days: int = 20  # ours: the expected NDVI is the level of the last 20 days ...
    expect_quantile: float = 0.75  # LRO: ... its weighted 75th percentile (first grid 0.5/0.9: 0.5; with the filters below 0.5/0.75: 0.75 in 2 of 3 held-out regions, best on all F1 0.850 vs 0.845)
    max_fall_days: int = 20  # ours: a cut falls within this many days; slower is grazing/senescence
    confirm_days: int = 15  # ours: a second low observation within this many days confirms the low
    min_weight: float = 0.5  # ours: observations with more than half the parcel cloudy are dropped
    min_support: float = 1.0  # LRO (grid 1.0/1.5; 1.0 in 3 of 3 folds): summed weight of the low observations (1 = one clear image)
    require_regrowth: bool = True  # ours: a drop with no later observation is not a cut
    date_fraction: float = 1.0  # LRO (grid 0.5/1.0; 1.0 in 3 of 3 folds): a cut is dated this far from the last high to the first low image
    spike_recover_share: float = 0.4  # LRO (grid 0/0.4/0.5/0.6; 0.4-0.5 in 3 of 3 folds, off never): a low whose next image regains this share of the fall ...
    spike_recover_days: int = 5  # ... within this many days is haze, not a cut. Slovak all-plots F1 0.850 at 10 d vs 0.838 at 5 d (folds: 10, 10, 5), JRC fused 0.47 at 10 d vs 0.53 at 5 d: NL cuts regain 80 % in 10 days, so 5
    min_sharpness: float = 0.6  # LRO (grid 0/0.5/0.6; 0.6 in 2 of 3 folds, +0.002 F1): the fall after the last high must be this share of the fall from the 20-day top (a slow decline before it = grazing, drought, senescence)
    gap_min_drop: float = 0.2  # LRO (grid 0.2/0.25/off; 0.2 in 3 of 3 folds, +15 cuts, no false one): a drop this deep below the expected level may cross a cloud gap ...
    gap_fall_days: int = 40  # ours: ... of up to this many days (shallower drops: max_fall_days); also how far back the expected level may look across a gap
    regrowth_in_season: bool = True  # LRO (3 of 3 folds; removed 15 of 27 false October cuts): the regrowth must be seen before season_end


@dataclass(frozen=True)
class BareSoilParams:
    """Bare soil periods (S2 state classifier or NDVI) and ploughing (entry into bare soil, S1 check)."""

    season_start: str = "01-01"  # ours: bare soil matters all year (fallow rules start in January)
    season_end: str = "12-31"
    ndvi_bare_max: float = 0.25  # ours: bare soil NDVI is 0.1-0.25 (JRC NL 2020 sample: 0.22)
    min_duration_days: int = 10  # [JRC-SMP] state_change min_duration
    knn_k: int = 5  # [JRC-SMP]
    stretch_min: tuple[float, float, float] = (1200.0, 800.0, 150.0)  # [JRC-SMP] B08, B11, B04 (DN)
    stretch_max: tuple[float, float, float] = (5700.0, 4100.0, 2800.0)  # [JRC-SMP]
    plough_vv_rise_db: float = 1.0  # ours: roughness raises VV by at least 1 dB
    plough_coh_drop: float = 0.1  # ours: or the coherence pair across the ploughing drops


@dataclass(frozen=True)
class HarvestParams:
    """Harvest of arable crops, week by week, from NDVI drop, VH/VV change and coherence rise."""

    min_peak_ndvi: float = 0.5  # ours: a crop canopy existed
    min_ndvi_drop: float = 0.3  # ours: from the season's peak
    max_ndvi_after: float = 0.45  # ours
    ratio_drop_db: float = 1.5  # ours: VH/VV falls when the canopy goes
    coh_rise: float = 0.08  # [JRC-SMP] peak-detector min_increase, reused
    min_sources: int = 1  # ours: NDVI alone may date a harvest; S1 alone needs both ratio and coherence
    season_start: str = "05-15"  # ours
    season_end: str = "11-30"  # ours


@dataclass(frozen=True)
class GapParams:
    """Periods without usable observations become explicit ``no_evidence`` markers."""

    season_start: str = "04-01"  # [JRC-SMP]
    season_end: str = "10-31"  # [JRC-SMP]
    s2_min_gap_days: int = 20  # [JRC-SMP] data-gaps min_gap_len
    s1_min_gap_days: int = 20  # ours: same threshold for radar


@dataclass(frozen=True)
class SeasonParams:
    """When a season without a detected cut may be called ``not_mown``."""

    min_clear_observations: int = 8  # ours: about one clear image every 3-4 weeks over April-October
    max_gap_days: int = 45  # ours: no clear-sky gap long enough to hide a cut and its regrowth (regrowth_days)
    min_cut_confidence: float = 0.0  # ours: every reported cut counts
    weak_drop_factor: float = 0.5  # Slovak: not_mown only if no drop of half the cut threshold either (0.5: 16 of 201 mown plot-years called not_mown, 0.67: 21)


@dataclass(frozen=True)
class MarkerParams:
    """All marker parameters."""

    s2: S2Params = field(default_factory=S2Params)
    mowing: MowingParams = field(default_factory=MowingParams)
    bare_soil: BareSoilParams = field(default_factory=BareSoilParams)
    harvest: HarvestParams = field(default_factory=HarvestParams)
    gaps: GapParams = field(default_factory=GapParams)
    season: SeasonParams = field(default_factory=SeasonParams)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (stored with every run)."""
        return asdict(self)

    def with_overrides(self, overrides: dict[str, Any]) -> MarkerParams:
        """A copy with ``{"mowing.min_drop": 0.15, ...}`` overrides applied; unknown names are errors."""
        out = self
        for key, value in overrides.items():
            group, _, name = key.partition(".")
            sub = getattr(out, group, None) if name else None
            if sub is None or name not in {f.name for f in fields(sub)}:
                raise InputError(f"unknown marker parameter {key!r}")
            current = getattr(sub, name)
            if isinstance(current, bool):
                value = str(value).lower() in ("1", "true", "yes")
            elif isinstance(current, (int, float, str)):
                value = type(current)(value)
            out = replace(out, **{group: replace(sub, **{name: value})})
        return out


DEFAULTS = MarkerParams()
