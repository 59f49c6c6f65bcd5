"""The metric family: KPIs per branch and person and month, measured set-based in SQL.

Each metric is one grouped statement per scope (the branch, then each staff field named in
`per`) over all the months measured at once: rows are placed in a month by their `at` in the
branch's time zone, the denominator counts them and the numerator sums a 0/1 condition built
from the policy (a further `when`, no breach of named deadline rules as recorded in
`findings`, no repeat row within a span, a related row exists). A numerator from another
table (complaints per 100 calls) is a second grouped statement joined by branch and month.
`average` sums the fields and counts the values present. Nothing is read row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    DateTime,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    select,
)

from engine.db.local_time import shifted
from engine.db.models import Branch, Finding, Run
from engine.expr import parse, to_sql
from engine.ledger.periods import Period
from engine.policy.branch_scope import applies, in_branches
from engine.policy.loader import CompiledMetric
from engine.policy.metric_spec import Numerator
from engine.rules.deadline import LATE_STOP_LOOKBACK
from engine.rules.reminder import is_effective

FAMILY = "metric"
BREACHES = ("breach", "late_stop")
_ZONES = timedelta(days=1)
_PLACES = Decimal("0.000001")
_ZERO = Decimal(0)

__all__ = ["FAMILY", "Measured", "is_effective", "measure", "months_ending", "months_to_measure"]


@dataclass(frozen=True, slots=True)
class Measured:
    """One KPI value: a metric for one branch or person in one month."""

    metric_id: str
    period: str
    scope: str  # branch or staff
    party_id: int
    branch_id: int
    numerator: Decimal
    denominator: Decimal
    value: Decimal | None  # None: nothing to measure (an empty denominator)


def months_to_measure(as_of: datetime, history: int) -> list[Period]:
    """The month of `as_of` (a local time) and the `history` months before it, oldest first."""
    return months_ending(Period.containing("month", as_of.date()), history)


def months_ending(month: Period, history: int) -> list[Period]:
    """`month` and the `history` months before it, oldest first."""
    months = [month]
    for _ in range(history):
        months.insert(0, months[0].previous())
    return months


def measure(
    conn: Connection, metric: CompiledMetric, months: Sequence[Period], as_of: datetime
) -> list[Measured]:
    """The metric's values for these months, per branch and per person of each `per` field."""
    rule = metric.rule
    out: list[Measured] = []
    if rule.numerator is not None and rule.numerator.on_time:
        months = watched(conn, months, as_of)
        if not months:
            return out
    zones = sorted(conn.scalars(select(Branch.timezone).distinct())) or ["UTC"]
    others = _other_numerator(conn, metric, months, zones, as_of)
    # One scan for every `per`: the counts and sums are added up per branch and per person.
    people = [field for field in rule.per if field != "branch"]
    totals: dict[tuple[str, int, int, str], list[Decimal]] = {}
    for row in conn.execute(_grouped(metric, months, zones, as_of, people)):
        branch_id, period, numerator, denominator, *parties = row
        parts = Decimal(numerator or 0), Decimal(denominator or 0)
        who = {"branch": branch_id, **dict(zip(people, parties, strict=True))}
        for field in rule.per:
            if (party := who[field]) is not None:
                key = (field, int(party), int(branch_id), period)
                sums = totals.setdefault(key, [_ZERO, _ZERO])
                sums[0], sums[1] = sums[0] + parts[0], sums[1] + parts[1]
    for (field, party, branch_id, period), (numerator, denominator) in totals.items():
        if others is not None:
            numerator = others.get((branch_id, period), _ZERO)
        scope = "branch" if field == "branch" else "staff"
        out.append(
            Measured(
                rule.id, period, scope, party, branch_id, numerator, denominator,
                _value(numerator, denominator, rule.scale),
            )
        )  # fmt: skip
    return out


def watched(conn: Connection, months: Sequence[Period], as_of: datetime) -> list[Period]:
    """The months whose late calls the deadline rules have recorded: those starting after the
    first successful night less the deadline family's look-back. Before that, a breach left
    no finding, so an on-time rate would read 100% for want of data."""
    first = conn.scalar(select(func.min(Run.as_of)).where(Run.outcome == "success")) or as_of
    since = (first - LATE_STOP_LOOKBACK).date()
    return [month for month in months if month.start >= since]


def _value(numerator: Decimal, denominator: Decimal, scale: int) -> Decimal | None:
    if not denominator:
        return None
    return (numerator * scale / denominator).quantize(_PLACES)


def _grouped(
    metric: CompiledMetric,
    months: Sequence[Period],
    zones: Sequence[str],
    as_of: datetime,
    people: Sequence[str],
) -> Any:
    """One statement: per branch, month and the people's fields, the numerator and
    denominator (both sums, so they add up to any coarser grouping)."""
    rule, table = metric.rule, metric.table
    month = _month(table, rule.at, months, zones)
    keys = [table.c.branch_id, month.label("period")]
    if rule.average:
        present = [case((table.c[f].is_not(None), 1), else_=0) for f in rule.average]
        numerator = func.sum(sum(func.coalesce(table.c[f], 0) for f in rule.average))
        denominator = func.sum(sum(present[1:], present[0]))
    else:
        numerator = func.sum(case((_condition(metric, rule.numerator, as_of), 1), else_=0))
        denominator = func.count()
    fields = [table.c[field] for field in people]
    stmt = (
        select(*keys, numerator.label("numerator"), denominator.label("denominator"), *fields)
        .select_from(table)
        .join(Branch.__table__, Branch.__table__.c.id == table.c.branch_id)
        .where(*_in_months(table, rule.at, months))
        .group_by(*keys, *fields)
        .having(month.in_([m.key for m in months]))
    )
    stmt = stmt.where(*applies(metric, table, as_of))
    return stmt


def _condition(metric: CompiledMetric, numerator: Numerator | None, as_of: datetime) -> Any:
    """SQL: the denominator's row counts above the line."""
    table = metric.table
    parts: list[Any] = []
    if numerator is None:
        return literal(True)
    if numerator.when:
        parts.append(to_sql(parse(numerator.when), table, as_of))
    if numerator.on_time:
        findings = Finding.__table__
        parts.append(
            not_(
                exists().where(
                    findings.c.rule_id.in_(numerator.on_time),
                    findings.c.entity == table.name,
                    findings.c.entity_id == cast(table.c.id, String),
                    findings.c.state.in_(BREACHES),
                )
            )
        )
    if numerator.no_repeat is not None:
        repeat = numerator.no_repeat
        later = table.alias("later")
        start = table.c[metric.rule.at]
        shift = repeat.within.delta()  # days, weeks or hours: the loader refuses months
        seconds = int(timedelta(days=shift.days, hours=shift.hours).total_seconds())
        parts.append(
            not_(
                exists().where(
                    later.c[repeat.same] == table.c[repeat.same],
                    later.c.id != table.c.id,
                    later.c[repeat.at] > start,
                    later.c[repeat.at] <= shifted(start, seconds),
                )
            )
        )
    if numerator.related is not None:
        assert metric.related is not None
        # An alias: the related table may be the metric's own (a call's repeat calls).
        related = metric.related.alias("related")
        pointing = exists().where(related.c[numerator.related.link] == table.c.id)
        parts.append(pointing if numerator.has is not None else not_(pointing))
    return and_(*parts) if parts else literal(True)


def _other_numerator(
    conn: Connection,
    metric: CompiledMetric,
    months: Sequence[Period],
    zones: Sequence[str],
    as_of: datetime,
) -> dict[tuple[int, str], Decimal] | None:
    """Rows of another table per branch and month (complaints for a complaint rate)."""
    numerator, table = metric.rule.numerator, metric.related
    if numerator is None or numerator.entity is None or table is None:
        return None
    at = numerator.at or ""
    month = _month(table, at, months, zones)
    stmt = (
        select(table.c.branch_id, month.label("period"), func.count().label("n"))
        .join(Branch.__table__, Branch.__table__.c.id == table.c.branch_id)
        .where(*_in_months(table, at, months), *in_branches(metric.rule.branches, table))
        .group_by(table.c.branch_id, month)
        .having(month.in_([m.key for m in months]))
    )
    if numerator.when:
        stmt = stmt.where(to_sql(parse(numerator.when), table, as_of))
    return {(r.branch_id, r.period): Decimal(r.n) for r in conn.execute(stmt)}


def _month(table: Any, at: str, months: Sequence[Period], zones: Sequence[str]) -> Any:
    """SQL: the key (`2026-10`) of the month among `months` the row's `at` falls in, locally.

    For a timestamp, each month's first and last instants in each branch's time zone are
    computed here and compared in SQL: plain comparisons an index can serve, not a time-zone
    conversion per row (a Python function per row on SQLite)."""
    column = table.c[at]
    if not _is_instant(column):
        return func.substr(cast(column, String), 1, 7)

    def starts(zone: str) -> Any:
        tz = ZoneInfo(zone)
        edges = [datetime.combine(m.start, time(0), tz).astimezone(UTC) for m in months]
        edges.append(datetime.combine(months[-1].end, time(0), tz).astimezone(UTC))
        whens = [(column < literal(edges[0], column.type), None)]
        whens += [
            (column < literal(edge, column.type), month.key)
            for month, edge in zip(months, edges[1:], strict=True)
        ]
        return case(*whens, else_=None)

    return case(
        {zone: starts(zone) for zone in zones}, value=Branch.__table__.c.timezone, else_=None
    )


def _in_months(table: Any, at: str, months: Sequence[Period]) -> list[Any]:
    """A window on `at` a day wider than the months (time zones); the month key decides."""
    column = table.c[at]
    first, last = months[0].start, months[-1].end
    if _is_instant(column):
        low = datetime.combine(first - _ZONES, datetime.min.time()).replace(tzinfo=UTC)
        high = datetime.combine(last + _ZONES, datetime.min.time()).replace(tzinfo=UTC)
        return [column >= low, column < high]
    return [column >= first, column < last]


def _is_instant(column: Any) -> bool:
    return isinstance(getattr(column.type, "impl", column.type), DateTime)
