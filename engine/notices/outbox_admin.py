"""`aftersales outbox`: what the outbox holds, and a person's retry or cancel of one notice.

Counts by state come from `outbox_counts`, the one count `aftersales status` and `aftersales
deliver` both print. A retry puts a dead, failed or unknown notice back in the queue with the
recipient's current address; a cancel takes a notice out for good (delivery claims only pending
and failed rows, so a cancelled one is never sent, even by a delivery already running). Each is
recorded in `outbox_actions` with who, when and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from engine.db.models import OUTBOX_STATES, Customer, Notice, OutboxAction, Staff
from engine.errors import AftersalesError, UsageError

RETRYABLE = ("dead", "failed", "unknown")
# Not `sending` (its data may be on the wire), nor what already went out (sent, bundled).
CANCELLABLE = ("pending", "failed", "held", "dead", "unknown", "render_failed")


class NotChangeable(AftersalesError):
    """The notice does not exist, or its state does not allow the change (exit 1)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notice as `aftersales outbox` lists it."""

    id: int
    created_at: datetime
    template: str
    recipient: str
    state: str
    attempts: int
    reason: str


def outbox_counts(conn: Connection) -> dict[str, int]:
    """How many notices are in each state (states with none left out), in OUTBOX_STATES order."""
    counted = dict(conn.execute(select(Notice.status, func.count()).group_by(Notice.status)).all())
    return {state: counted[state] for state in OUTBOX_STATES if counted.get(state)}


def describe_counts(counts: dict[str, int]) -> str:
    """`outbox: 154 sent, 2 dead`: the line `status` and `deliver` both print."""
    return "outbox: " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "empty")


def list_notices(conn: Connection, states: Sequence[str], limit: int | None) -> list[OutboxRow]:
    """The notices in `states` (all when empty), newest first."""
    unknown = sorted(set(states) - set(OUTBOX_STATES))
    if unknown:
        raise UsageError(f"--state {', '.join(unknown)}: the states are {', '.join(OUTBOX_STATES)}")
    stmt = select(
        Notice.id, Notice.created_at, Notice.template, Notice.recipient_name,
        Notice.recipient_address, Notice.status, Notice.attempts, Notice.last_error,
    )  # fmt: skip
    if states:
        stmt = stmt.where(Notice.status.in_(states))
    stmt = stmt.order_by(Notice.id.desc()).limit(limit)
    return [_listed(row) for row in conn.execute(stmt)]


def _listed(row: Any) -> OutboxRow:
    recipient = f"{row.recipient_name} <{row.recipient_address or 'no address'}>"
    reason = row.last_error or ""
    return OutboxRow(
        row.id, row.created_at, row.template, recipient, row.status, row.attempts, reason
    )


def retry(conn: Connection, notice_id: int, *, by: str, at: datetime) -> str:
    """Queue a dead, failed or unknown notice again, to the recipient's current address;
    what was done, in words."""
    row = _notice(conn, notice_id, RETRYABLE, "retried")
    address = _current_address(conn, row.recipient_ref, row.recipient_address)
    if not address:
        raise NotChangeable(
            f"notice {notice_id} has no address to send to: record the recipient's email first"
        )
    # The full retry schedule again; should it die again, staff are asked again (told_at).
    changed = conn.execute(
        update(Notice)
        .where(Notice.id == notice_id, Notice.status == row.status)
        .values(status="pending", attempts=0, next_attempt_at=None, last_error=None,
                recipient_address=address, told_at=None)
    ).rowcount  # fmt: skip
    if not changed:
        raise NotChangeable(f"notice {notice_id} changed meanwhile; look again")
    _record(conn, row, "retry", by=by, at=at, reason=None)
    return f"notice {notice_id} queued again to {address or 'no address'} (was {row.status})"


def cancel(conn: Connection, notice_id: int, *, reason: str, by: str, at: datetime) -> str:
    """Take a notice out of the outbox for good; what was done, in words."""
    if not reason.strip():
        raise UsageError("--reason: say why the notice is cancelled")
    row = _notice(conn, notice_id, CANCELLABLE, "cancelled")
    changed = conn.execute(
        update(Notice)
        .where(Notice.id == notice_id, Notice.status == row.status)
        .values(status="cancelled", next_attempt_at=None,
                last_error=f"cancelled by {by} at {at:%Y-%m-%d %H:%M} UTC: {reason.strip()}")
    ).rowcount  # fmt: skip
    if not changed:
        raise NotChangeable(f"notice {notice_id} changed meanwhile; look again")
    _record(conn, row, "cancel", by=by, at=at, reason=reason.strip())
    return f"notice {notice_id} cancelled (was {row.status}): it will not be sent"


def _notice(conn: Connection, notice_id: int, allowed: Sequence[str], verb: str) -> Notice:
    row = conn.execute(select(Notice.__table__).where(Notice.id == notice_id)).first()
    if row is None:
        raise NotChangeable(f"no notice {notice_id} in the outbox")
    if row.status not in allowed:
        raise NotChangeable(
            f"notice {notice_id} is {row.status}: only {', '.join(allowed)} notices can be {verb}"
        )
    return row  # type: ignore[return-value]


def _current_address(conn: Connection, ref: str | None, queued_with: str | None) -> str | None:
    """The recipient's email address now (it may have been corrected since), else as queued."""
    kind, _, number = (ref or "").partition(":")
    table = {"customer": Customer, "staff": Staff}.get(kind)
    if table is None or not number.isdigit():
        return queued_with
    found = conn.execute(select(table.email).where(table.id == int(number))).first()
    return queued_with if found is None else found.email


def _record(
    conn: Connection, row: Notice, action: str, *, by: str, at: datetime, reason: str | None
) -> None:
    conn.execute(
        insert(OutboxAction).values(
            notice_id=row.id, action=action, status_before=row.status,
            error_before=row.last_error, by=by, at=at, reason=reason,
        )
    )  # fmt: skip
