"""check(): conditions against the service tables, every mistake reported with a way out."""

from __future__ import annotations

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table

from engine.db.models import Complaint, Contract, HotlineCall, ServiceRequest, Unit
from engine.expr import ExprProblem, check, parse

contracts = Contract.__table__
complaints = Complaint.__table__
service_requests = ServiceRequest.__table__


def _problems(text: str, table: Table = contracts) -> list[ExprProblem]:
    return check(parse(text), table)


def _one(text: str, table: Table = contracts) -> ExprProblem:
    problems = _problems(text, table)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("table", "text"),
    [
        (contracts, "kind == 'maintenance' and status == 'active'"),
        (contracts, "ends_on between as_of and as_of + 1 month"),
        (contracts, "ends_on - 1 month <= as_of and renewed_at is null"),
        (contracts, "amount >= 1000.50 or final_acceptance_on < 2026-01-01"),
        (complaints, "severity != 'serious' or kind = 'claim'"),
        (complaints, "received_at + 24 hours < first_reply_at"),
        (complaints, "verified and repeat_of_id is not null"),
        (complaints, "customer_satisfied == false"),
        (HotlineCall.__table__, "not answered"),
        (Unit.__table__, "purchased_on >= as_of - 1 year and proof_of_purchase"),
        (service_requests, "region in ('urban', 'suburban') and category != 'admin'"),
        (service_requests, "received_at >= 2026-01-01 and number > 'C-100'"),
        (service_requests, "human_damage or unauthorised_repair"),
    ],
)
def test_the_shipped_policy_conditions_are_clean(table: Table, text: str) -> None:
    assert _problems(text, table) == []


def test_unknown_field_suggests_the_closest_column_and_lists_some() -> None:
    problem = _one("kind == 'maintenance' and statsu == 'active'")
    assert problem.message == "unknown field statsu in contracts"
    assert problem.offset == 26
    assert problem.hint is not None
    assert "did you mean status?" in problem.hint
    assert "Fields of contracts: amount, branch_id" in problem.hint


def test_unquoted_choice_is_reported_as_text_to_quote() -> None:
    problem = _one("kind == maintenance")
    assert (problem.message, problem.offset) == ("unknown field maintenance in contracts", 8)
    assert problem.hint is not None
    assert "quote it, 'maintenance'" in problem.hint


def test_unquoted_word_compared_with_a_free_text_field_gets_a_quoting_hint() -> None:
    problem = _one("currency == EUR")
    assert problem.hint is not None
    assert "If you meant the text, quote it: 'EUR'" in problem.hint


@pytest.mark.parametrize(
    ("text", "offset", "guess"),
    [
        ("kind == 'maintenence'", 8, "did you mean 'maintenance'?"),
        ("'actve' == status", 0, "did you mean 'active'?"),
        ("status in ('active', 'expired')", 21, ""),
        ("status not between 'active' and 'closed'", 32, ""),
    ],
)
def test_values_outside_a_columns_choices_are_reported_with_the_choices(
    text: str, offset: int, guess: str
) -> None:
    problem = _one(text)
    assert problem.offset == offset
    assert "is not a possible value of status" in problem.message or "of kind" in problem.message
    assert problem.hint is not None
    assert guess in problem.hint
    assert "'active', 'renewed', 'lapsed', 'cancelled'" in problem.hint or (
        "'maintenance', 'free_maintenance'" in problem.hint
    )


@pytest.mark.parametrize(
    ("text", "offset", "hint"),
    [
        ("ends_on > '2026-01-01'", 10, "write dates without quotes, e.g. 2026-01-01"),
        ("renewed_at < 'yesterday'", 13, "write dates without quotes, e.g. 2026-01-31"),
        ("amount > '100'", 9, "write numbers without quotes, e.g. 100"),
        ("number == 42", 10, "quote text: '42'"),
        ("kind == true", 8, "quote text: 'true'"),
        ("starts_on == 5", 13, "starts_on holds a date"),
        ("ends_on between 1 and 2026-12-31", 16, "ends_on holds a date"),
        ("customer_id in (1, 'two')", 19, "write numbers without quotes"),
        ("renewed_at < number", 0, "number holds text"),
    ],
)
def test_type_mismatches_that_would_never_match_are_reported(
    text: str, offset: int, hint: str
) -> None:
    problem = _one(text)
    assert "they never match" in problem.message
    assert problem.offset == offset
    assert problem.hint is not None
    assert hint in problem.hint


def test_string_literal_against_a_boolean_column_says_to_drop_the_quotes() -> None:
    problem = _one("verified == 'yes'", complaints)
    assert problem.hint == "write true or false without quotes"


def test_duration_arithmetic_needs_a_date_or_timestamp() -> None:
    problem = _one("amount + 1 day > 5")
    assert problem.message.startswith("a duration can only be added to a date or timestamp")
    assert "amount is a number" in problem.message
    assert problem.offset == 0


def test_dates_and_timestamps_mix_freely() -> None:
    assert _problems("ends_on + 12 hours < renewed_at and renewed_at > 2026-01-01") == []


@pytest.mark.parametrize(
    ("text", "example"),
    [
        ("kind", "kind == 'maintenance'"),
        ("not amount", "amount > 0"),
        ("ends_on or renewed_at", "ends_on is not null"),
        ("currency", "currency == '...'"),
    ],
)
def test_a_bare_field_must_be_true_false(text: str, example: str) -> None:
    problems = _problems(text)
    assert problems
    assert "not true/false, so it cannot stand alone" in problems[0].message
    assert problems[0].hint == f"compare it, e.g. {example}"


def test_every_problem_is_reported_in_text_order() -> None:
    problems = _problems("statsu == 'x' or kind == 'nope' or ends_on > 'soon' or amount")
    assert [p.offset for p in problems] == [0, 25, 45, 55]
    assert len({p.message for p in problems}) == 4


def test_unknown_fields_do_not_cause_follow_up_type_errors() -> None:
    assert len(_problems("nothing + 1 day < as_of and nothing == 5")) == 2


def test_columns_of_other_types_are_refused() -> None:
    table = Table("t", MetaData(), Column("id", Integer), Column("data", JSON))
    problem = _one("data is null", table)
    assert problem.message == "field data has a type conditions cannot use"
