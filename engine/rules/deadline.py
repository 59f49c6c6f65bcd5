"""The deadline family: a timer on an entity, from `start` until `stop`.

The clock runs in working time on a business calendar (or wall-clock time on a 24x7
calendar), stops while the entity is in a paused status, and is judged at `as_of`:

    warning      the warning point has passed and the clock still runs
    breach       the deadline has passed and the clock still runs
    escalation:N escalation level N's delay after the deadline has passed
    late_stop    the clock stopped after the deadline
    breach:repeat-N  the Nth repeat of a state with `repeat:` (engine.rules.repeats)

A night records every state reached that is not yet recorded, so a call that went from
on time to two levels past its deadline between two nights tells the supervisor (breach)
and the managers (each level); only the warning is dropped once the deadline has passed.
Each state is a finding keyed by rule, entity, start instant and state, so it fires once.

A run more than a day after the last successful one stands in for the daily runs missed in
between (engine.rules.catch_up): each clock is also judged at those instants, as the missed
runs would have judged it (stops and pauses known by then), and the states it passed through
that it no longer shows now are recorded too: a call breached and then reached late while
the host was down gets its breach as well as its `late_stop`. Those findings carry the
instant in `details["judged_at"]`; they are events, closed when recorded: not late now.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Index,
    MetaData,
    Select,
    String,
    Table,
    and_,
    func,
    literal,
    or_,
    select,
)

from engine.calendar import BusinessCalendar, always_open
from engine.db.models import Branch, StatusChange
from engine.db.types import UtcDateTime
from engine.expr.sql import shift_instant
from engine.findings import REPEAT, Finding, base_state, repeat_index
from engine.policy import CompiledRule, DeadlineRule
from engine.policy.branch_scope import applies
from engine.policy.durations import Duration
from engine.policy.models import END_OF_WORKING_DAY
from engine.rules.catch_up import missed_instants, previous_as_of
from engine.rules.repeats import Series, repeat_points, repeats_of
from engine.rules.scope import ClosedWindow, Scope
from engine.rules.working_time import Pause
from engine.rules.working_time import paused as _paused
from engine.rules.working_time import reach as _reach
from engine.rules.working_time import solve as _solve
from engine.rules.working_time import span as _span

FAMILY = "deadline"
JUDGED_AT = "judged_at"
"""The key of Finding.details naming the missed night a state was passed through at."""
Deadline = CompiledRule[DeadlineRule]
LATE_STOP_LOOKBACK = timedelta(days=35)
TZ_LABEL = "_branch_timezone"
CALENDAR_LABEL = "_branch_calendar"
SIFTED_OUT = "_sifted_out"
_LABELS = (TZ_LABEL, CALENDAR_LABEL, SIFTED_OUT)


@dataclass(frozen=True, slots=True)
class Clock:
    """The timer of one entity as it stands at `as_of`."""

    start: datetime
    stop: datetime | None
    deadline: datetime
    warn_at: datetime | None
    escalations: tuple[datetime, ...]
    allowed: timedelta | None  # None for deadlines read from a field
    used: timedelta  # working time on the clock up to the stop or as_of, pauses excluded
    paused: timedelta  # working time spent paused up to the stop or as_of
    pauses: tuple[Pause, ...]
    calendar: BusinessCalendar

    @property
    def running(self) -> bool:
        """True while the stop event has not happened (as of the evaluation)."""
        return self.stop is None

    @property
    def left(self) -> timedelta | None:
        """Working time left before the deadline (negative once it has passed)."""
        return None if self.allowed is None else self.allowed - self.used


@dataclass
class Skipped:
    """Rows a rule could not judge, with why (reported in the run artifact)."""

    reasons: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


def is_effective(deadline: Deadline, as_of: datetime) -> bool:
    """False while the rule's effective_from lies in the future."""
    start = deadline.rule.effective_from
    return start is None or as_of.date() >= start


@dataclass(frozen=True, slots=True)
class Closings:
    """The closing instant of each working day around as_of, per calendar, in a temporary
    table, so a clock "by end of working day" finds its deadline in SQL."""

    since: datetime  # a start from here on finds the closing of its working day in the table
    calendars: tuple[str, ...]


_CLOSINGS = Table(
    "aftersales_closings",
    MetaData(),
    Column("calendar", String(40), nullable=False),
    Column("closes", UtcDateTime(), nullable=False),
    Index("ix_aftersales_closings", "calendar", "closes"),
    prefixes=["TEMPORARY"],
)


def write_closings(
    conn: Connection, calendars: Mapping[str, BusinessCalendar], as_of: datetime
) -> Closings:
    """Fill this connection's closings table for the starts a night can still judge."""
    since = as_of - LATE_STOP_LOOKBACK - timedelta(days=1)
    _CLOSINGS.create(conn, checkfirst=True)
    conn.execute(_CLOSINGS.delete())
    rows = []
    for name, calendar in calendars.items():
        at = since
        # Closings up to a week and more past as_of: a start just before a long holiday
        # still finds its deadline.
        while at <= as_of + timedelta(days=10):
            at = calendar.end_of_working_day(at)
            rows.append({"calendar": name, "closes": at})
    if rows:
        conn.execute(_CLOSINGS.insert(), rows)
    return Closings(since, tuple(calendars))


def candidates(
    deadline: Deadline,
    as_of: datetime,
    *,
    sift: bool = True,
    closings: Closings | None = None,
    since: datetime | None = None,
    scope: Scope | None = None,
    window: ClosedWindow | None = None,
) -> Select[Any]:
    """Entities whose clock has started and that are still running or stopped recently (or
    since `since`, the last successful run); with `sift`, less those whose start, stop and
    deadline alone show they cannot have reached any state, so the clocks are worked out only
    where they can matter. A rule "by end of working day" is sifted only given the `closings`
    of this connection. With a `scope`, only its entities; a full scope also keeps the running
    clocks sifted out, flagged in SIFTED_OUT, for judging to say when they can next matter.
    With a `window`, those that may have stopped in it (open ones too for the current
    version): judge keeps exactly the ones whose clock stopped in it."""
    rule, table = deadline.rule, deadline.table
    start, stops = table.c[rule.start], [table.c[name] for name in rule.stop]
    running = _running(stops, as_of)
    stopped_lately = or_(*(stop > _oldest_stop(as_of, since) for stop in stops))
    stmt = select(table).where(start.is_not(None), start <= as_of, or_(running, stopped_lately))
    if scope is not None:
        stmt = stmt.where(scope.where(table))
    if window is not None:
        closing = [table.c[name] for name in (window.closing or deadline).rule.stop]
        stmt = stmt.where(_may_stop_in(closing, window, as_of))
    could = _could_have_a_state(rule, table, as_of, closings) if sift else []
    if could and scope is not None:
        stmt = stmt.where(or_(and_(*could), running)).add_columns((~and_(*could)).label(SIFTED_OUT))
    elif could:
        stmt = stmt.where(*could)
    if "branch_id" in table.c:
        branches = Branch.__table__
        stmt = stmt.add_columns(
            branches.c.timezone.label(TZ_LABEL), branches.c.calendar.label(CALENDAR_LABEL)
        ).join(branches, branches.c.id == table.c.branch_id)
    stmt = stmt.where(*applies(deadline, table, as_of))
    return stmt.order_by(table.c.id)


def _running(stops: Sequence[ColumnElement[Any]], as_of: datetime) -> ColumnElement[bool]:
    """SQL: the clock still runs at as_of (a stop recorded ahead of it has not happened)."""
    return and_(*(or_(stop.is_(None), stop > as_of) for stop in stops))


def _oldest_stop(as_of: datetime, since: datetime | None) -> datetime:
    """The earliest stop a run judges: LATE_STOP_LOOKBACK back, or the last run if earlier."""
    oldest = as_of - LATE_STOP_LOOKBACK
    return oldest if since is None else min(oldest, since)


def _may_stop_in(
    stops: Sequence[ColumnElement[Any]], window: ClosedWindow, as_of: datetime
) -> ColumnElement[bool]:
    """Rows with a stop field in the window (the first stop decides, in judge), and the
    running clocks when the window takes open items."""
    terms = []
    for stop in stops:
        bounds = [stop <= as_of]
        if window.since is not None:
            bounds.append(stop >= window.since)
        if window.until is not None:
            bounds.append(stop < window.until)
        terms.append(and_(*bounds))
    if window.until is None:
        terms.append(_running(stops, as_of))
    return or_(*terms)


def _could_have_a_state(
    rule: DeadlineRule, table: Table, as_of: datetime, closings: Closings | None
) -> list[ColumnElement[bool]]:
    """Conditions every clock that reached some state at `as_of` meets (necessary, not
    sufficient: the clock itself decides)."""
    start, stops = table.c[rule.start], [table.c[name] for name in rule.stop]
    if rule.within is not None:
        to_deadline = least_wall_time(rule.within)
        least = shift_instant(start, int(to_deadline.total_seconds() // 60))
        return [
            start <= as_of - min(_to_warning(rule), to_deadline),
            # Stopped before the deadline could have come: on time, whatever the calendar.
            *(or_(stop.is_(None), stop > as_of, stop >= least) for stop in stops),
        ]
    if rule.by is None or rule.warn_at is not None:
        return []
    if rule.by != END_OF_WORKING_DAY:
        return [_due_then(table.c[rule.by], stops, as_of)]
    if closings is None or not (rule.calendar or "branch_id" in table.c):
        return []
    # The closing of the working day the start falls in: the first closing after it.
    calendar = literal(rule.calendar) if rule.calendar else Branch.__table__.c.calendar
    due = (
        select(func.min(_CLOSINGS.c.closes))
        .where(_CLOSINGS.c.calendar == calendar, _CLOSINGS.c.closes > start)
        .scalar_subquery()
    )
    unknown = or_(start < closings.since, calendar.is_(None), calendar.not_in(closings.calendars))
    return [or_(unknown, _due_then(due, stops, as_of))]


def _due_then(
    due: ColumnElement[Any], stops: Sequence[ColumnElement[Any]], as_of: datetime
) -> ColumnElement[bool]:
    """A deadline known in SQL: nothing happens before it, and a stop by then is on time."""
    on_time = [and_(stop.is_not(None), stop <= as_of, stop <= due) for stop in stops]
    return or_(due.is_(None), and_(due <= as_of, *(~early for early in on_time)))


def least_wall_time(span: Duration) -> timedelta:
    """The least wall-clock time `span` takes from any start on any calendar, pauses or not.

    Working time never runs faster than the wall clock and pauses only add to it; a working
    day ends the same local time at least one calendar day later (23 hours across a DST change).
    """
    if span.working and span.unit in ("day", "week"):
        return timedelta(hours=23) * span.amount * (5 if span.unit == "week" else 1)
    return _span(span)


def _to_warning(rule: DeadlineRule) -> timedelta:
    warn = rule.warn_at
    if warn is None:
        return timedelta.max
    if warn.span is not None:
        return least_wall_time(warn.span)
    # A share of the working time up to the deadline: known in advance only for short spans.
    if rule.within is not None and rule.within.unit in ("minute", "hour"):
        return _span(rule.within) * (warn.share or 0)
    return timedelta(0)


def pauses_query(
    deadline: Deadline,
    as_of: datetime,
    closings: Closings | None = None,
    since: datetime | None = None,
    scope: Scope | None = None,
    window: ClosedWindow | None = None,
) -> Select[Any] | None:
    """Status history of the candidates whose clocks are worked out, when the rule pauses on
    statuses."""
    if not deadline.rule.pause_while:
        return None
    if scope is not None and not scope.full:
        query = candidates(deadline, as_of, sift=False, since=since, scope=scope, window=window)
    else:
        query = candidates(deadline, as_of, closings=closings, since=since, window=window)
    ids = query.with_only_columns(deadline.table.c.id).scalar_subquery()
    changes = StatusChange.__table__
    return (
        select(changes.c.service_request_id, changes.c.status, changes.c.changed_at)
        .where(changes.c.service_request_id.in_(ids), changes.c.changed_at <= as_of)
        .order_by(changes.c.service_request_id, changes.c.changed_at, changes.c.id)
    )


def pause_intervals(
    changes: Iterable[tuple[Any, str, datetime]], paused_statuses: Sequence[str]
) -> dict[Any, list[Pause]]:
    """Per entity, the spans spent in a paused status; an open span has no end."""
    out: dict[Any, list[Pause]] = defaultdict(list)
    current: dict[Any, tuple[str, datetime]] = {}
    for entity_id, status, at in changes:
        previous = current.get(entity_id)
        if previous and previous[0] in paused_statuses:
            out[entity_id].append((previous[1], at))
        current[entity_id] = (status, at)
    for entity_id, (status, at) in current.items():
        if status in paused_statuses:
            out[entity_id].append((at, None))
    return out


def calendar_for(
    deadline: Deadline,
    row: Mapping[str, Any],
    calendars: Mapping[str, BusinessCalendar],
) -> BusinessCalendar | str:
    """The calendar a row's clock runs on, or why there is none."""
    rule = deadline.rule
    tz = row.get(TZ_LABEL) or "UTC"
    working = bool(rule.within and rule.within.working) or rule.by == END_OF_WORKING_DAY
    working = working or any(e.after.working for e in rule.escalate)
    working = working or any(every.working for every in rule.repeats().values())
    if not working:
        return always_open(tz)
    name = rule.calendar or row.get(CALENDAR_LABEL)
    if name is None:
        return always_open(tz)
    return calendars.get(name) or f"branch calendar {name!r} is not defined in the policy"


def stopped_at(rule: DeadlineRule, record: Mapping[str, Any], as_of: datetime) -> datetime | None:
    """When the clock stopped, as of `as_of`; None while it runs."""
    # The first stop field filled stops the clock (a complaint closed without a reply).
    stop = min((t for t in (record[f] for f in rule.stop) if t is not None), default=None)
    # A stop after as_of: judged as of an earlier instant, it had not stopped yet.
    return None if stop is None or stop > as_of else stop


def closed_since(conn: Connection, deadline: Deadline, as_of: datetime) -> datetime | None:
    """The earliest stop a run at `as_of` judges (engine.rule_versions), as candidates reads."""
    return _oldest_stop(as_of, previous_as_of(conn, as_of))


def measure(
    deadline: Deadline,
    record: Mapping[str, Any],
    calendar: BusinessCalendar,
    pauses: Sequence[Pause],
    as_of: datetime,
) -> Clock | None:
    """The clock of one entity at `as_of`; None when it has no deadline (an empty `by` field)."""
    rule = deadline.rule
    start: datetime = record[rule.start]
    stop = stopped_at(rule, record, as_of)
    until = stop or as_of
    closed = [(s, e or as_of) for s, e in pauses]
    # Each span runs on the calendar of its own kind: "24 hours" stays wall-clock time
    # even when an escalation of the same rule counts working hours.
    clock_calendar = _calendar_of(rule.within, calendar) if rule.within else calendar

    def used_until(t: datetime) -> timedelta:
        return clock_calendar.between(start, t) - _paused(clock_calendar, start, t, closed)

    if rule.within is not None:
        deadline_at = _reach(clock_calendar, start, rule.within, closed)
        allowed = _allowed(clock_calendar, start, rule.within, deadline_at, closed)
    else:
        allowed = None
        if rule.by == END_OF_WORKING_DAY:
            deadline_at = calendar.end_of_working_day(start)
        elif record[rule.by or ""] is None:
            return None
        else:
            deadline_at = record[rule.by or ""]
    warn_at = _warning(clock_calendar, start, deadline_at, rule, closed)
    escalations = tuple(
        _reach(_calendar_of(e.after, calendar), deadline_at, e.after, ()) for e in rule.escalate
    )
    used = used_until(until) if until > start else timedelta(0)
    paused = _paused(clock_calendar, start, until, closed)
    return Clock(
        start=start,
        stop=stop,
        deadline=deadline_at,
        warn_at=warn_at,
        escalations=escalations,
        allowed=allowed,
        used=used,
        paused=paused,
        pauses=tuple(pauses),
        calendar=clock_calendar,
    )


def _calendar_of(span: Duration, business: BusinessCalendar) -> BusinessCalendar:
    return business if span.working else always_open(business.timezone.key)


def state_of(clock: Clock, as_of: datetime) -> list[tuple[str, datetime]]:
    """The states reached at `as_of`, each with the instant it was reached."""
    if not clock.running:
        late = clock.stop is not None and clock.stop > clock.deadline
        return [("late_stop", clock.stop)] if late else []  # type: ignore[list-item]
    if as_of < clock.deadline:
        warned = clock.warn_at is not None and as_of >= clock.warn_at
        return [("warning", clock.warn_at)] if warned else []  # type: ignore[list-item]
    reached = [("breach", clock.deadline)]
    for level, at in enumerate(clock.escalations, start=1):
        if as_of >= at:
            reached.append((f"escalation:{level}", at))
    return reached


def evaluate(
    deadline: Deadline,
    rows: Iterable[Mapping[str, Any]],
    pauses: Mapping[Any, Sequence[Pause]],
    calendars: Mapping[str, BusinessCalendar],
    as_of: datetime,
    skipped: Skipped | None = None,
    missed: Sequence[datetime] = (),
    scope: Scope | None = None,
) -> list[Finding]:
    """The states reached at `as_of` among candidate rows, and those passed through at the
    `missed` instants (the daily runs a catch-up run replaces) that `as_of` no longer shows
    (pure but for `scope`, which gets each entity's next instant of interest)."""
    out: list[Finding] = []
    found = partial(_finding, deadline, deadline.rule.actions())
    every = deadline.rule.repeats()
    if scope is not None:
        rows = _watching_sifted_out(deadline, rows, calendars, as_of, scope)
    for row, calendar, clock in _clocks(
        deadline, rows, pauses, calendars, as_of, skipped or Skipped()
    ):
        repeats = repeats_of(every, clock, calendar, as_of)
        if scope is not None:
            scope.watch(row["id"], next_instant(deadline, row, clock, as_of, repeats))
        now = state_of(clock, as_of)
        if repeats is not None and repeats.latest is not None:
            now.append(repeats.latest)
        out.extend(found(row, clock, state, at) for state, at in now)
        seen = {state for state, _ in now}
        points = repeat_points(every, clock, calendar, as_of) if missed else []
        for instant in passed_instants(clock, missed, points):
            known = known_pauses(pauses.get(row["id"], ()), instant)
            then = measure(deadline, row, calendar, known, instant)
            if then is None:
                continue
            reached = state_of(then, instant)
            repeated = repeats_of(every, then, calendar, instant)
            if repeated is not None and repeated.latest is not None:
                reached.append(repeated.latest)
            for state, at in reached:
                if state not in seen:
                    seen.add(state)
                    out.append(found(row, then, state, at, instant))
    return out


def next_instant(
    deadline: Deadline,
    row: Mapping[str, Any],
    clock: Clock,
    as_of: datetime,
    repeats: Series | None = None,
) -> datetime | None:
    """The first instant after `as_of` at which the clock's states can change with no change
    to its data: its warning point, deadline, an escalation or the next repeat while it runs,
    or a stop recorded ahead of `as_of`. An open pause only moves those later, so a run at
    this instant may find nothing yet and name a later one."""
    later = [t for t in (row[f] for f in deadline.rule.stop) if t is not None and t > as_of]
    if clock.running:
        points = (clock.warn_at, clock.deadline, *clock.escalations, repeats and repeats.next)
        later += (p for p in points if p is not None and p > as_of)
    return min(later, default=None)


def _watching_sifted_out(
    deadline: Deadline,
    rows: Iterable[Mapping[str, Any]],
    calendars: Mapping[str, BusinessCalendar],
    as_of: datetime,
    scope: Scope,
) -> Iterator[Mapping[str, Any]]:
    """The rows to work out; a running clock sifted out only gets the instant from which it
    could have a state (what the sift reads: its start plus the least time to a state, or its
    deadline)."""
    rule = deadline.rule
    for row in rows:
        if not row.get(SIFTED_OUT):
            yield row
            continue
        start: datetime = row[rule.start]
        if rule.within is not None:
            first = start + min(_to_warning(rule), least_wall_time(rule.within))
        elif rule.by == END_OF_WORKING_DAY:
            calendar = calendar_for(deadline, row, calendars)
            first = None if isinstance(calendar, str) else calendar.end_of_working_day(start)
        else:
            first = row[rule.by or ""]
        stops = [t for t in (row[f] for f in rule.stop) if t is not None and t > as_of]
        scope.watch(row["id"], min([t for t in (first, *stops) if t is not None], default=None))


def passed_instants(
    clock: Clock, missed: Sequence[datetime], repeats: Sequence[datetime] = ()
) -> list[datetime]:
    """Of the `missed` instants (ascending), those at which the clock, still running, may
    have reached a state: the first at or after its warning point, deadline, each escalation
    and each of the `repeats`. A state reached at one instant stays reached at the later ones
    while the clock runs, so these are all the missed runs could have recorded."""
    if not missed:
        return []
    points = [clock.warn_at, clock.deadline, *clock.escalations, *repeats]
    out: set[datetime] = set()
    for point in points:
        if point is None:
            continue
        index = bisect_left(missed, max(point, clock.start))
        if index < len(missed) and (clock.stop is None or missed[index] < clock.stop):
            out.add(missed[index])
    return sorted(out)


def known_pauses(pauses: Sequence[Pause], at: datetime) -> list[Pause]:
    """The pauses as a run at `at` knew them: begun by then, and open if they ended later."""
    return [(begin, end if end is not None and end <= at else None) for begin, end in pauses
            if begin <= at]  # fmt: skip


def _finding(
    deadline: Deadline,
    actions: Mapping[str, Any],
    row: Mapping[str, Any],
    clock: Clock,
    state: str,
    at: datetime,
    judged_at: datetime | None = None,
) -> Finding:
    record = {k: v for k, v in row.items() if k not in _LABELS}
    action = actions.get(base_state(state))  # a repeat sends what the state it repeats sends
    details: dict[str, Any] = {
        "start": clock.start,
        "deadline": clock.deadline,
        "used": clock.used,
        "left": clock.left,
        "paused": clock.paused,
        # used/left count working time (else wall-clock time): a letter says which.
        "working": bool(deadline.rule.within and deadline.rule.within.working),
    }
    if judged_at is not None:
        details[JUDGED_AT] = judged_at
    repeat = repeat_index(state)
    if repeat is not None:
        details["repeat"] = repeat
    return Finding(
        rule_id=deadline.rule.id,
        family=FAMILY,
        entity=deadline.table.name,
        entity_id=str(record["id"]),
        occurrence=clock.start.isoformat(),
        state=state,
        reason=describe(deadline, record, clock, state, row.get(TZ_LABEL) or "UTC"),
        due_at=at,
        recipients=tuple(r.label for r in action.notify) if action else (),
        notices=action.notices() if action else (),
        record=record,
        details=details,
        # A repeat is an event: done once sent, whereas the breach stands while it holds.
        standing=judged_at is None and state != "late_stop" and REPEAT not in state,
    )


def judge(
    conn: Connection,
    deadline: Deadline,
    calendars: Mapping[str, BusinessCalendar],
    as_of: datetime,
    scope: Scope | None = None,
    window: ClosedWindow | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """Fetch the candidates (those in `scope`, if given; of a version of the rule, those
    whose clock stopped in its `window`) and their pauses, and judge them; also what
    had to be skipped. `scope` gets each entity's next instant of interest."""
    rule = deadline.rule
    since = previous_as_of(conn, as_of)
    closings = None
    narrowed = scope is not None and not scope.full
    if rule.by == END_OF_WORKING_DAY and rule.warn_at is None and not narrowed:
        closings = write_closings(conn, calendars, as_of)
    # A few entities of an incremental run are worked out whole, without the sift.
    query = candidates(
        deadline,
        as_of,
        sift=not narrowed,
        closings=closings,
        since=since,
        scope=scope,
        window=window,
    )
    rows: Iterable[Mapping[str, Any]] = conn.execute(query).mappings()
    if window is not None:
        closing = (window.closing or deadline).rule
        rows = (r for r in rows if window.holds(stopped_at(closing, r, as_of)))
    paused = pauses_query(deadline, as_of, closings, since, scope, window)
    pauses = (
        pause_intervals(conn.execute(paused), deadline.rule.pause_while)
        if paused is not None
        else {}
    )
    skipped = Skipped()
    missed = missed_instants(since, as_of)
    found = evaluate(deadline, rows, pauses, calendars, as_of, skipped, missed, scope)
    return found, dict(skipped.reasons)


def _clocks(
    deadline: Deadline,
    rows: Iterable[Mapping[str, Any]],
    pauses: Mapping[Any, Sequence[Pause]],
    calendars: Mapping[str, BusinessCalendar],
    as_of: datetime,
    skipped: Skipped,
) -> Iterator[tuple[Mapping[str, Any], BusinessCalendar, Clock]]:
    for row in rows:
        calendar = calendar_for(deadline, row, calendars)
        if isinstance(calendar, str):
            skipped.reasons[calendar] += 1
            continue
        clock = measure(deadline, row, calendar, pauses.get(row["id"], ()), as_of)
        if clock is None:
            skipped.reasons[f"{deadline.rule.by} is empty"] += 1
            continue
        yield row, calendar, clock


def describe(
    deadline: Deadline, record: Mapping[str, Any], clock: Clock, state: str, tz: str
) -> str:
    """The finding's reason, in words, with times in the branch's time zone."""
    rule = deadline.rule
    local = ZoneInfo(tz)

    def at(t: datetime) -> str:
        return t.astimezone(local).strftime("%Y-%m-%d %H:%M")

    label = record.get("number") or f"#{record['id']}"
    target = f"within {rule.within}" if rule.within else f"by {rule.by}"
    parts = [f"{deadline.table.name} {label}: {rule.start} {at(clock.start)} ({tz}), {target}"]
    if clock.paused:
        parts.append(f"paused {_hours(clock.paused)}")
    parts.append(f"deadline {at(clock.deadline)}")
    if state == "late_stop" and clock.stop is not None:
        parts.append(f"stopped {at(clock.stop)}, late by {_hours(clock.stop - clock.deadline)}")
    elif clock.allowed is not None:
        parts.append(f"{_hours(clock.used)} used of {_hours(clock.allowed)}")
    parts.append(state.replace(REPEAT, ", repeat ").replace("_", " "))
    return "; ".join(parts)


def _hours(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    sign = "-" if minutes < 0 else ""
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours}h{minutes:02d}" if minutes else f"{sign}{hours}h"


def _allowed(
    calendar: BusinessCalendar,
    start: datetime,
    duration: Duration,
    deadline_at: datetime,
    pauses: Sequence[Pause],
) -> timedelta:
    """The working time the rule allows, as measured on this clock."""
    if duration.working and duration.unit in ("day", "week"):
        return calendar.between(start, deadline_at) - _paused(calendar, start, deadline_at, pauses)
    return _span(duration)


def _warning(
    calendar: BusinessCalendar,
    start: datetime,
    deadline_at: datetime,
    rule: DeadlineRule,
    pauses: Sequence[Pause],
) -> datetime | None:
    warn = rule.warn_at
    if warn is None:
        return None
    if warn.span is not None:
        return _reach(calendar, start, warn.span, pauses)
    available = calendar.between(start, deadline_at) - _paused(calendar, start, deadline_at, pauses)
    return _solve(calendar, start, available * (warn.share or 0), pauses)
