"""SQL functions SQLite lacks, registered on every SQLite connection."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from engine.db.local_time import local_text
from engine.expr.temporal import add_months, local_date


def register(dbapi_conn: Any) -> None:
    """Add the engine's functions to one SQLite connection."""
    dbapi_conn.create_function("aftersales_add_months", 2, _add_months, deterministic=True)
    dbapi_conn.create_function("aftersales_local_time", 2, local_text, deterministic=True)
    dbapi_conn.create_function("aftersales_local_date", 2, _local_date, deterministic=True)


@lru_cache(maxsize=65_536)  # a night shifts the same few thousand dates over and over
def _add_months(value: str | None, months: int | None) -> str | None:
    """'2026-01-31' or '2026-01-31 08:00:00' plus whole months, clamped like PostgreSQL."""
    if value is None or months is None:
        return None
    # Dates and UtcDateTime text both start with YYYY-MM-DD; the time of day is unchanged by
    # month arithmetic, so the rest of the text is kept as it is.
    day = date.fromisoformat(value[:10])
    return add_months(day, int(months)).isoformat() + value[10:]


def _local_date(value: str | None, timezone: str | None) -> str | None:
    """'2026-10-31 17:30:00' (UTC, as UtcDateTime stores it) as its day in `timezone`."""
    if value is None or timezone is None:
        return None
    # Most zones are whole hours off UTC, so every instant of a UTC hour has the same local
    # day: one conversion per hour and zone serves a night's worth of rows.
    whole_hour = _hour_day(value[:13], timezone)
    return whole_hour or local_date(datetime.fromisoformat(value), timezone).isoformat()


@lru_cache(maxsize=262_144)
def _hour_day(hour: str, timezone: str) -> str | None:
    """The local day of every instant in a UTC hour ('2026-10-31 17'), or None if it varies."""
    start = datetime.fromisoformat(f"{hour}:00:00")
    first = local_date(start, timezone)
    last = local_date(start + timedelta(minutes=59, seconds=59), timezone)
    # An offset of whole hours (kept over the hour) puts the hour inside one local day.
    zone_offset = start.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).utcoffset()
    whole = zone_offset is not None and zone_offset.total_seconds() % 3600 == 0
    return first.isoformat() if first == last and whole else None
