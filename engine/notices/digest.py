"""Bundle a run's staff notices into one digest per person: one message, items grouped by kind.

`queue_notices` and `queue_letters` leave staff rows `held`. Once a run has queued everything,
`bundle_digests` looks at that run's held rows: a person with one item gets it on its own
(`pending`); a person with several gets one digest row, and the items become `bundled` with
`digest_id` pointing at it. Items keep their own dedup keys, so each still exists once and
`explain` can follow an item to the message it went out in. Attachments stay on the items;
delivery gathers them into the digest's message.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from engine.db.models import Notice
from engine.db.session import chunks
from engine.notices.outbox import (
    DIGEST_TEMPLATE,
    QueueReport,
    blank_row,
    filled_row,
    insert_rows,
)
from engine.notices.recipients import Recipient
from engine.notices.templates import NoticeTemplates

SHOWN = 50
"""Items of one kind a digest shows in full; the rest are counted (a reader skims, and at a
large site a supervisor's night can hold tens of thousands: each stays an outbox row of its
own, bundled to the digest, and the night's reports list them all)."""

# The layout marks the letter's own content, so a digest can show it without the footer.
_CONTENT = re.compile(r"<!--content-->(.*?)<!--/content-->", re.S)
_BODY = re.compile(r"<body[^>]*>(.*?)</body>", re.S | re.I)
_CHUNK = 1000  # ids per UPDATE ... IN (...)


@dataclass
class _Held:
    """One person's held items of a run, kept small: a night can hold hundreds of thousands."""

    ids: array[int] = field(default_factory=lambda: array("q"))
    per_kind: Counter[str] = field(default_factory=Counter)
    shown: list[int] = field(default_factory=list)  # the first SHOWN items of each kind

    def add(self, notice_id: int, kind: str) -> None:
        """Take one more item (in the order they were queued)."""
        self.ids.append(notice_id)
        self.per_kind[kind] += 1
        if self.per_kind[kind] <= SHOWN:
            self.shown.append(notice_id)


def bundle_digests(
    conn: Connection,
    *,
    run_id: str,
    templates: NoticeTemplates,
    mail_from: str,
    as_of: datetime,
) -> QueueReport:
    """Turn the run's held staff rows into digests (several items) or single letters (one)."""
    report = QueueReport()
    # Ids and kinds only, a chunk at a time: the letters are read per person, only those shown.
    held: dict[str, _Held] = defaultdict(_Held)
    rows = conn.execute(
        select(Notice.id, Notice.recipient_ref, Notice.dedup_key, Notice.template)
        .where(Notice.run_id == run_id, Notice.status == "held")
        .order_by(Notice.id)
        .execution_options(yield_per=_CHUNK)
    )
    for notice_id, ref, key, kind in rows:
        held[ref or key].add(notice_id, kind)
    release: list[int] = []
    for ref, items in held.items():
        if len(items.ids) == 1:
            release += items.ids
            continue
        digest_id = _queue_digest(conn, ref, items, templates, mail_from, run_id, as_of, report)
        if digest_id is None:
            release += items.ids
            continue
        for chunk in chunks(items.ids, _CHUNK):
            conn.execute(
                update(Notice)
                .where(Notice.id.in_(list(chunk)))
                .values(status="bundled", digest_id=digest_id)
            )
    for chunk in chunks(release, _CHUNK):
        conn.execute(update(Notice).where(Notice.id.in_(chunk)).values(status="pending"))
    return report


def _queue_digest(
    conn: Connection,
    ref: str,
    items: _Held,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    report: QueueReport,
) -> int | None:
    """Insert the digest row for one person; None if it cannot be rendered (items go alone)."""
    letters = conn.execute(
        select(Notice).where(Notice.id.in_(items.shown)).order_by(Notice.id)
    ).all()
    first = letters[0]
    kind, _, number = ref.partition(":")
    person = Recipient(
        role=first.recipient_role,
        kind=kind,
        id=int(number) if number.isdigit() else 0,
        name=first.recipient_name,
        address=first.recipient_address,
        locale=first.locale,
    )
    timezone = first.timezone or "UTC"
    context = {
        "recipient": person.reader,
        "as_of": as_of,
        "timezone": timezone,
        "count": len(items.ids),
        "sections": sections(letters, items.per_kind),
    }
    key = f"digest|{run_id}"
    row = blank_row(key, person, DIGEST_TEMPLATE, mail_from, run_id, as_of, timezone)
    try:
        rendered = templates.render(DIGEST_TEMPLATE, person.locale, context)
    except Exception as exc:  # the items still go out, one by one
        report.reasons[f"digest not rendered ({type(exc).__name__}), items sent alone"] += 1
        return None
    row = filled_row(row, person, rendered.subject, rendered.text, rendered.html, rendered.locale)
    insert_rows(conn, [row], {}, report)
    return conn.scalar(select(Notice.id).where(Notice.dedup_key == row["dedup_key"]))


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
