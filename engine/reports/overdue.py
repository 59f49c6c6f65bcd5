"""The nightly overdue summary: every clock past its deadline tonight, per branch.

Built from the night's deadline findings (new and already recorded alike: a `breach` is
reached only while the clock still runs), so it shows what is late now, not what became late
today. Each branch's managers (`defaults.overdue_summary_to`) get it once per local day as a
letter with a bar chart inline and the items as CSV; the run also writes the whole summary as
a standalone page, `runs/reports/overdue_<date>.html`, with its CSV, named by the local day of
the policy's home zone (the ledger's time zone).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, or_, select

from engine.db.catalogue import entity_table
from engine.db.models import Finding as FindingRow
from engine.db.session import chunks
from engine.findings import Finding, instant_text
from engine.notices.outbox import Attachment, Letter, branch_letters
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy.models import OVERDUE_NOTICE
from engine.reports.charts import bar_chart, chart_cid
from engine.reports.files import write_atomically
from engine.reports.spreadsheet import csv_text

PAGE_TEMPLATE = "_reports/overdue.html.j2"
LETTER_ITEMS = 100
"""Items a manager's letter lists, most overdue first; the attached CSV and the page list all
(at a large site a branch can have tens of thousands, more than any mail server takes)."""
CSV_COLUMNS = (
    "branch",
    "branch_name",
    "rule_id",
    "rule_title",
    "entity",
    "entity_id",
    "number",
    "deadline",
    "overdue_hours",
    "escalation_level",
    "reason",
)


@dataclass(frozen=True, slots=True)
class OverdueItem:
    """One clock past its deadline."""

    rule_id: str
    rule_title: str
    entity: str
    entity_id: str
    number: str
    deadline: datetime
    overdue: timedelta
    level: int  # highest escalation level reached; 0: breached, not escalated
    reason: str
    titles: Mapping[str, str] = field(default_factory=dict)  # the rule's, per reader's locale

    @property
    def overdue_hours(self) -> float:
        """Wall-clock hours past the deadline, one decimal."""
        return round(self.overdue.total_seconds() / 3600, 1)


@dataclass
class OverdueBranch:
    """One branch's overdue items, most overdue first."""

    branch_id: int | None
    code: str
    name: str
    timezone: str
    items: list[OverdueItem] = field(default_factory=list)
    hidden: int = 0  # items left out of `items` (a letter shows the most overdue)
    png: bytes | None = field(default=None, repr=False, compare=False)  # chart(), once drawn

    @property
    def count(self) -> int:
        """All the branch's overdue items, shown or not."""
        return len(self.items) + self.hidden

    def most_overdue(self, limit: int) -> OverdueBranch:
        """The same branch with only its `limit` most overdue items, the rest counted."""
        shown = self.items[:limit]
        rest = len(self.items) - len(shown) + self.hidden
        return OverdueBranch(self.branch_id, self.code, self.name, self.timezone, shown, rest)

    def by_rule(self) -> list[tuple[str, int]]:
        """(rule id, items) pairs, most items first."""
        counts = Counter(item.rule_id for item in self.items)
        return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


@dataclass
class OverdueSummary:
    """Everything overdue at `as_of`, per branch."""

    as_of: datetime
    branches: list[OverdueBranch] = field(default_factory=list)
    _parts: dict[int | None, OverdueBranch] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        """Items in all branches."""
        return sum(len(part.items) for part in self.branches)

    def add(
        self,
        found: Iterable[Finding],
        branches: Mapping[int, Mapping[str, Any]],
        titles: Mapping[str, str],
        localized: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Take the overdue items of some rules' findings (each rule's findings all at once:
        a clock's breach and its escalations come from the same evaluation); `localized`:
        each rule's title per locale, for the letters."""
        levels: dict[tuple[str, str, str], int] = {}
        breaches: list[Finding] = []
        for finding in found:
            if finding.family != "deadline":
                continue
            clock = (finding.rule_id, finding.entity_id, finding.occurrence)
            if finding.state == "breach":
                breaches.append(finding)
                levels.setdefault(clock, 0)
            elif finding.state.startswith("escalation:"):
                level = int(finding.state.partition(":")[2])
                levels[clock] = max(levels.get(clock, 0), level)
        for finding in breaches:
            branch_id = finding.record.get("branch_id")
            part = self._parts.get(branch_id)
            if part is None:
                branch = branches.get(branch_id) or {}  # type: ignore[arg-type]
                part = self._parts[branch_id] = OverdueBranch(
                    branch_id,
                    branch.get("code", "HQ"),
                    branch.get("name", "Head office"),
                    branch.get("timezone", "UTC"),
                )
            deadline = finding.due_at or self.as_of
            part.items.append(
                OverdueItem(
                    rule_id=finding.rule_id,
                    rule_title=titles.get(finding.rule_id, finding.rule_id),
                    entity=finding.entity,
                    entity_id=finding.entity_id,
                    number=str(finding.record.get("number") or finding.entity_id),
                    deadline=deadline,
                    overdue=self.as_of - deadline,
                    level=levels[(finding.rule_id, finding.entity_id, finding.occurrence)],
                    reason=finding.reason,
                    titles=(localized or {}).get(finding.rule_id, {}),
                )
            )

    def only(self, branches: Collection[int]) -> OverdueSummary:
        """The summary of these branches alone (those whose summary is due)."""
        kept = [part for part in self.branches if part.branch_id in branches]
        return OverdueSummary(self.as_of, kept, {p.branch_id: p for p in kept})

    def finish(self) -> OverdueSummary:
        """Order the branches by code and each branch's items by deadline; returns self."""
        for part in self._parts.values():
            part.items.sort(key=lambda item: (item.deadline, item.rule_id, item.number))
        self.branches = sorted(self._parts.values(), key=lambda p: (p.code, p.branch_id or 0))
        return self


def open_overdue(
    conn: Connection,
    as_of: datetime,
    branches: Mapping[int, Mapping[str, Any]],
    titles: Mapping[str, str],
    localized: Mapping[str, Mapping[str, str]] | None = None,
) -> OverdueSummary:
    """Every clock late at `as_of`: the open breaches and escalation levels in the findings
    table (each run keeps them open exactly while they hold), with their entity's branch and
    number; so the summary needs no run that judges every clock."""
    rows = select(
        FindingRow.rule_id, FindingRow.entity, FindingRow.entity_id, FindingRow.occurrence,
        FindingRow.state, FindingRow.reason, FindingRow.due_at,
    ).where(
        FindingRow.closed_at.is_(None),
        FindingRow.family == "deadline",
        or_(FindingRow.state == "breach", FindingRow.state.like("escalation:%")),
    )  # fmt: skip
    late = conn.execute(rows.order_by(FindingRow.id)).all()
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for entity in {row.entity for row in late}:
        table = entity_table(entity)
        ids = sorted({int(row.entity_id) for row in late if row.entity == entity})
        columns = [table.c.id, table.c.branch_id, table.c.number]
        for chunk in chunks(ids, 500):
            for found in conn.execute(select(*columns).where(table.c.id.in_(chunk))).mappings():
                records[entity, str(found["id"])] = dict(found)
    findings = [
        Finding(
            rule_id=row.rule_id,
            family="deadline",
            entity=row.entity,
            entity_id=row.entity_id,
            occurrence=row.occurrence,
            state=row.state,
            reason=row.reason,
            due_at=row.due_at,
            record=records.get((row.entity, row.entity_id), {"id": row.entity_id}),
        )
        for row in late
    ]
    return build_overdue(findings, branches, titles, as_of, localized)


def build_overdue(
    found: Sequence[Finding],
    branches: Mapping[int, Mapping[str, Any]],
    titles: Mapping[str, str],
    as_of: datetime,
    localized: Mapping[str, Mapping[str, str]] | None = None,
) -> OverdueSummary:
    """The overdue summary from one night's deadline findings (pure)."""
    summary = OverdueSummary(as_of)
    summary.add(found, branches, titles, localized)
    return summary.finish()


def render_csv(parts: Sequence[OverdueBranch]) -> str:
    """One row per overdue item."""
    return csv_text(
        CSV_COLUMNS,
        (
            (
                part.code,
                part.name,
                item.rule_id,
                item.rule_title,
                item.entity,
                item.entity_id,
                item.number,
                instant_text(item.deadline),
                item.overdue_hours,
                item.level,
                item.reason,
            )
            for part in parts
            for item in part.items
        ),
    )


def chart(part: OverdueBranch) -> bytes:
    """Overdue items per rule in one branch, as a PNG bar chart (drawn once: the branch's
    letters and the page show the same)."""
    if part.png is None:
        part.png = bar_chart(f"Overdue now: {part.code}", part.by_rule(), unit="items")
    return part.png


def overdue_letters(
    summary: OverdueSummary, roles: Sequence[str], directory: Directory, reasons: Counter[str]
) -> list[Letter]:
    """Each branch's summary to the holders of `roles` there, once per local day."""
    letters: list[Letter] = []
    for part in summary.branches:
        branch = directory.branches.get(part.branch_id) or {}  # type: ignore[arg-type]
        day = summary.as_of.astimezone(ZoneInfo(part.timezone)).date().isoformat()
        name = f"overdue_{part.code}_{day}"
        files = cache(
            lambda part=part, name=name: (
                Attachment(f"{name}.csv", "text/csv", _csv_bytes([part])),
                Attachment(f"{name}.png", "image/png", chart(part), chart_cid(name)),
            )
        )
        context = {
            "part": part.most_overdue(LETTER_ITEMS),
            "branch": branch,
            "timezone": part.timezone,
            "chart_src": f"cid:{chart_cid(name)}",
        }
        key = f"overdue-summary|{day}|branch:{part.branch_id or 'head-office'}"
        letters += branch_letters(
            directory, roles, part.branch_id, reasons,
            key=key, template=OVERDUE_NOTICE, context=context, attachments=files,
        )  # fmt: skip
    return letters


def write_page(
    summary: OverdueSummary, folder: Path, templates: NoticeTemplates, locale: str, zone: str
) -> list[Path]:
    """Write the whole summary as `overdue_<date>.html` (charts inline) and `.csv`, named by
    the local day in `zone` (the policy's home zone: the page covers every branch)."""
    stamp = summary.as_of.astimezone(ZoneInfo(zone)).date().isoformat()
    charts = {
        part.code: "data:image/png;base64," + base64.b64encode(chart(part)).decode("ascii")
        for part in summary.branches
    }
    values = {"summary": summary, "charts": charts, "locale": locale, "timezone": "UTC"}
    html = templates.env.get_template(PAGE_TEMPLATE).render(values)
    html_path, csv_path = folder / f"overdue_{stamp}.html", folder / f"overdue_{stamp}.csv"
    write_atomically(csv_path, render_csv(summary.branches), "utf-8-sig")
    write_atomically(html_path, html, "utf-8")
    return [html_path, csv_path]


def _csv_bytes(parts: Sequence[OverdueBranch]) -> bytes:
    # utf-8-sig: spreadsheet programs then read the Chinese titles right.
    return render_csv(parts).encode("utf-8-sig")
