"""Date and time arithmetic shared by evaluate(), constant folding and the SQLite functions.

One implementation for every path, so Python and both databases agree on edge cases:
months clamp to the end of the month (Jan 31 + 1 month = Feb 28/29) as PostgreSQL and
dateutil do, and a date meeting an instant stands for midnight UTC of that day.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.expr.nodes import Unit

UNITS: dict[str, Unit] = {
    "minute": "minute",
    "minutes": "minute",
    "hour": "hour",
    "hours": "hour",
    "day": "day",
    "days": "day",
    "week": "week",
    "weeks": "week",
    "month": "month",
    "months": "month",
    "year": "year",
    "years": "year",
}
"""Spellings a duration may use, mapped to the unit stored in the AST."""

CLOCK_UNITS: frozenset[Unit] = frozenset({"minute", "hour"})
"""Units that turn a date into an instant when added to it."""


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC to the whole second, the way UtcDateTime stores it; naive is refused."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"as_of {value.isoformat()} has no time zone")
    return value.astimezone(UTC).replace(microsecond=0)


def midnight_utc(day: date) -> datetime:
    """The instant a date stands for when it meets a timestamp: 00:00 UTC that day."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def add_months(value: date, months: int) -> date:
    """`value` moved by whole months, clamped to the end of a shorter month."""
    # The same result as `value + relativedelta(months=months)`, several times faster: the
    # SQLite function calls this once per row. `replace` keeps a datetime's time and zone.
    index = value.month - 1 + months
    year, month = value.year + index // 12, index % 12 + 1
    return value.replace(year=year, month=month, day=min(value.day, monthrange(year, month)[1]))


def shift(value: date, amount: int, unit: Unit) -> date:
    """Move a date or an aware instant by `amount` (signed) units."""
    if not isinstance(value, datetime) and unit in CLOCK_UNITS:
        value = midnight_utc(value)
    match unit:
        case "minute":
            return value + timedelta(minutes=amount)
        case "hour":
            return value + timedelta(hours=amount)
        case "day":
            return value + timedelta(days=amount)
        case "week":
            return value + timedelta(weeks=amount)
        case "month":
            return add_months(value, amount)
        case "year":
            return add_months(value, 12 * amount)
    raise ValueError(f"unknown unit {unit!r}")


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar day `instant` falls on in an IANA time zone; naive means UTC (storage)."""
    aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(timezone)).date()
