"""Which daily and periodic parts a cycle does: those whose local time has come and not been met.

A part (digests, overdue summary, obligations, tallies, month close, KPI report; their times
are the policy's `schedule:`) is due for a scope, a branch or the company, when the latest
occurrence of its local time at or before `as_of`, on the scope's clocks, belongs to a period
that `parts_done` does not hold. The period is the local day of that occurrence; for the close,
which comes once a month on the ledger's close day, it is the month closed. So a part runs once
per local day however often cycles run, a first run does every part, and the first cycle after
downtime does what was missed, without any offset arithmetic: wall_clock_instant reads the
zone's own rules, skipped and repeated hours included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.db.models import Branch, PartDone
from engine.db.session import chunks
from engine.policy.schedule_spec import BRANCH_PARTS, PARTS, ScheduleSpec
from engine.scheduler import previous_occurrence

COMPANY = "company"
"""The scope of company-wide parts, and of head-office staff's digests (the ledger's zone)."""

_CHUNK = 300  # keys per statement: three bound values each, well under SQLite's limit

MONTH_CLOSE = "month_close"
"""The one part that comes once a month, on the ledger's close day, not every day."""


@dataclass(frozen=True, slots=True)
class DuePart:
    """One part to do for one scope and period, and the instant its local time came."""

    part: str
    scope: str  # a branch id as text, or COMPANY
    period: str  # the local day, 2026-12-06; for the close, the month closed, 2026-11
    at: datetime  # UTC

    def key(self) -> tuple[str, str, str]:
        """The record's key in parts_done."""
        return self.part, self.scope, self.period


@dataclass(frozen=True, slots=True)
class PartScopes:
    """Where a part is due: these branches, and the company (or head office) if `company`."""

    branches: frozenset[int]
    company: bool

    def __bool__(self) -> bool:
        return bool(self.branches) or self.company


@dataclass(frozen=True, slots=True)
class DueParts:
    """What a cycle at `as_of` has to do of the daily and periodic parts."""

    as_of: datetime
    items: tuple[DuePart, ...]

    def is_due(self, part: str) -> bool:
        """True when `part` is due for at least one scope."""
        return any(item.part == part for item in self.items)

    def scopes(self, part: str) -> PartScopes:
        """The branches (and whether the company) for which `part` is due."""
        mine = [item.scope for item in self.items if item.part == part]
        branches = frozenset(int(scope) for scope in mine if scope != COMPANY)
        return PartScopes(branches, COMPANY in mine)

    def artifact(self) -> list[dict[str, str]]:
        """The parts found due, for the run artifact: part, scope, period and when it came."""
        return [
            {"part": i.part, "scope": i.scope, "period": i.period, "at": i.at.isoformat()}
            for i in self.items
        ]


def occurrences(
    schedule: ScheduleSpec,
    branches: Mapping[int, str],
    ledger_zone: str,
    as_of: datetime,
    *,
    close_on_day: int,
) -> tuple[DuePart, ...]:
    """For every part and scope, its latest occurrence at or before `as_of` (no database)."""
    ledger = ZoneInfo(ledger_zone)
    zones = {str(branch): ZoneInfo(zone) for branch, zone in sorted(branches.items())}
    out: list[DuePart] = []
    for part in PARTS:
        scopes = dict(zones) if part in BRANCH_PARTS else {}
        if part not in BRANCH_PARTS or part == "digests":  # head office reads the ledger's
            scopes[COMPANY] = ledger
        at = time.fromisoformat(schedule.at(part))
        for scope, zone in scopes.items():
            found = _latest(part, at, zone, as_of, close_on_day)
            if found is not None:
                out.append(DuePart(part, scope, *found))
    return tuple(out)


def _latest(
    part: str, at: time, zone: ZoneInfo, as_of: datetime, close_on_day: int
) -> tuple[str, datetime] | None:
    today = as_of.astimezone(zone).date()
    if part != MONTH_CLOSE:
        # Yesterday's time may still lie ahead when a gap pushed it past midnight.
        days = [today - timedelta(days=n) for n in range(3)]
        found = previous_occurrence(at, zone, as_of, days)
        return None if found is None else (found[0].isoformat(), found[1])
    months = [_month_back(today, n).replace(day=close_on_day) for n in range(3)]
    found = previous_occurrence(at, zone, as_of, months)
    if found is None:
        return None
    closed = _month_back(found[0], 1)
    return f"{closed:%Y-%m}", found[1]


def _month_back(day: date, months: int) -> date:
    """The first of the month `months` before `day`'s."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def due_parts(
    conn: Connection,
    schedule: ScheduleSpec,
    branches: Mapping[int, str],
    ledger_zone: str,
    as_of: datetime,
    *,
    close_on_day: int,
) -> DueParts:
    """The parts due at `as_of`: their latest local time came, their period is not done.

    `branches` maps each branch id to its time zone (branch_zones reads them); `ledger_zone`
    and `close_on_day` are the policy's ledger settings.
    """
    candidates = occurrences(schedule, branches, ledger_zone, as_of, close_on_day=close_on_day)
    keys = [c.key() for c in candidates]
    done: set[tuple[str, str, str]] = set()
    columns = (PartDone.part, PartDone.scope, PartDone.period)
    for chunk in chunks(keys, _CHUNK):
        found = conn.execute(select(*columns).where(tuple_(*columns).in_(list(chunk))))
        done.update((part, scope, period) for part, scope, period in found)
    return DueParts(as_of, tuple(c for c in candidates if c.key() not in done))


def mark_done(conn: Connection, due: DueParts, run_id: str, parts_done_now: Iterable[str]) -> int:
    """Record the due parts of `parts_done_now` as done, in the caller's transaction; a record
    already there (a concurrent or repeated cycle) is kept. Returns the rows offered."""
    wanted = set(parts_done_now)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {"part": i.part, "scope": i.scope, "period": i.period, "run_id": run_id, "done_at": now}
        for i in due.items
        if i.part in wanted
    ]
    if rows:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(PartDone).on_conflict_do_nothing(), rows)
    return len(rows)


def branch_zones(conn: Connection) -> dict[int, str]:
    """Each branch's id and time zone."""
    return {branch: zone for branch, zone in conn.execute(select(Branch.id, Branch.timezone))}
