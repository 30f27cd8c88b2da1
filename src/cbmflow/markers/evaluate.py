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


def error_distribution(errors: list[int]) -> dict[str, object]:
    """Median, quartiles and a histogram (-3..-1, 0, 1..3, 4..7, 8..14, 15..20 d) of date errors."""
    import numpy as np

    if not errors:
        return {"n": 0}
    e = np.asarray(errors, dtype=float)
    bins = {"-3..-1": (-3, -1), "0": (0, 0), "1..3": (1, 3), "4..7": (4, 7), "8..14": (8, 14), "15..20": (15, 20)}
    return {"n": len(errors), "median": float(np.median(e)), "q25": float(np.percentile(e, 25)),
            "q75": float(np.percentile(e, 75)),
            "histogram": {k: int(((e >= lo) & (e <= hi)).sum()) for k, (lo, hi) in bins.items()}}


def read_truth(path: str) -> dict[str, list[str]]:
    """Truth events: JRC ``FOIinfo.csv`` (ID, Event_date) or a CSV ``parcel,date`` (empty date = not mown)."""
    import csv
    from pathlib import Path

    from cbmflow.core.errors import InputError

    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    if "Event_date" in header:
        from cbmflow.markers.io import read_foi_info

        return read_foi_info(path)
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        r = csv.DictReader(fh)
        cols = {c.lower(): c for c in r.fieldnames or []}
        pc, dc = cols.get("parcel") or cols.get("parcel_id"), cols.get("date") or cols.get("event_date")
        if pc is None or dc is None:
            raise InputError(f"{Path(path)}: a truth file needs columns parcel,date (or JRC ID,Event_date)")
        for n, row in enumerate(r, start=2):
            events = out.setdefault(str(row[pc]).strip(), [])
            text = (row[dc] or "").strip()
            if text:
                try:
                    events.append(dt.date.fromisoformat(text[:10]).isoformat())
                except ValueError:
                    raise InputError(f"{Path(path)}: row {n}, column {dc!r}: {text!r} is not an ISO date") from None
    return {k: sorted(v) for k, v in out.items()}


def season_agreement(status: Mapping[str, str], truth: Mapping[str, list[str]]) -> dict[str, dict[str, int]]:
    """Per parcel-season, truth mown / not mown against the verdict (mown, not_mown, not_enough_evidence)."""
    out: dict[str, dict[str, int]] = {"mown": {}, "not_mown": {}}
    for parcel, events in truth.items():
        row = out["mown" if events else "not_mown"]
        verdict = status.get(parcel, "no_signals")
        row[verdict] = row.get(verdict, 0) + 1
    return out


def mown_agreement(detected: Mapping[str, list[str]], truth: Mapping[str, list[str]]) -> dict[str, object]:
    """Per parcel-season, truth mown (any dated event) against detected mown (any cut): the 2x2 counts and accuracy."""
    cells = {"mown_detected": 0, "mown_missed": 0, "not_mown_detected": 0, "not_mown_clear": 0}
    for parcel, events in truth.items():
        found = bool(detected.get(parcel))
        key = ("mown_" + ("detected" if found else "missed")) if events else \
            ("not_mown_" + ("detected" if found else "clear"))
        cells[key] += 1
    n = sum(cells.values())
    agree = cells["mown_detected"] + cells["not_mown_clear"]
    return {**cells, "n": n, "accuracy": round(agree / n, 3) if n else None}
