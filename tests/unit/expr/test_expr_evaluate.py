"""evaluate(), explain() and fields(): one record, SQL's three-valued logic, calendar months."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from engine.expr import ExprTypeError, evaluate, explain, fields, parse

AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def _eval(text: str, as_of: datetime = AS_OF, **record: Any) -> bool | None:
    return evaluate(parse(text), record, as_of)


# ---------------------------------------------------------------- three-valued logic

T, F, U = True, False, None
KLEENE = [
    # p, q, p and q, p or q
    (T, T, T, T),
    (T, F, F, T),
    (T, U, U, T),
    (F, F, F, F),
    (F, U, F, U),
    (U, U, U, U),
]


@pytest.mark.parametrize(("p", "q", "both", "either"), KLEENE)
def test_and_or_follow_kleene_logic_like_sql(
    p: bool | None, q: bool | None, both: bool | None, either: bool | None
) -> None:
    assert _eval("p and q", p=p, q=q) is both
    assert _eval("q and p", p=p, q=q) is both
    assert _eval("p or q", p=p, q=q) is either
    assert _eval("q or p", p=p, q=q) is either


@pytest.mark.parametrize(("p", "negated"), [(True, False), (False, True), (None, None)])
def test_not_unknown_is_unknown(p: bool | None, negated: bool | None) -> None:
    assert _eval("not p", p=p) is negated


@pytest.mark.parametrize(
    "text",
    [
        "x == 1",
        "x != 1",
        "x < 1",
        "x in (1, 2)",
        "x not in (1, 2)",
        "x between 1 and 2",
        "x not between 1 and 2",
        "x + 1 day > as_of",
    ],
)
def test_comparisons_with_null_are_unknown_and_so_are_their_negations(text: str) -> None:
    assert _eval(text, x=None) is None
    assert _eval(f"not ({text})", x=None) is None


def test_is_null_is_never_unknown() -> None:
    assert _eval("x is null", x=None) is True
    assert _eval("x is not null", x=None) is False
    assert _eval("x + 1 month is null", x=None) is True
    assert _eval("x is null", x=0) is False


def test_unanswered_hotline_call_is_charged_only_when_answered_is_known() -> None:
    assert _eval("not answered", answered=False) is True
    assert _eval("not answered", answered=True) is False
    assert _eval("not answered", answered=None) is None


def test_in_list_with_a_non_matching_value_is_false_and_between_includes_both_ends() -> None:
    assert _eval("region in ('urban', 'suburban')", region="rural") is False
    assert _eval("region not in ('urban', 'suburban')", region="rural") is True
    assert _eval("n between 1 and 3", n=1) is True
    assert _eval("n between 1 and 3", n=3) is True
    assert _eval("n between 3 and 1", n=2) is False


def test_between_with_a_null_bound_can_still_be_false() -> None:
    # 5 between NULL and 3  =  (NULL <= 5) and (5 <= 3)  =  unknown and false  =  false
    assert _eval("n between lo and 3", n=5, lo=None) is False
    assert _eval("n between lo and 9", n=5, lo=None) is None


# ---------------------------------------------------------------- values


def test_numbers_compare_across_int_and_decimal() -> None:
    assert _eval("amount >= 1000.50", amount=Decimal("1000.50")) is True
    assert _eval("amount > 2", amount=Decimal("2.01")) is True
    assert _eval("n == 2.0", n=2) is True


def test_text_is_case_sensitive_and_ordered_by_code_point() -> None:
    assert _eval("kind == 'Claim'", kind="claim") is False
    assert _eval("label < 'a'", label="Zulu") is True


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 1, 31), 3, date(2026, 4, 30)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 12, 31), 2, date(2027, 2, 28)),
    ],
)
def test_months_clamp_to_the_end_of_a_shorter_month(
    start: date, months: int, expected: date
) -> None:
    op = "+" if months > 0 else "-"
    assert _eval(f"ends_on {op} {abs(months)} months == {expected}", ends_on=start) is True


def test_a_year_from_a_leap_day_is_the_last_of_february() -> None:
    assert _eval("purchased_on + 1 year == 2025-02-28", purchased_on=date(2024, 2, 29)) is True


def test_timestamp_month_arithmetic_keeps_the_time_of_day() -> None:
    at = datetime(2026, 1, 31, 22, 15, tzinfo=UTC)
    assert _eval("at + 1 month > 2026-02-28 and at + 1 month < 2026-03-01", at=at) is True


def test_complaint_reply_is_late_after_24_hours() -> None:
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    late = "received_at + 24 hours < first_reply_at"
    assert _eval(late, received_at=received, first_reply_at=received + timedelta(hours=24)) is False
    assert _eval(late, received_at=received, first_reply_at=received + timedelta(hours=25)) is True
    assert _eval(late, received_at=received, first_reply_at=None) is None


def test_a_date_compared_with_a_timestamp_is_midnight_utc_of_that_day() -> None:
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    assert _eval("at == 2026-03-01", at=midnight) is True
    assert _eval("at > 2026-03-01", at=midnight + timedelta(seconds=1)) is True
    assert _eval("ends_on < as_of", ends_on=AS_OF.date()) is True  # 00:00 < 18:00
    assert _eval("ends_on + 18 hours == as_of", ends_on=AS_OF.date()) is True


def test_as_of_and_record_timestamps_may_be_in_any_zone_and_count_in_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 2, 1, 3, 0, tzinfo=shanghai)  # 2026-01-31 19:00 UTC
    assert _eval("at < 2026-02-01", at=local) is True
    assert _eval("at + 1 month < 2026-03-01", at=local) is True  # Feb 28, not Mar 1
    assert _eval("at == as_of", as_of=AS_OF.astimezone(shanghai), at=AS_OF) is True


def test_as_of_is_taken_to_the_second_like_the_database_stores_it() -> None:
    assert _eval("at == as_of", as_of=AS_OF.replace(microsecond=900), at=AS_OF) is True


def test_as_of_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        _eval("x is null", as_of=datetime(2026, 1, 1), x=None)


@pytest.mark.parametrize(
    ("text", "record"),
    [
        ("kind == 5", {"kind": "claim"}),
        ("flag == 1", {"flag": True}),
        ("ends_on > '2026-01-01'", {"ends_on": date(2026, 1, 1)}),
        ("amount + 1 day > as_of", {"amount": 5}),
        ("kind", {"kind": "claim"}),
        ("at < as_of", {"at": datetime(2026, 1, 1)}),
        ("missing is null", {}),
    ],
)
def test_records_that_do_not_fit_the_condition_raise(text: str, record: dict[str, Any]) -> None:
    with pytest.raises(ExprTypeError):
        evaluate(parse(text), record, AS_OF)


# ---------------------------------------------------------------- explain and fields


def test_explain_shows_which_part_of_the_condition_failed() -> None:
    expr = parse("kind == 'maintenance'  and  status == 'active' and (ends_on < as_of or x)")
    record = {"kind": "maintenance", "status": "lapsed", "ends_on": None, "x": None}
    assert explain(expr, record, AS_OF) == [
        ("kind == 'maintenance'", True),
        ("status == 'active'", False),
        ("(ends_on < as_of or x)", None),
    ]


def test_explain_of_a_single_comparison_is_one_line() -> None:
    assert explain(parse("not answered"), {"answered": False}, AS_OF) == [("not answered", True)]


def test_fields_lists_every_column_read() -> None:
    expr = parse(
        "kind in ('claim') and received_at + 24 hours < first_reply_at "
        "or not verified and x between lo and as_of - 1 day and y is null"
    )
    assert fields(expr) == {
        "kind",
        "received_at",
        "first_reply_at",
        "verified",
        "x",
        "lo",
        "y",
    }
