"""An instant as the wall clock of a time zone, in SQL, so that local hours filter set-based.

`local_wall_clock(column, zone)` is the text `YYYY-MM-DD HH:MM:SS` of a UTC timestamp column
in an IANA time zone that may itself be a column (each branch has its own):

- PostgreSQL: `to_char(ts AT TIME ZONE zone, ...)`, with the server's time zone database;
- SQLite: `aftersales_local_time(ts, zone)`, registered on every connection
  (engine.expr.sqlite_functions), with Python's zoneinfo.

Both give fixed-width text, so `substr(.., 12, 5)` is the local `HH:MM` and compares as text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Text, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["local_clock", "local_text", "local_wall_clock", "shifted"]

_FORMAT = "%Y-%m-%d %H:%M:%S"


class _LocalWallClock(FunctionElement[str]):
    """`instant` in time zone `zone`, as `YYYY-MM-DD HH:MM:SS` text."""

    inherit_cache = True
    type = Text()


def local_wall_clock(instant: ColumnElement[Any], zone: ColumnElement[Any]) -> ColumnElement[str]:
    """SQL text of the local date and time of `instant` (UTC) in `zone`."""
    return _LocalWallClock(instant, zone)


def local_clock(wall_clock: ColumnElement[str]) -> ColumnElement[str]:
    """The `HH:MM` part of a local_wall_clock value."""
    return func.substr(wall_clock, 12, 5)


@compiles(_LocalWallClock, "postgresql")
def _postgresql(element: _LocalWallClock, compiler: SQLCompiler, **kw: Any) -> str:
    instant, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"to_char(({instant}) AT TIME ZONE ({zone}), 'YYYY-MM-DD HH24:MI:SS')"


@compiles(_LocalWallClock, "sqlite")
def _sqlite(element: _LocalWallClock, compiler: SQLCompiler, **kw: Any) -> str:
    instant, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"aftersales_local_time({instant}, {zone})"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# SQLite calls the function once per mention in a statement, so a row's select list and its
# local-hours filter convert the same instant up to three times in a row.
@lru_cache(maxsize=1024)
def local_text(value: str | datetime | None, zone: str | None) -> str | None:
    """SQLite's aftersales_local_time: UTC text (as UtcDateTime stores it) to local text."""
    if value is None or zone is None or (tz := _zone(zone)) is None:
        return None  # an unknown zone matches no local hours rather than failing the night
    if isinstance(value, str):
        value = datetime.fromisoformat(value[:19])
    instant = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return instant.astimezone(tz).strftime(_FORMAT)


class _Shifted(FunctionElement[Any]):
    """`instant` moved by a whole number of seconds, comparable with the column it came from."""

    inherit_cache = True

    def __init__(self, instant: ColumnElement[Any], seconds: int) -> None:
        super().__init__(instant)
        self.seconds = int(seconds)
        self.type = instant.type


def shifted(instant: ColumnElement[Any], seconds: int) -> ColumnElement[Any]:
    """SQL: a UTC timestamp column plus `seconds` (negative: earlier)."""
    return _Shifted(instant, seconds)


@compiles(_Shifted, "postgresql")
def _shifted_postgresql(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    (instant,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({instant}) + make_interval(secs => {element.seconds}))"


@compiles(_Shifted, "sqlite")
def _shifted_sqlite(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    # UtcDateTime stores `YYYY-MM-DD HH:MM:SS` text in SQLite, the format datetime() returns.
    (instant,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"datetime({instant}, '{element.seconds:+d} seconds')"
