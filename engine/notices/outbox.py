"""Turn new findings into notices in the outbox, one row per recipient.

Each row's dedup key (finding, role, recipient) is unique in the table, so a notice exists
once however often a night is re-run. A notice that has no address is kept, set aside as
`dead` with its reason; one whose template cannot be rendered (an error, or past the render
limits) is kept as `render_failed` with the template file and line, and the night goes on;
so is a customer's letter with no template in the customer's locale nor in the one the policy
declares for it (engine.notices.languages). Nothing is lost silently.

Customers get one message per notice, rendered when it is queued: the text sent is the record.
A staff member's notices are queued `held`, as data (template and context, engine.notices.
context), and wait across cycles until `bundle_digests` sends them as one digest per person
(items grouped by kind, attachments carried along), rendering only the items it shows; a
single item goes out on its own. An `urgent` staff notice is rendered and queued `pending`
at once, for the same cycle's delivery; the person's next digest lists it as already sent.
Letters (reports, close notices) are rendered when queued, for staff too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.db.catalogue import entity_table
from engine.db.models import Notice, NoticeAttachment, Staff
from engine.db.session import chunks
from engine.findings import Finding
from engine.notices.context import dump_context
from engine.notices.languages import customer_locale, no_template_reason
from engine.notices.recipients import Directory, Recipient
from engine.notices.templates import NoticeTemplates, render_failure
from engine.policy import Policy

DIGEST_TEMPLATE = "digest"
_BATCH = 1000
_BATCH_CHARS = 8_000_000


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a notice; with a `content_id` it is an image shown inline in the HTML."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


Files = tuple[Attachment, ...] | Callable[[], tuple[Attachment, ...]]
"""A letter's files, or how to make them: charts are drawn only for letters not yet queued."""


@dataclass(frozen=True, slots=True)
class Letter:
    """A notice not tied to one finding (a report, a close notice): its key, reader and context."""

    key: str
    person: Recipient
    template: str
    context: dict[str, Any]
    attachments: Files = ()


@dataclass
class QueueReport:
    """What queueing did: rows queued, set aside (with reasons), already present."""

    queued: int = 0
    set_aside: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: QueueReport) -> None:
        """Count another queueing's rows in this one."""
        self.queued += other.queued
        self.set_aside += other.set_aside
        self.reasons.update(other.reasons)


def message_id(dedup_key: str, mail_from: str) -> str:
    """A Message-ID that is the same every time the same notice is built."""
    return f"<{hashlib.sha256(dedup_key.encode()).hexdigest()[:32]}@{_domain(mail_from)}>"


@lru_cache(maxsize=8)
def _domain(mail_from: str) -> str:
    # Parsed once: one sender for a whole night of letters.
    return parseaddr(mail_from)[1].rpartition("@")[2] or "aftersales.invalid"


def queue_notices(
    conn: Connection,
    findings: Sequence[Finding],
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    directory: Directory | None = None,
) -> QueueReport:
    """Insert one outbox row per recipient of each finding: customers' and urgent notices
    rendered, other staff items held as data for their digest. `directory`, if given, is
    the run's, read once (a site's staff are many)."""
    report = QueueReport()
    customer_ids = [f.record["customer_id"] for f in findings if f.record.get("customer_id")]
    if directory is None:
        directory = Directory(conn, roles=policy.roles)
    directory.read_customers(conn, customer_ids)
    titles = {r.rule.id: r.rule for r in policy.rules()}
    fallback = policy.defaults.customer_fallback
    rows: list[dict[str, Any]] = []
    for finding in findings:
        table = entity_table(finding.entity)
        for plan in finding.notices:
            role, people = directory.reach(table, plan, finding.record)
            template, urgent = plan.template, plan.urgent
            if not people:
                # Kept as a dead row, so the gap shows in the outbox and can be followed up.
                nobody = Recipient(role, "nobody", 0, f"(nobody in role {role})", None, "en")
                row = blank_row(finding.key, nobody, template, mail_from, run_id, as_of)
                rows.append({**row, "status": "dead", "last_error": f"nobody in role {role}"})
                continue
            rule = titles[finding.rule_id]
            for person in people:
                context = finding_context(finding, person, directory, rule, as_of)
                row = blank_row(
                    finding.key, person, template, mail_from, run_id, as_of, context["timezone"]
                )
                staff = person.kind == "staff"
                if staff and not urgent:
                    rows.append(_held_as_data(row, person, templates, context))
                elif staff:  # urgent staff notices: sent this cycle
                    row["urgent"] = True
                    rows.append(render_row(row, person, templates, context))
                else:
                    rows.append(_customer_row(row, person, templates, context, fallback))
        if len(rows) >= _BATCH:  # rendered letters are large: hold one batch, not the night
            insert_rows(conn, rows, {}, report)
            rows = []
    insert_rows(conn, rows, {}, report)
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
    """Render and insert one outbox row per letter; a letter's key makes it exist once.

    Letters already in the outbox (a report queued by an earlier night) are neither rendered
    nor given their files again."""
    report = QueueReport()
    rows: list[dict[str, Any]] = []
    files: dict[str, tuple[Attachment, ...]] = {}
    held = 0  # characters of the rows not yet inserted
    keys = [dedup_key(letter.key, letter.person) for letter in letters]
    queued: set[str] = set()
    for chunk in chunks(keys, _BATCH):
        queued.update(conn.scalars(select(Notice.dedup_key).where(Notice.dedup_key.in_(chunk))))
    for letter, key in zip(letters, keys, strict=True):
        if key in queued:
            continue
        context = {"as_of": as_of, **letter.context}
        row = blank_row(
            letter.key, letter.person, letter.template, mail_from, run_id, as_of,
            context.get("timezone"),
        )  # fmt: skip
        row = _rendered(row, letter.person, templates, context)
        rows.append(row)
        made = letter.attachments() if callable(letter.attachments) else letter.attachments
        if made:
            files[row["dedup_key"]] = made
        held += len(row["body_text"]) + len(row["body_html"] or "")
        # A month's penalty letters at a large site are tens of thousands, and a branch's KPI
        # report is a large page: hold a bounded batch, not all of them.
        if len(rows) >= _BATCH or held >= _BATCH_CHARS:
            insert_rows(conn, rows, files, report)
            rows, files, held = [], {}, 0
    insert_rows(conn, rows, files, report)
    return report


def branch_letters(
    directory: Directory,
    roles: Sequence[str],
    branch_id: int | None,
    reasons: Counter[str],
    *,
    key: str,
    template: str,
    context: dict[str, Any],
    attachments: Files = (),
) -> list[Letter]:
    """A branch report to each person holding one of `roles` for that branch."""
    staff = entity_table("staff")
    letters: list[Letter] = []
    for role in roles:
        readers = directory.resolve(staff, role, {"branch_id": branch_id})
        if not readers:
            reasons[f"nobody in role {role}"] += 1
        letters += [
            Letter(key, reader, template, {**context, "recipient": reader.reader}, attachments)
            for reader in readers
        ]
    return letters


def insert_rows(
    conn: Connection,
    rows: list[dict[str, Any]],
    files: Mapping[str, Sequence[Attachment]],
    report: QueueReport,
) -> None:
    """Insert the rows not yet in the outbox, and the attachments of those just inserted."""
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Notice).on_conflict_do_nothing(index_elements=["dedup_key"])
    returning = stmt.returning(Notice.id, Notice.dedup_key, Notice.status, Notice.last_error)
    attached: list[dict[str, Any]] = []
    for notice_id, dedup_key, status, error in conn.execute(returning, rows):
        if status in ("pending", "held"):
            report.queued += 1
        else:
            report.set_aside += 1
            report.reasons[(error or status).split(":")[0]] += 1
        for attachment in files.get(dedup_key, ()):
            attached.append({"notice_id": notice_id, **attachment_row(attachment)})
    if attached:
        conn.execute(insert(NoticeAttachment), attached)


def attachment_row(attachment: Attachment) -> dict[str, Any]:
    """An attachment as the columns of its `notice_attachments` row."""
    return {
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "content_id": attachment.content_id,
        "data": attachment.data,
    }


def finding_context(
    finding: Finding, person: Recipient, directory: Directory, rule: Any, as_of: datetime
) -> dict[str, Any]:
    """The variables a finding's notice template gets (see docs/policy.md, templates)."""
    branch = directory.branches.get(finding.record.get("branch_id")) or {}  # type: ignore[arg-type]
    customer = directory.customers.get(finding.record.get("customer_id"))  # type: ignore[arg-type]
    return {
        # `titles`: every locale's, for the template to take the one it is rendered in.
        "rule": {
            "id": rule.id,
            "title": rule.title,
            "titles": rule.localized_titles(),
            "source": rule.source or "",
        },
        "finding": {
            "family": finding.family,
            "state": finding.state,
            "due_at": finding.due_at,
            "amount": finding.amount,
            "currency": finding.currency,
            "occurrence": finding.occurrence,
            "reason": finding.reason,
            "details": finding.details,
        },
        "entity": finding.record,
        "customer": customer,
        "branch": branch,
        "recipient": person.reader,
        "as_of": as_of,
        "timezone": branch.get("timezone", "UTC"),
    }


def _rendered(
    row: dict[str, Any], person: Recipient, templates: NoticeTemplates, context: dict[str, Any]
) -> dict[str, Any]:
    """The row with its letter rendered now; a staff letter is held for the person's digest."""
    row = render_row(row, person, templates, context)
    if row["status"] == "pending" and person.kind == "staff":
        row["status"] = "held"  # for the person's digest (bundle_digests)
    return row


def render_row(
    row: dict[str, Any], person: Recipient, templates: NoticeTemplates, context: dict[str, Any]
) -> dict[str, Any]:
    """The row with its letter, or `render_failed` with the template line."""
    try:
        rendered = templates.render(row["template"], person.locale, context)
    except Exception as exc:  # an operator's template must never sink the night
        return {**row, "status": "render_failed", "last_error": render_failure(exc)}
    return filled_row(row, person, rendered.subject, rendered.text, rendered.html, rendered.locale)


def _customer_row(
    row: dict[str, Any],
    person: Recipient,
    templates: NoticeTemplates,
    context: dict[str, Any],
    fallback: Mapping[str, str],
) -> dict[str, Any]:
    """A customer's letter in their locale or the one the policy declares for it; set aside
    (`render_failed`, with the reason) rather than sent in a language nobody chose."""
    have = templates.locales(row["template"])
    locale = customer_locale(have, person.locale, fallback)
    if have and locale is None:
        reason = no_template_reason(row["template"], person.locale, have)
        return {**row, "status": "render_failed", "last_error": reason}
    return render_row(row, replace(person, locale=locale or person.locale), templates, context)


def _held_as_data(
    row: dict[str, Any], person: Recipient, templates: NoticeTemplates, context: dict[str, Any]
) -> dict[str, Any]:
    """A staff item held for its digest as template and context, rendered only if shown."""
    try:
        stored = dump_context(context)
    except TypeError:  # a value JSON cannot restore exactly: render it now, as letters are
        return _rendered(row, person, templates, context)
    row = filled_row(row, person, "", "", None, person.locale)
    if row["status"] == "pending":
        row.update(status="held", context=stored)
    return row


def dedup_key(key: str, person: Recipient) -> str:
    """The outbox key of one notice for one reader: it exists once."""
    return f"{key}|{person.role}|{person.ref}"


def blank_row(
    key: str,
    person: Recipient,
    template: str,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    timezone: str | None = None,
) -> dict[str, Any]:
    """An outbox row for `person` with nothing rendered yet."""
    dedup = dedup_key(key, person)
    return {
        "dedup_key": dedup,
        "message_id": message_id(dedup, mail_from),
        "finding_key": key,
        "template": template,
        "recipient_role": person.role,
        "recipient_name": person.name,
        "recipient_address": person.address,
        "recipient_ref": person.ref,
        "timezone": timezone,
        "digest_id": None,
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
        "urgent": False,
        "context": None,
        "listed_in": None,
    }


def filled_row(
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
    values = {**context, "recipient": person.reader}
    row = blank_row(key, person, template, mail_from, run_id, as_of)
    try:
        done = templates.render(template, person.locale, values)
        row = filled_row(row, person, done.subject, done.text, done.html, done.locale)
    except Exception:  # the plain facts still go out
        row = filled_row(row, person, template.replace("_", " "), _plain(context), None, "en")
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(Notice).on_conflict_do_nothing(index_elements=["dedup_key"]), row)


def alert_operations(
    conn: Connection,
    *,
    templates: NoticeTemplates,
    mail_from: str,
    key: str,
    template: str,
    context: dict[str, Any],
    run_id: str,
    as_of: datetime,
) -> int:
    """Queue an engine notice to every active `operations` staff member; how many."""
    staff = Staff.__table__
    contacts = conn.execute(
        select(staff).where(staff.c.role == "operations", staff.c.active.is_(True))
    ).mappings()
    count = 0
    for person in contacts:
        queue_plain_notice(
            conn, key=key, template=template, templates=templates, recipient=person,
            context=context, mail_from=mail_from, run_id=run_id, as_of=as_of,
        )  # fmt: skip
        count += 1
    return count


def _plain(context: Mapping[str, Any]) -> str:
    lines = []
    for name, value in context.items():
        if isinstance(value, list):
            lines += [f"{name}:", *(f"  {item}" for item in value)]
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"
