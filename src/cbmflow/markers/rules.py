"""Compliance per parcel from a small editable rule table (``src/cbmflow/data/marker_rules.csv``).

Each parcel gets one status per rule that applies to its crop: ``compliant``, ``not_compliant``
or ``not_enough_evidence``; a parcel no rule applies to gets one ``not_monitored`` row (rule
``*``). Absence of a marker counts against a parcel only when the sensors the rule relies on
observed enough of the rule's window: otherwise the answer is ``not_enough_evidence``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cbmflow.core.errors import InputError
from cbmflow.markers.signals import Marker

STATUSES = ("compliant", "not_compliant", "not_monitored", "not_enough_evidence")
_FIELDS = ("rule", "crop_groups", "crop_codes", "marker", "requirement", "min_count", "window_start",
           "window_end", "evidence", "max_gap_share", "description")


@dataclass(frozen=True)
class Rule:
    """One compliance rule."""

    rule: str
    crop_groups: tuple[str, ...]
    crop_codes: tuple[str, ...]
    marker: str
    requirement: str  # at_least | none
    min_count: int
    window_start: str  # MM-DD
    window_end: str
    evidence: tuple[str, ...]
    max_gap_share: float
    description: str

    def applies(self, crop_group: str | None, crop_code: str | None) -> bool:
        """Whether the rule applies to a parcel's crop."""
        return ("*" in self.crop_groups or (crop_group is not None and crop_group in self.crop_groups)
                or (crop_code is not None and str(crop_code) in self.crop_codes))


@dataclass(frozen=True)
class Compliance:
    """One parcel's status under one rule."""

    rule: str
    status: str
    detail: str


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(";") if t.strip())


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """The rule table (the packaged default, or a CSV file of the same columns)."""
    if path is None:
        text = resources.files("cbmflow").joinpath("data/marker_rules.csv").read_text(encoding="utf-8")
        source = "cbmflow/data/marker_rules.csv"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    missing = [f for f in _FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"rule table {source} lacks column(s) {missing}")
    rules, seen = [], set()
    for n, row in enumerate(reader, start=2):
        try:
            r = Rule(rule=row["rule"].strip(), crop_groups=_split(row["crop_groups"]),
                     crop_codes=_split(row["crop_codes"]), marker=row["marker"].strip(),
                     requirement=row["requirement"].strip(), min_count=int(row["min_count"] or 0),
                     window_start=row["window_start"].strip(), window_end=row["window_end"].strip(),
                     evidence=_split(row["evidence"]) or ("S2",), max_gap_share=float(row["max_gap_share"] or 0.5),
                     description=(row["description"] or "").strip())
            dt.date.fromisoformat(f"2020-{r.window_start}")
            dt.date.fromisoformat(f"2020-{r.window_end}")
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"rule table {source}, data line {n}: {exc}") from exc
        if r.requirement not in ("at_least", "none"):
            raise InputError(f"rule {r.rule!r} in {source}: requirement must be at_least or none, not {r.requirement!r}")
        if r.rule in seen or r.rule == "*":
            raise InputError(f"rule name {r.rule!r} is used twice (or is '*') in {source}")
        seen.add(r.rule)
        rules.append(r)
    return rules


def _unobserved_share(markers: Sequence[Marker], evidence: tuple[str, ...], lo: dt.date, hi: dt.date) -> float:
    """Share of the window's days inside a no_evidence period of every evidence sensor."""
    total = (hi - lo).days + 1
    blind = None
    for sensor in evidence:
        days: set[int] = set()
        for m in markers:
            if m.marker == "no_evidence" and sensor in m.sources and m.start_date and m.end_date:
                a = max(dt.date.fromisoformat(m.start_date), lo)
                b = min(dt.date.fromisoformat(m.end_date), hi)
                days.update(range(a.toordinal(), b.toordinal() + 1))
        blind = days if blind is None else blind & days
    return len(blind or set()) / total


def evaluate_rules(rules: Sequence[Rule], year: int, crop_group: str | None, crop_code: str | None,
                   markers: Sequence[Marker]) -> list[Compliance]:
    """The parcel's status under every rule that applies to its crop (``not_monitored`` if none does)."""
    out = []
    for r in rules:
        if not r.applies(crop_group, crop_code):
            continue
        lo = dt.date.fromisoformat(f"{year}-{r.window_start}")
        hi = dt.date.fromisoformat(f"{year}-{r.window_end}")
        hits = [m for m in markers if m.marker == r.marker and m.event_date
                and lo <= dt.date.fromisoformat(m.event_date) <= hi]
        blind = _unobserved_share(markers, r.evidence, lo, hi)
        window = f"{lo.isoformat()}..{hi.isoformat()}"
        if r.requirement == "at_least":
            if len(hits) >= r.min_count:
                status = "compliant"
                detail = f"{len(hits)} {r.marker} event(s) in {window}: " + ", ".join(str(m.event_date) for m in hits)
            elif blind > r.max_gap_share:
                status = "not_enough_evidence"
                detail = (f"{len(hits)} of {r.min_count} {r.marker} event(s) in {window}, but "
                          f"{100 * blind:.0f} % of it had no usable {'/'.join(r.evidence)} observation")
            else:
                status = "not_compliant"
                detail = f"{len(hits)} of {r.min_count} {r.marker} event(s) in {window}"
        else:
            if hits:
                status = "not_compliant"
                detail = f"{r.marker} in {window}: " + ", ".join(str(m.event_date) for m in hits)
            elif blind > r.max_gap_share:
                status = "not_enough_evidence"
                detail = f"no {r.marker} seen, but {100 * blind:.0f} % of {window} had no usable observation"
            else:
                status = "compliant"
                detail = f"no {r.marker} in {window}"
        out.append(Compliance(r.rule, status, detail))
    if not out:
        out.append(Compliance("*", "not_monitored", f"no rule for crop {crop_code or '?'} ({crop_group or '?'})"))
    return out
