"""What the condition language raises and reports.

    engine.errors.AftersalesError
    └── ExprError                 anything wrong with a `when:` condition
        ├── ExprSyntaxError       the text does not parse            (message, offset, hint)
        └── ExprTypeError         to_sql/evaluate met a condition that does not fit the
                                  table or record (run check() first; it reports these kindly)

`ExprProblem` is not an exception: check() returns a list of them so the policy loader can
collect every mistake before failing once. Offsets are 0-based character indexes into the
condition text; the loader adds them to the YAML node's column.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import AftersalesError


class ExprError(AftersalesError):
    """Base of the condition language's errors."""


class ExprSyntaxError(ExprError):
    """The condition text does not parse; `offset` points at the culprit."""

    def __init__(self, message: str, offset: int, hint: str | None = None) -> None:
        self.message = message
        self.offset = offset
        self.hint = hint
        text = f"{message} (at character {offset})"
        super().__init__(f"{text}; hint: {hint}" if hint else text)


class ExprTypeError(ExprError):
    """A condition does not fit the table or record it is applied to."""


@dataclass(frozen=True, slots=True)
class ExprProblem:
    """One mistake check() found in a parsed condition."""

    message: str
    offset: int
    hint: str | None = None
