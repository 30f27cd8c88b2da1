"""Event-level evaluation of dated markers against recorded events: precision, recall, F1.

A detection matches a true event when ``lo <= detected - true <= hi`` days; each detection and
each true event matches at most once (closest pairs first). Two windows are standard here:
``(-3, 3)`` (the date is right within three days) and ``(-3, 20)`` (detections may lag the event
by a revisit or two, as the MODCiX comparison allowed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

WINDOWS: dict[str, tuple[int, int]] = {"pm3": (-3, 3), "m3p20": (-3, 20)}


@dataclass(frozen=True)
class Score:
    """Event-level counts and scores for one window."""

    window: tuple[int, int]
    tp: int
    fp: int
    fn: int
    n_true: int
    n_detected: int

    @property
    def precision(self) -> float:
        """TP / detections (1.0 when nothing was detected and nothing was true)."""
        return self.tp / self.n_detected if self.n_detected else (1.0 if self.n_true == 0 else 0.0)

    @property
    def recall(self) -> float:
        """TP / true events."""
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, object]:
        """Counts and rounded scores as a dict."""
        return {**asdict(self), "precision": round(self.precision, 3), "recall": round(self.recall, 3),
                "f1": round(self.f1, 3)}


def _ordinal(d: str | dt.date) -> int:
    return (dt.date.fromisoformat(d[:10]) if isinstance(d, str) else d).toordinal()


def match(detected: Iterable[str | dt.date], truth: Iterable[str | dt.date], window: tuple[int, int]) -> list[tuple[int, int]]:
    """Index pairs (detection, truth) matched one-to-one within the window, closest first."""
    det = [_ordinal(d) for d in detected]
    tru = [_ordinal(t) for t in truth]
    lo, hi = window
    pairs = sorted(
        (abs(d - t), i, j) for i, d in enumerate(det) for j, t in enumerate(tru) if lo <= d - t <= hi
    )
    used_d: set[int] = set()
    used_t: set[int] = set()
    out = []
    for _, i, j in pairs:
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


def score(detected: Mapping[str, list[str]], truth: Mapping[str, list[str]], window: tuple[int, int]) -> Score:
    """Score detections against truth over the parcels of ``truth`` (detections elsewhere are ignored)."""
    tp = n_true = n_det = 0
    for parcel, events in truth.items():
        dets = list(detected.get(parcel, []))
        tp += len(match(dets, events, window))
        n_true += len(events)
        n_det += len(dets)
    return Score(window=window, tp=tp, fp=n_det - tp, fn=n_true - tp, n_true=n_true, n_detected=n_det)


def score_all(detected: Mapping[str, list[str]], truth: Mapping[str, list[str]]) -> dict[str, Score]:
    """Scores for both standard windows."""
    return {k: score(detected, truth, w) for k, w in WINDOWS.items()}


def date_errors(detected: Mapping[str, list[str]], truth: Mapping[str, list[str]], window: tuple[int, int] = (-3, 20)) -> list[int]:
    """Detected minus true date (days) of every matched pair."""
    out = []
    for parcel, events in truth.items():
        dets = list(detected.get(parcel, []))
        for i, j in match(dets, events, window):
            out.append(_ordinal(dets[i]) - _ordinal(events[j]))
    return out
