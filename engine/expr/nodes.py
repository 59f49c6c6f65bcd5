"""The condition AST: frozen dataclasses that remember where in the text they came from.

Positions (`start`, `end`, `text`) do not take part in equality, so `parse("a  and b")` equals
a hand-built `And((Field("a"), Field("b")))`.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

LiteralValue: t.TypeAlias = str | int | Decimal | bool | date
CompareOp: t.TypeAlias = t.Literal["==", "!=", "<", "<=", ">", ">="]
Unit: t.TypeAlias = t.Literal["minute", "hour", "day", "week", "month", "year"]


@dataclass(frozen=True, slots=True)
class Node:
    """Where a node sits in the condition text (0-based, end exclusive)."""

    start: int = field(default=0, compare=False, kw_only=True)
    end: int = field(default=0, compare=False, kw_only=True)
    text: str = field(default="", compare=False, kw_only=True, repr=False)


@dataclass(frozen=True, slots=True)
class Field(Node):
    """A column of the entity; on its own, a true/false column used as a condition."""

    name: str


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A constant written in the condition: text, number, true/false or a date."""

    value: LiteralValue


@dataclass(frozen=True, slots=True)
class AsOf(Node):
    """The instant the run evaluates (`as_of`)."""


@dataclass(frozen=True, slots=True)
class Shift(Node):
    """A date or timestamp moved by a duration: `received_at + 24 hours`."""

    base: Value
    op: t.Literal["+", "-"]
    amount: int
    unit: Unit

    @property
    def signed_amount(self) -> int:
        """The amount with the direction applied."""
        return self.amount if self.op == "+" else -self.amount


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """`left op right`; `=` and `<>` are stored as `==` and `!=`."""

    left: Value
    op: CompareOp
    right: Value


@dataclass(frozen=True, slots=True)
class InList(Node):
    """`operand [not] in (literal, ...)`."""

    operand: Value
    items: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    """`operand is [not] null`."""

    operand: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between(Node):
    """`operand [not] between low and high`, both ends included."""

    operand: Value
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not(Node):
    """`not operand`."""

    operand: Expr


@dataclass(frozen=True, slots=True)
class And(Node):
    """`a and b and ...`: a chain is one node, so `explain` can list its parts."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    """`a or b or ...`."""

    items: tuple[Expr, ...]


Value: t.TypeAlias = Field | Literal | AsOf | Shift
Expr: t.TypeAlias = Compare | InList | IsNull | Between | Not | And | Or | Field | Literal
VALUE_TYPES = (Field, Literal, AsOf, Shift)


def children(node: Node) -> Iterator[Node]:
    """The direct sub-nodes of `node`, left to right."""
    match node:
        case Shift(base=base):
            yield base
        case Compare(left=left, right=right):
            yield from (left, right)
        case InList(operand=operand, items=items):
            yield operand
            yield from items
        case IsNull(operand=operand) | Not(operand=operand):
            yield operand
        case Between(operand=operand, low=low, high=high):
            yield from (operand, low, high)
        case And(items=items) | Or(items=items):
            yield from items


def walk(node: Node) -> Iterator[Node]:
    """`node` and everything below it, depth first."""
    yield node
    for child in children(node):
        yield from walk(child)


def reads_as_of(node: Node | None) -> bool:
    """True when the expression mentions `as_of`."""
    return node is not None and any(isinstance(n, AsOf) for n in walk(node))


def only_narrows_with_time(node: Node | None) -> bool:
    """True when time passing can only make the condition false for a row, never true:
    `as_of` appears only in conjuncts such as `received_at >= as_of - 90 days`. A row such a
    condition leaves out stays out until the row itself changes."""
    items = node.items if isinstance(node, And) else (node,)
    return all(_narrows(item) for item in items if item is not None)


def _narrows(node: Node) -> bool:
    if not reads_as_of(node):
        return True
    if not isinstance(node, Compare):
        return False
    now, other = (node.right, node.left) if node.op in (">=", ">") else (node.left, node.right)
    if node.op not in (">=", ">", "<=", "<") or reads_as_of(other):
        return False
    return isinstance(now, AsOf) or (isinstance(now, Shift) and isinstance(now.base, AsOf))


# ---------------------------------------------------------------- back to text

_PRECEDENCE = {Or: 1, And: 2, Not: 3}


def unparse(node: Node) -> str:
    """Canonical text of a node; parse(unparse(x)) == x."""
    match node:
        case Field(name=name):
            return name
        case Literal(value=value):
            return _literal_text(value)
        case AsOf():
            return "as_of"
        case Shift(base=base, op=op, amount=amount, unit=unit):
            return f"{unparse(base)} {op} {amount} {unit}{'' if amount == 1 else 's'}"
        case Compare(left=left, op=op, right=right):
            return f"{unparse(left)} {op} {unparse(right)}"
        case InList(operand=operand, items=items, negated=negated):
            listed = ", ".join(unparse(item) for item in items)
            return f"{unparse(operand)} {'not in' if negated else 'in'} ({listed})"
        case IsNull(operand=operand, negated=negated):
            return f"{unparse(operand)} is {'not null' if negated else 'null'}"
        case Between(operand=operand, low=low, high=high, negated=negated):
            word = "not between" if negated else "between"
            return f"{unparse(operand)} {word} {unparse(low)} and {unparse(high)}"
        case Not(operand=operand):
            return f"not {_wrapped(operand, _PRECEDENCE[Not], same_type_too=False)}"
        case And(items=items) | Or(items=items):
            word = " and " if isinstance(node, And) else " or "
            level = _PRECEDENCE[type(node)]
            return word.join(_wrapped(item, level, same_type_too=True) for item in items)
    raise TypeError(f"not a condition node: {node!r}")


def _wrapped(node: Node, level: int, *, same_type_too: bool) -> str:
    # A nested And inside an And only exists when the author wrote parentheses; keep them.
    own = _PRECEDENCE.get(type(node))
    if own is not None and (own < level or (same_type_too and own == level)):
        return f"({unparse(node)})"
    return unparse(node)


def _literal_text(value: LiteralValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def source_text(node: Node) -> str:
    """The text the author wrote for `node`, or its canonical text for built nodes."""
    return node.text or unparse(node)
