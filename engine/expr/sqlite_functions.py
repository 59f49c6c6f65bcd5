"""SQL functions SQLite lacks, registered on every SQLite connection."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from engine.expr.temporal import add_months, local_date


def register(dbapi_conn: Any) -> None:
    """Add the engine's functions to one SQLite connection."""
    dbapi_conn.create_function("aftersales_add_months", 2, _add_months, deterministic=True)
    dbapi_conn.create_function("aftersales_local_date", 2, _local_date, deterministic=True)


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
    return local_date(datetime.fromisoformat(value), timezone).isoformat()
