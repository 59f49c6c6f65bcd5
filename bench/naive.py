"""The naive way to run the shipped policy, kept here only to measure the engine against it.

This is how most helpdesk tools run escalations: for every rule, load every row of its table as
an ORM object, test the condition in Python, fetch each row's status history with its own query,
and compute the clock row by row. It uses the engine's own pure pieces (expression evaluator,
working-time clock, reminder windows), so both find the same things and only the way of reading
and looping differs. It covers the reminder and deadline families, which hold most of the rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from engine.db.models import SERVICE_TABLES, Branch, Run, StatusChange
from engine.expr import evaluate as holds
from engine.policy import CompiledRule, Policy
from engine.rules import deadline, reminder

NAIVE_FAMILIES = ("reminder", "deadline")
_MODELS = {model.__tablename__: model for model in SERVICE_TABLES}


def naive_keys(engine: Engine, policy: Policy, as_of: datetime) -> dict[str, set[str]]:
    """The finding keys of each rule of NAIVE_FAMILIES, found the naive way."""
    out: dict[str, set[str]] = {}
    with Session(engine) as session:
        branches = {b.id: b for b in session.scalars(select(Branch))}
        for family in NAIVE_FAMILIES:
            for rule in policy.by_family()[family]:
                judge = _reminder if family == "reminder" else _deadline
                found = judge(session, rule, branches, policy, as_of)
                out[rule.rule.id] = {f.key for f in found}
    return out


def _records(
    session: Session, rule: CompiledRule[Any], branches: Mapping[int, Branch], as_of: datetime
) -> Iterator[dict[str, Any]]:
    """Every row of the rule's table as a dict, with its branch's zone and calendar."""
    model = _MODELS.get(rule.table.name)
    if model is not None and rule.table is not model.__table__:
        model = None  # a view adding derived fields: its rows, still looped in Python
    rows: Any = (
        session.scalars(select(model)).all()
        if model is not None
        else session.execute(select(rule.table)).mappings().all()
    )
    columns = [c.name for c in rule.table.columns]
    for row in rows:
        record = {c: (getattr(row, c) if model is not None else row[c]) for c in columns}
        branch = branches.get(record.get("branch_id"))  # type: ignore[arg-type]
        if branch is not None:
            record[deadline.TZ_LABEL] = branch.timezone
            record[deadline.CALENDAR_LABEL] = branch.calendar
        if rule.condition is None or holds(rule.condition, record, as_of):
            yield record


def _reminder(
    session: Session,
    rule: reminder.Reminder,
    branches: Mapping[int, Branch],
    policy: Policy,
    as_of: datetime,
) -> list[Any]:
    since = session.scalar(
        select(func.max(Run.as_of)).where(Run.outcome == "success", Run.as_of < as_of)
    )
    wanted = [r for r in _records(session, rule, branches, as_of) if r[rule.rule.date] is not None]
    return reminder.evaluate(rule, wanted, as_of, since)


def _deadline(
    session: Session,
    rule: deadline.Deadline,
    branches: Mapping[int, Branch],
    policy: Policy,
    as_of: datetime,
) -> list[Any]:
    spec = rule.rule
    found: list[Any] = []
    for record in _records(session, rule, branches, as_of):
        start = record[spec.start]
        stops = [record[s] for s in spec.stop]
        recent = any(s is not None and s > as_of - deadline.LATE_STOP_LOOKBACK for s in stops)
        if start is None or start > as_of or not (all(s is None for s in stops) or recent):
            continue
        pauses: dict[Any, Any] = {}
        if spec.pause_while:  # one query per row: the N+1 pattern of ORM loops
            history = session.scalars(
                select(StatusChange)
                .where(
                    StatusChange.service_request_id == record["id"],
                    StatusChange.changed_at <= as_of,
                )
                .order_by(StatusChange.changed_at, StatusChange.id)
            )
            pauses = deadline.pause_intervals(
                ((c.service_request_id, c.status, c.changed_at) for c in history), spec.pause_while
            )
        found += deadline.evaluate(rule, [record], pauses, policy.calendars, as_of)
    return found
