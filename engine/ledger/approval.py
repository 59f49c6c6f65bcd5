"""Approval before money is announced (002 (七)2: 呈总经理核准后复印三份…).

With `ledger.approval`, the entries a run books for a branch (in the approval's `branches`)
are booked as usual but held: one `ledger_approvals` row per branch and closing month records
the run and the range of entries, and the approver (`approval.by`) is told the month waits.
`aftersales approve PERIOD --by NAME` records who approved and when; the next run queues each
person's reward/penalty notice and its copies (accounting, payroll) for the approved entries
and records itself as the release. Notices are only ever queued by runs, under the run lock,
with the policy and templates checked; the command writes one row and nothing else.

A correction booked after an approval is held again and waits for its own approval: the
general manager approved amounts, and a changed amount is a new decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from engine.db.models import Branch, LedgerApproval, LedgerClose, LedgerEntry
from engine.errors import AftersalesError, UsageError
from engine.findings import Finding
from engine.ledger.book import LEDGER_DETAILS
from engine.ledger.periods import Period
from engine.notices.recipients import HEAD_OFFICE as HEAD_OFFICE_BRANCH
from engine.policy.branch_scope import branch_in_scope
from engine.policy.tally_spec import LedgerSettings


class NotApprovable(AftersalesError):
    """Nothing waits for approval in that period: not closed, or already approved (exit 1)."""


HEAD_OFFICE = HEAD_OFFICE_BRANCH["code"]
"""How `aftersales approve --branch` and the lists name head office's people (no branch)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Entries of one branch and closing month held for approval."""

    period: str
    branch_id: int | None
    branch: str  # its code, or HEAD_OFFICE
    entries: int
    held_at: datetime
    run_id: str

    def artifact(self) -> dict[str, Any]:
        """As the run artifact and `aftersales status --json` show it."""
        return {
            "period": self.period,
            "branch": self.branch,
            "entries": self.entries,
            "held_since": self.held_at.isoformat(),
            "run_id": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class Release:
    """Approved entries whose notices a run now queues."""

    period: str
    branch_id: int | None
    approved_by: str
    approved_at: datetime
    rows: tuple[Mapping[str, Any], ...]  # their ledger_entries rows


def needs_approval(ledger: LedgerSettings, branch: Mapping[str, Any] | None) -> bool:
    """True when a branch's entries wait for approval before anyone is told."""
    approval = ledger.approval
    return approval is not None and branch_in_scope(approval.branches, branch)


def hold(
    conn: Connection, held: Sequence[Finding], *, run_id: str, as_of: datetime
) -> list[dict[str, Any]]:
    """Record this run's held entries, one row per branch and closing month (returned)."""
    if not held:
        return []
    entries = LedgerEntry.__table__
    keys = [f.key for f in held]
    found = conn.execute(select(entries.c.key, entries.c.id).where(entries.c.key.in_(keys)))
    ids = dict(found.all())
    groups: dict[tuple[str, int], tuple[int | None, list[int]]] = {}
    for finding in held:
        month = Period.parse(finding.occurrence).closing_month.key
        branch = finding.details[LEDGER_DETAILS]["branch_id"]
        groups.setdefault((month, branch or 0), (branch, []))[1].append(ids[finding.key])
    rows = [
        {
            "period": month,
            "branch_id": branch,
            "first_entry_id": min(found),
            "last_entry_id": max(found),
            "entries": len(found),
            "run_id": run_id,
            "held_at": as_of,
        }
        for (month, _), (branch, found) in sorted(groups.items())
    ]
    conn.execute(LedgerApproval.__table__.insert(), rows)
    return rows


def release(conn: Connection, *, run_id: str) -> list[Release]:
    """The approved entries not released yet, now recorded as released by this run."""
    table, entries = LedgerApproval.__table__, LedgerEntry.__table__
    approved = conn.execute(
        select(table)
        .where(table.c.approved_by.is_not(None), table.c.released_run_id.is_(None))
        .order_by(table.c.id)
    ).mappings()
    out: list[Release] = []
    for approval in list(approved):
        rows = conn.execute(
            select(entries)
            .where(
                entries.c.id.between(approval["first_entry_id"], approval["last_entry_id"]),
                _same_branch(entries.c.branch_id, approval["branch_id"]),
            )
            .order_by(entries.c.id)
        ).mappings()
        mine = tuple(
            r for r in rows if Period.parse(r["period"]).closing_month.key == approval["period"]
        )
        out.append(
            Release(
                approval["period"],
                approval["branch_id"],
                approval["approved_by"],
                approval["approved_at"],
                mine,
            )
        )
        conn.execute(
            update(table).where(table.c.id == approval["id"]).values(released_run_id=run_id)
        )
    return out


def releasable(conn: Connection) -> bool:
    """True when some approved entries have not been announced yet."""
    table = LedgerApproval.__table__
    found = select(table.c.id).where(
        table.c.approved_by.is_not(None), table.c.released_run_id.is_(None)
    )
    return conn.scalar(found.limit(1)) is not None


def waiting(conn: Connection) -> list[Waiting]:
    """Every branch and month whose entries wait for approval, oldest first."""
    table, branches = LedgerApproval.__table__, Branch.__table__
    rows = conn.execute(
        select(table, branches.c.code)
        .outerjoin(branches, branches.c.id == table.c.branch_id)
        .where(table.c.approved_by.is_(None))
        .order_by(table.c.period, table.c.id)
    ).mappings()
    merged: dict[tuple[str, int | None], Waiting] = {}
    for row in rows:
        key = (row["period"], row["branch_id"])
        was = merged.get(key)
        merged[key] = Waiting(
            row["period"],
            row["branch_id"],
            row["code"] or HEAD_OFFICE,
            row["entries"] + (was.entries if was else 0),
            was.held_at if was else row["held_at"],
            row["run_id"],
        )
    return list(merged.values())


def approve(
    conn: Connection, period: str, *, by: str, branch: str | None, at: datetime
) -> list[Waiting]:
    """Record that `by` approved what waits for `period` (a month, or a quarter: the month it
    closes with), at one branch or at all; what was approved, or NotApprovable."""
    month = Period.parse(period).closing_month
    if not by.strip():
        raise UsageError("--by: the name of whoever approves, e.g. --by '王总'")
    branch_id = _branch_id(conn, branch) if branch else None
    pending = [
        w
        for w in waiting(conn)
        if w.period == month.key and (branch is None or w.branch_id == branch_id)
    ]
    where = f"{month.key}" + (f" at {branch}" if branch else "")
    if not pending:
        raise NotApprovable(_why_nothing(conn, month, branch_id, branch is not None, where))
    table = LedgerApproval.__table__
    conn.execute(
        update(table)
        .where(
            table.c.period == month.key,
            table.c.approved_by.is_(None),
            *([_same_branch(table.c.branch_id, branch_id)] if branch else []),
        )
        .values(approved_by=by.strip(), approved_at=at)
    )
    return pending


def _why_nothing(
    conn: Connection, month: Period, branch_id: int | None, one_branch: bool, where: str
) -> str:
    table = LedgerApproval.__table__
    stmt = select(table.c.approved_by, table.c.approved_at).where(table.c.period == month.key)
    if one_branch:
        stmt = stmt.where(_same_branch(table.c.branch_id, branch_id))
    last = conn.execute(stmt.order_by(table.c.id.desc())).first()
    if last is not None:
        return f"{where} is already approved (by {last[0]}, {last[1]:%Y-%m-%d %H:%M} UTC)"
    closes = LedgerClose.__table__
    keys = [month.key, *(p.key for p in _quarters_closing_with(month))]
    if conn.scalar(select(closes.c.id).where(closes.c.period.in_(keys)).limit(1)) is None:
        return f"{where} is not closed yet: nothing is booked before its close"
    return f"nothing of {where} waits for approval (the policy held no entries for it)"


def _quarters_closing_with(month: Period) -> list[Period]:
    quarter = Period.containing("quarter", month.start)
    return [quarter] if quarter.closing_month == month else []


def _branch_id(conn: Connection, code: str) -> int | None:
    """The branch of `code`; None for head office (HQ, unless a branch has that code)."""
    branches = Branch.__table__
    found = conn.scalar(select(branches.c.id).where(branches.c.code == code))
    if found is None and code == HEAD_OFFICE:
        return None
    if found is None:
        known = ", ".join(conn.scalars(select(branches.c.code).order_by(branches.c.code)))
        raise UsageError(
            f"--branch {code!r}: no such branch (branches: {known}; {HEAD_OFFICE}: head office)"
        )
    return int(found)


def _same_branch(column: Any, branch_id: int | None) -> Any:
    return column.is_(None) if branch_id is None else column == branch_id
