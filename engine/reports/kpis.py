"""The monthly KPI report: each branch and technician, the month against the ones before it.

`build_report` arranges measured KPI values (engine.rules.metric) into per-branch tables:
one row per metric with a value per month, the policy's target, and a flag where it was
missed. It is rendered as an email-ready HTML page with a chart per branch (one small panel
per KPI over the months, numbered as the table's rows) and as a CSV with one row per value.
Pure, except the writers.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from engine.db.models import Branch, Staff
from engine.notices.outbox import Attachment, Letter, branch_letters
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy.metric_spec import KpiReport, MetricRule, Target
from engine.reports.charts import KpiPanel, chart_cid, kpi_chart
from engine.reports.files import write_atomically
from engine.reports.spreadsheet import Cell, csv_text
from engine.rules.metric import Measured

PAGE_TEMPLATE = "_reports/kpi.html.j2"
CSV_COLUMNS = (
    "period",
    "branch",
    "scope",
    "party_id",
    "party_name",
    "metric_id",
    "title",
    "numerator",
    "denominator",
    "value",
    "target",
    "missed",
)
_SHOWN = {"share": Decimal("0.001"), "average": Decimal("0.01"), "rate": Decimal("0.01")}


@dataclass(frozen=True, slots=True)
class KpiLine:
    """One metric of one branch or person: a value per month (None: nothing measured)."""

    metric_id: str
    title: str
    kind: str  # share, average or rate
    target: str | None  # '≥ 95%', '≤ 2', for the reader
    values: tuple[Decimal | None, ...]
    missed: tuple[bool, ...]
    titles: Mapping[str, str] = field(default_factory=dict)  # per locale, for the reader's
    goal: Target | None = None  # the target as numbers, for the chart

    def panel(self) -> KpiPanel:
        """The line as a chart panel: shares in %, the target drawn where it lies."""
        scale = 100 if self.kind == "share" else 1
        return KpiPanel(
            values=tuple(None if v is None else float(v * scale) for v in self.values),
            missed=self.missed,
            target=None if self.goal is None else float(_edge(self.goal) * scale),
            at_least=self.goal is None or self.goal.at_least is not None,
            kind=self.kind,
            target_text=self.target or "",
        )


@dataclass
class KpiParty:
    """A branch or a person with their lines."""

    scope: str
    party_id: int
    name: str
    lines: list[KpiLine] = field(default_factory=list)


@dataclass
class KpiBranch:
    """One branch: its own KPIs and its people's."""

    branch_id: int
    code: str
    name: str
    timezone: str
    overall: KpiParty
    people: list[KpiParty] = field(default_factory=list)
    png: bytes | None = field(default=None, repr=False, compare=False)  # chart(), once drawn


@dataclass
class KpiSummary:
    """The KPIs of `period`, with the months before it, per branch."""

    period: str
    months: tuple[str, ...]  # oldest first; the last is `period`
    branches: list[KpiBranch] = field(default_factory=list)
    measured: tuple[Measured, ...] = ()

    @property
    def missed(self) -> int:
        """Branch-level targets missed in the reported month."""
        return sum(line.missed[-1] for part in self.branches for line in part.overall.lines)

    def only(self, branch_id: int) -> KpiSummary:
        """The same report for one branch."""
        parts = [part for part in self.branches if part.branch_id == branch_id]
        mine = tuple(m for m in self.measured if m.branch_id == branch_id)
        return KpiSummary(self.period, self.months, parts, mine)


def build_report(
    measured: Sequence[Measured],
    metrics: Sequence[MetricRule],
    months: Sequence[str],
    branches: Mapping[int, Mapping[str, Any]],
    staff: Mapping[int, str],
) -> KpiSummary:
    """Arrange values of these months into the report of the last one (pure)."""
    wanted = set(months)
    values = {
        (m.metric_id, m.scope, m.party_id, m.period): m for m in measured if m.period in wanted
    }
    report = KpiSummary(months[-1], tuple(months), measured=tuple(values.values()))
    parties = sorted({(m.branch_id, m.scope, m.party_id) for m in values.values()})
    for branch_id in sorted({b for b, _, _ in parties}):
        row = branches.get(branch_id, {})
        overall = _party(metrics, values, months, "branch", branch_id, row.get("name", ""))
        part = KpiBranch(
            branch_id, row.get("code", str(branch_id)), row.get("name", ""),
            row.get("timezone", "UTC"), overall,
        )  # fmt: skip
        for _, _, person in (p for p in parties if p[0] == branch_id and p[1] == "staff"):
            name = staff.get(person, f"#{person}")
            part.people.append(_party(metrics, values, months, "staff", person, name))
        part.people.sort(key=lambda p: (p.name, p.party_id))
        report.branches.append(part)
    return report


def _party(
    metrics: Sequence[MetricRule],
    values: Mapping[tuple[str, str, int, str], Measured],
    months: Sequence[str],
    scope: str,
    party_id: int,
    name: str,
) -> KpiParty:
    party = KpiParty(scope, party_id, name)
    for metric in metrics:
        found = [values.get((metric.id, scope, party_id, month)) for month in months]
        if not any(found):
            continue
        shown = tuple(
            m.value.quantize(_SHOWN[metric.kind]) if m and m.value is not None else None
            for m in found
        )
        target = metric.target
        party.lines.append(
            KpiLine(
                metric.id,
                metric.title,
                metric.kind,
                _target_text(metric) if target else None,
                shown,
                tuple(bool(target and target.missed(v)) for v in shown),
                metric.localized_titles(),
                target,
            )
        )
    return party


def _target_text(metric: MetricRule) -> str:
    target = metric.target
    assert target is not None
    edge = _edge(target)
    sign = "≥" if target.at_least is not None else "≤"
    number = f"{(edge * 100).normalize():f}%" if metric.kind == "share" else f"{edge.normalize():f}"
    return f"{sign} {number}"


def _edge(target: Target) -> Decimal:
    """The number a target names: its floor or its ceiling."""
    edge = target.at_least if target.at_least is not None else target.at_most
    assert edge is not None  # the policy gives exactly one
    return edge


def render_csv(report: KpiSummary, names: Mapping[tuple[str, int], str]) -> str:
    """One row per value: period, branch, party, metric, numerator, denominator, value."""
    codes = {part.branch_id: part.code for part in report.branches}
    lines = {
        (line.metric_id, party.scope, party.party_id): line
        for part in report.branches
        for party in (part.overall, *part.people)
        for line in party.lines
    }

    def row(m: Measured) -> tuple[Cell, ...]:
        line = lines.get((m.metric_id, m.scope, m.party_id))
        missed = line.missed[report.months.index(m.period)] if line else False
        return (
            m.period, codes.get(m.branch_id, m.branch_id), m.scope, m.party_id,
            names.get((m.scope, m.party_id), ""), m.metric_id, line.title if line else "",
            m.numerator, m.denominator, m.value,
            line.target if line and line.target else "", "yes" if missed else "",
        )  # fmt: skip

    order = sorted(
        report.measured, key=lambda m: (m.period, m.branch_id, m.scope, m.party_id, m.metric_id)
    )
    return csv_text(CSV_COLUMNS, map(row, order))


def chart(months: Sequence[str], part: KpiBranch) -> bytes:
    """A branch's KPIs over `months`, one panel per line of its table, as PNG (drawn once: the
    branch's letters and the page show the same)."""
    if part.png is None:
        part.png = kpi_chart(months, [line.panel() for line in part.overall.lines])
    return part.png


def _names(report: KpiSummary) -> dict[tuple[str, int], str]:
    return {
        (party.scope, party.party_id): party.name
        for part in report.branches
        for party in (part.overall, *part.people)
    }


def attachments(report: KpiSummary, name: str) -> tuple[Attachment, ...]:
    """The report's CSV and its branch's chart (inline as `cid:` + chart_cid(name)), for a
    letter of one branch."""
    return (
        Attachment(
            f"{name}.csv", "text/csv", render_csv(report, _names(report)).encode("utf-8-sig")
        ),
        *(
            Attachment(f"{name}.png", "image/png", chart(report.months, part), chart_cid(name))
            for part in report.branches
        ),
    )


def render_html(report: KpiSummary, templates: NoticeTemplates, locale: str) -> str:
    """The report as a standalone, email-ready HTML page in `locale`."""
    charts = {
        part.code: "data:image/png;base64,"
        + base64.b64encode(chart(report.months, part)).decode("ascii")
        for part in report.branches
    }
    values = {"report": report, "locale": locale, "timezone": "UTC", "charts": charts}
    return templates.env.get_template(PAGE_TEMPLATE).render(values)


def write_report(
    report: KpiSummary, folder: Path, templates: NoticeTemplates, locale: str
) -> list[Path]:
    """Write `kpi_<period>.html` and `.csv` (atomically); returns the paths."""
    html_path, csv_path = folder / f"kpi_{report.period}.html", folder / f"kpi_{report.period}.csv"
    write_atomically(csv_path, render_csv(report, _names(report)), "utf-8-sig")
    write_atomically(html_path, render_html(report, templates, locale), "utf-8")
    return [html_path, csv_path]


def read_report(
    conn: Connection,
    measured: Sequence[Measured],
    metrics: Sequence[MetricRule],
    months: Sequence[str],
) -> KpiSummary:
    """The report of the last of `months`, with the branches' and people's names looked up."""
    wanted = sorted({m.party_id for m in measured if m.scope == "staff"})
    rows = conn.execute(select(Staff.id, Staff.name).where(Staff.id.in_(wanted))) if wanted else []
    staff = {staff_id: name for staff_id, name in rows}
    branches = {r.id: dict(r._mapping) for r in conn.execute(select(Branch.__table__))}
    return build_report(measured, metrics, months, branches, staff)


def kpi_letters(
    summary: KpiSummary, settings: KpiReport, directory: Directory, reasons: Counter[str]
) -> list[Letter]:
    """Each branch's report to its `settings.to` roles; the key makes it once per month."""
    letters: list[Letter] = []
    for part in summary.branches:
        branch = directory.branches.get(part.branch_id) or {"id": part.branch_id}
        mine = summary.only(part.branch_id)
        name = f"kpi_{summary.period}_{part.code}"
        context = {
            "report": mine,
            "branch": branch,
            "timezone": part.timezone,
            "charts": {part.code: f"cid:{chart_cid(name)}"},
        }
        letters += branch_letters(
            directory, settings.to, part.branch_id, reasons,
            key=f"kpi-report|{summary.period}|branch:{part.branch_id}",
            template=settings.notice, context=context,
            attachments=cache(partial(attachments, mine, name)),
        )  # fmt: skip
    return letters
