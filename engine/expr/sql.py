"""Compile a condition to a SQLAlchemy Core boolean, for SQLite and PostgreSQL alike.

Literals become bound parameters. Parts without a column (`as_of - 1 year`, `2026-01-31 +
1 month`, even `1 == 1`) are computed in Python with the same code evaluate() uses, so only
column arithmetic needs SQL of its own: three small constructs compiled per dialect.

- `_Shift`: date/timestamp ± duration. PostgreSQL does timestamptz arithmetic in the
  session's time zone, so instants go through `AT TIME ZONE 'UTC'` and back; SQLite uses
  `datetime()`/`date()`, and `aftersales_add_months()` (engine.expr.sqlite_functions) for
  months, because its own '+1 month' overflows Jan 31 into March.
- `_Midnight`: a date meeting a timestamp is midnight UTC of that day on both databases.
- `_ByteOrder`: text is ordered by code point, like Python, whatever the column's collation.
- `_LocalDate`: the calendar day an instant falls on in a time zone named by a column
  (`aftersales_local_date()` on SQLite), for rules that judge by the branch's day.

`shift_date` and `local_date` offer the first and the last to code that builds SQL of its
own from policy values (engine.derived), so every date shift is compiled in one place.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    FromClause,
    Integer,
    Numeric,
    Text,
    and_,
    false,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

from engine.db.types import UtcDateTime
from engine.expr.errors import ExprTypeError
from engine.expr.evaluator import compare, kleene_and, kleene_not, kleene_or, value_of
from engine.expr.kinds import Kind, column_kind, common_kind, shifted_kind, value_kind
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
    Unit,
    source_text,
)
from engine.expr.temporal import CLOCK_UNITS, midnight_utc, utc_instant

_SQL_OPERATORS: dict[CompareOp, Callable[[Any, Any], ColumnElement[bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def to_sql(expr: Expr, table: FromClause, as_of: datetime) -> ColumnElement[bool]:
    """A WHERE clause over `table`'s columns selecting the rows where `expr` is true."""
    return _Compiler(table, utc_instant(as_of)).condition(expr)


def shift_date(sql: ColumnElement[Any], amount: int, unit: Unit) -> ColumnElement[Any]:
    """A date column moved by whole days, weeks, months or years, exactly as conditions do."""
    if unit in CLOCK_UNITS:
        raise ValueError(f"shift_date moves dates by days or longer, not by {unit}s")
    return _Shift(sql, amount, unit, Kind.DATE)


def shift_instant(sql: ColumnElement[Any], minutes: int) -> ColumnElement[Any]:
    """A timestamp column moved by whole minutes, in UTC."""
    return _Shift(sql, minutes, "minute", Kind.INSTANT)


def local_date(instant: ColumnElement[Any], timezone: ColumnElement[Any]) -> ColumnElement[Any]:
    """The day a UTC instant falls on in the IANA time zone `timezone` (a column or value)."""
    return _LocalDate(instant, timezone)


@dataclass(frozen=True, slots=True)
class _Operand:
    """A compiled value: SQL over columns, or a Python constant still to be bound."""

    kind: Kind
    sql: ColumnElement[Any] | None = None
    constant: Any = None

    @property
    def is_constant(self) -> bool:
        return self.sql is None


class _Compiler:
    def __init__(self, table: FromClause, as_of: datetime) -> None:
        self.table = table
        self.as_of = as_of

    def condition(self, node: Node) -> ColumnElement[bool]:
        match node:
            case And(items=items):
                return and_(*(self.condition(item) for item in items))
            case Or(items=items):
                return or_(*(self.condition(item) for item in items))
            case Not(operand=operand):
                return not_(self.condition(operand))
            case Compare(left=left, op=op, right=right):
                return self.compare(node, self.value(left), op, self.value(right))
            case InList():
                return self.in_list(node)
            case Between():
                return self.between(node)
            case IsNull(operand=operand, negated=negated):
                value = self.value(operand)
                if value.sql is None:
                    return _constant(negated)  # a constant is never NULL
                return value.sql.is_not(None) if negated else value.sql.is_(None)
            case Literal(value=bool() as value):
                return _constant(value)
            case Field():
                value = self.value(node)
                if value.kind is not Kind.BOOL:
                    raise ExprTypeError(
                        f"{source_text(node)} is {value.kind.value}, not true/false"
                    )
                assert value.sql is not None
                return value.sql
        raise ExprTypeError(f"not a condition: {source_text(node)}")

    def value(self, node: Node) -> _Operand:
        match node:
            case Field(name=name):
                column = self.table.c.get(name)
                if column is None:
                    raise ExprTypeError(f"{_table_name(self.table)} has no field {name!r}")
                kind = column_kind(column)
                if kind is Kind.OTHER:
                    raise ExprTypeError(f"field {name!r} has a type conditions cannot use")
                return _Operand(kind, sql=column)
            case Literal(value=value):
                return _Operand(value_kind(value), constant=value)
            case AsOf():
                return _Operand(Kind.INSTANT, constant=self.as_of)
            case Shift(base=base, unit=unit):
                start = self.value(base)
                kind = shifted_kind(start.kind, unit)
                if kind is None:
                    raise ExprTypeError(
                        f"cannot add a duration to {start.kind.value}: {source_text(node)}"
                    )
                if start.is_constant:
                    return _Operand(kind, constant=value_of(node, {}, self.as_of))
                sql = _as_kind(start, kind if unit in CLOCK_UNITS else start.kind)
                return _Operand(kind, sql=_Shift(sql, node.signed_amount, unit, kind))
        raise ExprTypeError(f"not a value: {source_text(node)}")

    def compare(
        self, node: Node, left: _Operand, op: CompareOp, right: _Operand
    ) -> ColumnElement[bool]:
        kind = _common(node, left, right)
        if left.is_constant and right.is_constant:
            return _constant(compare(op, left.constant, right.constant))
        lhs, rhs = _as_kind(left, kind), _as_kind(right, kind)
        if kind is Kind.TEXT and op not in ("==", "!="):
            lhs, rhs = _byte_order(left, lhs), _byte_order(right, rhs)
        return _SQL_OPERATORS[op](lhs, rhs)

    def in_list(self, node: InList) -> ColumnElement[bool]:
        operand = self.value(node.operand)
        items = [self.value(item) for item in node.items]
        for item in items:
            _common(node, operand, item)
        if operand.is_constant:
            found = kleene_or(compare("==", operand.constant, i.constant) for i in items)
            return _constant(kleene_not(found) if node.negated else found)
        kind = operand.kind  # list items are literals: never timestamps, so never wider
        sql = _as_kind(operand, kind)
        bound = [_as_kind(item, kind) for item in items]
        return sql.not_in(bound) if node.negated else sql.in_(bound)

    def between(self, node: Between) -> ColumnElement[bool]:
        operand, low, high = (self.value(n) for n in (node.operand, node.low, node.high))
        kind = _common(node, operand, low, high)
        if operand.is_constant and low.is_constant and high.is_constant:
            inside = kleene_and(
                [
                    compare("<=", low.constant, operand.constant),
                    compare("<=", operand.constant, high.constant),
                ]
            )
            return _constant(kleene_not(inside) if node.negated else inside)
        sql, lo, hi = (_as_kind(v, kind) for v in (operand, low, high))
        if kind is Kind.TEXT:
            sql, lo, hi = _byte_order(operand, sql), _byte_order(low, lo), _byte_order(high, hi)
        inside_sql = sql.between(lo, hi)
        return not_(inside_sql) if node.negated else inside_sql


def _common(node: Node, *operands: _Operand) -> Kind:
    kind = common_kind(*(o.kind for o in operands))
    if kind is None:
        kinds = " and ".join(sorted({o.kind.value for o in operands}))
        raise ExprTypeError(f"cannot compare {kinds}: {source_text(node)}")
    return kind


def _as_kind(operand: _Operand, kind: Kind) -> ColumnElement[Any]:
    """SQL for `operand` as a value of `kind` (dates widen to midnight UTC)."""
    if operand.sql is None:
        value = operand.constant
        if kind is Kind.INSTANT and not isinstance(value, datetime):
            value = midnight_utc(value)
        return literal(value, _bind_type(value))
    if kind is Kind.INSTANT and operand.kind is Kind.DATE:
        return _Midnight(operand.sql)
    return operand.sql


def _bind_type(value: Any) -> TypeEngine[Any]:
    # Explicit types: SQLite then stores/compares the same text as the columns hold.
    if isinstance(value, bool):
        return Boolean()
    if isinstance(value, datetime):
        return UtcDateTime()
    if isinstance(value, date):
        return Date()
    if isinstance(value, int):
        return Integer()
    if isinstance(value, Decimal):
        return Numeric()
    return Text()


def _byte_order(operand: _Operand, sql: ColumnElement[Any]) -> ColumnElement[Any]:
    # Only column sides: a collation on a parameter would fix its type before PG infers it.
    return sql if operand.is_constant else _ByteOrder(sql)


def _constant(value: bool | None) -> ColumnElement[bool]:
    # Constants are never NULL here: the language has no null literal outside `is null`.
    return true() if value else false()


def _table_name(table: FromClause) -> str:
    return str(getattr(table, "name", None) or "the table")


# ---------------------------------------------------------------- dialect constructs


class _Shift(FunctionElement[Any]):
    """`operand ± amount unit`; amount and unit are part of the cache key."""

    inherit_cache = True
    _traverse_internals: ClassVar[list[tuple[str, InternalTraversal]]] = [
        *FunctionElement._traverse_internals,
        ("amount", InternalTraversal.dp_plain_obj),
        ("unit", InternalTraversal.dp_string),
        ("on_date", InternalTraversal.dp_boolean),
    ]

    def __init__(self, operand: ColumnElement[Any], amount: int, unit: Unit, kind: Kind):
        super().__init__(operand)
        self.amount = int(amount)  # rendered into the SQL text: must be a real int
        self.unit = unit
        self.on_date = kind is Kind.DATE
        self.type = Date() if self.on_date else UtcDateTime()


class _Midnight(FunctionElement[Any]):
    """A date as the timestamp of its midnight UTC."""

    inherit_cache = True

    def __init__(self, operand: ColumnElement[Any]):
        super().__init__(operand)
        self.type = UtcDateTime()


class _ByteOrder(FunctionElement[Any]):
    """Text compared by code point (Python's order) instead of the column's collation."""

    inherit_cache = True

    def __init__(self, operand: ColumnElement[Any]):
        super().__init__(operand)
        self.type = Text()


class _LocalDate(FunctionElement[Any]):
    """The local calendar day of an instant in a named time zone."""

    inherit_cache = True

    def __init__(self, instant: ColumnElement[Any], timezone: ColumnElement[Any]):
        super().__init__(instant, timezone)
        self.type = Date()


def _argument(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    (operand,) = element.clauses
    return compiler.process(operand, **kw)


_PG_INTERVAL_FIELDS: dict[Unit, tuple[str, int]] = {
    "minute": ("mins", 1),
    "hour": ("hours", 1),
    "day": ("days", 1),
    "week": ("days", 7),
    "month": ("months", 1),
    "year": ("months", 12),
}


@compiles(_Shift, "postgresql")
def _shift_postgresql(element: _Shift, compiler: SQLCompiler, **kw: Any) -> str:
    operand = _argument(element, compiler, **kw)
    name, factor = _PG_INTERVAL_FIELDS[element.unit]
    interval = f"make_interval({name} => {element.amount * factor:d})"
    if element.on_date:
        return f"CAST({operand} + {interval} AS DATE)"
    return f"(((({operand}) AT TIME ZONE 'UTC') + {interval}) AT TIME ZONE 'UTC')"


@compiles(_Shift, "sqlite")
def _shift_sqlite(element: _Shift, compiler: SQLCompiler, **kw: Any) -> str:
    operand = _argument(element, compiler, **kw)
    if element.unit in ("month", "year"):
        months = element.amount * (12 if element.unit == "year" else 1)
        return f"aftersales_add_months({operand}, {months:d})"
    amount, unit = element.amount, element.unit
    if unit == "week":  # SQLite has no week modifier
        amount, unit = amount * 7, "day"
    function = "date" if element.on_date else "datetime"
    return f"{function}({operand}, '{amount:+d} {unit}s')"


@compiles(_Midnight, "postgresql")
def _midnight_postgresql(element: _Midnight, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(CAST({_argument(element, compiler, **kw)} AS TIMESTAMP) AT TIME ZONE 'UTC')"


@compiles(_Midnight, "sqlite")
def _midnight_sqlite(element: _Midnight, compiler: SQLCompiler, **kw: Any) -> str:
    # datetime('2026-01-31') is '2026-01-31 00:00:00', the text UtcDateTime stores.
    return f"datetime({_argument(element, compiler, **kw)})"


@compiles(_ByteOrder, "postgresql")
def _byte_order_postgresql(element: _ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({_argument(element, compiler, **kw)} COLLATE "C")'


@compiles(_ByteOrder)
def _byte_order_default(element: _ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's default BINARY collation already orders UTF-8 by code point.
    return _argument(element, compiler, **kw)


@compiles(_LocalDate, "postgresql")
def _local_date_postgresql(element: _LocalDate, compiler: SQLCompiler, **kw: Any) -> str:
    instant, zone = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(timezone({zone}, {instant}) AS DATE)"


@compiles(_LocalDate, "sqlite")
def _local_date_sqlite(element: _LocalDate, compiler: SQLCompiler, **kw: Any) -> str:
    instant, zone = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"aftersales_local_date({instant}, {zone})"


@compiles(_Shift)
@compiles(_Midnight)
@compiles(_LocalDate)
def _unsupported(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"date arithmetic in conditions supports SQLite and PostgreSQL, not {compiler.dialect.name}"
    )
