"""Column types shared by every table: UTC instants that compare alike on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Dialect, LargeBinary, Numeric, String, Text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import mapped_column
from sqlalchemy.types import TypeDecorator

# Whole seconds, no offset: the same text SQLite's own datetime() produces, so timestamps
# shifted in SQL (`datetime(col, '+2 hours')`) compare correctly with stored ones.
_SQLITE_FORMAT = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d"


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: stored in UTC, returned timezone-aware; naive input is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(
                sqlite.DATETIME(
                    storage_format=_SQLITE_FORMAT,
                    regexp=r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)",
                )
            )
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value.isoformat()} has no time zone")
        value = value.astimezone(UTC).replace(microsecond=0)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def choices(*values: str) -> dict[str, Any]:
    """Column info naming the only values a column may hold (checked on import and in `when:`)."""
    return {"choices": values}


intpk = Annotated[int, mapped_column(primary_key=True)]
str20 = Annotated[str, 20]
str40 = Annotated[str, 40]
str200 = Annotated[str, 200]
str400 = Annotated[str, 400]
money = Annotated[Decimal, 2]

# Used by the declarative base so that `Mapped[datetime]` is always a UTC instant and
# `Mapped[str40]` a VARCHAR(40).
TYPE_ANNOTATION_MAP: dict[Any, Any] = {
    datetime: UtcDateTime(),
    date: Date(),
    bool: Boolean(),
    str20: String(20),
    str40: String(40),
    str200: String(200),
    str400: String(400),
    str: Text(),
    money: Numeric(12, 2),
    dict[str, Any]: JSON(),
    list[Any]: JSON(),
    bytes: LargeBinary(),
}
