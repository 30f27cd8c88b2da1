"""Crop classification from per-parcel features, out-of-fold, and the green/yellow/red flags.

Classes are the declared crops with at least ``min_class_size`` parcels. Parcels declaring a rarer
crop are still checked (``rare="score"``, default): no model of their crop exists, so they are
scored by how much they look like a known crop (:mod:`cbmflow.analytics.flags`); they are never safe merely
because they are rare. ``rare="group"`` (the old behaviour) folds them into a class ``other``,
``rare="exclude"`` excludes them. Parcels under ``min_area`` m2, without a declaration or without
any valid feature value are excluded and counted.

Out-of-fold prediction: ``n_repeats`` repetitions of stratified K-fold, each with its own
shuffle seed, so every parcel gets ``n_repeats`` predictions, each by a model that never saw it.
Each model trains on at most ``max_train`` parcels (a stratified sample of the other folds): the
training cost stays bounded whatever the size of the AOI, and accuracy has saturated long before.

Flags: by default a suspicion score from the declared crop's out-of-fold probability and the
margin to the best other crop, red/yellow by a budget (5 % red, 10 % yellow), see
:mod:`cbmflow.analytics.flags`. The older rule below (JRC's "three independent predictions" adapted) stays
selectable (``FlagPolicy(method="jrc")``):

* **red**: at least ``red_min_agree`` (3) repetitions predict the same class, that class is not
  the declared one, its mean probability is at least ``red_min_prob`` (0.5) and the declared
  class's mean probability is at most ``red_max_declared_prob`` (0.2): confident, consistent
  disagreement;
* **yellow**: not red, but some repetition disagrees with the declaration, or the mean probability
  of the declared class is below ``yellow_min_declared_prob``;
* **green**: otherwise (every repetition agrees with the declaration, confidently).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.flags import (
    FlagPolicy,
    apply_temperature,
    budget_flags,
    class_relative,
    confident_score,
    declared_and_best_other,
    fit_temperature,
    odds_score,
    suspicion_score,
    threshold_flags,
)
from cbmflow.core.errors import InputError

log = logging.getLogger(__name__)

OTHER = "other"
FLAG_COLUMNS: tuple[str, ...] = (
    "parcel_id", "declared", "predicted", "probability", "flag", "declared_probability", "best_other",
    "best_other_probability", "score", "reason", "predicted_name", "evidence",
)
RARE_MODES: tuple[str, ...] = ("score", "group", "hierarchy", "exclude")
ESTIMATORS: tuple[str, ...] = ("ens", "hgb", "rf", "et")
ENSEMBLE: tuple[str, ...] = ("rf", "et", "hgb")  # "ens": the mean of their out-of-fold probabilities
DEFAULT_SIZE: dict[str, int] = {"rf": 200, "et": 200, "hgb": 50}  # trees (rf, et), boosting iterations (hgb)
_NON_FEATURES = {"pid", "area_m2", "year", "aoi"}
# The default check (chosen on every real set at once, docs/analytics.md section 7)
DEFAULT_ESTIMATOR = "rf+et"
DEFAULT_CLASS_WEIGHT: str | None = None
DEFAULT_MIN_CLASS_SIZE = 5
DEFAULT_RARE = "hierarchy"


@dataclass(frozen=True)
class FlagRule:
    """Thresholds of the flag rule."""

    red_min_agree: int = 3
    red_min_prob: float = 0.5
    red_max_declared_prob: float = 0.2
    yellow_min_declared_prob: float = 0.5


def make_estimator(
    name: str, *, seed: int = 0, n_jobs: int = 1, class_weight: str | None = "balanced", n_trees: int | None = None,
) -> Any:
    """A fresh scikit-learn classifier by short name (hgb, rf, et); all three take NaN natively.

    ``n_trees`` overrides the size (trees of rf/et: 200; boosting iterations of hgb: 50).
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    if name == "hgb":
        return HistGradientBoostingClassifier(
            max_iter=n_trees or DEFAULT_SIZE["hgb"], learning_rate=0.2, max_leaf_nodes=31, early_stopping=False,
            random_state=seed, class_weight=class_weight,
        )
    if name == "rf":
        return RandomForestClassifier(
            n_estimators=n_trees or DEFAULT_SIZE["rf"], min_samples_leaf=1, n_jobs=n_jobs, random_state=seed,
            class_weight=class_weight,
        )
    if name == "et":
        return ExtraTreesClassifier(
            n_estimators=n_trees or DEFAULT_SIZE["et"], min_samples_leaf=1, n_jobs=n_jobs, random_state=seed,
            class_weight=class_weight,
        )
    raise InputError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS[1:])} (or ens)")


def estimator_members(estimator: str) -> tuple[str, ...]:
    """The member models of an estimator name: ``ens`` = rf+et+hgb, ``rf+et`` = both, ``rf`` = itself."""
    names = ENSEMBLE if estimator == "ens" else tuple(estimator.split("+"))
    bad = [m for m in names if m not in ESTIMATORS[1:]]
    if bad or not names:
        raise InputError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)} or a '+' list")
    return names


def numeric_feature_columns(df: pd.DataFrame, exclude: set[str]) -> list[str]:
    """The numeric columns of a table that are features (not ids, areas or labels)."""
    return [
        c for c in df.columns
        if c not in exclude and c not in _NON_FEATURES
        and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]


def _subsample(idx: np.ndarray, y: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A stratified random sample of at most ``size`` indices (every class keeps >= 1)."""
    if size is None or len(idx) <= size:
        return idx
    parts = []
    frac = size / len(idx)
    for k in np.unique(y[idx]):
        members = idx[y[idx] == k]
        take = max(1, int(round(len(members) * frac)))
        parts.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(parts))


def apply_flag_rule(
    probs: np.ndarray, declared: np.ndarray, rule: FlagRule | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flags by JRC's unanimous-disagreement rule from repeated out-of-fold probabilities (R x n x K).

    Returns predicted class index, its mean probability, the declared class's mean probability,
    the number of repetitions that predicted the predicted class, and the flag per parcel. A
    declared index of -1 (a rare crop without a class) has declared probability 1 - best class's.
    """
    rule = rule or FlagRule()
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(declared, dtype=np.int64)
    n = probs.shape[1]
    preds = probs.argmax(axis=2)  # (R, n)
    mean_p = probs.mean(axis=0)
    predicted = mean_p.argmax(axis=1)
    probability = mean_p[np.arange(n), predicted]
    declared_prob = np.where(y >= 0, mean_p[np.arange(n), np.clip(y, 0, None)], 1.0 - probability)
    agree = (preds == predicted[None, :]).sum(axis=0)
    red = (
        (predicted != y)
        & (agree >= rule.red_min_agree)
        & (probability >= rule.red_min_prob)
        & (declared_prob <= rule.red_max_declared_prob)
    )
    yellow = ~red & ((preds != y[None, :]).any(axis=0) | (declared_prob < rule.yellow_min_declared_prob))
    flag = np.where(red, "red", np.where(yellow, "yellow", "green"))
    return predicted, probability, declared_prob, agree, flag


def _validate_frame(
    df: pd.DataFrame, id_col: str, crop_col: str, class_col: str | None, feature_cols: list[str] | None,
    rare: str, n_splits: int, n_repeats: int, min_class_size: int, policy: FlagPolicy, rule: FlagRule,
) -> list[str]:
    cols = [str(c) for c in df.columns]
    for need in (id_col, crop_col) + ((class_col,) if class_col else ()):
        if need not in df.columns:
            raise InputError(f"column {need!r} missing; available columns: {', '.join(cols)}")
    if rare not in RARE_MODES:
        raise InputError(f"rare must be one of {', '.join(RARE_MODES)}, got {rare!r}")
    if policy.method == "jrc" and n_repeats < rule.red_min_agree:
        raise InputError(
            f"n_repeats={n_repeats} < red_min_agree={rule.red_min_agree}: red needs that many predictions"
        )
    if n_repeats < 1:
        raise InputError(f"n_repeats must be >= 1, got {n_repeats}")
    if n_splits < 2:
        raise InputError(f"n_splits must be >= 2, got {n_splits}")
    if min_class_size < n_splits:
        raise InputError(f"min_class_size ({min_class_size}) must be >= n_splits ({n_splits})")
    if feature_cols is None:
        feature_cols = numeric_feature_columns(df, {id_col, crop_col, class_col or crop_col})
    else:
        absent = [c for c in feature_cols if c not in df.columns]
        if absent:
            raise InputError(f"feature columns {absent} missing; available columns: {', '.join(cols)}")
        not_num = [c for c in feature_cols if not pd.api.types.is_numeric_dtype(df[c])]
        if not_num:
            raise InputError(f"feature columns {not_num} are not numeric")
    if not feature_cols:
        raise InputError(f"no numeric feature columns; available columns: {', '.join(cols)}")
    if df[id_col].duplicated().any():
        dup = df.loc[df[id_col].duplicated(), id_col].iloc[0]
        raise InputError(f"duplicate {id_col} {dup!r}: every parcel must appear once")
    return feature_cols


def oof_probabilities(
    X: np.ndarray,
    y: np.ndarray,
    k: int,
    *,
    estimator: str = "et",
    class_weight: str | None = "balanced",
    n_splits: int = 5,
    n_repeats: int = 3,
    max_train: int | None = 30_000,
    seed: int = 0,
    n_jobs: int = 1,
    n_trees: int | None = None,
    cache: MutableMapping[str, np.ndarray] | None = None,
    train_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """Out-of-fold class probabilities (n_repeats x n x k), fit and predict seconds.

    ``train_mask`` (boolean, n): only these parcels train models (every parcel is still predicted
    out of fold); used to leave the first pass's suspects out of the second pass's training.

    ``estimator="ens"``: every fold fits RF, ExtraTrees and HGB on the same training parcels and the
    parcel's probabilities are the mean of the three (each row sums to 1).

    Parcels with ``y == -1`` (declared crops without a class) never train a model; each repetition
    predicts them with the model of a fold they are dealt to, like the others.

    ``cache`` (any mapping, e.g. a folder of .npy files in a benchmark) holds one member's out-of-fold
    probabilities of one repetition under a key of the data and every parameter that changes them,
    so methods sharing a member (the ensemble's RF and the RF ranking) fit it once.
    """
    from sklearn.model_selection import StratifiedKFold

    n = len(y)
    labelled = np.flatnonzero(y >= 0)
    unlabelled = np.flatnonzero(y < 0)
    probs = np.zeros((n_repeats, n, k), dtype=np.float32)
    fit_seconds = predict_seconds = 0.0
    members = estimator_members(estimator)
    data_key = ""
    if cache is not None:
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(X, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        if train_mask is not None:
            h.update(b"train_mask" + np.packbits(np.asarray(train_mask, dtype=bool)).tobytes())
        data_key = h.hexdigest()[:20]
    for r in range(n_repeats):
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed + 1000 * r)
        rng = np.random.default_rng(seed + 1000 * r + 1)
        deal = rng.permutation(len(unlabelled)) % n_splits
        folds = []
        for f, (tr, te) in enumerate(skf.split(np.zeros(len(labelled)), y[labelled])):
            train_idx = labelled[tr] if train_mask is None else labelled[tr][train_mask[labelled[tr]]]
            folds.append((_subsample(train_idx, y, max_train, rng),
                          np.concatenate([labelled[te], unlabelled[deal == f]])))
        for name in members:
            # in the ensemble, n_trees sizes the forests; HGB keeps its own 50 iterations
            size = None if (name == "hgb" and len(members) > 1) else n_trees
            key = f"{data_key}-{name}-{class_weight}-{size or DEFAULT_SIZE[name]}-{n_splits}-{max_train}-{seed}-{r}-{k}"
            if cache is not None and key in cache:
                probs[r] += cache[key] / len(members)
                continue
            part = np.zeros((n, k), dtype=np.float32)
            for f, (train, test) in enumerate(folds):
                model = make_estimator(name, seed=seed + 1000 * r + f, n_jobs=n_jobs, class_weight=class_weight,
                                       n_trees=size)
                t = time.perf_counter()
                model.fit(X[train], y[train])
                fit_seconds += time.perf_counter() - t
                t = time.perf_counter()
                p = model.predict_proba(X[test])
                predict_seconds += time.perf_counter() - t
                part[np.ix_(test, model.classes_)] = p
            if cache is not None:
                cache[key] = part
            probs[r] += part / len(members)
    return probs, fit_seconds, predict_seconds


def _names(df: pd.DataFrame, name_col: str | None, idx: np.ndarray, declared: np.ndarray) -> np.ndarray:
    """The declared crops' names (from name_col), the declaration itself where no name is given."""
    if not name_col or name_col not in df.columns:
        return declared
    names = df[name_col].to_numpy()[idx]
    missing = pd.isna(names) | (pd.Series(names).astype(str).str.strip() == "").to_numpy()
    return np.where(missing, declared, names.astype(str))


def crop_hierarchy(code: str, name: str | None = None) -> tuple[str, ...]:
    """The groups of a declared crop, finest first, for pooling rare crops (``rare="hierarchy"``).

    WorldCereal's ten-digit ``ewoc_code`` is hierarchical: ``1103020040`` (pumpkin) is in ``1103``
    (vegetables and fruits) and ``11`` (temporary crops); a shorter numeric code (an older legend,
    ``9120``) gives its first two digits and its first digit; any other code or name gives its crop
    group (:func:`cbmflow.core.crops.crop_group`) when it is known.
    """
    c = str(code).strip()
    if c.isdigit() and len(c) >= 6:
        return (c[:4], c[:2])
    if c.isdigit() and len(c) >= 2:
        return (c[:2], c[:1])
    from cbmflow.core.crops import crop_group

    g = crop_group(str(name or c))
    return (g,) if g != "other" else ()


def pool_rare_crops(counts: dict[str, int], min_size: int, names: dict[str, str] | None = None) -> dict[str, str]:
    """Rare crop -> pooled class: its finest crop group with at least ``min_size`` rare parcels, else ``other``.

    Crops are pooled level by level (:func:`crop_hierarchy`): the rare crops of a group at the finest
    level form a class ``other <group>`` when they have ``min_size`` parcels together; the rest try
    the next level; what is left is ``other``. So a parcel declared as pumpkin (one parcel) is checked
    against the other rare vegetables, not against every rare crop of the region.
    """
    names = names or {}
    levels = {c: crop_hierarchy(c, names.get(c)) for c in counts}
    out: dict[str, str] = {}
    todo = set(counts)
    depth = max((len(v) for v in levels.values()), default=0)
    for level in range(depth):
        size: dict[str, int] = {}
        for c in todo:
            if len(levels[c]) > level:
                size[levels[c][level]] = size.get(levels[c][level], 0) + counts[c]
        for c in sorted(todo):
            if len(levels[c]) > level and size[levels[c][level]] >= min_size:
                out[c] = f"{OTHER} {levels[c][level]}"
        todo -= set(out)
    for c in todo:
        out[c] = OTHER
    return out


def _name_map(df: pd.DataFrame, crop_col: str, name_col: str | None) -> dict[str, str]:
    """Declared code -> crop name (first non-empty name of each code); empty without a name column."""
    if not name_col or name_col not in df.columns:
        return {}
    pairs = df[[crop_col, name_col]].dropna()
    pairs = pairs[pairs[name_col].astype(str).str.strip() != ""]
    return {str(c): str(nm) for c, nm in pairs.drop_duplicates(crop_col).itertuples(index=False)}


def _crop_words(label: Any, names: dict[str, str]) -> str:
    """A class or crop in words: its name, 'other crops' for the pooled class, else the label itself."""
    s = str(label)
    if s == OTHER:
        return "other crops"
    if s.startswith(OTHER + " "):  # a pool of rare crops of one group (rare="hierarchy")
        g = s[len(OTHER) + 1:]
        full = next((names[k] for k in (g + "0" * (10 - len(g)), g) if k in names), None) if g.isdigit() else g
        return f"other {full.replace('_', ' ')} crops" if full else "other crops of one group"
    return names[s].replace("_", " ") if s in names else s


def _reasons(
    flag: np.ndarray, declared: np.ndarray, has_class: np.ndarray, other: np.ndarray, p_d: np.ndarray,
    p_o: np.ndarray, score: np.ndarray, rank: np.ndarray, n_rare: dict[str, int], min_class_size: int,
    method: str, names: dict[str, str] | None = None, evidence: dict[int, list[dict[str, Any]]] | None = None,
) -> list[str]:
    """One sentence per red/yellow parcel with the crops by name ('' for green)."""
    from cbmflow.analytics.explain import evidence_words

    names = names or {}
    out: list[str] = []
    n = len(flag)
    for i in range(n):
        if flag[i] == "green":
            out.append("")
            continue
        d, o = _crop_words(declared[i], names), _crop_words(other[i], names)
        if not has_class[i]:
            why = (f"declared crop {d} is rare ({n_rare.get(str(declared[i]), 0)} parcels < {min_class_size}): "
                   f"no model of it; the parcel looks like {o} (p={p_o[i]:.2f})")
        elif p_o[i] > p_d[i]:
            why = f"{o} (p={p_o[i]:.2f}) is more likely than the declared {d} (p={p_d[i]:.2f})"
        else:
            why = f"declared {d} is the most likely crop but uncertain (p={p_d[i]:.2f}; next {o} p={p_o[i]:.2f})"
        if method == "budget":
            why += f"; suspicion {score[i]:.2f}, rank {rank[i]} of {n}"
        elif method == "threshold":
            why += "; calibrated probabilities"
        else:
            why += "; JRC rule"
        words = evidence_words((evidence or {}).get(i, []), d)
        if words:
            why += f"; {words}"
        out.append(why)
    return out


def _suspicion(mean_p: np.ndarray, y: np.ndarray, p_d: np.ndarray, p_o: np.ndarray, groups: np.ndarray,
               policy: FlagPolicy, min_class_size: int, pooled: Collection[str] = ()) -> np.ndarray:
    """The suspicion score ``policy.score`` of every parcel from its mean out-of-fold probabilities."""
    name = policy.score
    if name in ("confident", "blend"):
        conf = confident_score(p_d, groups, min_size=min_class_size, pooled=pooled, threshold=policy.threshold,
                               shrink=policy.shrink)
        return conf if name == "confident" else 0.5 * (1.0 - p_d) + 0.5 * conf
    if name == "odds":
        return odds_score(mean_p, y)[0]
    if name.startswith("cleanlab"):
        from cleanlab.rank import get_label_quality_scores

        yy = np.where(y >= 0, y, 0)
        method = "normalized_margin" if name == "cleanlab_nm" else "self_confidence"
        pp = np.clip(mean_p, 1e-6, None)
        pp = pp / pp.sum(axis=1, keepdims=True)
        return np.asarray(1.0 - get_label_quality_scores(yy, pp, method=method, adjust_pred_probs=True))
    if name.startswith("relative"):
        base = suspicion_score(p_d, p_o, "margin" if name == "relative" else "declared")
        return class_relative(base, groups, min_size=min_class_size)
    return suspicion_score(p_d, p_o, name)


def prune_suspects(score: np.ndarray, y: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` most suspicious parcels with a class, at most half of any class (boolean mask)."""
    n = len(score)
    out = np.zeros(n, dtype=bool)
    budget = int(round(share * n))
    left = {int(c): int(m) // 2 for c, m in zip(*np.unique(y[y >= 0], return_counts=True), strict=True)}
    for i in np.argsort(-np.asarray(score, dtype=np.float64), kind="stable"):
        if budget <= 0:
            break
        c = int(y[i])
        if c < 0 or left.get(c, 0) <= 0:
            continue
        out[i] = True
        left[c] -= 1
        budget -= 1
    return out


def classify_frame(
    df: pd.DataFrame,
    *,
    id_col: str = "parcel_id",
    crop_col: str = "crop",
    class_col: str | None = None,
    name_col: str | None = "crop_name",
    feature_cols: list[str] | None = None,
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE,
    min_area: float | None = None,
    area_col: str = "area_m2",
    rare: str = DEFAULT_RARE,
    estimator: str = DEFAULT_ESTIMATOR,
    class_weight: str | None = DEFAULT_CLASS_WEIGHT,
    n_splits: int = 5,
    n_repeats: int = 3,
    max_train: int | None = 30_000,
    policy: FlagPolicy | None = None,
    rule: FlagRule | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    n_trees: int | None = None,
    cache: MutableMapping[str, np.ndarray] | None = None,
    explain: bool = True,
    phenology: bool = False,
    prune: float = 0.0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-fold crop predictions, suspicion scores and green/yellow/red flags for every usable parcel.

    With ``explain`` (default) every red and yellow parcel gets ``evidence`` (the periods and bands
    that contradict its declared crop's peers most, :mod:`cbmflow.analytics.explain`) and a reason
    that names them; ``predicted_name`` is the best other crop's name. With ``phenology`` the
    per-parcel phenology metrics (:func:`cbmflow.analytics.features.phenology_features`) are added
    to the features first.
    """
    rule = rule or FlagRule()
    policy = policy or FlagPolicy()
    t0 = time.perf_counter()
    if phenology and feature_cols is None:
        from cbmflow.analytics.features import with_phenology

        df = with_phenology(df)
    feature_cols = _validate_frame(df, id_col, crop_col, class_col, feature_cols, rare, n_splits, n_repeats,
                                   min_class_size, policy, rule)
    cols = [str(c) for c in df.columns]

    messages: list[str] = []
    excluded: dict[str, int] = dict(df.attrs.get("excluded", {}))
    n_input = len(df)
    keep = np.ones(n_input, dtype=bool)

    declared_all = df[crop_col]
    no_decl = declared_all.isna().to_numpy() | (declared_all.astype(str).str.strip() == "").to_numpy()
    excluded["no_declaration"] = int(no_decl.sum())
    keep &= ~no_decl

    X_all = np.array(df[feature_cols].to_numpy(dtype=np.float32), copy=True)
    X_all[~np.isfinite(X_all)] = np.nan
    empty = np.isnan(X_all).all(axis=0)
    if empty.any():
        messages.append(f"{int(empty.sum())} feature columns without any value ignored: "
                        + ", ".join(np.asarray(feature_cols)[empty][:10]) + (" ..." if empty.sum() > 10 else ""))
        feature_cols = [c for c, e in zip(feature_cols, empty, strict=True) if not e]
        X_all = X_all[:, ~empty]
    no_values = np.isnan(X_all).all(axis=1)
    excluded["no_valid_observations"] = excluded.get("no_valid_observations", 0) + int(
        (no_values & keep).sum()
    )
    keep &= ~no_values

    n_small = 0
    if min_area is not None:
        if area_col not in df.columns:
            raise InputError(
                f"min_area given but area column {area_col!r} missing; available columns: {', '.join(cols)}"
            )
        small = (df[area_col].to_numpy(dtype=np.float64) < float(min_area)) & keep
        n_small = int(small.sum())
        keep &= ~small
    excluded["small_area"] = n_small

    declared = declared_all.astype(str).to_numpy()
    # the class a declaration stands for: the crop itself, or its group (class_col)
    base_class = df[class_col].astype(str).to_numpy() if class_col else declared
    counts = pd.Series(base_class[keep]).value_counts()
    rare_crops = sorted(c for c, n in counts.items() if n < min_class_size)
    classes_of: dict[str, str | None] = {c: c for c in counts.index}
    excluded["rare_class"] = 0
    grouped: dict[str, int] = {}
    n_rare = {str(c): int(counts[c]) for c in rare_crops}
    if rare_crops:
        n_rare_total = int(counts[rare_crops].sum())
        listing = ", ".join(rare_crops[:20]) + (" ..." if len(rare_crops) > 20 else "")
        if rare == "score" or (rare == "hierarchy" and n_rare_total < min_class_size):
            # too few rare parcels to pool: checked against the known crops instead (never excluded)
            for c in rare_crops:
                classes_of[c] = None
            messages.append(
                f"{len(rare_crops)} crops with fewer than {min_class_size} parcels ({n_rare_total} parcels) have "
                f"no model; those parcels are checked against the known crops: {listing}"
            )
        elif rare == "hierarchy" and n_rare_total >= min_class_size and OTHER not in counts.index:
            name_of = _name_map(df, crop_col, name_col) if not class_col else {}
            pools = pool_rare_crops({c: int(counts[c]) for c in rare_crops}, min_class_size, name_of)
            pool_size: dict[str, int] = {}
            for c, pool in pools.items():
                pool_size[pool] = pool_size.get(pool, 0) + int(counts[c])
            left = []
            for c, pool in pools.items():
                if pool_size[pool] >= min_class_size:
                    classes_of[c] = pool
                    grouped[c] = int(counts[c])
                else:  # a leftover too small to learn: checked against the known crops, as rare="score"
                    classes_of[c] = None
                    left.append(c)
            n_pools = len({p for p in pools.values() if pool_size[p] >= min_class_size})
            messages.append(
                f"{len(rare_crops)} crops with fewer than {min_class_size} parcels ({n_rare_total} parcels) "
                f"pooled by crop group into {n_pools} classes: {listing}"
                + (f"; {len(left)} without a group to pool with are checked against the known crops: "
                   f"{', '.join(sorted(left)[:10])}" if left else "")
            )
        elif rare == "group" and n_rare_total >= min_class_size and OTHER not in counts.index:
            for c in rare_crops:
                classes_of[c] = OTHER
                grouped[c] = int(counts[c])
            messages.append(
                f"{len(rare_crops)} crops with fewer than {min_class_size} parcels "
                f"({n_rare_total} parcels) grouped into class '{OTHER}': {listing}"
            )
        else:
            rare_mask = np.isin(base_class, rare_crops) & keep
            excluded["rare_class"] = int(rare_mask.sum())
            keep &= ~rare_mask
            messages.append(
                f"{len(rare_crops)} crops with fewer than {min_class_size} parcels "
                f"({int(rare_mask.sum())} parcels) excluded: {listing}"
            )
    for m in messages:
        log.warning("%s", m)

    idx = np.flatnonzero(keep)
    cls_of_parcel = [classes_of[d] for d in base_class[idx]]
    classes = sorted({c for c in cls_of_parcel if c is not None})
    if len(classes) < 2:
        raise InputError(
            f"need at least 2 classes with >= {min_class_size} parcels to classify; "
            f"have {len(classes)} ({', '.join(map(str, classes)) or 'none'}) from {len(idx)} usable parcels"
        )
    class_index = {c: i for i, c in enumerate(classes)}
    y = np.array([class_index[c] if c is not None else -1 for c in cls_of_parcel], dtype=np.int64)
    cls_labels = np.array([c if c is not None else b for c, b in zip(cls_of_parcel, base_class[idx], strict=True)],
                          dtype=object)
    X = X_all[idx]
    n, k = len(idx), len(classes)

    probs, fit_seconds, predict_seconds = oof_probabilities(
        X, y, k, estimator=estimator, class_weight=class_weight, n_splits=n_splits, n_repeats=n_repeats,
        max_train=max_train, seed=seed, n_jobs=n_jobs, n_trees=n_trees, cache=cache,
    )
    groups = np.where(y >= 0, cls_labels.astype(str), "\x00rare")
    # the classes that pool rare crops (a mixture, not a crop: judged by flags.confident_score's pool rule)
    pooled = {str(classes_of[c]) for c in grouped}
    mean_p = probs.mean(axis=0).astype(np.float64)
    p_d, best_other, p_o = declared_and_best_other(mean_p, y)
    score = _suspicion(mean_p, y, p_d, p_o, groups, policy, min_class_size, pooled)
    n_pruned = 0
    if prune > 0:
        # second pass: the first pass's most suspicious declarations train no model (each still
        # predicted out of fold), so the wrong declarations do not teach the models their crop
        suspects = prune_suspects(score, y, prune)
        n_pruned = int(suspects.sum())
        probs, fit2, predict2 = oof_probabilities(
            X, y, k, estimator=estimator, class_weight=class_weight, n_splits=n_splits, n_repeats=n_repeats,
            max_train=max_train, seed=seed, n_jobs=n_jobs, n_trees=n_trees, cache=cache, train_mask=~suspects,
        )
        fit_seconds += fit2
        predict_seconds += predict2
        mean_p = probs.mean(axis=0).astype(np.float64)
        p_d, best_other, p_o = declared_and_best_other(mean_p, y)
        score = _suspicion(mean_p, y, p_d, p_o, groups, policy, min_class_size, pooled)
    predicted = mean_p.argmax(axis=1)
    probability = mean_p[np.arange(n), predicted]
    agree = (probs.argmax(axis=2) == predicted[None, :]).sum(axis=0)
    margin = suspicion_score(p_d, p_o, "margin")
    temperature: float | None = None
    if policy.method == "budget":
        flag = budget_flags(score, policy.red_rate, policy.yellow_rate, policy.red_min_score, floor_score=margin)
    elif policy.method == "threshold":
        temperature = fit_temperature(mean_p, y)
        cal_d, _, cal_o = declared_and_best_other(apply_temperature(mean_p, temperature), y)
        flag = threshold_flags(cal_d, cal_o, policy.red_max_prob, policy.yellow_max_prob)
    else:
        *_, flag = apply_flag_rule(probs, y, rule)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, n + 1)

    classes_arr = np.array(classes, dtype=object)
    declared_kept = declared[idx]
    names = _name_map(df, crop_col, name_col)
    other_arr = classes_arr[best_other]
    targets = np.flatnonzero(flag != "green") if explain else np.array([], dtype=np.int64)
    evidence: dict[int, list[dict[str, Any]]] = {}
    if len(targets):
        from cbmflow.analytics.explain import flag_evidence, period_labeller

        evidence = flag_evidence(df.iloc[idx].reset_index(drop=True), cls_labels, targets, cls_labels[targets],
                                 other_arr[targets], label=period_labeller(dict(df.attrs)))
    reasons = _reasons(flag, cls_labels if class_col else declared_kept, y >= 0, other_arr, p_d, p_o, score, rank,
                       n_rare, min_class_size, policy.method, names=names, evidence=evidence)
    flags = pd.DataFrame(
        {
            "parcel_id": df[id_col].to_numpy()[idx],
            "declared": declared_kept,
            "predicted": classes_arr[predicted],
            "probability": probability.astype(np.float32),
            "flag": flag,
            "declared_probability": p_d.astype(np.float32),
            "best_other": other_arr,
            "predicted_name": [_crop_words(o, names) for o in other_arr],
            "best_other_probability": p_o.astype(np.float32),
            "score": score.astype(np.float32),
            "reason": reasons,
            "declared_class": cls_labels,
            "declared_name": _names(df, name_col, idx, declared_kept),
            "agree_count": agree.astype(np.int16),
            "n_predictions": np.full(n, n_repeats, dtype=np.int16),
            "suspicion_rank": rank.astype(np.int32),
            "evidence": [evidence.get(i) if flag[i] != "green" else None for i in range(n)],
        }
    )
    if "pid" in df.columns:
        flags["pid"] = df["pid"].to_numpy()[idx]

    conf = np.zeros((k, k), dtype=np.int64)
    has = y >= 0
    np.add.at(conf, (y[has], predicted[has]), 1)
    per_class = {}
    for i, c in enumerate(classes):
        support = int(conf[i].sum())
        per_class[str(c)] = {
            "support": support,
            "accuracy": float(conf[i, i] / support) if support else 0.0,
            "precision": float(conf[i, i] / conf[:, i].sum()) if conf[:, i].sum() else 0.0,
        }
    flag_counts = {f: int((flag == f).sum()) for f in ("green", "yellow", "red")}
    metrics: dict[str, Any] = {
        "n_input": int(n_input),
        "n_classified": int(n),
        "n_rare_scored": int((~has).sum()),
        "n_features": len(feature_cols),
        "classes": [str(c) for c in classes],
        "rare_crops": n_rare if rare in ("score", "hierarchy") else {},
        "grouped_into_other": grouped,
        "excluded": excluded,
        "messages": messages,
        "accuracy": float((predicted[has] == y[has]).mean()) if has.any() else 0.0,
        "per_class": per_class,
        "confusion": conf.tolist(),
        "flag_counts": flag_counts,
        "red_pct": 100.0 * flag_counts["red"] / n,
        "params": {
            "estimator": estimator, "n_trees": n_trees, "class_weight": class_weight, "n_splits": n_splits,
            "n_repeats": n_repeats, "max_train": max_train, "min_class_size": min_class_size,
            "min_area": min_area, "rare": rare, "seed": seed, "class_col": class_col,
            "flag_method": policy.method, "score": policy.score, "red_rate": policy.red_rate,
            "yellow_rate": policy.yellow_rate, "threshold": policy.threshold, "shrink": policy.shrink,
            "red_min_score": policy.red_min_score,
            "red_max_prob": policy.red_max_prob, "yellow_max_prob": policy.yellow_max_prob,
            "red_min_agree": rule.red_min_agree, "red_min_prob": rule.red_min_prob,
            "red_max_declared_prob": rule.red_max_declared_prob,
            "yellow_min_declared_prob": rule.yellow_min_declared_prob, "prune": prune,
        },
        "n_pruned": n_pruned,
        "seconds": {
            "fit": round(fit_seconds, 3), "predict": round(predict_seconds, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    if temperature is not None:
        metrics["temperature"] = temperature
    log.info(
        "classified %d parcels into %d classes: accuracy %.3f, flags %s",
        n, k, metrics["accuracy"], flag_counts,
    )
    return flags, metrics


def evaluate_flags(flags_df: pd.DataFrame, truth_df: pd.DataFrame) -> dict[str, Any]:
    """Precision and recall of red flags against the known mislabelled parcels, and % red."""
    for need, frame, name in (("parcel_id", flags_df, "flags"), ("flag", flags_df, "flags"),
                              ("parcel_id", truth_df, "truth"), ("mislabelled", truth_df, "truth")):
        if need not in frame.columns:
            raise InputError(
                f"{name} table has no column {need!r}; available columns: {', '.join(map(str, frame.columns))}"
            )
    truth = truth_df.assign(parcel_id=truth_df["parcel_id"].astype(str))[["parcel_id", "mislabelled"]]
    f = flags_df.assign(parcel_id=flags_df["parcel_id"].astype(str))[["parcel_id", "flag"]]
    m = f.merge(truth, on="parcel_id", how="left")
    unknown = int(m["mislabelled"].isna().sum())
    m = m.dropna(subset=["mislabelled"])
    wrong = m["mislabelled"].astype(bool).to_numpy()
    red = (m["flag"] == "red").to_numpy()
    not_green = (m["flag"] != "green").to_numpy()
    tp = int((red & wrong).sum())
    n_wrong_total = int(truth["mislabelled"].astype(bool).sum())
    return {
        "n_parcels": int(len(m)),
        "n_not_in_truth": unknown,
        "n_mislabelled": int(wrong.sum()),
        "n_mislabelled_in_truth": n_wrong_total,
        "n_red": int(red.sum()),
        "true_red": tp,
        "precision": float(tp / red.sum()) if red.sum() else 0.0,
        "recall": float(tp / wrong.sum()) if wrong.sum() else 0.0,
        "recall_of_all_mislabelled": float(tp / n_wrong_total) if n_wrong_total else 0.0,
        "recall_red_or_yellow": float((not_green & wrong).sum() / wrong.sum()) if wrong.sum() else 0.0,
        "red_pct": float(100.0 * red.sum() / len(m)) if len(m) else 0.0,
    }
