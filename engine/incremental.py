"""Incremental runs: when a run may judge only what changed or came due, and what it judges.

A run is incremental when the last successful run had the same policy and the same software
(the engine's and the holidays data's versions: a new release moves public holidays without
the policy changing), left a change marker,
was less than a day before (otherwise the run catches up the missed days, engine.rules.
catch_up) and at an earlier instant, no branch changed (calendars and time zones) and no rule
came into effect since. Then each rule that judges entities one by one (deadlines, reminders,
classifications) judges only:

- the entities touched since the marker: their row, or a row two foreign-key steps away,
  was written or deleted (engine.touched);
- for a deadline, the entities whose watch came due (the next warning point, deadline or
  escalation a full run noted for each running clock) and those whose start came since;
- for a reminder, the rows whose date made them come due since the last run: a range read on
  the date, or, for a derived date (a unit's warranty end), the watches come due.

Rules whose verdict moves with time in other ways (a deadline's or outcome's condition that
reads `as_of`, other than a window that only lets rows out) are judged in full. Obligations,
tallies and metrics run when their part is due, and then in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from engine.db.models import Run, Watch
from engine.db.session import chunks
from engine.expr.nodes import only_narrows_with_time, reads_as_of
from engine.policy import CompiledRule, Policy
from engine.rules import classification, deadline, reminder
from engine.rules.catch_up import missed_instants
from engine.rules.scope import Scope
from engine.touched import TOO_MANY, Changes, read_changes, touched

FULL, INCREMENTAL = "full", "incremental"
_CHUNK = 500
_SOFTWARE = ("aftersales", "holidays")
"""The packages whose versions a run records: the engine, and the public holidays it uses."""


@cache
def software() -> dict[str, str]:
    """The versions of the engine and of the holidays data, as a run records them."""
    found = {}
    for package in _SOFTWARE:
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # run from a source tree that was never installed
            found[package] = "unknown"
    return found


@dataclass(frozen=True)
class Plan:
    """How a run judges: in full, or only what changed or came due since `since`."""

    mode: str
    why: str
    since: datetime | None = None  # as_of of the last successful run
    changes: Changes | None = None  # set in incremental mode
    marker: int | None = None  # the last successful run's change marker
    # Entity table -> ids touched, worked out once for all the rules on the table.
    _touched: dict[str, frozenset[int] | None] = field(default_factory=dict, compare=False)

    def touched(self, conn: Connection, entity: str) -> frozenset[int] | None:
        """The entities of `entity` touched by the changes (engine.touched), or None."""
        if entity not in self._touched:
            assert self.changes is not None
            self._touched[entity] = touched(conn, self.changes, entity)
        return self._touched[entity]

    def artifact(self) -> dict[str, Any]:
        """The run artifact's `mode` part."""
        out: dict[str, Any] = {"mode": self.mode, "why": self.why}
        if self.changes is not None:
            out["rows_changed"] = {k: len(v) for k, v in sorted(self.changes.rows.items())}
        return out


def plan_run(conn: Connection, policy: Policy, as_of: datetime, *, full: str | None = None) -> Plan:
    """Decide the run's mode; `full` names a reason to judge everything regardless."""
    later = select(Run.id).where(Run.outcome == "success", Run.as_of >= as_of).limit(1)
    if conn.scalar(later) is not None:  # a run back in time: the markers went on without it
        return Plan(FULL, "a later run exists (a run back in time)")
    last = conn.execute(
        select(Run.as_of, Run.policy_hash, Run.change_marker, Run.software)
        .where(Run.outcome == "success", Run.as_of < as_of)
        .order_by(Run.as_of.desc())
        .limit(1)
    ).first()
    if last is None:
        return Plan(FULL, "first run")
    since, marker = last.as_of, last.change_marker
    if full is not None:
        return Plan(FULL, full, since, marker=marker)
    if last.policy_hash != policy.hash:
        return Plan(FULL, "the policy changed since the last run", since, marker=marker)
    if last.software != software():
        was = ", ".join(f"{k} {v}" for k, v in sorted((last.software or {}).items())) or "unknown"
        why = f"the software changed since the last run ({was} then)"
        return Plan(FULL, why, since, marker=marker)
    if _comes_into_effect(policy, since, as_of):
        return Plan(FULL, "a rule came into effect since the last run", since, marker=marker)
    if marker is None:
        return Plan(FULL, "the last run left no change marker", since)
    if missed_instants(since, as_of):
        return Plan(FULL, "more than a day since the last run: catching up", since, marker=marker)
    changes = read_changes(conn, marker)
    if changes.branches:
        return Plan(FULL, "a branch changed (calendar, time zone)", since, marker=marker)
    return Plan(INCREMENTAL, "policy unchanged since the last run", since, changes, marker)


def scope_for(
    conn: Connection, plan: Plan, compiled: CompiledRule[Any], family: ModuleType, as_of: datetime
) -> Scope | None:
    """What the rule judges: None for families judged whole (obligations, tallies), else a
    Scope, every candidate in a full run or when time moves the rule's verdict otherwise."""
    if family not in (deadline, reminder, classification):
        return None
    if plan.mode == FULL or plan.changes is None or _moves_with_time(compiled, family):
        return Scope(plan.since)
    ids = plan.touched(conn, compiled.rule.entity)
    if ids is None:
        return Scope(plan.since)
    if watched(compiled, family):
        ids = ids | _watches_due(conn, compiled.rule.id, as_of)
    if family is deadline:
        ids = ids | _started(conn, compiled, plan.since, as_of)
    return Scope(plan.since, frozenset(ids)) if len(ids) <= TOO_MANY else Scope(plan.since)


def watched(compiled: CompiledRule[Any], family: ModuleType) -> bool:
    """True for rules whose runs keep watches: deadlines, reminders on a derived date."""
    return family is deadline or (family is reminder and reminder.uses_watches(compiled))


def keep_watches(conn: Connection, rule_id: str, scope: Scope) -> None:
    """Store the next instants judging left: replacing all of the rule's (a full scope) or
    those of the entities judged."""
    gone = delete(Watch).where(Watch.rule_id == rule_id)
    if scope.ids is None:
        conn.execute(gone)
    else:
        for chunk in chunks(sorted(str(i) for i in scope.ids), _CHUNK):
            conn.execute(gone.where(Watch.entity_id.in_(chunk)))
    rows = [{"rule_id": rule_id, "entity_id": k, "due_at": v} for k, v in scope.watches.items()]
    for chunk in chunks(rows, _CHUNK):
        conn.execute(insert(Watch), list(chunk))


def judged_ids(scope: Scope | None) -> set[str] | None:
    """The entity ids a narrowed scope judged, as findings name them; None for all."""
    return None if scope is None or scope.ids is None else {str(i) for i in scope.ids}


def _comes_into_effect(policy: Policy, since: datetime, as_of: datetime) -> bool:
    """True when a rule's effective_from falls after the last run and by this one: the rule
    has never judged, so it has no watches yet."""
    for compiled in policy.rules():
        start = getattr(compiled.rule, "effective_from", None)
        if start is not None and since.date() < start <= as_of.date():
            return True
    return False


def _watches_due(conn: Connection, rule_id: str, as_of: datetime) -> set[int]:
    """The entities whose watch came due (a range read)."""
    due = select(Watch.entity_id).where(Watch.rule_id == rule_id, Watch.due_at <= as_of)
    return {int(entity_id) for entity_id in conn.scalars(due)}


def _started(
    conn: Connection, compiled: CompiledRule[Any], since: datetime | None, as_of: datetime
) -> set[int]:
    """A deadline's entities whose clock started since the last run (a start written ahead)."""
    start = compiled.table.c[compiled.rule.start]
    return set(conn.scalars(select(compiled.table.c.id).where(start > since, start <= as_of)))


def _moves_with_time(compiled: CompiledRule[Any], family: ModuleType) -> bool:
    """True when time alone can change what the rule finds for an unchanged entity beyond
    what watches (deadlines) and the date window (reminders) cover."""
    if family is deadline:
        return reads_as_of(compiled.condition)
    if not only_narrows_with_time(compiled.condition):
        return True
    if family is classification:
        return any(reads_as_of(e) for e in _outcome_conditions(compiled))
    return False


def _outcome_conditions(compiled: CompiledRule[Any]) -> Iterable[Any]:
    """A classification's table conditions and its outcomes' conditions."""
    yield from classification.row_conditions(compiled)
    yield from classification.outcome_conditions(compiled)
