"""Customer letters that could not be emailed become a task for staff: phone or post them.

A customer letter ends `dead` when the customer has no email address (set aside when it is
queued), or when the mail server refused it for good (a 5xx reply, an invalid address, retries
used up). Each cycle hands every such letter not yet handed over (`told_at` empty) to the
roles of `defaults.undeliverable.notify` at the customer's branch, else head office: one staff
letter per person, held for their digest, with the customer's phone and postal address, the
letter and why it failed. The letter is marked told in the same transaction, so each dead
letter makes its task once, however often cycles run. A letter that dies in a delivery is
handed over by the next cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from engine.db.models import Customer, Notice
from engine.db.session import chunks
from engine.notices.outbox import Letter, QueueReport, queue_letters
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy
from engine.policy.models import UNDELIVERABLE_NOTICE

_CHUNK = 500


def failure(last_error: str | None) -> dict[str, str | None]:
    """Why a letter died, as a kind a template can say in the reader's language, and the mail
    server's own answer when it gave one (quoted as the server wrote it)."""
    error = last_error or ""
    if error.startswith("no email address"):
        return {"kind": "no_address", "server_reply": None}
    if error.startswith("email address"):
        return {"kind": "bad_address", "server_reply": None}
    if error.startswith("gave up after"):
        return {"kind": "gave_up", "server_reply": error.partition("last: ")[2] or None}
    return {"kind": "refused", "server_reply": error or None}


def hand_over_dead_letters(
    conn: Connection,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    directory: Directory,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> QueueReport:
    """Queue a task for each customer letter that died and was not handed over yet; mark
    those letters told."""
    dead = conn.execute(
        select(Notice.__table__)
        .where(
            Notice.status == "dead",
            Notice.recipient_role == "customer",
            Notice.told_at.is_(None),
        )
        .order_by(Notice.id)
    ).all()
    report = QueueReport()
    if not dead:
        return report
    letters: list[Letter] = []
    untold: list[int] = []
    customers = _customers(conn, [row.recipient_ref for row in dead])
    for row in dead:
        customer = customers.get(row.recipient_ref) or {
            "name": row.recipient_name, "phone": None, "address": None, "email": None,
            "branch_id": None,
        }  # fmt: skip
        context = _context(row, customer, directory)
        asked = [
            Letter(f"undeliverable|{row.id}", person, UNDELIVERABLE_NOTICE,
                   {**context, "recipient": person.reader})
            for role in policy.defaults.undeliverable.notify
            for person in directory.holders(role, customer["branch_id"])
        ]  # fmt: skip
        if not asked:
            # Nobody to ask yet: the letter stays untold, and each run says so until someone
            # holds the role (a task is not lost for want of a person that day).
            roles = ", ".join(policy.defaults.undeliverable.notify)
            report.reasons[f"nobody in role {roles} to phone or post a letter"] += 1
            untold.append(row.id)
        letters += asked
    report.add(
        queue_letters(
            conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
        )
    )
    for ids in chunks([row.id for row in dead if row.id not in untold], _CHUNK):
        conn.execute(update(Notice).where(Notice.id.in_(ids)).values(told_at=as_of))
    return report


def _customers(conn: Connection, refs: list[str | None]) -> dict[str, dict[str, Any]]:
    """The customers behind `customer:N` references, keyed by the reference."""
    ids = sorted({int(ref.partition(":")[2]) for ref in refs if ref and ref[:9] == "customer:"})
    found: dict[str, dict[str, Any]] = {}
    table = Customer.__table__
    for chunk in chunks(ids, _CHUNK):
        for customer in conn.execute(select(table).where(table.c.id.in_(chunk))).mappings():
            found[f"customer:{customer['id']}"] = dict(customer)
    return found


def _context(row: Any, customer: dict[str, Any], directory: Directory) -> dict[str, Any]:
    branch = directory.branches.get(customer["branch_id"]) or {}
    return {
        "customer": {k: customer[k] for k in ("name", "phone", "address", "email")},
        "letter": {
            "id": row.id,
            "subject": row.subject,
            "template": row.template,
            "queued_at": row.created_at,
            "text": row.body_text,
        },
        "failure": failure(row.last_error),
        "branch": branch,
        "timezone": row.timezone or branch.get("timezone", "UTC"),
    }
