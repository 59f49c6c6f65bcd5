"""Bundle each person's held staff items into one digest: one message, items grouped by kind.

`queue_notices` and `queue_letters` leave staff rows `held`; they wait across cycles until the
person's branch's digest time comes (`schedule: digests:`), when `bundle_digests` looks at
every held row of the people of those branches: a person with one item gets it on its own
(`pending`); a person with several gets one digest row, and the items become `bundled` with
`digest_id` pointing at it. Items keep their own dedup keys, so each still exists once and
`explain` can follow an item to the message it went out in. Attachments stay on the items;
delivery gathers them into the digest's message.

A finding's staff item waits as data (its template and context, engine.notices.context) and is
rendered here, only if the digest shows it (the first SHOWN of its kind) or it goes alone; the
rest are counted. An item whose rendering fails is `render_failed` with its template line, and
operations are alerted; the digest goes out with the others. Urgent items went out on their own
in the cycle that found them: the person's next digest lists them as already sent, each once
(`listed_in` records the digest that did).
"""

from __future__ import annotations

import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from engine.db.models import Notice, Staff
from engine.db.session import chunks
from engine.notices.context import load_context
from engine.notices.outbox import (
    DIGEST_TEMPLATE,
    QueueReport,
    alert_operations,
    blank_row,
    insert_rows,
    render_row,
)
from engine.notices.recipients import Recipient
from engine.notices.templates import NoticeTemplates

SHOWN = 50
"""Items of one kind a digest shows in full; the rest are counted (a reader skims, and at a
large site a supervisor's night can hold tens of thousands: each stays an outbox row of its
own, bundled to the digest, and the night's reports list them all)."""

RENDER_FAILED_ALERT = "render_failed"
"""The template of the alert to operations about items that could not be rendered."""

# The layout marks the letter's own content, so a digest can show it without the footer.
_CONTENT = re.compile(r"<!--content-->(.*?)<!--/content-->", re.S)
_BODY = re.compile(r"<body[^>]*>(.*?)</body>", re.S | re.I)
_CHUNK = 1000  # ids per UPDATE ... IN (...)
# Urgent items a digest can list as already sent: those that went, or are going, out.
_OUT = ("pending", "sending", "sent", "failed", "unknown")


@dataclass
class _Held:
    """One person's held items, kept small: a night can hold hundreds of thousands."""

    ids: array[int] = field(default_factory=lambda: array("q"))
    per_kind: Counter[str] = field(default_factory=Counter)
    shown: list[int] = field(default_factory=list)  # the first SHOWN items of each kind

    def add(self, notice_id: int, kind: str) -> None:
        """Take one more item (in the order they were queued)."""
        self.ids.append(notice_id)
        self.per_kind[kind] += 1
        if self.per_kind[kind] <= SHOWN:
            self.shown.append(notice_id)


@dataclass
class _Bundling:
    """What one call of `bundle_digests` works with and what it found."""

    conn: Connection
    templates: NoticeTemplates
    mail_from: str
    run_id: str
    as_of: datetime
    report: QueueReport = field(default_factory=QueueReport)
    failed: list[str] = field(default_factory=list)  # lines for the alert to operations
    # Items rendered here, written back with their new state a thousand at a time: a
    # go-live's digests show tens of thousands, and each row is rewritten once, not twice.
    rendered: list[dict[str, Any]] = field(default_factory=list)

    def settle(self, rendered: list[dict[str, Any]], status: str, digest_id: int | None) -> None:
        """Write back these rendered items (their text and `status`), in batches."""
        self.rendered += ({**r, "status": status, "digest_id": digest_id} for r in rendered)
        if len(self.rendered) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        """Write back the rendered items not written yet."""
        if self.rendered:
            stmt = update(Notice).where(Notice.id == bindparam("_id")).values(context=None)
            self.conn.execute(stmt, self.rendered)
        self.rendered = []


def bundle_digests(
    conn: Connection,
    *,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    branches: Collection[int | None] | None = None,
) -> QueueReport:
    """Turn the held staff rows of the people of `branches` (None: everyone; None in it:
    head-office staff) into digests (several items) or single letters (one)."""
    work = _Bundling(conn, templates, mail_from, run_id, as_of)
    people = None if branches is None else _staff_refs(conn, branches)
    # Ids and kinds only, a chunk at a time: the letters are read per person, only those shown.
    held: dict[str, _Held] = defaultdict(_Held)
    rows = conn.execute(
        select(Notice.id, Notice.recipient_ref, Notice.dedup_key, Notice.template)
        .where(Notice.status == "held")
        .order_by(Notice.id)
        .execution_options(yield_per=_CHUNK)
    )
    for notice_id, ref, key, kind in rows:
        if people is None or ref in people:
            held[ref or key].add(notice_id, kind)
    sent_alone = _urgent_unlisted(conn, set(held))
    release: list[int] = []
    for ref, items in held.items():
        shown, rendered = _render_shown(work, items)
        listed = sent_alone.get(ref, [])
        if not shown:
            continue  # every item shown failed to render: any others wait for the next digest
        done = {r["_id"] for r in rendered}
        if len(items.ids) == 1 and not listed:
            work.settle(rendered, "pending", None)
            release += (i for i in items.ids if i not in done)
            continue
        digest_id = _queue_digest(work, ref, items, shown, listed)
        if digest_id is None:
            work.settle(rendered, "held", None)
            continue  # the items wait for the next digest; operations know why
        work.settle(rendered, "bundled", digest_id)
        for chunk in chunks([i for i in items.ids if i not in done], _CHUNK):
            conn.execute(
                update(Notice)
                .where(Notice.id.in_(list(chunk)))
                .values(status="bundled", digest_id=digest_id)
            )
        for chunk in chunks([item.id for item in listed], _CHUNK):
            conn.execute(update(Notice).where(Notice.id.in_(chunk)).values(listed_in=digest_id))
    work.flush()
    for chunk in chunks(release, _CHUNK):
        conn.execute(update(Notice).where(Notice.id.in_(chunk)).values(status="pending"))
    if work.failed:
        alert_operations(
            conn, templates=templates, mail_from=mail_from, key=f"render-failed|{run_id}",
            template=RENDER_FAILED_ALERT, context={"items": work.failed, "as_of": as_of},
            run_id=run_id, as_of=as_of,
        )  # fmt: skip
    return work.report


def _staff_refs(conn: Connection, branches: Collection[int | None]) -> set[str]:
    """The readers' refs (`staff:12`) of the staff of `branches`; None: head office."""
    ids = [b for b in branches if b is not None]
    where = [Staff.branch_id.in_(ids)] if ids else []
    if None in branches:
        where.append(Staff.branch_id.is_(None))
    if not where:
        return set()
    return {f"staff:{i}" for i in conn.scalars(select(Staff.id).where(or_(*where)))}


def _urgent_unlisted(conn: Connection, refs: set[str]) -> dict[str, list[Any]]:
    """Per reader among `refs`: urgent items sent on their own that no digest has listed."""
    found: dict[str, list[Any]] = defaultdict(list)
    rows = conn.execute(
        select(Notice.id, Notice.recipient_ref, Notice.template, Notice.subject, Notice.sent_at)
        .where(Notice.urgent.is_(True), Notice.listed_in.is_(None), Notice.status.in_(_OUT))
        .order_by(Notice.id)
    )
    for row in rows:
        if row.recipient_ref in refs:
            found[row.recipient_ref].append(row)
    return found


def _render_shown(
    work: _Bundling, items: _Held
) -> tuple[list[SimpleNamespace], list[dict[str, Any]]]:
    """The items a digest shows, rendered now if they waited as data, and the texts of those
    rendered here, to be written back (`_Bundling.settle`); failures are set aside
    (`render_failed`) and taken out of `items`."""
    rows = work.conn.execute(select(Notice).where(Notice.id.in_(items.shown)).order_by(Notice.id))
    shown, failed = [], set()
    rendered: list[dict[str, Any]] = []
    unrenderable: list[dict[str, Any]] = []
    for row in rows:
        letter = SimpleNamespace(**row._asdict())
        if letter.context is None:  # rendered when queued (a letter, a report)
            shown.append(letter)
            continue
        person = _person(letter.recipient_ref or "", letter)
        context = load_context(letter.context)
        done = render_row({"template": letter.template}, person, work.templates, context)
        if done.get("status") == "render_failed":
            failed.add(letter.id)
            items.per_kind[letter.template] -= 1
            work.failed.append(
                f"notice {letter.id} ({letter.template}) to {letter.recipient_name}: "
                f"{done['last_error']}"
            )
            work.report.set_aside += 1
            work.report.reasons["cannot render"] += 1
            unrenderable.append({"_id": letter.id, "last_error": done["last_error"]})
        else:
            values = {k: done[k] for k in ("subject", "body_text", "body_html", "locale")}
            vars(letter).update(values, context=None)  # the text is now the record
            rendered.append({"_id": letter.id, **values})
            shown.append(letter)
    if unrenderable:
        by_id = Notice.id == bindparam("_id")
        work.conn.execute(update(Notice).where(by_id).values(status="render_failed"), unrenderable)
    if failed:
        items.ids = array("q", (i for i in items.ids if i not in failed))
        items.shown = [i for i in items.shown if i not in failed]
    return shown, rendered


def _person(ref: str, letter: Any) -> Recipient:
    """The reader of `letter`, as queued."""
    kind, _, number = ref.partition(":")
    return Recipient(
        role=letter.recipient_role,
        kind=kind,
        id=int(number) if number.isdigit() else 0,
        name=letter.recipient_name,
        address=letter.recipient_address,
        locale=letter.locale,
    )


def _queue_digest(
    work: _Bundling, ref: str, items: _Held, shown: list[SimpleNamespace], listed: list[Any]
) -> int | None:
    """Insert the digest row for one person; None if it cannot be rendered."""
    first = shown[0]
    person = _person(ref, first)
    timezone = first.timezone or "UTC"
    context = {
        "recipient": person.reader,
        "as_of": work.as_of,
        "timezone": timezone,
        "count": len(items.ids),
        "sections": sections(shown, items.per_kind),
        "sent": [
            {"kind": item.template, "subject": item.subject, "sent_at": item.sent_at}
            for item in listed
        ],
    }
    key = f"digest|{work.run_id}"
    row = blank_row(key, person, DIGEST_TEMPLATE, work.mail_from, work.run_id, work.as_of, timezone)
    row = render_row(row, person, work.templates, context)
    if row["status"] == "render_failed":
        # The items stay held for the next digest; operations are told which template broke.
        work.failed.append(f"the digest to {person.name}: {row['last_error']}")
        work.report.reasons["digest not rendered, items kept for the next one"] += 1
        return None
    insert_rows(work.conn, [row], {}, work.report)
    return work.conn.scalar(select(Notice.id).where(Notice.dedup_key == row["dedup_key"]))


def sections(items: Sequence[Any], totals: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The items grouped by notice kind, kinds in order of first appearance; `totals` counts
    each kind's items when only some are given (`more` says how many are not shown)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        grouped.setdefault(item.template, []).append(
            {
                "subject": item.subject,
                "text": item.body_text,
                "html": html_content(item.body_html),
                "finding_key": item.finding_key,
            }
        )
    out = []
    for kind, entries in grouped.items():
        total = totals[kind] if totals else len(entries)
        out.append({"kind": kind, "items": entries, "total": total, "more": total - len(entries)})
    return out


def html_content(document: str | None) -> str | None:
    """The letter's own content out of a whole HTML document (no layout, no footer)."""
    if not document:
        return None
    match = _CONTENT.search(document) or _BODY.search(document)
    return match.group(1).strip() if match else None
