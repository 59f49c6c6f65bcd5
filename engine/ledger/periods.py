"""Periods of the ledger: months and quarters, their keys, and when each one closes.

A period is named `2026-10` (a month) or `2026-Q4` (a quarter). It closes at 00:00 on the
policy's `close_on_day` of the following month, in the ledger's time zone; a quarter closes
with its last month. After the close a period stays open for corrections for
`corrections_for` (default: one period), so at any instant the periods to settle are those
that closed within that window, and any that closed since the last period a run closed (the
host was down over a close and its window): a close is never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from engine.errors import UsageError
from engine.policy.tally_spec import LedgerSettings

PeriodKind = Literal["month", "quarter"]
_MONTHS = {"month": 1, "quarter": 3}
_KEY = re.compile(r"^(?P<year>\d{4})-(?:(?P<month>0[1-9]|1[0-2])|Q(?P<quarter>[1-4]))$")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A month or a quarter: its first day and the first day after it."""

    start: date
    kind: PeriodKind

    @classmethod
    def containing(cls, kind: PeriodKind, day: date) -> Period:
        """The month or quarter `day` falls in."""
        first_month = day.month - (day.month - 1) % _MONTHS[kind]
        return cls(date(day.year, first_month, 1), kind)

    @classmethod
    def parse(cls, key: str) -> Period:
        """`2026-10` or `2026-Q4`; UsageError otherwise."""
        match = _KEY.match(key.strip())
        if match is None:
            raise UsageError(f"period {key!r}: write a month (2026-10) or a quarter (2026-Q4)")
        year = int(match["year"])
        if match["quarter"]:
            return cls(date(year, 3 * int(match["quarter"]) - 2, 1), "quarter")
        return cls(date(year, int(match["month"]), 1), "month")

    @property
    def end(self) -> date:
        """The first day after the period."""
        return self.start + relativedelta(months=_MONTHS[self.kind])

    @property
    def key(self) -> str:
        """`2026-10` for a month, `2026-Q4` for a quarter."""
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start:%Y-%m}"

    @property
    def closing_month(self) -> Period:
        """The month whose close closes this period (a quarter's last month)."""
        return Period(self.end - relativedelta(months=1), "month")

    def previous(self) -> Period:
        """The period before this one."""
        return Period(self.start - relativedelta(months=_MONTHS[self.kind]), self.kind)

    def closes_at(self, ledger: LedgerSettings) -> datetime:
        """00:00 on the close day of the month after the period, in the ledger's time zone."""
        day = self.end.replace(day=ledger.close_on_day)
        return datetime.combine(day, time(0), tzinfo=ZoneInfo(ledger.timezone))

    def open_until(self, ledger: LedgerSettings) -> datetime:
        """Until when, after its close, the period is recomputed and corrected."""
        window = ledger.corrections_for
        shift = window.delta() if window else relativedelta(months=_MONTHS[self.kind])
        return self.closes_at(ledger) + shift

    def __str__(self) -> str:
        return self.key


def settling(
    kind: PeriodKind, as_of: datetime, ledger: LedgerSettings, after: Period | None = None
) -> list[Period]:
    """The periods closed at `as_of` and still open for corrections, or newer than `after`
    (the last one a run closed), oldest first."""
    out: list[Period] = []
    for period in _backwards(kind, as_of.astimezone(ZoneInfo(ledger.timezone)).date()):
        if period.closes_at(ledger) > as_of:
            continue
        if period.open_until(ledger) <= as_of and (after is None or period <= after):
            break  # older periods closed even earlier, and a run closed them
        out.append(period)
    return sorted(out)


def in_closing_order(periods: Iterable[Period]) -> list[Period]:
    """Periods in the order their closes come: a quarter right after its last month."""
    return sorted(periods, key=lambda p: (p.end, p.kind))


def closing_with(month: Period) -> list[Period]:
    """The periods the close of `month` closes: the month, and the quarter it ends."""
    periods = [month]
    if month.start.month % 3 == 0:
        periods.append(Period.containing("quarter", month.start))
    return periods


def last_closed_month(as_of: datetime, ledger: LedgerSettings) -> Period:
    """The newest month whose close has passed at `as_of`."""
    for month in _backwards("month", as_of.astimezone(ZoneInfo(ledger.timezone)).date()):
        if month.closes_at(ledger) <= as_of:
            return month
    raise AssertionError("unreachable: months close one after another")  # pragma: no cover


def _backwards(kind: PeriodKind, today: date) -> Iterator[Period]:
    period = Period.containing(kind, today)
    while True:
        yield period
        period = period.previous()
