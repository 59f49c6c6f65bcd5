"""Recursive-descent parser for `when:` conditions.

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | predicate
    predicate  := additive [ ("==" | "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive
                           | ["not"] "in" "(" literal ("," literal)* ")"
                           | ["not"] "between" additive "and" additive
                           | "is" ["not"] "null" ]
    additive   := primary (("+" | "-") INT unit)*
    primary    := NAME | literal | "as_of" | "(" or ")"
    literal    := STRING | ["-"] INT | ["-"] DECIMAL | DATE | "true" | "false"

Keywords and units are case-insensitive. A parenthesised group may hold a value
(`(received_at + 1 day) < as_of`) or a condition; the parser checks which is which where it
matters, so the messages can say "compare it" rather than "unexpected token".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from typing import NoReturn, TypeVar, cast

from engine.expr.errors import ExprSyntaxError
from engine.expr.nodes import (
    VALUE_TYPES,
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
    Shift,
    Value,
)
from engine.expr.nodes import And as AndNode
from engine.expr.nodes import Or as OrNode
from engine.expr.temporal import UNITS
from engine.expr.tokens import Token, tokenize

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "between", "true", "false", "as_of"})
_COMPARISONS: dict[str, CompareOp] = {
    "==": "==",
    "=": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_OPERATOR_LIST = "==, !=, <, <=, >, >=, in (...), between ... and ..., is null, is not null"
_EXAMPLE = "e.g. kind == 'maintenance'"

N = TypeVar("N", bound=Node)


def parse(text: str) -> Expr:
    """Parse a `when:` condition into its AST; raises ExprSyntaxError with an offset."""
    try:
        return _Parser(text).parse()
    except RecursionError:
        # Hundreds of nested parentheses: a generated or pasted mistake, not a real condition.
        raise ExprSyntaxError("the condition is nested too deeply", 0) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    # ------------------------------------------------------------ helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def previous(self) -> Token | None:
        return self.tokens[self.pos - 1] if self.pos > 0 else None

    @staticmethod
    def is_keyword(token: Token, *words: str) -> bool:
        return token.kind == "name" and token.text.lower() in words

    @staticmethod
    def is_op(token: Token, *ops: str) -> bool:
        return token.kind == "op" and token.text in ops

    def fail(self, message: str, at: Token | Node | int, hint: str | None = None) -> NoReturn:
        offset = at if isinstance(at, int) else at.start
        raise ExprSyntaxError(message, offset, hint)

    def span(self, node: N, start: int, end: int) -> N:
        return replace(node, start=start, end=end, text=self.text[start:end])

    # ------------------------------------------------------------ grammar

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            self.fail("the condition is empty", 0, _EXAMPLE)
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            self.unexpected(token)
        return self.condition(node)

    def or_(self) -> Node:
        items = [self.and_()]
        while self.is_keyword(self.peek(), "or"):
            self.advance()
            items.append(self.and_())
        if len(items) == 1:
            return items[0]
        parts = tuple(self.condition(item) for item in items)
        return self.span(OrNode(parts), parts[0].start, parts[-1].end)

    def and_(self) -> Node:
        items = [self.not_()]
        while self.is_keyword(self.peek(), "and"):
            self.advance()
            items.append(self.not_())
        if len(items) == 1:
            return items[0]
        parts = tuple(self.condition(item) for item in items)
        return self.span(AndNode(parts), parts[0].start, parts[-1].end)

    def not_(self) -> Node:
        if self.is_keyword(self.peek(), "not"):
            keyword = self.advance()
            operand = self.condition(self.not_())
            return self.span(Not(operand), keyword.start, operand.end)
        return self.predicate()

    def predicate(self) -> Node:
        left = self.additive()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self.advance()
            lhs = self.value(left, f"the left side of {token.text}")
            rhs = self.value(self.additive(), f"the right side of {token.text}")
            return self.span(Compare(lhs, _COMPARISONS[token.text], rhs), lhs.start, rhs.end)
        negated = False
        if self.is_keyword(token, "not") and self.is_keyword(self.peek(1), "in", "between"):
            self.advance()
            negated = True
            token = self.peek()
        if self.is_keyword(token, "in"):
            self.advance()
            operand = self.value(left, "the left side of in")
            items, close = self.literal_list()
            return self.span(InList(operand, items, negated), operand.start, close.end)
        if self.is_keyword(token, "between"):
            self.advance()
            operand = self.value(left, "the left side of between")
            low = self.value(self.additive(), "the lower bound of between")
            if not self.is_keyword(self.peek(), "and"):
                self.fail(
                    "expected `and` after the lower bound of between",
                    self.peek(),
                    "write both bounds: x between 1 and 5",
                )
            self.advance()
            high = self.value(self.additive(), "the upper bound of between")
            return self.span(Between(operand, low, high, negated), operand.start, high.end)
        if self.is_keyword(token, "is"):
            self.advance()
            operand = self.value(left, "the left side of is")
            negated = self.is_keyword(self.peek(), "not")
            if negated:
                self.advance()
            null = self.peek()
            if not self.is_keyword(null, "null"):
                self.fail(
                    f"expected `null` after `is{' not' if negated else ''}`",
                    null,
                    "`is` only tests for null (x is null, x is not null); compare with ==",
                )
            self.advance()
            return self.span(IsNull(operand, negated), operand.start, null.end)
        return left

    def literal_list(self) -> tuple[tuple[Literal, ...], Token]:
        opening = self.peek()
        if not self.is_op(opening, "("):
            self.fail("expected ( after in", opening, "write lists in parentheses: x in ('a', 'b')")
        self.advance()
        if self.is_op(self.peek(), ")"):
            self.fail("the list is empty", self.peek(), "name at least one value: x in ('a')")
        items: list[Literal] = []
        while True:
            token = self.peek()
            if token.kind == "name" and token.text.lower() not in KEYWORDS:
                self.fail(
                    f"`{token.text}` in a list must be a quoted text or a number",
                    token,
                    f"quote text: '{token.text}'",
                )
            if self.is_keyword(token, "null"):
                self.fail(
                    "null in a list never matches",
                    token,
                    "test it separately: x is null or x in (...)",
                )
            node = self.primary()
            if not isinstance(node, Literal):
                self.fail("a list holds constants only", node, "e.g. region in ('urban', 'rural')")
            items.append(node)
            separator = self.peek()
            if self.is_op(separator, ","):
                self.advance()
                continue
            if self.is_op(separator, ")"):
                return tuple(items), self.advance()
            if separator.kind == "end":
                self.fail("the list is not closed", opening, "end it with )")
            self.fail(
                f"expected , or ) in the list, found `{separator.text}`",
                separator,
                "separate values with commas: x in ('a', 'b')",
            )

    def additive(self) -> Node:
        node = self.primary()
        while self.is_op(self.peek(), "+", "-"):
            op = self.advance()
            base = self.value(node, f"the left side of {op.text}")
            amount = self.peek()
            if amount.kind == "decimal":
                self.fail(
                    "a duration is a whole number", amount, "write 90 minutes instead of 1.5 hours"
                )
            if amount.kind != "int":
                self.fail(
                    f"expected a duration after {op.text}, like `24 hours`",
                    amount,
                    "only durations can be added or subtracted: received_at + 24 hours",
                )
            self.advance()
            unit = self.peek()
            if unit.kind != "name" or unit.text.lower() not in UNITS:
                close = difflib.get_close_matches(unit.text.lower(), sorted(UNITS), n=1)
                plural = "" if amount.text == "1" else "s"
                self.fail(
                    f"expected a unit after {amount.text}",
                    unit,
                    f"did you mean `{UNITS[close[0]]}{plural}`?"
                    if close and unit.kind == "name"
                    else "units: minutes, hours, days, weeks, months, years",
                )
            self.advance()
            signed = "+" if op.text == "+" else "-"
            shift = Shift(base, signed, int(amount.text), UNITS[unit.text.lower()])
            node = self.span(shift, base.start, unit.end)
        return node

    def primary(self) -> Node:
        token = self.peek()
        if self.is_op(token, "("):
            self.advance()
            inner = self.or_()
            close = self.peek()
            if not self.is_op(close, ")"):
                if close.kind == "end":
                    self.fail("this ( is not closed", token, "add the missing )")
                self.unexpected(close)
            self.advance()
            # The group keeps its parentheses in its text, so `explain` shows what was written.
            return self.span(inner, token.start, close.end)
        if token.kind == "name":
            return self.name()
        if token.kind in ("string", "date"):
            self.advance()
            assert token.value is not None
            return self.span(Literal(token.value), token.start, token.end)
        if token.kind in ("int", "decimal"):
            return self.number(token, token)
        if self.is_op(token, "-") and self.peek(1).kind in ("int", "decimal"):
            self.advance()
            return self.number(self.peek(), token)
        if token.kind == "end":
            before = self.previous()
            hint = f"put a value after {before.text}, {_EXAMPLE}" if before else _EXAMPLE
            self.fail("the condition ends where a value was expected", token, hint)
        self.fail(f"expected a value, found `{token.text}`", token, _EXAMPLE)

    def name(self) -> Node:
        token = self.advance()
        word = token.text.lower()
        if word in ("true", "false"):
            return self.span(Literal(word == "true"), token.start, token.end)
        if word == "as_of":
            return self.span(AsOf(), token.start, token.end)
        if word == "null":
            self.fail(
                "null can only be tested with `is null` or `is not null`",
                token,
                "x == null never matches in SQL; write x is null",
            )
        if word in KEYWORDS:
            before = self.previous_of(token)
            where = f" after {before.text}" if before else ""
            self.fail(f"expected a value{where}, found `{token.text}`", token, _EXAMPLE)
        return self.span(Field(token.text), token.start, token.end)

    def number(self, token: Token, sign: Token) -> Node:
        self.advance()
        value = token.value
        assert isinstance(value, int | Decimal)
        if sign is not token:
            value = -value
        unit = self.peek()
        if unit.kind == "name" and unit.text.lower() in UNITS:
            self.fail(
                "a duration is not a value on its own",
                sign,
                "add it to a date or timestamp: received_at + 3 days < as_of",
            )
        return self.span(Literal(value), sign.start, token.end)

    def previous_of(self, token: Token) -> Token | None:
        index = self.tokens.index(token)
        return self.tokens[index - 1] if index > 0 else None

    # ------------------------------------------------------------ shape checks

    def value(self, node: Node, role: str) -> Value:
        if isinstance(node, VALUE_TYPES):
            return node
        self.fail(
            f"{role} must be a value, not a condition",
            node,
            "compare values, then combine the comparisons with and/or",
        )

    def condition(self, node: Node) -> Expr:
        if isinstance(node, Literal) and not isinstance(node.value, bool):
            self.fail(f"{node.text or node.value} is not a condition", node, _EXAMPLE)
        if isinstance(node, Shift | AsOf):
            self.fail(
                f"`{node.text}` is a point in time, not a condition",
                node,
                f"compare it, e.g. {node.text or 'as_of'} < as_of",
            )
        return cast(Expr, node)

    def unexpected(self, token: Token) -> NoReturn:
        before = self.previous_of(token)
        if token.kind == "op" and token.text in _COMPARISONS:
            self.fail(
                f"unexpected `{token.text}`",
                token,
                "compare one pair at a time: a < b and b < c",
            )
        if token.kind == "op" and token.text == ")":
            self.fail("this ) has no matching (", token, "remove it or add the missing (")
        if token.kind == "name":
            guess = _suggest(token.text.lower(), KEYWORDS - {"true", "false", "as_of", "null"})
            self.fail(
                f"unexpected `{token.text}`",
                token,
                guess or f"supported operators: {_OPERATOR_LIST}; combine with and/or",
            )
        after = f" after `{before.text}`" if before else ""
        self.fail(
            f"unexpected `{token.text}`{after}",
            token,
            f"an operator may be missing, {_EXAMPLE}; combine conditions with and/or",
        )


def _suggest(word: str, options: Iterable[str]) -> str | None:
    """'did you mean `x`?' for the closest of `options`, if any is close."""
    close = difflib.get_close_matches(word.lower(), sorted(options), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
