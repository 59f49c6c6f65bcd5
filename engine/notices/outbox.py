"""Turn new findings into rendered notices in the outbox, one row per recipient.

Each row's dedup key (finding, role, recipient) is unique in the table, so a notice exists
once however often a night is re-run. A notice that cannot be rendered or has no address is
kept, set aside as `dead` with its reason, so nothing is lost silently.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.db.catalogue import entity_table
from engine.db.models import Notice
from engine.findings import Finding
from engine.notices.recipients import Directory, Recipient
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy


@dataclass(frozen=True, slots=True)
class Letter:
    """A notice not tied to one finding (a digest, a close notice): its key, reader and context."""

    key: str
    person: Recipient
    template: str
    context: dict[str, Any]


@dataclass
class QueueReport:
    """What queueing did: rows queued, set aside (with reasons), already present."""

    queued: int = 0
    set_aside: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def message_id(dedup_key: str, mail_from: str) -> str:
    """A Message-ID that is the same every time the same notice is built."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "aftersales.invalid"
    return f"<{hashlib.sha256(dedup_key.encode()).hexdigest()[:32]}@{domain}>"


def queue_notices(
    conn: Connection,
    findings: Sequence[Finding],
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> QueueReport:
    """Render and insert one outbox row per recipient of each finding."""
    report = QueueReport()
    customer_ids = [f.record["customer_id"] for f in findings if f.record.get("customer_id")]
    directory = Directory(conn, customer_ids)
    titles = {r.rule.id: r.rule for r in policy.rules()}
    rows: list[dict[str, Any]] = []
    for finding in findings:
        table = entity_table(finding.entity)
        for role, template, otherwise in finding.notices:
            people = directory.resolve(table, role, finding.record)
            if not people and otherwise:
                people = directory.resolve(table, otherwise, finding.record)
            if not people:
                # Kept as a dead row, so the gap shows in the outbox and can be followed up.
                nobody = Recipient(role, "nobody", 0, f"(nobody in role {role})", None, "en")
                row = _blank(finding.key, nobody, template, mail_from, run_id, as_of)
                rows.append({**row, "status": "dead", "last_error": f"nobody in role {role}"})
                continue
            for person in people:
                context = _context(finding, person, directory, titles[finding.rule_id], as_of)
                rows.append(
                    _row(
                        finding.key, person, template, templates, context, mail_from, run_id, as_of
                    )
                )
    _insert(conn, rows, report)
    return report


def queue_letters(
    conn: Connection,
    letters: Sequence[Letter],
    *,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> QueueReport:
    """Render and insert one outbox row per letter; a letter's key makes it exist once."""
    report = QueueReport()
    rows = [
        _row(
            letter.key,
            letter.person,
            letter.template,
            templates,
            {"as_of": as_of, **letter.context},
            mail_from,
            run_id,
            as_of,
        )
        for letter in letters
    ]
    _insert(conn, rows, report)
    return report


def _insert(conn: Connection, rows: list[dict[str, Any]], report: QueueReport) -> None:
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Notice).on_conflict_do_nothing(index_elements=["dedup_key"])
    for status, error in conn.execute(stmt.returning(Notice.status, Notice.last_error), rows):
        if status == "pending":
            report.queued += 1
        else:
            report.set_aside += 1
            report.reasons[(error or status).split(":")[0]] += 1


def _context(
    finding: Finding, person: Recipient, directory: Directory, rule: Any, as_of: datetime
) -> dict[str, Any]:
    branch = directory.branches.get(finding.record.get("branch_id")) or {}  # type: ignore[arg-type]
    customer = directory.customers.get(finding.record.get("customer_id"))  # type: ignore[arg-type]
    return {
        "rule": {"id": rule.id, "title": rule.title, "source": rule.source or ""},
        "finding": {
            "state": finding.state,
            "due_at": finding.due_at,
            "occurrence": finding.occurrence,
            "reason": finding.reason,
            "details": finding.details,
        },
        "entity": finding.record,
        "customer": customer,
        "branch": branch,
        "recipient": {"name": person.name, "role": person.role, "email": person.address},
        "as_of": as_of,
        "timezone": branch.get("timezone", "UTC"),
    }


def _row(
    key: str,
    person: Recipient,
    template: str,
    templates: NoticeTemplates,
    context: dict[str, Any],
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> dict[str, Any]:
    row = _blank(key, person, template, mail_from, run_id, as_of)
    try:
        rendered = templates.render(template, person.locale, context)
    except Exception as exc:  # an operator's template must never sink the night
        reason = f"cannot render: {type(exc).__name__}: {exc}"
        return {**row, "status": "dead", "last_error": reason}
    return _filled(row, person, rendered.subject, rendered.text, rendered.html, rendered.locale)


def _blank(
    key: str, person: Recipient, template: str, mail_from: str, run_id: str, as_of: datetime
) -> dict[str, Any]:
    """An outbox row for `person` with nothing rendered yet."""
    dedup = f"{key}|{person.role}|{person.ref}"
    return {
        "dedup_key": dedup,
        "message_id": message_id(dedup, mail_from),
        "finding_key": key,
        "template": template,
        "recipient_role": person.role,
        "recipient_name": person.name,
        "recipient_address": person.address,
        "locale": person.locale,
        "subject": "",
        "body_text": "",
        "body_html": None,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
        "created_at": as_of,
        "sent_at": None,
        "run_id": run_id,
    }


def _filled(
    row: dict[str, Any],
    person: Recipient,
    subject: str,
    text: str,
    html: str | None,
    locale: str,
) -> dict[str, Any]:
    """The row with its letter; set aside when the person has no address."""
    row = {**row, "subject": subject, "body_text": text, "body_html": html, "locale": locale}
    if not person.address:
        row.update(status="dead", last_error=f"no email address: {person.kind} {person.id}")
    return row


def queue_plain_notice(
    conn: Connection,
    *,
    key: str,
    template: str,
    templates: NoticeTemplates,
    recipient: Mapping[str, Any],
    context: dict[str, Any],
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> None:
    """Queue an engine notice to one staff member (not from a finding), once per `key`.

    If the template cannot be rendered the notice still goes out as plain facts: it reports
    trouble, and must not fail because of the trouble it reports.
    """
    person = Recipient(
        role=recipient["role"],
        kind="staff",
        id=recipient["id"],
        name=recipient["name"],
        address=recipient.get("email"),
        locale=recipient.get("locale") or "en",
    )
    values = {**context, "recipient": {"name": person.name, "role": person.role}}
    row = _blank(key, person, template, mail_from, run_id, as_of)
    try:
        rendered = templates.render(template, person.locale, values)
        row = _filled(row, person, rendered.subject, rendered.text, rendered.html, rendered.locale)
    except Exception:  # the plain facts still go out
        row = _filled(row, person, template.replace("_", " "), _plain(context), None, "en")
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(Notice).on_conflict_do_nothing(index_elements=["dedup_key"]), row)


def _plain(context: Mapping[str, Any]) -> str:
    lines = []
    for name, value in context.items():
        if isinstance(value, list):
            lines += [f"{name}:", *(f"  {item}" for item in value)]
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"
