"""The penalty and reward summary of a closed month, per branch and person, from the ledger.

`build_summary` reads every entry of the periods a month's close closes (the month, and the
quarter it ends), originals and corrections alike, so the summary always shows the current
state of those periods. It is rendered as an email-ready HTML page (the same table the
service manager's notice carries, `templates/notices/_reports/penalty_table.html.j2`) and as
a CSV with one row per entry, for accounting and payroll.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from engine.db.models import Branch, LedgerClose, LedgerEntry, Staff
from engine.findings import instant_text
from engine.ledger.periods import Period, closing_with
from engine.notices.outbox import Attachment
from engine.notices.recipients import HEAD_OFFICE
from engine.notices.templates import NoticeTemplates
from engine.policy.tally_spec import TallyRule
from engine.reports.charts import SignedBar, chart_cid, signed_chart
from engine.reports.files import write_atomically
from engine.reports.spreadsheet import csv_text

PAGE_TEMPLATE = "_reports/penalties.html.j2"
_CENTS = Decimal("0.01")
CSV_COLUMNS = (
    "period",
    "report",
    "branch",
    "branch_name",
    "staff_id",
    "staff_name",
    "role",
    "rule_id",
    "rule_title",
    "direction",
    "kind",
    "amount",
    "currency",
    "entity",
    "entity_ids",
    "reason",
    "run_id",
    "booked_at",
)


@dataclass(frozen=True, slots=True)
class Line:
    """One ledger entry as the summary shows it."""

    period: str
    rule_id: str
    rule_title: str
    direction: str  # penalty or reward
    kind: str  # original or correction
    amount: Decimal  # signed: rewards positive, penalties negative
    currency: str
    entity: str
    entity_ids: tuple[str, ...]
    reason: str
    run_id: str
    booked_at: datetime
    # The rule's title per locale, and the reason's parts as data (`explained`), so a letter
    # says both in the reader's language; `rule_title` and `reason` stay for the CSV.
    titles: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def day(self) -> date | None:
        """The day a daily period is (`2026-12-07`); None for a month, quarter, ..."""
        return date.fromisoformat(self.period) if _DAY.match(self.period) else None


@dataclass
class Totals:
    """Penalties and rewards in one currency; net is what pay changes by."""

    currency: str
    penalties: Decimal = Decimal(0)
    rewards: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        """Rewards less penalties."""
        return self.rewards - self.penalties


@dataclass
class Person:
    """One person's entries and totals."""

    staff_id: int
    name: str
    role: str
    lines: list[Line] = field(default_factory=list)

    @property
    def totals(self) -> list[Totals]:
        """Per currency."""
        return total(self.lines)


@dataclass
class BranchPart:
    """One branch's people (head office has no branch id)."""

    branch_id: int | None
    code: str
    name: str
    timezone: str
    people: list[Person] = field(default_factory=list)

    @property
    def totals(self) -> list[Totals]:
        """Per currency."""
        return total(line for person in self.people for line in person.lines)


@dataclass
class Summary:
    """Penalties and rewards of a period: a month with the quarter it ends, or a quarter."""

    period: str
    periods: tuple[str, ...]
    closed_at: datetime | None
    branches: list[BranchPart] = field(default_factory=list)

    @property
    def totals(self) -> list[Totals]:
        """Per currency, all branches."""
        return total(line for part in self.branches for p in part.people for line in p.lines)

    @property
    def rules(self) -> list[tuple[str, Line]]:
        """(rule id, its first entry: the title in each language) of each rule with entries,
        penalties first: the chart's bars, numbered from 1 in this order."""
        first: dict[str, Line] = {}
        for part in self.branches:
            for person in part.people:
                for line in person.lines:
                    first.setdefault(line.rule_id, line)
        order = sorted(first.values(), key=lambda line: (line.direction != "penalty", line.rule_id))
        return [(line.rule_id, line) for line in order]

    @property
    def entries(self) -> int:
        """Number of ledger entries shown."""
        return sum(len(p.lines) for part in self.branches for p in part.people)

    def only(self, branch_id: int | None) -> Summary:
        """The same summary for one branch."""
        parts = [part for part in self.branches if part.branch_id == branch_id]
        return Summary(self.period, self.periods, self.closed_at, parts)


def total(lines: Iterable[Line]) -> list[Totals]:
    """Penalties and rewards per currency, as positive amounts."""
    out: dict[str, Totals] = {}
    for line in lines:
        sums = out.setdefault(line.currency, Totals(line.currency))
        if line.direction == "penalty":
            sums.penalties -= line.amount
        else:
            sums.rewards += line.amount
    return [out[c] for c in sorted(out)]


def build_summary(conn: Connection, period: Period, rules: Mapping[str, TallyRule]) -> Summary:
    """Every ledger entry of `period` by branch and person (a month: with the quarter it ends)."""
    periods = [p.key for p in closing_with(period)] if period.kind == "month" else [period.key]
    entries, staff, branches = (t.__table__ for t in (LedgerEntry, Staff, Branch))
    rows = conn.execute(
        select(entries, staff.c.name.label("staff_name"), staff.c.role.label("staff_role"))
        .join(staff, staff.c.id == entries.c.party_id)
        .where(entries.c.period.in_(periods))
        .order_by(entries.c.branch_id, staff.c.name, entries.c.party_id, entries.c.id)
    ).mappings()
    known = {b["id"]: b for b in conn.execute(select(branches)).mappings()}
    closes = LedgerClose.__table__
    closed_at = conn.scalar(select(closes.c.created_at).where(closes.c.period == period.key))
    summary = Summary(period.key, tuple(periods), closed_at)
    parts: dict[int | None, BranchPart] = {}
    people: dict[int, Person] = {}
    for row in rows:
        branch_id = row["branch_id"]
        if branch_id not in parts:
            branch = {**HEAD_OFFICE, **(known.get(branch_id) or {})}
            parts[branch_id] = BranchPart(
                branch_id, branch["code"], branch["name"], branch["timezone"]
            )
            summary.branches.append(parts[branch_id])
        person = people.get(row["party_id"])
        if person is None:
            person = Person(row["party_id"], row["staff_name"], row["staff_role"])
            people[row["party_id"]] = person
            parts[branch_id].people.append(person)
        person.lines.append(entry_line(row, rules))
    return summary


def entry_line(row: Mapping[str, Any], rules: Mapping[str, TallyRule]) -> Line:
    """A ledger_entries row as a summary or a notice shows it."""
    details = row["details"] or {}
    amount: Decimal = row["amount"]
    direction = details.get("direction") or ("penalty" if amount < 0 else "reward")
    rule = rules.get(row["rule_id"])
    return Line(
        period=row["period"],
        rule_id=row["rule_id"],
        rule_title=rule.title if rule else row["rule_id"],
        direction=direction,
        kind=row["kind"],
        amount=amount,
        currency=row["currency"],
        entity=row["entity"],
        entity_ids=tuple(str(i) for i in row["entity_ids"] or ()),
        reason=row["reason"],
        run_id=row["run_id"],
        booked_at=row["created_at"],
        titles=rule.localized_titles() if rule else {},
        details=explained(details, rule),
    )


def explained(details: Mapping[str, Any], rule: TallyRule | None) -> dict[str, Any]:
    """A booking's details (engine.rules.tally) as a letter reads them: numbers as Decimals,
    instants and days as such, and the policy's words (a score part's `names`, a factor's
    `why`) per locale beside what they explain. Details booked before these were kept (no
    `kind`, `base`, `ratio`, ...) are left out, and the letter gives the booked reason."""
    if not _as_booked_now(details):
        details = {k: v for k, v in details.items() if k not in ("items", "band", "parts")}
    out = {key: _decimal(value) if key in _NUMBERS else value for key, value in details.items()}
    if "measure" in out:
        out["measure"] = _rounded(out["measure"], details.get("kind") == "ratio")
    why = [m.why for m in rule.multiply] if rule else []
    out["items"] = [
        {
            **item,
            "at": _moment(item.get("at")),
            "base": Decimal(item["base"]),
            "times": Decimal(item["times"]),
            "why": [why[i] for i in item.get("multiplied", ()) if i < len(why) and why[i]],
        }
        for item in details.get("items", ())
    ]
    names = {part.name: part.names for part in rule.score} if rule else {}
    out["parts"] = [
        {
            **part,
            **{key: _decimal(part.get(key)) for key in ("points", "weight", "gate")},
            "measure": _rounded(_decimal(part.get("measure")), part.get("ratio", False)),
            "names": names.get(part["name"], {}),
        }
        for part in details.get("parts", ())
    ]
    return out


def _as_booked_now(details: Mapping[str, Any]) -> bool:
    """True when the details have every key the letters read (an entry booked since)."""
    items = all("base" in item and "times" in item for item in details.get("items", ()))
    band = "band" not in details or "kind" in details
    parts = details.get("parts", ())
    scored = not parts or ("per_point" in details and all("ratio" in p for p in parts))
    return items and band and scored


_NUMBERS = frozenset({"measure", "band", "points", "per_point", "uncapped", "cap", "was", "now"})
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _rounded(value: Decimal | None, ratio: bool) -> Decimal | None:
    """A measured value as the reason shows it, half up as the English reason does: a ratio
    to a hundredth of a percent (94.99 % is not 95 %), others to a hundredth."""
    if value is None:
        return None
    return value.quantize(Decimal("0.0001" if ratio else "0.01"), rounding=ROUND_HALF_UP)


def _moment(value: str | None) -> date | datetime | None:
    """An entity's `at` as stored: a day, or an instant (UTC when it carries no offset)."""
    if value is None:
        return None
    if _DAY.match(value):
        return date.fromisoformat(value)
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def render_csv(summary: Summary) -> str:
    """One row per ledger entry, with the branch and the person."""
    return csv_text(
        CSV_COLUMNS,
        (
            (
                line.period,
                summary.period,
                part.code,
                part.name,
                person.staff_id,
                person.name,
                person.role,
                line.rule_id,
                line.rule_title,
                line.direction,
                line.kind,
                line.amount.quantize(_CENTS),  # a number: a penalty reads -50.00, not text
                line.currency,
                line.entity,
                " ".join(line.entity_ids),
                line.reason,
                line.run_id,
                instant_text(line.booked_at),
            )
            for part in summary.branches
            for person in part.people
            for line in person.lines
        ),
    )


def chart(summary: Summary) -> bytes:
    """Penalties (down, red) and rewards (up, green) per rule, a panel per currency, as PNG;
    each bar is the rule's number in `summary.rules`."""
    by_rule: dict[str, list[Line]] = {}
    for part in summary.branches:
        for person in part.people:
            for line in person.lines:
                by_rule.setdefault(line.rule_id, []).append(line)
    panels: dict[str, list[SignedBar]] = {}
    for number, (rule_id, _) in enumerate(summary.rules, 1):
        for sums in total(by_rule[rule_id]):
            bar = SignedBar(str(number), -float(sums.penalties), float(sums.rewards))
            panels.setdefault(sums.currency, []).append(bar)
    return signed_chart(sorted(panels.items()))


def attachments(summary: Summary, name: str) -> tuple[Attachment, ...]:
    """The summary's CSV and its chart (shown inline as `cid:` + chart_cid(name)), for a letter."""
    return (
        Attachment(f"{name}.csv", "text/csv", render_csv(summary).encode("utf-8-sig")),
        Attachment(f"{name}.png", "image/png", chart(summary), chart_cid(name)),
    )


def render_html(
    summary: Summary, templates: NoticeTemplates, locale: str, timezone: str = "UTC"
) -> str:
    """The summary as a standalone, email-ready HTML page in `locale`, times in `timezone`."""
    src = "data:image/png;base64," + base64.b64encode(chart(summary)).decode("ascii")
    values = {"summary": summary, "locale": locale, "timezone": timezone, "chart_src": src}
    return templates.env.get_template(PAGE_TEMPLATE).render(values)


def report_paths(folder: Path, period: str) -> tuple[Path, Path]:
    """Where a period's HTML page and CSV go: `<folder>/penalties_<period>.{html,csv}`."""
    return folder / f"penalties_{period}.html", folder / f"penalties_{period}.csv"


def write_reports(
    summaries: Sequence[Summary],
    folder: Path,
    templates: NoticeTemplates,
    locale: str,
    timezone: str = "UTC",
) -> list[Path]:
    """Write each summary's HTML page and CSV (atomically); returns the paths written."""
    written: list[Path] = []
    for summary in summaries:
        html_path, csv_path = report_paths(folder, summary.period)
        # utf-8-sig: spreadsheet programs then read the Chinese names right.
        write_atomically(csv_path, render_csv(summary), "utf-8-sig")
        write_atomically(html_path, render_html(summary, templates, locale, timezone), "utf-8")
        written += [html_path, csv_path]
    return written


def closing_months(periods: Iterable[Period]) -> list[Period]:
    """The distinct months whose close covers these periods, in order."""
    return sorted({period.closing_month for period in periods})
