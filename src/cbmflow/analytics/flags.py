"""Suspicion scores and red/yellow/green flags from out-of-fold class probabilities.

Inputs are the mean out-of-fold class probabilities of each parcel (``n x K``, every row from
models that never saw the parcel) and the index of its *declared* class. The declaration is what
is checked, so the score is built from the declared class's probability ``p_d`` and the
probability of the best *other* class ``p_o``:

    score = (1 + p_o - p_d) / 2            (0 = declared crop certain, 0.5 = tie, 1 = other crop certain)

A parcel whose declared crop has no model (a rare crop, too few parcels to learn it) gets
``p_d = 1 - p_o``: its declaration is as plausible as the parcel does *not* look like a known crop.
It is never safe merely because it is rare: a parcel declared as spinach that looks like maize
with ``p_o = 0.9`` scores 0.9.

The ranking score (``FlagPolicy.score``) is ``confident`` (default: confident learning's
self-confidence against a per-class threshold, :func:`confident_score`; pools of rare crops are
judged leave-one-out against their other members, shrunk towards the overall mean), ``margin``
(above), ``declared`` (``1 - p_d``), ``odds``, ``relative``/``relative_declared`` (class-relative),
``blend``, or cleanlab's rankings; docs/analytics.md section 7 measures them.

Flags (``FlagPolicy.method``):

* ``budget`` (default): at most the ``red_rate`` (8 %) highest scores are red, the next
  ``yellow_rate`` (7 %) yellow, the rest green; red additionally needs the margin score above
  ``red_min_score`` (0.5: another crop is more probable than the declared one), so a season with
  fewer contradicted declarations than the budget gets fewer reds (those parcels fall to yellow).
  Ties at the boundary are broken by order in the table (stable), so the counts are exact.
* ``threshold``: probabilities are first calibrated on the out-of-fold data (temperature scaling,
  one parameter fitted by maximum likelihood of the declarations, :func:`fit_temperature`); red
  when the calibrated declared probability is at most ``red_max_prob`` and another crop is more
  probable, yellow when it is at most ``yellow_max_prob``. The red share then follows the data.
* ``jrc``: JRC's unanimous-disagreement rule (:func:`cbmflow.analytics.classify.apply_flag_rule`), kept for
  comparison: red when all repetitions agree against the declaration with confident probabilities.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from cbmflow.core.errors import InputError

METHODS: tuple[str, ...] = ("budget", "threshold", "jrc")
SCORES: tuple[str, ...] = ("confident", "margin", "declared", "relative", "relative_declared", "odds",
                           "cleanlab_nm", "cleanlab_sc", "blend")
THRESHOLDS: tuple[str, ...] = ("pool_loo", "mean", "loo", "pool_overall")


@dataclass(frozen=True)
class FlagPolicy:
    """How suspicion scores become red/yellow/green (see the module docstring)."""

    method: str = "budget"
    red_rate: float = 0.08
    yellow_rate: float = 0.07
    red_min_score: float = 0.5
    red_max_prob: float = 0.05
    yellow_max_prob: float = 0.25
    score: str = "confident"
    threshold: str = "pool_loo"
    shrink: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown flag method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.threshold not in THRESHOLDS:
            raise InputError(f"unknown threshold {self.threshold!r}; choose one of {', '.join(THRESHOLDS)}")
        if self.shrink < 0:
            raise InputError(f"shrink must be >= 0, got {self.shrink}")
        if self.score not in SCORES:
            raise InputError(f"unknown score {self.score!r}; choose one of {', '.join(SCORES)}")
        for name in ("red_rate", "yellow_rate", "red_max_prob", "yellow_max_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be within 0..1, got {v}")
        if self.red_rate + self.yellow_rate > 1.0:
            raise InputError(f"red_rate + yellow_rate must be <= 1, got {self.red_rate + self.yellow_rate}")
        if self.yellow_max_prob < self.red_max_prob:
            raise InputError("yellow_max_prob must be >= red_max_prob")


def declared_and_best_other(mean_p: np.ndarray, declared: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Declared-class probability, best other class and its probability per parcel.

    ``declared`` holds class indices; ``-1`` marks a declared crop without a class (rare): its
    declared probability is ``1 - p_o`` and its best other class is the most probable class.
    """
    p = np.asarray(mean_p, dtype=np.float64)
    y = np.asarray(declared, dtype=np.int64)
    if p.ndim != 2 or len(y) != p.shape[0]:
        raise InputError(f"probabilities {p.shape} and declared {y.shape} do not match")
    n, k = p.shape
    rows = np.arange(n)
    has = y >= 0
    p_d = np.where(has, p[rows, np.clip(y, 0, k - 1)], 0.0)
    others = p.copy()
    others[rows[has], y[has]] = -np.inf
    best_other = others.argmax(axis=1)
    p_o = others[rows, best_other]
    p_d = np.where(has, p_d, 1.0 - p_o)
    return p_d, best_other, p_o


def suspicion_score(p_d: np.ndarray, p_o: np.ndarray, kind: str = "margin") -> np.ndarray:
    """The suspicion score from declared and best-other probabilities (margin: (1 + p_o - p_d) / 2)."""
    if kind == "margin":
        return (1.0 + np.asarray(p_o, dtype=np.float64) - np.asarray(p_d, dtype=np.float64)) / 2.0
    if kind == "declared":
        return 1.0 - np.asarray(p_d, dtype=np.float64)
    if kind.startswith("relative"):
        raise InputError("the relative score needs the declared classes: use class_relative(margin score, classes)")
    raise InputError(f"unknown score {kind!r}; choose one of {', '.join(SCORES)}")


def class_relative(score: np.ndarray, groups: np.ndarray, min_size: int = 1) -> np.ndarray:
    """The score relative to the median score of the parcels declaring the same class, plus 0.5.

    A class whose correct declarations the model can hardly confirm (a catch-all "other crop", two
    grass variants) then does not fill the whole red budget: a parcel is suspicious in comparison
    with what its declared class usually looks like. A group smaller than ``min_size`` (a small pool
    of rare crops, which could be wrong all together) is compared with the median of all parcels.
    """
    s = np.asarray(score, dtype=np.float64)
    g = np.asarray(groups)
    out = np.empty_like(s)
    overall = float(np.median(s)) if len(s) else 0.0
    for key in np.unique(g):
        m = g == key
        ref = float(np.median(s[m])) if m.sum() >= min_size else overall
        out[m] = s[m] - ref + 0.5
    return out


def confident_score(
    p_d: np.ndarray, groups: np.ndarray, min_size: int = 1, *, pooled: Collection[str] = (),
    threshold: str = "pool_loo", shrink: float = 0.0,
) -> np.ndarray:
    """Confident-learning score ``1 - min(1, p_d / t_d)`` on 0..1, ``t_d`` the declared class's typical ``p_d``.

    ``t_d`` is confident learning's per-class threshold (the model's average self-confidence on the
    parcels declaring that class): a class the model confirms only weakly (two grass variants) is
    judged against its own typical confidence, so its correct declarations do not fill the red
    budget. 0: at least as confident as the class's average parcel; 1: the declared crop has
    probability 0. A group smaller than ``min_size`` (one parcel of a rare crop would be its own
    yardstick) is judged against the mean ``p_d`` of all parcels.

    ``pooled`` names the classes that are pools of rare crops (``other <group>``): a mixture, not a
    crop, whose few members' wrong declarations would lower its own yardstick. With ``threshold``
    ``pool_loo`` (default) a pooled parcel is judged against the mean of the *other* members of its
    pool shrunk towards the overall mean by ``min_size`` pseudo-parcels; ``pool_overall`` judges
    pools against the overall mean; ``loo`` applies leave-one-out to every class; ``mean`` is the
    plain class mean. ``shrink`` > 0 pulls the crops' (not the pools') thresholds towards the
    overall mean as ``shrink`` extra parcels at it would.
    """
    if threshold not in THRESHOLDS:
        raise InputError(f"unknown threshold {threshold!r}; choose one of {', '.join(THRESHOLDS)}")
    d = np.asarray(p_d, dtype=np.float64)
    g = np.asarray(groups)
    out = np.zeros_like(d)
    overall = float(d.mean()) if len(d) else 0.0
    pools = {str(p) for p in pooled}
    for key in np.unique(g):
        m = g == key
        n_m = int(m.sum())
        total = float(d[m].sum())
        is_pool = str(key) in pools
        t: np.ndarray | float
        if n_m < min_size or (is_pool and threshold == "pool_overall"):
            t = overall
        elif is_pool and threshold == "pool_loo":
            t = (total - d[m] + min_size * overall) / (n_m - 1 + min_size)
        elif threshold == "loo":
            t = (total - d[m] + shrink * overall) / (n_m - 1 + shrink)
        else:
            t = (total + shrink * overall) / (n_m + shrink)
        t = np.asarray(t, dtype=np.float64)
        out[m] = np.where(t > 0, 1.0 - np.minimum(1.0, d[m] / np.where(t > 0, t, 1.0)), 0.0)
    return out


SCORE_MEANINGS: dict[str, str] = {
    "odds": "r_o / (r_o + r_d) with r = p / (the class's mean probability on its own declarations): "
            "0 = only the declared crop fits, 0.5 = it and another crop fit equally well, 1 = only another crop fits",
    "margin": "(1 + p(best other crop) - p(declared crop)) / 2: 0 = declared crop certain, 0.5 = tie, "
              "1 = another crop certain",
    "declared": "1 - p(declared crop): 0 = declared crop certain, 1 = declared crop impossible",
    "confident": "1 - min(1, p(declared) / the declared crop's mean p on its own declarations): 0 = at least as "
                 "sure as usual for that crop, 1 = declared crop impossible",
    "blend": "the mean of 1 - p(declared) and the confident score: 0 = declared crop certain, 1 = impossible",
    "relative": "margin score - median margin score of the declared crop's parcels + 0.5 (not bounded to 0..1)",
    "relative_declared": "1 - p(declared) - its median over the declared crop's parcels + 0.5 (not bounded)",
    "cleanlab_nm": "1 - cleanlab's normalized-margin label quality (threshold-adjusted probabilities)",
    "cleanlab_sc": "1 - cleanlab's self-confidence label quality (threshold-adjusted probabilities)",
}


def score_meaning(score: str) -> str:
    """What a suspicion score's value means, in words (for the report and the docs)."""
    return SCORE_MEANINGS.get(score, score)


def class_thresholds(mean_p: np.ndarray, declared: np.ndarray) -> np.ndarray:
    """Confident learning's per-class thresholds: the mean probability of class j over the parcels declaring j.

    A class nobody declares (possible after rare crops are dropped) gets the mean of its column.
    """
    p = np.asarray(mean_p, dtype=np.float64)
    y = np.asarray(declared, dtype=np.int64)
    t = np.empty(p.shape[1])
    for j in range(p.shape[1]):
        m = y == j
        t[j] = p[m, j].mean() if m.any() else p[:, j].mean()
    return np.maximum(t, 1e-6)


def odds_score(mean_p: np.ndarray, declared: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class-threshold odds score on 0..1, with the best other class by the same yardstick.

    Each class's probability is divided by its threshold ``t_j`` (:func:`class_thresholds`, how
    confident the model usually is on parcels declaring j), so every crop is judged against its
    own typical confidence: ``r_j = p_j / t_j``. With ``r_d`` the declared crop's and ``r_o`` the best
    other crop's, ``score = r_o / (r_o + r_d)``: 0 = only the declared crop fits, 0.5 = the declared and
    another crop fit equally well for what is usual for each, 1 = only another crop fits. Parcels
    of a rare crop without a class (``declared == -1``) get ``r_d = (1 - p_o) / t_rare`` with
    ``t_rare`` the mean ``1 - p_o`` over those parcels. Returns score, best other index and r_d.
    """
    p = np.asarray(mean_p, dtype=np.float64)
    y = np.asarray(declared, dtype=np.int64)
    n = len(y)
    rows = np.arange(n)
    t = class_thresholds(p, y)
    r = p / t[None, :]
    has = y >= 0
    r_masked = r.copy()
    r_masked[rows[has], y[has]] = -np.inf
    best = r_masked.argmax(axis=1)
    r_o = r_masked[rows, best]
    r_d = np.where(has, r[rows, np.clip(y, 0, None)], 0.0)
    if (~has).any():
        p_o = p[rows, best]
        d_rare = 1.0 - p_o[~has]
        r_d[~has] = d_rare / max(float(d_rare.mean()), 1e-6)
    tot = r_o + r_d
    score = np.where(tot > 0, r_o / np.where(tot > 0, tot, 1.0), 0.5)
    return score, best, r_d


def budget_flags(
    score: np.ndarray, red_rate: float, yellow_rate: float, red_min_score: float = 0.5,
    floor_score: np.ndarray | None = None,
) -> np.ndarray:
    """Red for the ``round(red_rate*n)`` highest scores above ``red_min_score``, yellow for the next band.

    The floor applies to ``floor_score`` when given (e.g. the margin score while ranking by another).
    """
    s = np.asarray(score, dtype=np.float64)
    floor = s if floor_score is None else np.asarray(floor_score, dtype=np.float64)
    n = len(s)
    n_red = int(round(red_rate * n))
    n_yellow = int(round((red_rate + yellow_rate) * n)) - n_red
    order = np.argsort(-s, kind="stable")
    flag = np.full(n, "green", dtype=object)
    top = order[:n_red]
    red = top[floor[top] > red_min_score]
    flag[order[: n_red + n_yellow]] = "yellow"
    flag[red] = "red"
    return flag.astype(str)


def fit_temperature(mean_p: np.ndarray, declared: np.ndarray) -> float:
    """The temperature T that best calibrates p**(1/T) (renormalised) to the declarations (max likelihood)."""
    from scipy.optimize import minimize_scalar

    p = np.clip(np.asarray(mean_p, dtype=np.float64), 1e-4, 1.0)
    y = np.asarray(declared, dtype=np.int64)
    keep = y >= 0
    if not keep.any():
        return 1.0
    logp = np.log(p[keep])
    yy = y[keep]

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(-(z[np.arange(len(yy)), yy] - lse).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def apply_temperature(mean_p: np.ndarray, t: float) -> np.ndarray:
    """Probabilities p**(1/t), renormalised per row."""
    p = np.clip(np.asarray(mean_p, dtype=np.float64), 1e-4, 1.0) ** (1.0 / t)
    return p / p.sum(axis=1, keepdims=True)


def threshold_flags(p_d: np.ndarray, p_o: np.ndarray, red_max_prob: float, yellow_max_prob: float) -> np.ndarray:
    """Red when the (calibrated) declared probability <= red_max_prob and another crop is more probable."""
    pd_ = np.asarray(p_d, dtype=np.float64)
    po = np.asarray(p_o, dtype=np.float64)
    red = (pd_ <= red_max_prob) & (po > pd_)
    yellow = ~red & (pd_ <= yellow_max_prob)
    return np.where(red, "red", np.where(yellow, "yellow", "green")).astype(str)


def recall_curve(score: np.ndarray, wrong: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of the top ``round(rate*n)`` scores against known wrong declarations."""
    s = np.asarray(score, dtype=np.float64)
    w = np.asarray(wrong, dtype=bool)
    order = np.argsort(-s, kind="stable")
    hits = np.concatenate([[0], np.cumsum(w[order])])
    ks = np.clip(np.round(np.asarray(rates, dtype=np.float64) * len(s)).astype(int), 0, len(s))
    n_wrong = max(int(w.sum()), 1)
    recall = hits[ks] / n_wrong
    precision = np.where(ks > 0, hits[ks] / np.maximum(ks, 1), 0.0)
    return recall, precision
