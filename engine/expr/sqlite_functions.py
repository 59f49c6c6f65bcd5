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
    zone = ZoneInfo(timezone)
    start = datetime.fromisoformat(f"{hour}:00:00").replace(tzinfo=UTC)
    offsets = {(start + timedelta(seconds=s)).astimezone(zone).utcoffset() for s in (0, 3599)}
    offset = offsets.pop() if len(offsets) == 1 else None
    # One offset all hour long, of whole hours, keeps the hour inside one local day.
    if offset is None or offset.total_seconds() % 3600:
        return None
    return (start + offset).date().isoformat()
