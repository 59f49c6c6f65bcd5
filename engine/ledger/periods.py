"""Periods of obligations and of the ledger: their keys, and when each one closes.

A period is a day `2026-12-07`, an ISO week `2026-W49` (Monday to Sunday, numbered in its
ISO year), a month `2026-12`, a quarter `2026-Q4`, a half-year `2026-H2` or a year `2026`:
keys of one kind sort as their periods do. The ledger closes monthly, at 00:00 on the
policy's `close_on_day` of the following month, in the ledger's time zone; every period
closes with the month its last day falls in: a quarter, half-year or year with its last
month, a day or a week (Sunday's month) with the month around it, so each close's notices
and summary cover whole months and nothing is booked twice a month. After the close a
period stays open for corrections for `corrections_for` (default: one period, and at least
a month), so at any instant the periods to settle are those that closed within that window,
and any that closed since the last period a run closed (the host was down over a close and
its window): a close is never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from engine.errors import UsageError
from engine.policy.durations import PERIOD_MONTHS as _MONTHS
from engine.policy.durations import PeriodKind
from engine.policy.tally_spec import LedgerSettings

__all__ = [
    "Period",
    "PeriodKind",
    "closing_with",
    "in_closing_order",
    "last_closed_month",
    "settling",
]

_DAYS = {"day": 1, "week": 7}
_KEY = re.compile(
    r"^(?P<year>\d{4})(?:-(?:(?P<month>0[1-9]|1[0-2])(?:-(?P<day>\d{2}))?"
    r"|W(?P<week>0[1-9]|[1-4]\d|5[0-3])|Q(?P<quarter>[1-4])|H(?P<half>[12])))?$"
)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A day, week, month, quarter, half-year or year: its first day and its kind."""

    start: date
    kind: PeriodKind

    @classmethod
    def containing(cls, kind: PeriodKind, day: date) -> Period:
        """The period of `kind` that `day` falls in."""
        if kind == "day":
            return cls(day, kind)
        if kind == "week":
            return cls(day - timedelta(days=day.weekday()), kind)
        first_month = day.month - (day.month - 1) % _MONTHS[kind]
        return cls(date(day.year, first_month, 1), kind)

    @classmethod
    def parse(cls, key: str) -> Period:
        """`2026-12-07`, `2026-W49`, `2026-12`, `2026-Q4`, `2026-H2` or `2026`; UsageError
        otherwise."""
        match = _KEY.match(key.strip())
        try:
            period = _parsed(match) if match else None
        except ValueError:  # 2026-02-30, or week 53 of a year with 52
            period = None
        if period is None:
            raise UsageError(
                f"period {key!r}: write a day (2026-12-07), an ISO week (2026-W49), a month "
                "(2026-12), a quarter (2026-Q4), a half-year (2026-H2) or a year (2026)"
            )
        return period

    @property
    def end(self) -> date:
        """The first day after the period."""
        if self.kind in _DAYS:
            return self.start + timedelta(days=_DAYS[self.kind])
        return self.start + relativedelta(months=_MONTHS[self.kind])

    @property
    def last(self) -> date:
        """The period's last day."""
        return self.end - timedelta(days=1)

    @property
    def key(self) -> str:
        """The period's label, e.g. `2026-12-07`, `2026-W49`, `2026-Q4`, `2026-H2`."""
        start = self.start
        match self.kind:
            case "day":
                return start.isoformat()
            case "week":
                year, week, _ = start.isocalendar()
                return f"{year}-W{week:02d}"
            case "month":
                return f"{start:%Y-%m}"
            case "quarter":
                return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
            case "half-year":
                return f"{start.year}-H{(start.month - 1) // 6 + 1}"
        return str(start.year)

    @property
    def closing_month(self) -> Period:
        """The month whose close closes this period: the month of its last day."""
        return Period.containing("month", self.last)

    def previous(self) -> Period:
        """The period before this one."""
        return Period.containing(self.kind, self.start - timedelta(days=1))

    def closes_at(self, ledger: LedgerSettings) -> datetime:
        """00:00 on the close day of the month after its closing month, in the ledger's zone."""
        day = self.closing_month.end.replace(day=ledger.close_on_day)
        return datetime.combine(day, time(0), tzinfo=ZoneInfo(ledger.timezone))

    def open_until(self, ledger: LedgerSettings) -> datetime:
        """Until when, after its close, the period is recomputed and corrected."""
        window = ledger.corrections_for
        shift = window.delta() if window else relativedelta(months=_MONTHS.get(self.kind, 1))
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
    """Periods in the order their closes come: days and weeks, then the month they close
    with, then the quarter, half-year and year it ends."""
    return sorted(periods, key=lambda p: (p.closing_month.start, p.end, -p.start.toordinal()))


def closing_with(month: Period) -> list[Period]:
    """The periods the close of `month` closes: its days, the weeks ending in it, the month,
    and the quarter, half-year and year it ends."""
    days = [Period(month.start + timedelta(days=n), "day") for n in range(month.last.day)]
    weeks = [Period.containing("week", d.start) for d in days if d.start.isoweekday() == 7]
    ending = [
        Period.containing(kind, month.start)
        for kind in ("quarter", "half-year", "year")
        if month.start.month % _MONTHS[kind] == 0
    ]
    return [*days, *weeks, month, *ending]


def last_closed_month(as_of: datetime, ledger: LedgerSettings) -> Period:
    """The newest month whose close has passed at `as_of`."""
    for month in _backwards("month", as_of.astimezone(ZoneInfo(ledger.timezone)).date()):
        if month.closes_at(ledger) <= as_of:
            return month
    raise AssertionError("unreachable: months close one after another")  # pragma: no cover


def _parsed(match: re.Match[str]) -> Period:
    year = int(match["year"])
    if match["day"]:
        return Period(date(year, int(match["month"]), int(match["day"])), "day")
    if match["month"]:
        return Period(date(year, int(match["month"]), 1), "month")
    if match["week"]:
        return Period(date.fromisocalendar(year, int(match["week"]), 1), "week")
    if match["quarter"]:
        return Period(date(year, 3 * int(match["quarter"]) - 2, 1), "quarter")
    if match["half"]:
        return Period(date(year, 6 * int(match["half"]) - 5, 1), "half-year")
    return Period(date(year, 1, 1), "year")


def _backwards(kind: PeriodKind, today: date) -> Iterator[Period]:
    period = Period.containing(kind, today)
    while True:
        yield period
        period = period.previous()
