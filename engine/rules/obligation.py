"""The obligation family: work that must recur (a report a month) or be done by a date.

For every entity the rule looks at (a maintenance contract, a team lead, a project), the
records it asks for (inspections, visits, handovers) are counted in SQL, one statement per
period checked, each entity with its records counted by correlated subqueries on indexed
links. Entities with enough records on time are left out by the statement itself. The rest,
once their due day has passed in the branch's time zone, become findings:

    missing   fewer records than asked for exist
    late      enough exist, but some were done (or handed in) after the due day

A period is a day, ISO week, month, quarter, half-year or year of the branch's time zone.
How many records it needs is a number, a field of the entity, or the person's target in the
plan (targets), counted in the same statement; a plan of a longer period is shared among its
periods in Python (`required`), the statement keeping those short of the whole target. A
period that needs none is not due.

A period is checked from the day after its due day for `look_back` (default 60 days), so a
night missed loses nothing and a first run on an old database does not report last year. The
finding key (rule, entity, period, state) keeps each to one notice; a missing report that then
arrives late is a second, `late`, finding. A run after nights missed (engine.rules.catch_up)
also records the `missing` that the first missed night past the due day would have: when the
records handed in (`submitted`) since then make the entity only `late` now.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from math import ceil
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, case, func, literal, or_, select

from engine.calendar import BusinessCalendar
from engine.db.models import Branch, Target
from engine.expr import to_sql
from engine.findings import Finding
from engine.ledger.periods import Period
from engine.policy.branch_scope import applies
from engine.policy.loader import CompiledObligation
from engine.policy.obligation_spec import PlanCount
from engine.rules.catch_up import missed_instants, previous_as_of
from engine.rules.reminder import is_effective
from engine.rules.scope import ClosedWindow

FAMILY = "obligation"
TZ = "_branch_timezone"
DONE = "_records_done"
ON_TIME = "_records_on_time"
FIRST = "_first_record"
DONE_THEN = "_records_done_then"
REQUIRED = "_records_required"
CALENDAR = "_branch_calendar"
JUDGED_AT = "judged_at"
"""The key of Finding.details naming the missed night a state was found at."""
_ZONES = timedelta(days=1)  # UTC and local days differ by less than this

__all__ = [
    "FAMILY",
    "Occasion",
    "due_at",
    "evaluate",
    "is_effective",
    "judge",
    "missed_then",
    "occasions",
    "query",
    "required",
    "works_on",
]


@dataclass(frozen=True, slots=True)
class Occasion:
    """One period to check: records done `first`..`last` count, on time up to `due_on`;
    with a split plan, the period is part `share[0]` of `share[1]` of the plan's period."""

    key: str
    first: date
    last: date
    due_on: date
    share: tuple[int, int] = (0, 1)

    @property
    def closes_at(self) -> datetime:
        """When the due day has ended, as a UTC day: which version of a changed rule judges
        the occasion (engine.rule_versions)."""
        return _day_ended(self.due_on)


def occasions(rule: CompiledObligation, as_of: datetime) -> list[Occasion]:
    """The periods whose due day may have passed within `look_back` at `as_of` (any zone)."""
    spec = rule.rule
    if spec.every is None:
        return []
    today = as_of.date()
    oldest = today - timedelta(days=spec.look_back.rough_days().days) - _ZONES
    out: list[Occasion] = []
    period = Period.containing(spec.every, today)
    while True:
        due_on = spec.due.add_to(period.last)
        if due_on < oldest:
            return out
        if due_on <= today + _ZONES:
            out.append(
                Occasion(period.key, period.start, period.last, due_on, _share(rule, period))
            )
        period = period.previous()


def _closes(occasion: Occasion, closing: CompiledObligation, rule: CompiledObligation) -> datetime:
    """When the occasion's due day ends by the `closing` rule's due day (the current version,
    so that each period falls to one version), when it checks the same periods."""
    if closing.rule.every != rule.rule.every:
        return occasion.closes_at
    return _day_ended(closing.rule.due.add_to(occasion.last))


def _day_ended(day: date) -> datetime:
    """00:00 UTC after `day`: when a due day has ended, as a UTC day."""
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


def closed_since(conn: Connection, rule: CompiledObligation, as_of: datetime) -> datetime:
    """The earliest end of a due day among the occasions a run at `as_of` checks
    (engine.rule_versions); `as_of` when it checks none."""
    return min((o.closes_at for o in occasions(rule, as_of)), default=as_of)


def _share(rule: CompiledObligation, period: Period) -> tuple[int, int]:
    """Which of the plan period's parts `period` is, and how many there are."""
    count = rule.rule.count
    if not isinstance(count, PlanCount) or count.per == period.kind:
        return 0, 1
    plan = Period.containing(count.per, period.start)
    parts = [Period.containing(period.kind, plan.start)]
    while parts[-1].end < plan.end:
        parts.append(Period(parts[-1].end, period.kind))
    return parts.index(period), len(parts)


def required(rule: CompiledObligation, occasion: Occasion | None, value: Any) -> int:
    """The records an entity needs in `occasion`, from its REQUIRED column: a split plan's
    share, what is left over going to the first parts (10 in three months: 4, 3, 3)."""
    if occasion is None:
        return 1  # one record by a date
    total = Decimal(value or 0)
    part, parts = occasion.share
    return ceil(total * (part + 1) / parts) - ceil(total * part / parts)


def judge(
    conn: Connection,
    rule: CompiledObligation,
    calendars: Mapping[str, Any],
    as_of: datetime,
    window: ClosedWindow | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """Count the records of each occasion in SQL and judge the entities short of them (of a
    version of the rule, the occasions whose due day ended in its `window`)."""
    found: list[Finding] = []
    zones = list(conn.scalars(select(Branch.timezone).distinct())) or ["UTC"]
    missed = missed_instants(previous_as_of(conn, as_of), as_of)
    if rule.rule.every is None:
        if window is not None and window.until is not None:
            return [], {}  # a date per entity: the version in force judges them all
        rows = conn.execute(query(rule, None, as_of, zones)).mappings()
        return evaluate(rule, None, rows, as_of, missed), {}
    for occasion in occasions(rule, as_of):
        if window is not None and not window.holds(_closes(occasion, window.closing or rule, rule)):
            continue
        rows = conn.execute(query(rule, occasion, as_of, zones, missed=missed)).mappings()
        found.extend(evaluate(rule, occasion, rows, as_of, missed, calendars))
    return found, {}


def missed_then(
    rule: CompiledObligation, late_from: datetime, missed: Sequence[datetime], as_of: datetime
) -> datetime | None:
    """The first missed night (ascending `missed`) that judged an entity late from
    `late_from`, if one did within `look_back`."""
    index = bisect_left(missed, late_from)
    if index == len(missed) or missed[index] >= late_from + rule.rule.look_back.delta():
        return None
    return missed[index] if missed[index] < as_of else None


def query(
    rule: CompiledObligation,
    occasion: Occasion | None,
    as_of: datetime,
    zones: Iterable[str],
    short_only: bool = True,
    missed: Sequence[datetime] = (),
) -> Select[Any]:
    """The entities due at `occasion` (or with a date due lately) short of records on time;
    with `short_only` false, those with enough too (for explain). Given the `missed` nights,
    records handed in by the first one past the due day are counted too (DONE_THEN)."""
    spec, table, records = rule.rule, rule.table, rule.record_table
    assert records is not None
    zone = _zone(table)
    stmt = select(table, zone.label(TZ))
    if spec.working_days:
        stmt = stmt.add_columns(_calendar(table).label(CALENDAR))
    if "branch_id" in table.c:
        branches = Branch.__table__
        stmt = stmt.join(branches, branches.c.id == table.c.branch_id)
    stmt = stmt.where(*applies(rule, table, as_of))
    mine, theirs = spec.record.link
    linked = [records.c[mine] == table.c[theirs]]
    if rule.record_condition is not None:
        linked.append(to_sql(rule.record_condition, records, as_of))
    done_at = records.c[spec.record.submitted or spec.record.at]  # handed in, else done
    linked.append(done_at.is_not(None))
    if spec.record.submitted:
        # Not handed in yet at `as_of`: a night replayed over later data sees what it saw then.
        linked.append(done_at <= as_of)
    if occasion is None:
        # One record by a day that hangs on the entity: its first record decides.
        anchor = table.c[spec.date or ""]
        newest = as_of.date() - spec.due.delta() + _ZONES
        oldest = newest - spec.look_back.delta() - 2 * _ZONES
        first = select(func.min(done_at)).where(*linked).scalar_subquery()
        done = select(func.count()).where(*linked).scalar_subquery()
        stmt = stmt.add_columns(first.label(FIRST), done.label(DONE)).order_by(table.c.id)
        if not short_only:
            return stmt
        return stmt.where(anchor.is_not(None), anchor >= oldest, anchor <= newest)
    at = records.c[spec.record.at]
    linked += [at >= occasion.first, at <= occasion.last]
    done = select(func.count()).where(*linked).scalar_subquery()
    on_time: Any = done
    if spec.record.submitted:
        deadline = case(
            {z: literal(due_at(occasion.due_on, z), done_at.type) for z in zones},
            value=zone,
            else_=literal(due_at(occasion.due_on, "UTC"), done_at.type),
        )
        on_time = select(func.count()).where(*linked, done_at < deadline).scalar_subquery()
        nights = {z: missed_then(rule, due_at(occasion.due_on, z), missed, as_of) for z in zones}
        if any(nights.values()):
            then = case(
                {z: literal(t, done_at.type) for z, t in nights.items() if t is not None},
                value=zone,
                else_=None,
            )
            done_then = select(func.count()).where(*linked, done_at <= then).scalar_subquery()
            stmt = stmt.add_columns(done_then.label(DONE_THEN))
    if spec.active is not None:
        starts, ends = (table.c[name] for name in spec.active)
        whole = spec.partial_periods == "exempt"
        stmt = stmt.where(
            starts <= (occasion.first if whole else occasion.last),
            or_(ends.is_(None), ends >= (occasion.last if whole else occasion.first)),
        )
    need = _required(rule, occasion)
    stmt = stmt.add_columns(done.label(DONE), on_time.label(ON_TIME), need.label(REQUIRED))
    stmt = stmt.order_by(table.c.id)
    # A split plan's share is at most the whole target: `evaluate` judges the share.
    return stmt.where(on_time < need) if short_only else stmt


def _required(rule: CompiledObligation, occasion: Occasion) -> Any:
    """SQL: the records each entity needs in `occasion` (a split plan: the whole target)."""
    count, table = rule.rule.count, rule.table
    if isinstance(count, int):
        return literal(count)
    if isinstance(count, str):
        return func.coalesce(table.c[count], 0)
    targets = Target.__table__
    mine, theirs = count.link
    planned = (
        select(func.sum(targets.c.target))
        .where(
            targets.c[mine] == table.c[theirs],
            targets.c.item == count.plan,
            targets.c.period_start == Period.containing(count.per, occasion.first).start,
        )
        .scalar_subquery()
    )
    return func.coalesce(planned, 0)


def evaluate(
    rule: CompiledObligation,
    occasion: Occasion | None,
    rows: Iterable[Mapping[str, Any]],
    as_of: datetime,
    missed: Sequence[datetime] = (),
    calendars: Mapping[str, BusinessCalendar] | None = None,
) -> list[Finding]:
    """The findings among rows of `query` whose due day has passed at `as_of`, and the
    `missing` a missed night found where the entity is only `late` now (pure); with
    `working_days`, none for a day off in the branch's calendar (of `calendars`)."""
    spec = rule.rule
    out: list[Finding] = []
    for row in rows:
        if occasion is not None and not works_on(row, occasion, calendars):
            continue
        zone = row[TZ] or "UTC"
        record = {k: v for k, v in row.items() if not k.startswith("_")}
        done_then: int | None = row.get(DONE_THEN)
        if occasion is None:
            anchor = row[spec.date or ""]
            due_on = spec.due.add_to(anchor)
            first = row[FIRST]
            on_time = int(first is not None and _local_day(first, zone) <= due_on)
            key = anchor.isoformat()
        else:
            due_on, on_time, key = occasion.due_on, row[ON_TIME], occasion.key
        need = required(rule, occasion, row.get(REQUIRED))
        late_from = due_at(due_on, zone)
        if not late_from <= as_of < late_from + spec.look_back.delta() or on_time >= need:
            continue
        done = row[DONE]
        state = "late" if done >= need else "missing"
        counts = (need, done, on_time)
        out.append(_finding(rule, record, key, state, due_on, late_from, counts))
        then = missed_then(rule, late_from, missed, as_of) if state == "late" else None
        if then is not None and occasion is None and spec.record.submitted:
            done_then = int(first is not None and first <= then)
        if then is not None and done_then is not None and done_then < need:
            counts = (need, done_then, on_time)
            found = _finding(rule, record, key, "missing", due_on, late_from, counts)
            found.details[JUDGED_AT] = then
            out.append(found)
    return out


def _finding(
    rule: CompiledObligation,
    record: dict[str, Any],
    key: str,
    state: str,
    due_on: date,
    due_at: datetime,
    counts: tuple[int, int, int],
) -> Finding:
    spec, (need, done, on_time) = rule.rule, counts
    label = record.get("number") or record.get("name") or f"#{record['id']}"
    what = f"{need} {spec.record.entity}"
    if spec.record.when:
        what += f" ({spec.record.when})"
    reason = f"{rule.table.name} {label}: {on_time} of {what} for {key} by {due_on.isoformat()}" + (
        f"; {done - on_time} came late" if state == "late" else ""
    )
    return Finding(
        rule_id=spec.id,
        family=FAMILY,
        entity=rule.table.name,
        entity_id=str(record["id"]),
        occurrence=key,
        state=state,
        reason=reason,
        due_at=due_at,
        recipients=tuple(r.label for r in spec.notify),
        notices=spec.notices(),
        record=record,
        details={
            "period": key,
            "due_on": due_on,
            "required": need,
            "done": done,
            "on_time": on_time,
            "records": spec.record.entity,
        },
    )


def works_on(
    row: Mapping[str, Any], occasion: Occasion, calendars: Mapping[str, BusinessCalendar] | None
) -> bool:
    """False for a day off in the calendar of a `query` row's branch (with `working_days`);
    a branch without a calendar works every day."""
    calendar = (calendars or {}).get(row.get(CALENDAR) or "")
    return calendar is None or calendar.day_status(occasion.first)[0]


def _calendar(table: Any) -> Any:
    if "branch_id" in table.c:
        return Branch.__table__.c.calendar
    if table.name == "branches":
        return table.c.calendar
    return literal(None)


def _zone(table: Any) -> Any:
    if "branch_id" in table.c:
        return Branch.__table__.c.timezone
    if table.name == "branches":
        return table.c.timezone
    return literal("UTC")


def due_at(due_on: date, zone: str) -> datetime:
    """The instant a record is late: the start of the day after the due day, local time."""
    local = datetime.combine(due_on + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)


def _local_day(value: date | datetime, zone: str) -> date:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.astimezone(ZoneInfo(zone)).date()
    return value
