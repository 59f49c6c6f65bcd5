"""Settling the ledger in a night: book the tallies' findings, close periods, send the notices.

Runs inside the night's transaction, after the findings are recorded:

1. every new tally finding becomes one ledger entry (engine.ledger.book);
2. the periods whose close has passed are recorded as closed by this run, in the order they
   close, so what is booked for them later is a correction; a night after the host was down
   over one or more closes closes every period missed (engine.ledger.book.to_settle);
3. each person with new entries gets one reward/penalty notice (奖罚通知单) per closing
   month, copied to accounting and payroll (`ledger.copy_to`);
4. for each month closed now, each branch's service manager (`ledger.summary_to`) gets the
   penalty and reward summary of the branch.

The summaries of every month touched are returned, for the run to write as HTML and CSV next
to its artifact once the transaction has committed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache, partial
from typing import Any

from sqlalchemy import Connection

from engine.db.catalogue import entity_table
from engine.findings import Finding
from engine.ledger.approval import (
    HEAD_OFFICE as HEAD_OFFICE_CODE,
)
from engine.ledger.approval import (
    Release,
    Waiting,
    hold,
    needs_approval,
    release,
    waiting,
)
from engine.ledger.book import LEDGER_DETAILS, book, close, to_settle
from engine.ledger.periods import Period, in_closing_order
from engine.notices.outbox import Letter, branch_letters, queue_letters
from engine.notices.recipients import HEAD_OFFICE as HEAD_OFFICE_BRANCH
from engine.notices.recipients import Directory, Recipient
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy
from engine.policy.tally_spec import TallyRule
from engine.reports.charts import chart_cid
from engine.reports.penalties import (
    Line,
    Summary,
    attachments,
    build_summary,
    closing_months,
    entry_line,
    explained,
    total,
)


@dataclass
class Settlement:
    """What settling did in one night."""

    entries: int = 0
    closed: list[str] = field(default_factory=list)
    queued: int = 0
    set_aside: int = 0
    released: int = 0
    waiting: list[Waiting] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    summaries: list[Summary] = field(default_factory=list)

    def artifact(self) -> dict[str, Any]:
        """The `ledger` part of the run artifact."""
        return {
            "entries_booked": self.entries,
            "periods_closed": self.closed,
            "notices_queued": self.queued,
            "months_reported": [s.period for s in self.summaries],
            "entries_released": self.released,
            "awaiting_approval": [w.artifact() for w in self.waiting],
        }


def settle(
    conn: Connection,
    findings: Sequence[Finding],
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    directory: Directory | None = None,
) -> Settlement:
    """Book new tally findings, close the periods due, and queue the close's notices (those
    of held entries once approved: engine.ledger.approval); `directory`, if given, is the
    run's (read once)."""
    result = Settlement()
    if not policy.tallies:
        return result
    booked = book(conn, findings, run_id=run_id, as_of=as_of, policy_hash=policy.hash)
    kinds = sorted({t.rule.period for t in policy.tallies})
    due = in_closing_order(p for k in kinds for p in to_settle(conn, k, as_of, policy.ledger))
    closed = close(conn, due, policy.ledger, run_id=run_id, as_of=as_of, policy_hash=policy.hash)
    result.entries, result.closed = len(booked), [p.key for p in closed]
    directory = directory or Directory(conn, roles=policy.roles)
    rules = {t.rule.id: t.rule for t in policy.tallies}
    lines = {f.key: _line(f, rules, run_id, as_of) for f in booked}
    held = [
        f
        for f in booked
        if needs_approval(
            policy.ledger, directory.branches.get(f.details[LEDGER_DETAILS]["branch_id"])
        )
    ]
    waits = {f.key for f in held}
    announced = [_Entry.of(f, lines[f.key]) for f in booked if f.key not in waits]
    announced += _approved(conn, rules, directory, run_id, result)
    letters = _person_letters(announced, policy, directory, result.reasons)
    for held_group in hold(conn, held, run_id=run_id, as_of=as_of):
        mine = [lines[f.key] for f in held if _held_in(f, held_group)]
        letters += _approval_letters(held_group, mine, held, policy, directory, result.reasons)
    months = closing_months([*closed, *(Period.parse(f.occurrence) for f in booked)])
    summaries = {m.key: build_summary(conn, m, rules) for m in months}
    result.summaries = [s for s in summaries.values() if s.entries or s.period in result.closed]
    for month in closing_months(closed):
        letters += _summary_letters(summaries[month.key], policy, directory, result.reasons)
    queued = queue_letters(
        conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
    )
    result.queued, result.set_aside = queued.queued, queued.set_aside + sum(result.reasons.values())
    result.reasons.update(queued.reasons)
    result.waiting = waiting(conn) if policy.ledger.approval is not None else []
    return result


def settle_approved(
    conn: Connection,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
    directory: Directory,
) -> Settlement:
    """Only queue the notices of entries approved since the last run: for a run that does
    not settle the ledger, so an approval goes out within a cycle, not at the next close."""
    result = Settlement()
    rules = {t.rule.id: t.rule for t in policy.tallies}
    entries = _approved(conn, rules, directory, run_id, result)
    letters = _person_letters(entries, policy, directory, result.reasons)
    queued = queue_letters(
        conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
    )
    result.queued, result.set_aside = queued.queued, queued.set_aside + sum(result.reasons.values())
    result.reasons.update(queued.reasons)
    result.waiting = waiting(conn)
    return result


def _approved(
    conn: Connection,
    rules: Mapping[str, TallyRule],
    directory: Directory,
    run_id: str,
    result: Settlement,
) -> list[_Entry]:
    """The entries approved since their hold, now released by this run."""
    out: list[_Entry] = []
    for released in release(conn, run_id=run_id):
        out += [_Entry.released(row, released, rules, directory) for row in released.rows]
        result.released += len(released.rows)
    return out


@dataclass(frozen=True, slots=True)
class _Entry:
    """A ledger entry a person is told about: from this run's booking, or released."""

    key: str
    month: str  # the closing month its notice is for
    party: int
    line: Line
    correction: bool
    record: dict[str, Any]
    approval: dict[str, Any] | None = None  # who approved it and when, if it waited

    @classmethod
    def of(cls, finding: Finding, line: Line) -> _Entry:
        """An entry booked now and told at once."""
        month = Period.parse(finding.occurrence).closing_month.key
        party, correction = int(finding.entity_id), finding.state != "charged"
        return cls(finding.key, month, party, line, correction, dict(finding.record))

    @classmethod
    def released(
        cls, row: Any, done: Release, rules: Mapping[str, TallyRule], directory: Directory
    ) -> _Entry:
        """An entry booked by an earlier run, told now that it is approved."""
        party = int(row["party_id"])
        person = dict(directory.staff.get(party) or {"id": party, "name": str(party)})
        approval = {"by": done.approved_by, "at": done.approved_at}
        line = entry_line(row, rules)
        return cls(
            row["key"], done.period, party, line, row["kind"] == "correction", person, approval
        )


def _held_in(finding: Finding, waits: dict[str, Any]) -> bool:
    month = Period.parse(finding.occurrence).closing_month.key
    return (month, finding.details[LEDGER_DETAILS]["branch_id"]) == (
        waits["period"],
        waits["branch_id"],
    )


def _person_letters(
    entries: Sequence[_Entry], policy: Policy, directory: Directory, reasons: Counter[str]
) -> list[Letter]:
    """One notice per person and closing month for these entries, with its copies."""
    ledger, staff = policy.ledger, entity_table("staff")
    by_person: dict[tuple[str, int], list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_person[(entry.month, entry.party)].append(entry)
    letters: list[Letter] = []
    for (month, party), found in sorted(by_person.items()):
        found.sort(key=lambda e: e.key)
        person = directory.staff.get(party) or found[0].record
        digest = hashlib.sha256("\n".join(e.key for e in found).encode()).hexdigest()[:16]
        mine = [e.line for e in found]
        context = {
            "party": person,
            "branch": _branch(directory, person.get("branch_id")),
            "month": month,
            "periods": sorted({line.period for line in mine}),
            "lines": mine,
            "totals": total(mine),
            "correction": all(e.correction for e in found),
            "approval": found[0].approval,
            "role_titles": role_titles(policy),
        }
        context["timezone"] = context["branch"]["timezone"]
        readers = [_self(person)]
        for role in ledger.copy_to:
            copies = directory.resolve(staff, role, person)
            if not copies:
                reasons[f"nobody in role {role}"] += 1
            readers += copies
        for reader in readers:
            letters.append(
                Letter(
                    f"ledger|{month}|staff:{party}|{digest}",
                    reader,
                    ledger.notice,
                    {**context, "recipient": reader.reader},
                )
            )
    return letters


def _approval_letters(
    waits: dict[str, Any],
    mine: list[Line],
    held: Sequence[Finding],
    policy: Policy,
    directory: Directory,
    reasons: Counter[str],
) -> list[Letter]:
    """The approver is told that a branch's month waits, with what it would announce."""
    approval = policy.ledger.approval
    assert approval is not None
    branch = _branch(directory, waits["branch_id"])
    # Each person with their lines: the approver sees whose money each line is.
    people: dict[int, dict[str, Any]] = {}
    for finding, line in zip((f for f in held if _held_in(f, waits)), mine, strict=True):
        party = int(finding.entity_id)
        person = directory.staff.get(party) or finding.record
        said = {"name": person.get("name"), "role": person.get("role"), "lines": []}
        people.setdefault(party, said)["lines"].append(line)
    context = {
        "month": waits["period"],
        "branch": branch,
        "timezone": branch["timezone"],
        "entries": waits["entries"],
        "people": list(people.values()),
        "lines": mine,
        "totals": total(mine),
        "correction": all(line.kind == "correction" for line in mine),
        "role_titles": role_titles(policy),
        # Always one branch: without --branch the command would approve every branch's month.
        # The letter adds `--by "NAME"`, the placeholder in the reader's language.
        "command": f"aftersales approve {waits['period']} --branch "
        + (branch["code"] if waits["branch_id"] else HEAD_OFFICE_CODE),
    }
    return branch_letters(
        directory, (approval.by,), waits["branch_id"], reasons,
        key=f"ledger-approval|{waits['period']}|branch:{waits['branch_id'] or 'head-office'}"
        f"|{waits['first_entry_id']}",
        template=approval.notice, context=context,
    )  # fmt: skip


def _summary_letters(
    summary: Summary, policy: Policy, directory: Directory, reasons: Counter[str]
) -> list[Letter]:
    """The closed month's summary of each branch, to the branch's service manager."""
    letters: list[Letter] = []
    for part in summary.branches:
        branch = _branch(directory, part.branch_id)
        mine = summary.only(part.branch_id)
        name = f"penalties_{summary.period}_{part.code}"
        context = {
            "summary": mine,
            "branch": branch,
            "timezone": branch["timezone"],
            "chart_src": f"cid:{chart_cid(name)}",
            "role_titles": role_titles(policy),
        }
        letters += branch_letters(
            directory, policy.ledger.summary_to, part.branch_id, reasons,
            key=f"ledger-summary|{summary.period}|branch:{part.branch_id or 'head-office'}",
            template=policy.ledger.summary, context=context,
            attachments=cache(partial(attachments, mine, name)),
        )  # fmt: skip
    return letters


def _line(finding: Finding, rules: Mapping[str, TallyRule], run_id: str, as_of: datetime) -> Line:
    booking = finding.details[LEDGER_DETAILS]
    rule = rules.get(finding.rule_id)
    return Line(
        period=finding.occurrence,
        rule_id=finding.rule_id,
        rule_title=rule.title if rule else finding.rule_id,
        direction=booking["details"]["direction"],
        kind=booking["kind"],
        amount=finding.amount or Decimal(0),
        currency=finding.currency or "",
        entity=booking["entity"],
        entity_ids=tuple(booking["entity_ids"]),
        reason=finding.reason,
        run_id=run_id,
        booked_at=as_of,
        titles=rule.localized_titles() if rule else {},
        details=explained(booking["details"], rule),
    )


def role_titles(policy: Policy) -> dict[str, dict[str, str]]:
    """Each role's title per locale (rules/roles.yaml): letters name a role in the reader's
    language."""
    return {role: dict(spec.title) for role, spec in policy.roles.items()}


def _branch(directory: Directory, branch_id: int | None) -> dict[str, Any]:
    return dict(directory.branches.get(branch_id) or HEAD_OFFICE_BRANCH)  # type: ignore[arg-type]


def _self(person: dict[str, Any]) -> Recipient:
    return Recipient(
        role="party",
        kind="staff",
        id=person["id"],
        name=person["name"],
        address=person.get("email"),
        locale=person.get("locale") or "en",
    )
