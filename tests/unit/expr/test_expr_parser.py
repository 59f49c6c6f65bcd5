"""Parsing `when:` conditions: the grammar, precedence, and errors that say where and why."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from engine.errors import AftersalesError
from engine.expr import ExprSyntaxError, parse, unparse
from engine.expr.nodes import (
    And,
    AsOf,
    Between,
    Compare,
    Field,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    Shift,
)

a, b, c = Field("a"), Field("b"), Field("c")

# The conditions operations staff write in the shipped policy (design brief, policy sketch).
POLICY_CONDITIONS = [
    "kind == 'maintenance' and status == 'active'",
    "not answered",
    "region in ('urban', 'suburban')",
    "repeat_of_id is not null",
    "ends_on between 2026-01-01 and 2026-12-31",
    "received_at + 24 hours < first_reply_at",
    "purchased_on >= as_of - 1 year",
    "severity != 'serious' or kind = 'claim'",
    "region == 'urban' and category != 'admin'",
    "human_damage or unauthorised_repair",
    "verified",
]


@pytest.mark.parametrize("text", POLICY_CONDITIONS)
def test_policy_conditions_parse_and_print_back_to_the_same_tree(text: str) -> None:
    expr = parse(text)
    assert parse(unparse(expr)) == expr


def test_renewal_notice_condition_parses_to_two_comparisons() -> None:
    assert parse("kind == 'maintenance' and status == 'active'") == And(
        (
            Compare(Field("kind"), "==", Literal("maintenance")),
            Compare(Field("status"), "==", Literal("active")),
        )
    )


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a or b and c", Or((a, And((b, c))))),
        ("a and b or c", Or((And((a, b)), c))),
        ("not a and b", And((Not(a), b))),
        ("not a or not b", Or((Not(a), Not(b)))),
        ("not not a", Not(Not(a))),
        ("(a or b) and c", And((Or((a, b)), c))),
        ("a and (b and c)", And((a, And((b, c))))),
        ("a and b and c", And((a, b, c))),
        ("not a == 1", Not(Compare(a, "==", Literal(1)))),
        ("not a in (1, 2)", Not(InList(a, (Literal(1), Literal(2))))),
        ("a between 1 and 2 and b", And((Between(a, Literal(1), Literal(2)), b))),
        ("a not between 1 and 2", Between(a, Literal(1), Literal(2), negated=True)),
        ("a not in (1)", InList(a, (Literal(1),), negated=True)),
        ("a is null or b is not null", Or((IsNull(a), IsNull(b, negated=True)))),
    ],
)
def test_or_binds_loosest_then_and_then_not(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "op"),
    [("a = 1", "=="), ("a == 1", "=="), ("a != 1", "!="), ("a <> 1", "!="), ("a <= 1", "<=")],
)
def test_sql_and_python_spellings_of_equality_mean_the_same(text: str, op: str) -> None:
    assert parse(text) == Compare(a, op, Literal(1))  # type: ignore[arg-type]


def test_keywords_are_case_insensitive_and_field_names_are_kept_as_written() -> None:
    assert parse("NOT Answered AND region IN ('urban') OR x IS NOT NULL") == Or(
        (
            And((Not(Field("Answered")), InList(Field("region"), (Literal("urban"),)))),
            IsNull(Field("x"), negated=True),
        )
    )
    assert parse("x < AS_OF - 2 Months") == Compare(Field("x"), "<", Shift(AsOf(), "-", 2, "month"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'O''Brien'", "O'Brien"),
        ('"say ""hi"""', 'say "hi"'),
        ('"it\'s"', "it's"),
        ("''", ""),
        ("42", 42),
        ("-3", -3),
        ("19.90", Decimal("19.90")),
        ("-0.5", Decimal("-0.5")),
        ("true", True),
        ("FALSE", False),
        ("2026-02-28", date(2026, 2, 28)),
    ],
)
def test_literals_of_every_kind(text: str, value: object) -> None:
    expr = parse(f"x == {text}")
    assert isinstance(expr, Compare)
    assert isinstance(expr.right, Literal)
    assert expr.right.value == value
    assert type(expr.right.value) is type(value)


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("1 minute", 1, "minute"),
        ("90 minutes", 90, "minute"),
        ("24 hours", 24, "hour"),
        ("24hours", 24, "hour"),
        ("3 DAYS", 3, "day"),
        ("2 weeks", 2, "week"),
        ("1 month", 1, "month"),
        ("3 years", 3, "year"),
    ],
)
def test_durations_in_every_unit(text: str, amount: int, unit: str) -> None:
    assert parse(f"received_at + {text} < as_of") == Compare(
        Shift(Field("received_at"), "+", amount, unit),
        "<",
        AsOf(),  # type: ignore[arg-type]
    )


def test_durations_chain_left_to_right_and_parentheses_may_group_values() -> None:
    shifted = Shift(Shift(Field("t"), "+", 1, "month"), "-", 2, "hour")
    assert parse("t + 1 month - 2 hours > as_of") == Compare(shifted, ">", AsOf())
    assert parse("(t + 1 month - 2 hours) > as_of") == Compare(shifted, ">", AsOf())


def test_nodes_remember_their_text_for_explain() -> None:
    expr = parse("kind == 'claim'  and (verified or repeat_of_id is not null)")
    assert isinstance(expr, And)
    assert [item.text for item in expr.items] == [
        "kind == 'claim'",
        "(verified or repeat_of_id is not null)",
    ]
    assert (expr.items[1].start, expr.items[1].end) == (21, 59)


# ---------------------------------------------------------------- errors


def _error(text: str) -> ExprSyntaxError:
    with pytest.raises(ExprSyntaxError) as caught:
        parse(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "offset", "message", "hint"),
    [
        ("kind ==", 7, "ends where a value was expected", "after =="),
        ("kind == ", 8, "ends where a value was expected", "kind == 'maintenance'"),
        ("kind == 'maintenance' andd status == 'a'", 22, "unexpected `andd`", "`and`"),
        ("kind == 'a' OOR kind == 'b'", 12, "unexpected `OOR`", "`or`"),
        ("status like 'open%'", 7, "unexpected `like`", "between"),
        ("region in (urban, suburban)", 11, "must be a quoted text", "quote text: 'urban'"),
        ("kind == 'maintenance", 8, "text is not closed", "end it with '"),
        ("x == null", 5, "null can only be tested", "x is null"),
        ("x in ('a', null)", 11, "null in a list never matches", "x is null or"),
        ("a < b < c", 6, "unexpected `<`", "one pair at a time"),
        ("(a and b", 0, "this ( is not closed", "missing )"),
        ("a and b)", 7, "no matching (", None),
        ("ends_on > 2026-02-30", 10, "not a day of the calendar", None),
        ("ends_on > 2026-1-5", 10, "is not a date", "YYYY-MM-DD"),
        ("a && b", 2, "unexpected character '&&'", "`and`"),
        ("!answered", 0, "unexpected character '!'", "`not`"),
        ("kind == \u2018claim\u2019", 8, "unexpected character", "straight quotes"),
        ("region in ['urban']", 10, "unexpected character '['", "parentheses"),
        ("region in 'urban'", 10, "expected ( after in", "parentheses"),
        ("x in ()", 6, "the list is empty", None),
        ("", 0, "the condition is empty", None),
        ("   ", 0, "the condition is empty", None),
        ("received_at + 1.5 hours < as_of", 14, "whole number", "90 minutes"),
        ("received_at + 24 hourz < as_of", 17, "expected a unit", "`hours`"),
        ("received_at + 1 dya < as_of", 16, "expected a unit", "`day`"),
        ("received_at + 24 < as_of", 17, "expected a unit", "units:"),
        ("received_at + first_reply_at < as_of", 14, "expected a duration", "24 hours"),
        ("received_at < 3 days", 14, "duration is not a value on its own", "received_at + 3"),
        ("received_at + 24 hours", 0, "point in time, not a condition", "compare it"),
        ("'claim'", 0, "is not a condition", None),
        ("5", 0, "is not a condition", None),
        ("x is 5", 5, "expected `null` after `is`", "compare with =="),
        ("x between 1 or 2", 12, "expected `and` after the lower bound", None),
        ("(a and b) == c", 0, "must be a value, not a condition", None),
        ("kind == and", 8, "expected a value after ==, found `and`", None),
        ("not", 3, "ends where a value was expected", None),
        ("kind 'claim'", 5, "unexpected `'claim'` after `kind`", "operator may be missing"),
        ("x == 1.", 5, "1. is not a number", "1.5"),
        ("contracts.kind == 'a'", 9, "unexpected character '.'", "table prefix"),
    ],
)
def test_syntax_errors_point_at_the_mistake_and_say_how_to_fix_it(
    text: str, offset: int, message: str, hint: str | None
) -> None:
    error = _error(text)
    assert error.offset == offset
    assert message in error.message
    if hint is not None:
        assert error.hint is not None
        assert hint in error.hint


def test_syntax_error_is_an_engine_error_that_carries_message_offset_and_hint() -> None:
    error = _error("kind ==")
    assert isinstance(error, AftersalesError)
    assert (error.message, error.offset) == ("the condition ends where a value was expected", 7)
    assert "hint:" in str(error)


def test_absurd_nesting_is_a_syntax_error_not_a_crash() -> None:
    assert "nested too deeply" in _error("(" * 5000 + "a" + ")" * 5000).message
