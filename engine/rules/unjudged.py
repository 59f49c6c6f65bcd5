"""What a rule cannot judge for want of data, so that missing data is seen, not taken for
compliance.

A deadline's clock needs its start field (a complaint with no acceptance time is never timed)
and, with `by: <field>`, the deadline field (a call without a promised time has no deadline);
a reminder needs its date (a contract without an end date is never reminded). The candidate
queries pass such rows over; this counts them, per rule, branch and empty field, among the
rows the rule applies to (its `when` and `branches`) that are still open: a deadline's rows
whose clock has not stopped, every row of a reminder. A rule that says with `when:` what
happens to them (`when: promised_at is not null`) counts nothing.

Rules that read derived fields (the warranty view) are not counted: the view is the costly
part of a night. Counted once a day, with each branch's overdue summary, where the managers
read it and the run artifact records it per rule (engine.run).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal, or_, select

from engine.policy import CompiledRule, Policy
from engine.policy.branch_scope import applies
from engine.policy.models import END_OF_WORKING_DAY, DeadlineRule, ReminderRule


@dataclass(frozen=True, slots=True)
class Unjudged:
    """Open rows of one branch a rule could not judge because `field` is empty."""

    rule_id: str
    entity: str  # the rule's table
    field: str
    branch_id: int | None
    count: int

    @property
    def reason(self) -> str:
        """The run artifact's words for it (English, like every finding's reason)."""
        return f"{self.field} is empty"


def count_unjudged(
    conn: Connection, policy: Policy, as_of: datetime, branch_ids: Collection[int] | None
) -> list[Unjudged]:
    """Per deadline and reminder rule in effect at `as_of`, the open rows of each branch (of
    `branch_ids`, or all) it cannot judge, by empty field; one grouped query per rule."""
    found: list[Unjudged] = []
    for compiled in (*policy.deadlines, *policy.reminders):
        start = compiled.rule.effective_from
        if start is not None and as_of.date() < start:
            continue
        if compiled.views is not None:
            # Counting through the derived view (warranty terms) would read the whole
            # warranty book again each day, 10 s and more at a million calls.
            continue
        found += _count(conn, compiled, as_of, branch_ids)
    return found


def _count(
    conn: Connection,
    compiled: CompiledRule[Any],
    as_of: datetime,
    branch_ids: Collection[int] | None,
) -> Iterator[Unjudged]:
    table = compiled.table
    empty = dict(_empty_fields(compiled.rule, table, as_of))
    branch = table.c.branch_id if "branch_id" in table.c else literal(None)
    where = [or_(*empty.values()), *_open(compiled.rule, table, as_of)]
    if branch_ids is not None and "branch_id" in table.c:
        where.append(table.c.branch_id.in_(branch_ids))
    sums = [func.sum(case((missing, 1), else_=0)) for missing in empty.values()]
    query = (
        select(branch, *sums)
        .select_from(table)
        .where(*where, *applies(compiled, table, as_of))
        .group_by(branch)
    )
    for row in conn.execute(query):
        for name, count in zip(empty, row[1:], strict=True):
            if count:
                yield Unjudged(compiled.rule.id, compiled.rule.entity, name, row[0], int(count))


def _empty_fields(rule: Any, table: Any, as_of: datetime) -> Iterator[tuple[str, Any]]:
    """(field, condition that it is the empty field keeping the row from being judged)."""
    if isinstance(rule, ReminderRule):
        yield rule.date, table.c[rule.date].is_(None)
        return
    assert isinstance(rule, DeadlineRule)
    start = table.c[rule.start]
    yield rule.start, start.is_(None)
    if rule.by is not None and rule.by != END_OF_WORKING_DAY:
        yield rule.by, and_(start.is_not(None), start <= as_of, table.c[rule.by].is_(None))


def _open(rule: Any, table: Any, as_of: datetime) -> list[ColumnElement[bool]]:
    """A deadline's row whose clock would still run at `as_of`; every reminder row."""
    if isinstance(rule, ReminderRule):
        return []
    return [or_(table.c[stop].is_(None), table.c[stop] > as_of) for stop in rule.stop]
