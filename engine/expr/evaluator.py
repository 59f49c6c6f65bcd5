"""Evaluate a condition on one record in Python, with SQL's three-valued logic.

`evaluate(...) is True` exactly when the compiled SQL selects the row: NULL compared with
anything is unknown (None), `and`/`or`/`not` follow Kleene's rules, and a date meeting a
timestamp stands for midnight UTC of that day, as in engine.expr.sql.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.expr.errors import ExprTypeError
from engine.expr.kinds import Kind, common_kind, value_kind
from engine.expr.nodes import (
    And,
    AsOf,
    Between,
    Compare,
    CompareOp,
    Expr,
    Field,
    InList,
    IsNull,
    Literal,
    Node,
    Not,
    Or,
    Shift,
    source_text,
    walk,
)
from engine.expr.temporal import midnight_utc, shift, utc_instant

_OPERATORS: dict[CompareOp, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(expr: Expr, record: Mapping[str, Any], as_of: datetime) -> bool | None:
    """True, False or None (unknown, i.e. no match) for one record at `as_of`."""
    return _condition(expr, record, utc_instant(as_of))


def explain(
    expr: Expr, record: Mapping[str, Any], as_of: datetime
) -> list[tuple[str, bool | None]]:
    """Each top-level and/or operand's text with its value, to show which part failed."""
    parts = expr.items if isinstance(expr, And | Or) else (expr,)
    return [(source_text(part), evaluate(part, record, as_of)) for part in parts]


def fields(expr: Node) -> set[str]:
    """The names of the columns a condition reads."""
    return {node.name for node in walk(expr) if isinstance(node, Field)}


def compare(op: CompareOp, left: Any, right: Any) -> bool | None:
    """`left op right` as SQL computes it: unknown when either side is NULL."""
    if left is None or right is None:
        return None
    kind = common_kind(value_kind(left), value_kind(right))
    if kind is None:
        raise ExprTypeError(
            f"cannot compare {value_kind(left).value} {left!r} "
            f"with {value_kind(right).value} {right!r}"
        )
    if kind is Kind.INSTANT:
        left, right = _instant(left), _instant(right)
    return _OPERATORS[op](left, right)


def value_of(node: Node, record: Mapping[str, Any], as_of: datetime) -> Any:
    """The value of a Field, Literal, AsOf or Shift node (None for NULL)."""
    match node:
        case Field(name=name):
            try:
                value = record[name]
            except KeyError:
                raise ExprTypeError(f"the record has no field {name!r}") from None
            if isinstance(value, datetime):
                value = _aware(value, name)
            return value
        case Literal(value=value):
            return value
        case AsOf():
            return as_of
        case Shift(base=base, unit=unit):
            start = value_of(base, record, as_of)
            if start is None:
                return None
            if value_kind(start) not in (Kind.DATE, Kind.INSTANT):
                raise ExprTypeError(f"cannot add a duration to {value_kind(start).value}")
            return shift(start, node.signed_amount, unit)
    raise ExprTypeError(f"not a value: {source_text(node)}")


def kleene_and(values: Iterable[bool | None]) -> bool | None:
    """SQL AND: false wins, then unknown."""
    result: bool | None = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def kleene_or(values: Iterable[bool | None]) -> bool | None:
    """SQL OR: true wins, then unknown."""
    result: bool | None = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def kleene_not(value: bool | None) -> bool | None:
    """SQL NOT: unknown stays unknown."""
    return None if value is None else not value


def _condition(node: Node, record: Mapping[str, Any], as_of: datetime) -> bool | None:
    match node:
        case And(items=items):
            # Every operand is evaluated (no short cut) so a type error never hides.
            return kleene_and([_condition(item, record, as_of) for item in items])
        case Or(items=items):
            return kleene_or([_condition(item, record, as_of) for item in items])
        case Not(operand=operand):
            return kleene_not(_condition(operand, record, as_of))
        case Compare(left=left, op=op, right=right):
            return compare(op, value_of(left, record, as_of), value_of(right, record, as_of))
        case InList(operand=operand, items=items, negated=negated):
            value = value_of(operand, record, as_of)
            found = kleene_or([compare("==", value, item.value) for item in items])
            return kleene_not(found) if negated else found
        case Between(operand=operand, low=low, high=high, negated=negated):
            value = value_of(operand, record, as_of)
            inside = kleene_and(
                [
                    compare("<=", value_of(low, record, as_of), value),
                    compare("<=", value, value_of(high, record, as_of)),
                ]
            )
            return kleene_not(inside) if negated else inside
        case IsNull(operand=operand, negated=negated):
            return (value_of(operand, record, as_of) is None) != negated
        case Field() | Literal():
            value = value_of(node, record, as_of)
            if value is not None and not isinstance(value, bool):
                raise ExprTypeError(
                    f"{source_text(node)} is {value_kind(value).value}, not true/false"
                )
            return value
    raise ExprTypeError(f"not a condition: {source_text(node)}")


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else midnight_utc(value)


def _aware(value: datetime, name: str) -> datetime:
    # Durations are added in UTC, as the SQL does; a naive value has no defined instant.
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ExprTypeError(f"field {name!r} holds a timestamp without time zone")
    return value.astimezone(UTC)
