"""The reminder family: a notice at an offset from a date field, once per occurrence.

A reminder is due when `date + offset` has passed and either it fell due since the last
successful run (so nights missed while the host was down lose nothing), or it is not stale
yet: up to the date itself for reminders before it (a renewal notice after the contract
ended helps nobody), or `send_until` after falling due (default 7 days) for reminders after
it. The staleness bound keeps a first run on an old database from writing to every customer
ever served. The finding key (rule, entity, date, state) keeps each to one notice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, DateTime, FromClause, Select, select

from engine.db.catalogue import entity_table
from engine.db.models import Branch
from engine.findings import Finding
from engine.policy import CompiledRule, ReminderRule
from engine.policy.branch_scope import applies
from engine.policy.durations import Duration
from engine.rules.catch_up import previous_as_of
from engine.rules.scope import Scope

FAMILY = "reminder"
Reminder = CompiledRule[ReminderRule]
DEFAULT_SEND_UNTIL_AFTER = Duration(7, "day")
_MARGIN = timedelta(days=4)  # month clamping (3 days) plus time zones (1 day)
TZ_LABEL = "_branch_timezone"


def is_effective(reminder: Reminder, as_of: datetime) -> bool:
    """False while the rule's effective_from lies in the future."""
    start = reminder.rule.effective_from
    return start is None or as_of.date() >= start


def candidates(
    reminder: Reminder,
    as_of: datetime,
    since: datetime | None = None,
    *,
    table: FromClause | None = None,
    upcoming: bool = False,
    dates: str = "due",
) -> Select[Any]:
    """Rows that may be due at `as_of`: the condition holds and the date lies in a window.

    `since` is the as-of of the last successful run. The window is a little wider than
    exact; `evaluate` decides each row precisely. `table` replaces the rule's (a view
    narrowed to some entities); `upcoming` lifts the window's upper end, for the rows still to
    come due too. `dates`: "due" for that window, "since" for the dates of rows come due
    after `since` alone, "any" for no window (rows picked by id; `evaluate` decides).
    """
    rule = reminder.rule
    table = reminder.table if table is None else table
    anchor = table.c[rule.date]
    stmt = select(table)
    if dates != "any":
        oldest, newest = (
            _come_due_window(reminder, as_of, since)
            if dates == "since" and since is not None
            else _due_window(reminder, as_of, since)
        )
        stmt = stmt.where(anchor.is_not(None), anchor >= oldest)
        if not upcoming:
            stmt = stmt.where(anchor <= newest)
    if "branch_id" in table.c:
        branches = Branch.__table__
        stmt = stmt.add_columns(branches.c.timezone.label(TZ_LABEL)).join(
            branches, branches.c.id == table.c.branch_id
        )
    stmt = stmt.where(*applies(reminder, table, as_of))
    return stmt.order_by(table.c.id)


def _due_window(
    reminder: Reminder, as_of: datetime, since: datetime | None
) -> tuple[date | datetime, date | datetime]:
    """The dates of rows that may be due at `as_of`, or came due since `since`."""
    rule = reminder.rule
    back = rule.offset.delta()
    newest = as_of - back + _MARGIN
    if rule.offset.is_negative and rule.send_until is None:
        oldest = as_of - _MARGIN
    else:
        oldest = as_of - back - _send_until(reminder).delta() - _MARGIN
    if since is not None:
        oldest = min(oldest, since - back - _MARGIN)
    return _as_dates(reminder, oldest, newest)


def _come_due_window(
    reminder: Reminder, as_of: datetime, since: datetime
) -> tuple[date | datetime, date | datetime]:
    """The dates of rows that fell due after `since` and by `as_of`, as tight as the offset
    allows; rows due earlier a run at `since` judged already."""
    back, margin = reminder.rule.offset.delta(), _margin(reminder)
    return _as_dates(reminder, since - back - margin, as_of - back + margin)


def _as_dates(
    reminder: Reminder, oldest: datetime, newest: datetime
) -> tuple[date | datetime, date | datetime]:
    if _is_instant(reminder):
        return oldest, newest
    return oldest.date(), newest.date()


def evaluate(
    reminder: Reminder,
    rows: Iterable[Mapping[str, Any]],
    as_of: datetime,
    since: datetime | None = None,
    scope: Scope | None = None,
) -> list[Finding]:
    """The reminders due at `as_of` among candidate rows (pure but for `scope`, which gets
    the rows still to come due); `since` as in `candidates`."""
    out: list[Finding] = []
    for row in rows:
        tz = ZoneInfo(row.get(TZ_LABEL) or "UTC")
        due, expires = due_window(reminder, row[reminder.rule.date], tz)
        if due > as_of:
            if scope is not None:
                scope.watch(row["id"], due)
            continue
        caught_up = since is not None and since < due
        if as_of < expires or caught_up:
            record = {k: v for k, v in row.items() if k != TZ_LABEL}
            out.append(_finding(reminder, record, due, tz))
    return out


def judge(
    conn: Connection,
    reminder: Reminder,
    calendars: Mapping[str, Any],
    as_of: datetime,
    scope: Scope | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """Fetch the candidates and judge them (reminders run on the calendar, never skip rows).

    With a narrowed `scope`, only its entities and, for a date stored in the table, the rows
    come due since the last run (a range read); a derived date (a unit's warranty end) has no
    index to read a range on, so a run judging in full notes each row's coming due date in
    `scope` (kept as watches) and the scope of an incremental run holds those come due.
    """
    since = previous_as_of(conn, as_of)
    narrowed = scope is not None and not scope.full and since is not None
    if uses_watches(reminder):
        table = None
        if narrowed:
            assert scope is not None and reminder.views is not None
            table = reminder.views.narrowed(reminder.rule.entity, scope.where)
        query = candidates(reminder, as_of, since, table=table, upcoming=scope is not None)
        rows: Iterable[Mapping[str, Any]] = conn.execute(query).mappings()
    else:
        if narrowed:
            assert scope is not None and since is not None
            # Two reads, each on an index: the dates come due, and the entities touched.
            ranges = candidates(reminder, as_of, since, dates="since")
            ids = candidates(reminder, as_of, since, dates="any").where(scope.where(reminder.table))
            rows = _new_or_touched(
                reminder, chain(conn.execute(ranges).mappings(), conn.execute(ids).mappings()),
                since, scope,
            )  # fmt: skip
        else:
            rows = conn.execute(candidates(reminder, as_of, since)).mappings()
    return evaluate(reminder, rows, as_of, since, scope), {}


def uses_watches(reminder: Reminder) -> bool:
    """True when the rule's date is derived (no column to read a range of dates on)."""
    return reminder.rule.date not in entity_table(reminder.rule.entity).c


def _new_or_touched(
    reminder: Reminder, rows: Iterable[Mapping[str, Any]], since: datetime, scope: Scope
) -> Iterator[Mapping[str, Any]]:
    """The rows in `scope`, and those that fell due after `since`."""
    assert scope.ids is not None
    for row in rows:
        tz = ZoneInfo(row.get(TZ_LABEL) or "UTC")
        if row["id"] in scope.ids or due_window(reminder, row[reminder.rule.date], tz)[0] > since:
            yield row


def _margin(reminder: Reminder) -> timedelta:
    """How far the due instant can lie from `date + offset` read as UTC: nothing for an
    instant moved by a fixed span, a day of time zones for a date, three more days where a
    month's end is clamped (31 January + 1 month)."""
    clamped = timedelta(days=3) if reminder.rule.offset.unit in ("month", "year") else timedelta()
    return clamped + (timedelta() if _is_instant(reminder) else timedelta(days=1))


def due_window(
    reminder: Reminder, anchor: date | datetime, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """When a reminder on `anchor` falls due, and when it goes stale (UTC)."""
    rule = reminder.rule
    due = _instant(rule.offset.add_to(anchor), tz)
    if rule.offset.is_negative and rule.send_until is None:
        return due, _instant(anchor, tz)
    return due, _instant(_send_until(reminder).add_to(due), tz)


def describe(reminder: Reminder, record: Mapping[str, Any], due: datetime, tz: ZoneInfo) -> str:
    """The finding's reason, in words, with the due date in the branch's time zone."""
    rule = reminder.rule
    label = record.get("number") or f"#{record['id']}"
    anchor = record[rule.date]
    anchor_text = anchor.isoformat() if isinstance(anchor, date) else str(anchor)
    return (
        f"{reminder.table.name} {label}: {rule.date} {anchor_text}; "
        f"notice {rule.offset.spoken()}, due {due.astimezone(tz).date().isoformat()}"
    )


def _finding(reminder: Reminder, record: dict[str, Any], due: datetime, tz: ZoneInfo) -> Finding:
    rule = reminder.rule
    anchor = record[rule.date]
    return Finding(
        rule_id=rule.id,
        family=FAMILY,
        entity=reminder.table.name,
        entity_id=str(record["id"]),
        occurrence=anchor.isoformat(),
        state="due",
        reason=describe(reminder, record, due, tz),
        due_at=due,
        recipients=tuple(r.label for r in rule.notify),
        notices=rule.notices(),
        record=record,
        # What a letter needs to say why in the reader's words (templates' _layout/reasons.j2).
        details={
            "date": rule.date,
            "on": anchor,
            "offset": {
                "amount": rule.offset.amount,
                "unit": rule.offset.unit,
                "working": rule.offset.working,
            },
        },
    )


def _send_until(reminder: Reminder) -> Duration:
    return reminder.rule.send_until or DEFAULT_SEND_UNTIL_AFTER


def _is_instant(reminder: Reminder) -> bool:
    kind = reminder.table.c[reminder.rule.date].type
    return isinstance(getattr(kind, "impl", kind), DateTime)  # UtcDateTime decorates DateTime


def _instant(value: date | datetime, tz: ZoneInfo) -> datetime:
    """A date means the start of that day in the branch's time zone."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)
