"""Periods of obligations and the ledger: keys, closes, and which periods a night settles."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.errors import UsageError
from engine.ledger.periods import Period, closing_with, last_closed_month, settling
from engine.policy.tally_spec import LedgerSettings

LEDGER = LedgerSettings(currency="CNY", timezone="Asia/Shanghai", close_on_day=10)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_keys_and_bounds():
    october = Period.containing("month", date(2026, 10, 31))
    assert (october.key, october.start, october.end) == (
        "2026-10",
        date(2026, 10, 1),
        date(2026, 11, 1),
    )
    q4 = Period.containing("quarter", date(2026, 11, 23))
    assert (q4.key, q4.start, q4.end) == ("2026-Q4", date(2026, 10, 1), date(2027, 1, 1))
    assert Period.parse("2026-Q4") == q4 and Period.parse("2026-10") == october
    assert q4.closing_month == Period.parse("2026-12")
    closing = [p.key for p in closing_with(Period.parse("2026-12")) if p.kind != "day"]
    assert closing == ["2026-W49", "2026-W50", "2026-W51", "2026-W52", "2026-12", "2026-Q4",
                       "2026-H2", "2026"]  # fmt: skip
    assert [p.key for p in closing_with(october) if p.kind not in ("day", "week")] == ["2026-10"]
    with pytest.raises(UsageError, match="2026-Q4"):
        Period.parse("2026-13")


@pytest.mark.parametrize(
    ("key", "kind", "first", "last"),
    [
        ("2026-12-07", "day", date(2026, 12, 7), date(2026, 12, 7)),
        ("2026-W49", "week", date(2026, 11, 30), date(2026, 12, 6)),  # Monday to Sunday
        ("2026-W53", "week", date(2026, 12, 28), date(2027, 1, 3)),  # ISO year 2026
        ("2026-H2", "half-year", date(2026, 7, 1), date(2026, 12, 31)),
        ("2026", "year", date(2026, 1, 1), date(2026, 12, 31)),
    ],
)
def test_days_weeks_half_years_and_years_have_unambiguous_keys(key, kind, first, last):
    period = Period.parse(key)
    assert (period.kind, period.start, period.last, period.key) == (kind, first, last, key)
    assert Period.containing(kind, last) == period and period.previous().end == first
    assert period.closing_month == Period.containing("month", last)


def test_labels_of_a_kind_sort_as_their_periods_do():
    days = [Period.parse("2026-12-31").previous(), Period.parse("2026-12-31")]
    weeks = [Period.parse("2026-W52"), Period.parse("2026-W53"), Period.parse("2027-W01")]
    for periods in (days, weeks):
        assert sorted(p.key for p in periods) == [p.key for p in sorted(periods)]


@pytest.mark.parametrize("key", ["2026-13", "2026-02-30", "2026-W54", "2025-W53", "2026-H3"])
def test_a_wrong_label_says_what_to_write(key):
    with pytest.raises(UsageError, match=r"2026-W49.*2026-H2"):
        Period.parse(key)


def test_a_day_or_week_closes_with_the_month_of_its_last_day():
    # A day and a week are booked at the close of the month they end in, with its notices.
    assert Period.parse("2026-10-07").closes_at(LEDGER) == datetime(2026, 11, 10, tzinfo=SHANGHAI)
    assert Period.parse("2026-W44").closes_at(LEDGER) == datetime(2026, 12, 10, tzinfo=SHANGHAI)
    assert Period.parse("2026-10-07").open_until(LEDGER) == datetime(2026, 12, 10, tzinfo=SHANGHAI)
    assert Period.parse("2026-H2").closes_at(LEDGER) == datetime(2027, 1, 10, tzinfo=SHANGHAI)
    at_close = datetime(2026, 11, 9, 16, 0, tzinfo=UTC)
    october = [p.key for p in settling("day", at_close, LEDGER)]
    assert october[0] == "2026-10-01" and october[-1] == "2026-10-31" and len(october) == 31
    assert settling("week", at_close, LEDGER)[-1].key == "2026-W43"  # 19-25 October
    assert [p.key for p in settling("year", at_close, LEDGER)] == ["2025"]  # a year to correct


def test_a_month_closes_at_midnight_on_the_close_day_in_the_ledger_time_zone():
    october = Period.parse("2026-10")
    assert october.closes_at(LEDGER) == datetime(2026, 11, 10, tzinfo=SHANGHAI)
    assert october.open_until(LEDGER) == datetime(2026, 12, 10, tzinfo=SHANGHAI)
    assert Period.parse("2026-Q4").closes_at(LEDGER) == datetime(2027, 1, 10, tzinfo=SHANGHAI)
    assert Period.parse("2026-Q4").open_until(LEDGER) == datetime(2027, 4, 10, tzinfo=SHANGHAI)


def test_settling_is_the_closed_periods_still_open_for_corrections():
    just_before = datetime(2026, 11, 9, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    assert [p.key for p in settling("month", just_before, LEDGER)] == ["2026-09"]
    at_close = datetime(2026, 11, 9, 16, 0, tzinfo=UTC)
    assert [p.key for p in settling("month", at_close, LEDGER)] == ["2026-10"]
    assert [p.key for p in settling("quarter", at_close, LEDGER)] == ["2026-Q3"]
    three = LedgerSettings.model_validate(
        {"timezone": "Asia/Shanghai", "corrections_for": "3 months"}
    )
    assert [p.key for p in settling("month", at_close, three)] == ["2026-08", "2026-09", "2026-10"]
    assert last_closed_month(at_close, LEDGER).key == "2026-10"
    assert last_closed_month(just_before, LEDGER).key == "2026-09"
