"""The few kinds of value a condition deals with, and which of them compare with which."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.expr.nodes import Unit
from engine.expr.temporal import CLOCK_UNITS


class Kind(Enum):
    """What a value is, as far as comparing goes; the value is a phrase for messages."""

    NUMBER = "a number"
    TEXT = "text"
    BOOL = "true/false"
    DATE = "a date"
    INSTANT = "a timestamp"
    OTHER = "a value conditions cannot use"


def column_kind(column: ColumnElement[Any]) -> Kind:
    """The kind of a column, from its SQLAlchemy type."""
    sql_type: TypeEngine[Any] = column.type
    # TypeDecorator (UtcDateTime) reports `object`; its implementation knows better.
    while isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return Kind.OTHER
    return python_kind(python_type)


def python_kind(python_type: type) -> Kind:
    """The kind of values of a Python type (bool before int, datetime before date)."""
    for base, kind in (
        (bool, Kind.BOOL),
        (datetime, Kind.INSTANT),
        (date, Kind.DATE),
        (int, Kind.NUMBER),
        (Decimal, Kind.NUMBER),
        (float, Kind.NUMBER),
        (str, Kind.TEXT),
    ):
        if issubclass(python_type, base):
            return kind
    return Kind.OTHER


def value_kind(value: Any) -> Kind:
    """The kind of one runtime value (not None)."""
    return python_kind(type(value))


def common_kind(*kinds: Kind) -> Kind | None:
    """The kind several values are compared as, or None if they cannot be compared."""
    # A date meeting a timestamp is compared as the timestamp of its midnight UTC.
    unique = set(kinds)
    if Kind.OTHER in unique:
        return None
    if len(unique) == 1:
        return unique.pop()
    if unique == {Kind.DATE, Kind.INSTANT}:
        return Kind.INSTANT
    return None


def shifted_kind(base: Kind, unit: Unit) -> Kind | None:
    """The kind of `base ± duration`, or None if `base` cannot be shifted."""
    if base is Kind.INSTANT:
        return Kind.INSTANT
    if base is Kind.DATE:
        return Kind.INSTANT if unit in CLOCK_UNITS else Kind.DATE
    return None
