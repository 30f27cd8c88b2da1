"""Dates and times as the pipeline stores them: timezone-aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from cbmflow.core.errors import InputError


def to_utc(value: Any, *, what: str = "date", end: bool = False) -> datetime | None:
    """An ISO date/timestamp, date or datetime as an aware UTC datetime (None for empty).

    A bare day (``YYYY-MM-DD`` or a :class:`date`) is its midnight UTC, or the next midnight
    with ``end=True`` (an exclusive end). Naive timestamps are taken as UTC; ``Z`` is accepted.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        day = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return day + timedelta(days=1) if end else day
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} {text!r} is not an ISO date (YYYY-MM-DD) or timestamp") from None
    if len(text) == 10:  # a bare day
        return to_utc(parsed.date(), what=what, end=end)
    return to_utc(parsed, what=what)
