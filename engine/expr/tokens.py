"""Tokenizer: condition text to a list of tokens with their character offsets."""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from engine.expr.errors import ExprSyntaxError

TokenKind: t.TypeAlias = t.Literal["name", "string", "int", "decimal", "date", "op", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, the text it was written as, its value and its span."""

    kind: TokenKind
    text: str
    value: str | int | Decimal | date | None
    start: int
    end: int


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Anything shaped like a date is read as one, so `2026-1-5` gets a date hint, not
# "expected a unit after 1".
_DATE_LIKE = re.compile(r"\d+-\d+-\d+(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "(", ")", ",")

# Characters people type from habit (other languages, word processors), and what to write.
_CHAR_HINTS = {
    "!": "write `not` to negate, `!=` for not equal",
    "&": "write `and` to combine conditions",
    "|": "write `or` for alternatives",
    "[": "write lists in parentheses: region in ('urban', 'suburban')",
    "]": "write lists in parentheses: region in ('urban', 'suburban')",
    "`": "quote text with straight quotes: 'maintenance'",
    "\u2018": "use straight quotes ' or \" instead of typographic quotes",
    "\u2019": "use straight quotes ' or \" instead of typographic quotes",
    "\u201c": "use straight quotes ' or \" instead of typographic quotes",
    "\u201d": "use straight quotes ' or \" instead of typographic quotes",
    ";": "a condition is one expression; combine parts with `and` or `or`",
    "*": "only a duration can be added or subtracted, e.g. received_at + 24 hours",
    "/": "only a duration can be added or subtracted, e.g. received_at + 24 hours",
    ".": "write field names without a table prefix, and decimals as 1.5",
}


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, ending with an `end` token; raises ExprSyntaxError."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
            continue
        if match := _NAME.match(text, pos):
            tokens.append(Token("name", match.group(), match.group(), pos, match.end()))
        elif match := _DATE_LIKE.match(text, pos):
            tokens.append(_date_token(match.group(), pos))
        elif match := _NUMBER.match(text, pos):
            tokens.append(_number_token(text, match, pos))
        elif char in "'\"":
            tokens.append(_string_token(text, pos))
        elif op := next((o for o in _OPERATORS if text.startswith(o, pos)), None):
            tokens.append(Token("op", op, op, pos, pos + len(op)))
        else:
            hint = _CHAR_HINTS.get(char)
            if text.startswith(("&&", "||"), pos):
                char = text[pos : pos + 2]
            raise ExprSyntaxError(f"unexpected character {char!r}", pos, hint)
        pos = tokens[-1].end
    tokens.append(Token("end", "", None, len(text), len(text)))
    return tokens


def _date_token(written: str, pos: int) -> Token:
    if not _DATE.fullmatch(written):
        raise ExprSyntaxError(
            f"{written} is not a date", pos, "write dates as YYYY-MM-DD, e.g. 2026-01-05"
        )
    try:
        value = date.fromisoformat(written)
    except ValueError:
        raise ExprSyntaxError(
            f"{written} is not a day of the calendar", pos, "check the month and the day"
        ) from None
    return Token("date", written, value, pos, pos + len(written))


def _number_token(text: str, match: re.Match[str], pos: int) -> Token:
    written = match.group()
    if text.startswith(".", match.end()):
        raise ExprSyntaxError(
            f"{text[pos : match.end() + 1]} is not a number", pos, "write decimals as 1.5"
        )
    if match.group(1):
        return Token("decimal", written, Decimal(written), pos, match.end())
    return Token("int", written, int(written), pos, match.end())


def _string_token(text: str, pos: int) -> Token:
    quote = text[pos]
    chars: list[str] = []
    i = pos + 1
    while i < len(text):
        if text[i] == quote:
            # A doubled quote stands for one quote character, as in SQL: 'O''Brien'.
            if text.startswith(quote, i + 1):
                chars.append(quote)
                i += 2
                continue
            return Token("string", text[pos : i + 1], "".join(chars), pos, i + 1)
        chars.append(text[i])
        i += 1
    raise ExprSyntaxError(
        "text is not closed", pos, f"end it with {quote}; write a {quote} inside as {quote * 2}"
    )
