"""The nightly overdue summary: every call or complaint past a deadline tonight, per branch.

Built from the open deadline findings (a `breach` stays open only while the clock still runs),
so it shows what is late now, not what became late today. One row per entity (a call, a
complaint) with every rule it is late for: its customer, whom to chase (the technician or
responsible person, else the department named on it) and how late in working hours on the
branch's business calendar, most late first. Each branch's managers
(`defaults.overdue_summary_to`) get it once per local day as a letter with a bar chart inline
and the rows as CSV; the run also writes the whole summary as a standalone page,
`runs/reports/overdue_<date>.html`, with its CSV, named by the local day of the policy's home
zone (the ledger's time zone).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, Table, or_, select

from engine.calendar import BusinessCalendar, always_open
from engine.db.catalogue import entity_table
from engine.db.models import LOCALES
from engine.db.models import Finding as FindingRow
from engine.db.session import chunks
from engine.findings import Finding, instant_text
from engine.notices.outbox import Attachment, Letter, branch_letters
from engine.notices.recipients import HEAD_OFFICE, Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy
from engine.policy.models import OVERDUE_NOTICE
from engine.reports.charts import bar_chart, chart_cid
from engine.reports.files import write_atomically
from engine.reports.spreadsheet import csv_text
from engine.rules.unjudged import Unjudged

PAGE_TEMPLATE = "_reports/overdue.html.j2"
LETTER_ITEMS = 100
"""Rows a manager's letter lists, most late first; the attached CSV and the page list all
(at a large site a branch can have tens of thousands, more than any mail server takes)."""
CSV_COLUMNS = (
    "branch",
    "branch_name",
    "entity",
    "entity_id",
    "number",
    "customer",
    "responsible",
    "working_hours_late",
    "overdue_hours",
    "escalation_level",
    "rule_ids",
    "rule_titles",
    "deadline",
    "deadline_local",
    "timezone",
    "reasons",
)
LIST_SEPARATOR = " | "
"""Between the rules of one row in a CSV cell, most late first."""
CUSTOMER = "customer_name"
PERSON = "responsible_name"
DEPARTMENT = "responsible_department"
"""The record's keys for the names the summary shows (a complaint's department is its column)."""


@dataclass(frozen=True, slots=True)
class SummaryTerms:
    """What the summary reads from the policy: rule titles, calendars, the roles' names."""

    titles: Mapping[str, str] = field(default_factory=dict)  # rule id -> title
    localized: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # -> per locale
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)
    rule_calendars: Mapping[str, str] = field(default_factory=dict)  # a rule's own calendar
    departments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # role titles

    @classmethod
    def of(cls, policy: Policy) -> SummaryTerms:
        """The terms of this policy."""
        rules = [compiled.rule for compiled in policy.rules()]
        return cls(
            titles={rule.id: rule.title for rule in rules},
            localized={rule.id: rule.localized_titles() for rule in rules},
            calendars=policy.calendars,
            rule_calendars={
                c.rule.id: c.rule.calendar for c in policy.deadlines if c.rule.calendar
            },
            departments={
                role: {locale: spec.title_in(locale) for locale in LOCALES}
                for role, spec in policy.roles.items()
            },
        )

    def department(self, value: str | None) -> Mapping[str, str]:
        """A department named on an entity, per locale: a declared role by its title, other
        text as written; {} for none."""
        if not value:
            return {}
        return self.departments.get(value) or dict.fromkeys(LOCALES, value)

    def calendar(self, rule_id: str, branch: Mapping[str, Any]) -> BusinessCalendar:
        """The calendar lateness is counted on: the rule's, else the branch's, else 24x7."""
        name = self.rule_calendars.get(rule_id) or branch.get("calendar") or ""
        return self.calendars.get(name) or always_open(branch.get("timezone") or "UTC")


@dataclass(frozen=True, slots=True)
class LateRule:
    """One rule an entity is past the deadline of."""

    rule_id: str
    rule_title: str
    deadline: datetime
    overdue: timedelta  # wall-clock time past the deadline
    working: timedelta  # working time past it, on the branch's calendar
    level: int  # highest escalation level reached; 0: breached, not escalated
    reason: str
    titles: Mapping[str, str] = field(default_factory=dict)  # the rule's, per reader's locale

    @property
    def overdue_hours(self) -> float:
        """Wall-clock hours past the deadline, one decimal."""
        return _hours(self.overdue)

    @property
    def working_hours(self) -> float:
        """Working hours past the deadline, one decimal."""
        return _hours(self.working)

    def title_in(self, locale: str) -> str:
        """The rule's title for a reader of `locale`."""
        return self.titles.get(locale, self.rule_title)


@dataclass(frozen=True, slots=True)
class OverdueItem:
    """One call or complaint past one deadline or more: whose it is and whom to chase."""

    entity: str
    entity_id: str
    number: str
    customer: str | None
    person: str | None  # the technician or responsible person named on it
    department: Mapping[str, str]  # the department named on it, per locale; {} for none
    rules: tuple[LateRule, ...]  # most late first

    @property
    def working_hours(self) -> float:
        """Working hours late for its most late rule (what the rows are sorted by)."""
        return self.rules[0].working_hours

    @property
    def overdue_hours(self) -> float:
        """Wall-clock hours past its earliest deadline missed."""
        return max(rule.overdue_hours for rule in self.rules)

    @property
    def level(self) -> int:
        """The highest escalation level any of its rules reached."""
        return max(rule.level for rule in self.rules)

    @property
    def deadline(self) -> datetime:
        """Its earliest deadline missed."""
        return min(rule.deadline for rule in self.rules)

    def responsible(self, locale: str) -> str | None:
        """Whom to chase: the person named, else the department's name in `locale`."""
        return self.person or self.department.get(locale) or None


@dataclass(frozen=True, slots=True)
class UnjudgedLine:
    """Open rows of the branch a rule could not judge for an empty field, with the rule's
    title: so missing data is seen, not taken for compliance."""

    counted: Unjudged
    rule_title: str
    titles: Mapping[str, str] = field(default_factory=dict)

    def title_in(self, locale: str) -> str:
        """The rule's title for a reader of `locale`."""
        return self.titles.get(locale, self.rule_title)


@dataclass
class OverdueBranch:
    """One branch's overdue rows, most late first."""

    branch_id: int | None
    code: str
    name: str
    timezone: str
    items: list[OverdueItem] = field(default_factory=list)
    hidden: int = 0  # rows left out of `items` (a letter shows the most late)
    unjudged: list[UnjudgedLine] = field(default_factory=list)  # most rows first
    png: bytes | None = field(default=None, repr=False, compare=False)  # chart(), once drawn

    @property
    def count(self) -> int:
        """All the branch's overdue rows, shown or not."""
        return len(self.items) + self.hidden

    def most_overdue(self, limit: int) -> OverdueBranch:
        """The same branch with only its `limit` most late rows, the rest counted."""
        shown = self.items[:limit]
        rest = len(self.items) - len(shown) + self.hidden
        return OverdueBranch(
            self.branch_id, self.code, self.name, self.timezone, shown, rest, self.unjudged
        )

    def charted(self) -> list[tuple[LateRule, int]]:
        """Each rule (one of its late clocks, for its titles) with its count: the chart's bars,
        numbered from 1 in this order."""
        late = {rule.rule_id: rule for item in self.items for rule in item.rules}
        return [(late[rule_id], count) for rule_id, count in self.by_rule()]

    def by_rule(self) -> list[tuple[str, int]]:
        """(rule id, clocks past its deadline) pairs, most first."""
        counts = Counter(rule.rule_id for item in self.items for rule in item.rules)
        return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


@dataclass
class OverdueSummary:
    """Everything overdue at `as_of`, per branch."""

    as_of: datetime
    branches: list[OverdueBranch] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows in all branches."""
        return sum(len(part.items) for part in self.branches)

    def only(self, branches: Collection[int]) -> OverdueSummary:
        """The summary of these branches alone (those whose summary is due)."""
        return OverdueSummary(self.as_of, [p for p in self.branches if p.branch_id in branches])


def open_overdue(
    conn: Connection,
    as_of: datetime,
    branches: Mapping[int, Mapping[str, Any]],
    terms: SummaryTerms,
    unjudged: Sequence[Unjudged] = (),
) -> OverdueSummary:
    """Every clock late at `as_of`: the open breaches and escalation levels in the findings
    table (each run keeps them open exactly while they hold), with their entity's branch,
    number and names; so the summary needs no run that judges every clock. With what the
    rules could not judge (engine.rules.unjudged), per branch."""
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
        ids = sorted({int(row.entity_id) for row in late if row.entity == entity})
        for found in _records(conn, entity_table(entity), ids):
            records[entity, str(found["id"])] = found
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
    return build_overdue(findings, branches, terms, as_of, unjudged)


def _records(conn: Connection, table: Table, ids: Sequence[int]) -> Iterator[dict[str, Any]]:
    """The entities' branch and number with their customer's and person's names, joined in
    the same query: a bounded number of queries however many rows are late."""
    columns: list[Any] = [table.c[name] for name in ("id", "branch_id", "number", DEPARTMENT)
                          if name in table.c]  # fmt: skip
    joined: Any = table
    if "customer_id" in table.c:
        customers = entity_table("customers").alias("customer")
        joined = joined.outerjoin(customers, customers.c.id == table.c.customer_id)
        columns.append(customers.c.name.label(CUSTOMER))
    person = _person_column(table)
    if person is not None:
        staff = entity_table("staff").alias("person")
        joined = joined.outerjoin(staff, staff.c.id == person)
        columns.append(staff.c.name.label(PERSON))
    query = select(*columns).select_from(joined)
    for chunk in chunks(ids, 500):
        for found in conn.execute(query.where(table.c.id.in_(chunk))).mappings():
            yield dict(found)


def _person_column(table: Table) -> Column[Any] | None:
    """Whom to chase about a row: the staff member its one staff column names (a call's
    technician, a complaint's responsible person, a contract's sales rep); a person's own row."""
    if table.name == "staff":
        return table.c.id
    named = [c for c in table.c if any(fk.column.table.name == "staff" for fk in c.foreign_keys)]
    return named[0] if len(named) == 1 else None


def build_overdue(
    found: Sequence[Finding],
    branches: Mapping[int, Mapping[str, Any]],
    terms: SummaryTerms,
    as_of: datetime,
    unjudged: Sequence[Unjudged] = (),
) -> OverdueSummary:
    """The overdue summary from deadline findings (pure): one row per entity with the rules
    it is late for, most late first, in branches ordered by code; and per branch, the rows
    each rule could not judge, most first."""
    parts: dict[Any, OverdueBranch] = {}

    def part_of(branch_id: Any) -> OverdueBranch:
        if branch_id not in parts:
            branch = {**HEAD_OFFICE, **(branches.get(branch_id) or {})}
            parts[branch_id] = OverdueBranch(
                branch_id, branch["code"], branch["name"], branch["timezone"]
            )
        return parts[branch_id]

    for (branch_id, entity, entity_id), (record, rules) in _late_rules(
        found, branches, terms, as_of
    ).items():
        part_of(branch_id).items.append(
            OverdueItem(
                entity=entity,
                entity_id=entity_id,
                number=str(record.get("number") or entity_id),
                customer=record.get(CUSTOMER),
                person=record.get(PERSON),
                department=terms.department(record.get(DEPARTMENT)),
                rules=tuple(sorted(rules, key=_lateness)),
            )
        )
    for counted in sorted(unjudged, key=lambda u: (-u.count, u.rule_id, u.field)):
        part_of(counted.branch_id).unjudged.append(
            UnjudgedLine(
                counted,
                terms.titles.get(counted.rule_id, counted.rule_id),
                terms.localized.get(counted.rule_id, {}),
            )
        )
    for part in parts.values():
        part.items.sort(key=lambda item: (_lateness(item.rules[0]), item.number))
    return OverdueSummary(as_of, sorted(parts.values(), key=lambda p: (p.code, p.branch_id or 0)))


def _late_rules(
    found: Sequence[Finding],
    branches: Mapping[int, Mapping[str, Any]],
    terms: SummaryTerms,
    as_of: datetime,
) -> dict[tuple[Any, str, str], tuple[Mapping[str, Any], list[LateRule]]]:
    """Per entity (branch id, entity, id): its record and each clock past its deadline, with
    the highest escalation level it reached (its breach and escalations come together)."""
    levels: dict[tuple[str, str, str, str], int] = {}
    breaches: list[Finding] = []
    for finding in found:
        if finding.family != "deadline":
            continue
        clock = (finding.rule_id, finding.entity, finding.entity_id, finding.occurrence)
        if finding.state == "breach":
            breaches.append(finding)
            levels.setdefault(clock, 0)
        elif finding.state.startswith("escalation:"):
            level = int(finding.state.partition(":")[2])
            levels[clock] = max(levels.get(clock, 0), level)
    deadlines = [finding.due_at or as_of for finding in breaches]
    working = _working_late(breaches, deadlines, branches, terms, as_of)
    late: dict[tuple[Any, str, str], tuple[Mapping[str, Any], list[LateRule]]] = {}
    for finding, deadline, span in zip(breaches, deadlines, working, strict=True):
        entity = (finding.record.get("branch_id"), finding.entity, finding.entity_id)
        clock = (finding.rule_id, finding.entity, finding.entity_id, finding.occurrence)
        late.setdefault(entity, (finding.record, []))[1].append(
            LateRule(
                rule_id=finding.rule_id,
                rule_title=terms.titles.get(finding.rule_id, finding.rule_id),
                deadline=deadline,
                overdue=as_of - deadline,
                working=span,
                level=levels[clock],
                reason=finding.reason,
                titles=terms.localized.get(finding.rule_id, {}),
            )
        )
    return late


def _working_late(
    breaches: Sequence[Finding],
    deadlines: Sequence[datetime],
    branches: Mapping[int, Mapping[str, Any]],
    terms: SummaryTerms,
    as_of: datetime,
) -> list[timedelta]:
    """Working time from each deadline to `as_of` on its calendar, a batch per calendar."""
    batches: dict[BusinessCalendar, list[int]] = defaultdict(list)
    calendars: dict[tuple[str, Any], BusinessCalendar] = {}  # per rule and branch
    for index, finding in enumerate(breaches):
        key = (finding.rule_id, finding.record.get("branch_id"))
        calendar = calendars.get(key)
        if calendar is None:
            branch = branches.get(key[1]) or {}  # type: ignore[arg-type]
            calendar = calendars[key] = terms.calendar(finding.rule_id, branch)
        batches[calendar].append(index)
    spans = [timedelta(0)] * len(breaches)
    for calendar, indexes in batches.items():
        starts = [deadlines[index] for index in indexes]
        for index, span in zip(indexes, calendar.between_many(starts, [as_of] * len(starts)),
                               strict=True):  # fmt: skip
            spans[index] = span
    return spans


def _lateness(rule: LateRule) -> tuple[timedelta, timedelta, str]:
    # Most working time late first; the wall clock, then the rule, break ties.
    return (-rule.working, -rule.overdue, rule.rule_id)


def _hours(span: timedelta) -> float:
    return round(span.total_seconds() / 3600, 1)


def render_csv(parts: Sequence[OverdueBranch], locale: str) -> str:
    """One row per overdue entity, its rules most late first, rule titles in `locale`;
    instants in UTC as in every file, the earliest deadline also as the branch's wall time."""
    return csv_text(CSV_COLUMNS, (_csv_row(part, item, locale) for part in parts
                                  for item in part.items))  # fmt: skip


def _csv_row(part: OverdueBranch, item: OverdueItem, locale: str) -> tuple[Any, ...]:
    local = item.deadline.astimezone(ZoneInfo(part.timezone))
    return (
        part.code,
        part.name,
        item.entity,
        item.entity_id,
        item.number,
        item.customer,
        item.responsible(locale),
        item.working_hours,
        item.overdue_hours,
        item.level,
        LIST_SEPARATOR.join(rule.rule_id for rule in item.rules),
        LIST_SEPARATOR.join(rule.title_in(locale) for rule in item.rules),
        instant_text(item.deadline),
        local.strftime("%Y-%m-%d %H:%M"),
        part.timezone,
        LIST_SEPARATOR.join(rule.reason for rule in item.rules),
    )


def chart(part: OverdueBranch) -> bytes:
    """Clocks past their deadline per rule in one branch, as a PNG bar chart (drawn once: the
    branch's letters and the page show the same)."""
    if part.png is None:
        # Numbers, not words, in the image: the caption under it names each rule in the
        # reader's language (a chart has no Chinese font on every machine).
        bars = [(str(number), count) for number, (_, count) in enumerate(part.by_rule(), 1)]
        part.png = bar_chart("", bars)
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
        locale = branch.get("locale") or "en"  # one file for all readers: the branch's language
        files = cache(
            lambda part=part, name=name, locale=locale: (
                (
                    Attachment(f"{name}.csv", "text/csv", _csv_bytes([part], locale)),
                    Attachment(f"{name}.png", "image/png", chart(part), chart_cid(name)),
                )
                if part.items
                else ()
            )  # only what the rules could not judge: no rows, no chart
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
        if part.items
    }
    values = {"summary": summary, "charts": charts, "locale": locale, "timezone": zone}
    html = templates.env.get_template(PAGE_TEMPLATE).render(values)
    html_path, csv_path = folder / f"overdue_{stamp}.html", folder / f"overdue_{stamp}.csv"
    write_atomically(csv_path, render_csv(summary.branches, locale), "utf-8-sig")
    write_atomically(html_path, html, "utf-8")
    return [html_path, csv_path]


def _csv_bytes(parts: Sequence[OverdueBranch], locale: str) -> bytes:
    # utf-8-sig: spreadsheet programs then read the Chinese titles right.
    return render_csv(parts, locale).encode("utf-8-sig")
