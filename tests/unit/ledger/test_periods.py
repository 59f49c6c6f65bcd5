"""Months and quarters of the ledger: keys, closes, and which periods a night settles."""

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
    assert [p.key for p in closing_with(Period.parse("2026-12"))] == ["2026-12", "2026-Q4"]
    assert [p.key for p in closing_with(october)] == ["2026-10"]
    with pytest.raises(UsageError, match="2026-Q4"):
        Period.parse("2026-13")


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
