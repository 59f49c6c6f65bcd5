"""Check a parsed condition against the table it will run on, collecting every problem.

Finds unknown fields (with a suggestion), values outside a column's `choices`, and type
mismatches that would silently never match, such as `ends_on > '2026-01-01'`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause

from engine.expr.errors import ExprProblem
from engine.expr.kinds import Kind, column_kind, common_kind, shifted_kind, value_kind
from engine.expr.nodes import (
    And,
    AsOf,
    Between,
    Compare,
    Field,
    InList,
    IsNull,
    Literal,
    Node,
    Not,
    Or,
    Shift,
    Value,
    source_text,
)

_KNOWN_SHOWN = 8


def check(expr: Node, table: FromClause) -> list[ExprProblem]:
    """Every problem of `expr` against `table`'s columns, in text order; empty when fine."""
    checker = _Checker(table)
    checker.condition(expr)
    return sorted(checker.problems, key=lambda p: p.offset)


class _Checker:
    def __init__(self, table: FromClause) -> None:
        self.table = table
        self.name = str(getattr(table, "name", None) or "the table")
        self.problems: list[ExprProblem] = []

    def report(self, message: str, at: Node, hint: str | None = None) -> None:
        self.problems.append(ExprProblem(message, at.start, hint))

    def column(self, name: str) -> ColumnElement[Any] | None:
        return self.table.c.get(name)

    # ------------------------------------------------------------ conditions

    def condition(self, node: Node) -> None:
        match node:
            case And(items=items) | Or(items=items):
                for item in items:
                    self.condition(item)
            case Not(operand=operand):
                self.condition(operand)
            case Compare(left=left, right=right):
                self.pair(left, self.kind(left, right), right, self.kind(right, left))
            case InList(operand=operand, items=items):
                kind = self.kind(operand, items[0])
                for item in items:
                    self.pair(operand, kind, item, self.kind(item))
            case Between(operand=operand, low=low, high=high):
                kind = self.kind(operand, low)
                self.pair(operand, kind, low, self.kind(low, operand))
                self.pair(operand, kind, high, self.kind(high, operand))
            case IsNull(operand=operand):
                self.kind(operand)
            case Field(name=name):
                kind = self.kind(node)
                if kind is not None and kind is not Kind.BOOL:
                    self.report(
                        f"{name} is {kind.value}, not true/false, so it cannot stand alone",
                        node,
                        f"compare it, e.g. {self.example(name, kind)}",
                    )

    def example(self, name: str, kind: Kind) -> str:
        column = self.column(name)
        choices = _choices(column) if column is not None else None
        if choices:
            return f"{name} == '{choices[0]}'"
        return {Kind.NUMBER: f"{name} > 0", Kind.TEXT: f"{name} == '...'"}.get(
            kind, f"{name} is not null"
        )

    # ------------------------------------------------------------ values

    def kind(self, node: Value, other: Node | None = None) -> Kind | None:
        """The kind of a value; None after reporting why it has none."""
        match node:
            case Field(name=name):
                column = self.column(name)
                if column is None:
                    self.unknown_field(node, other)
                    return None
                kind = column_kind(column)
                if kind is Kind.OTHER:
                    self.report(f"field {name} has a type conditions cannot use", node)
                    return None
                return kind
            case Literal(value=value):
                return value_kind(value)
            case AsOf():
                return Kind.INSTANT
            case Shift(base=base, unit=unit):
                base_kind = self.kind(base)
                if base_kind is None:
                    return None
                kind = shifted_kind(base_kind, unit)
                if kind is None:
                    self.report(
                        f"a duration can only be added to a date or timestamp; "
                        f"{source_text(base)} is {base_kind.value}",
                        node,
                        "e.g. received_at + 24 hours, ends_on - 1 month",
                    )
                return kind
        return None

    def unknown_field(self, node: Field, other: Node | None) -> None:
        known = sorted(self.table.c.keys())
        hints: list[str] = []
        other_choices = self.choices_of(other)
        if node.name in other_choices:
            hints.append(f"{node.name} is a value of {_name(other)}: quote it, '{node.name}'.")
        else:
            close = difflib.get_close_matches(node.name, known, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
            if isinstance(other, Field) and self.kind_quiet(other) is Kind.TEXT:
                hints.append(f"If you meant the text, quote it: '{node.name}'.")
        shown = ", ".join(known[:_KNOWN_SHOWN]) + (", ..." if len(known) > _KNOWN_SHOWN else "")
        hints.append(f"Fields of {self.name}: {shown}")
        self.report(f"unknown field {node.name} in {self.name}", node, " ".join(hints))

    def kind_quiet(self, node: Node) -> Kind | None:
        if isinstance(node, Field):
            column = self.column(node.name)
            return column_kind(column) if column is not None else None
        return None

    def choices_of(self, node: Node | None) -> Sequence[str]:
        if isinstance(node, Field) and (column := self.column(node.name)) is not None:
            return _choices(column)
        return ()

    # ------------------------------------------------------------ comparisons

    def pair(self, left: Value, lkind: Kind | None, right: Value, rkind: Kind | None) -> None:
        """Report a comparison of `left` and `right` that cannot match."""
        if lkind is None or rkind is None:
            return  # already reported
        if common_kind(lkind, rkind) is None:
            self.mismatch(left, lkind, right, rkind)
            return
        for field, value in ((left, right), (right, left)):
            choices = self.choices_of(field)
            if (
                choices
                and isinstance(value, Literal)
                and isinstance(value.value, str)
                and value.value not in choices
            ):
                self.bad_choice(field, value, choices)

    def bad_choice(self, field: Node, value: Literal, choices: Sequence[str]) -> None:
        listed = ", ".join(f"'{c}'" for c in choices)
        close = difflib.get_close_matches(str(value.value), choices, n=1, cutoff=0.6)
        guess = f"did you mean '{close[0]}'? " if close else ""
        self.report(
            f"'{value.value}' is not a possible value of {_name(field)}",
            value,
            f"{guess}{_name(field)} is one of {listed}",
        )

    def mismatch(self, left: Value, lkind: Kind, right: Value, rkind: Kind) -> None:
        # Point at the literal when there is one: that is usually what needs changing.
        literal, field, field_kind = (
            (right, left, lkind) if isinstance(right, Literal) else (left, right, rkind)
        )
        at = literal if isinstance(literal, Literal) else left
        hint = None
        if isinstance(literal, Literal):
            hint = _literal_hint(literal.value, field_kind)
        self.report(
            f"{source_text(left)} is {lkind.value} and {source_text(right)} is {rkind.value}: "
            f"they never match",
            at,
            hint or f"{source_text(field)} holds {field_kind.value}",
        )


def _choices(column: ColumnElement[Any]) -> tuple[str, ...]:
    # Table columns carry `info`; derived columns of a subquery only when given one.
    info = getattr(column, "info", None) or {}
    return tuple(info.get("choices") or ())


def _literal_hint(value: Any, field_kind: Kind) -> str | None:
    if isinstance(value, str):
        return {
            Kind.DATE: f"write dates without quotes, e.g. {_date_example(value)}",
            Kind.INSTANT: f"write dates without quotes, e.g. {_date_example(value)}",
            Kind.NUMBER: f"write numbers without quotes, e.g. {value if _is_number(value) else 5}",
            Kind.BOOL: "write true or false without quotes",
        }.get(field_kind)
    if field_kind is Kind.TEXT:
        shown = str(value).lower() if isinstance(value, bool) else value
        return f"quote text: '{shown}'"
    return None


def _date_example(text: str) -> str:
    return text if len(text) == 10 and text[4] == "-" and text[7] == "-" else "2026-01-31"


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).lstrip("-").isdigit()


def _name(node: Node | None) -> str:
    return source_text(node) if node is not None else "the field"
