"""`aftersales explain`: why a rule does or does not fire for one entity, step by step.

The same functions that judge a night are used here, on one row, so what explain says is
what the night does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import aliased

from engine.calendar import BusinessCalendar
from engine.db.catalogue import entity_table
from engine.db.models import (
    Branch,
    Contract,
    Customer,
    Finding,
    LedgerApproval,
    LedgerEntry,
    Notice,
    Staff,
    StatusChange,
)
from engine.db.schema import require_current
from engine.errors import UsageError
from engine.expr import evaluate, parse
from engine.expr import explain as explain_condition
from engine.ledger.approval import needs_approval
from engine.ledger.book import closed
from engine.ledger.periods import Period
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import CompiledRule, CompiledTally, LedgerSettings, Policy, ReminderRule
from engine.policy.branch_scope import branch_in_scope
from engine.policy.loader import CompiledObligation
from engine.policy.models import Action, ClassificationRule, DeadlineRule
from engine.policy.obligation_spec import PlanCount
from engine.rule_versions import PolicyHistory
from engine.rules import classification, deadline, obligation, reminder, tally, tally_amounts
from engine.rules.repeats import repeats_of
from engine.run import load_checked_policy
from engine.settings import Settings
from engine.warranty import (
    BASIS_WORDS,
    PROVEN_BASES,
    UNIT_PART,
    basis_field,
    basis_present,
    coverage_text,
    unit_warranty,
)

Lines = list[tuple[str, str]]


def explain_rule(
    settings: Settings, engine: Engine, rule_id: str, entity_id: str, as_of: datetime
) -> Lines:
    """Labelled lines that walk through one rule for one entity at `as_of`."""
    policy, templates = load_checked_policy(settings)
    item = policy.rule(rule_id)
    if item is None and rule_id in {m.rule.id for m in policy.metrics}:
        raise UsageError(
            f"{rule_id!r} is a metric, measured per branch and month, not per entity: "
            "`aftersales report kpi` shows its values"
        )
    if item is None:
        raise UsageError(f"no rule {rule_id!r}; rules: {', '.join(policy.rule_ids())}")
    require_current(engine)
    if not entity_id.isdigit():
        raise UsageError(f"{item.table.name} ids are whole numbers, not {entity_id!r}")
    key = int(entity_id)
    table = _one_row_source(item, key)
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == key)).mappings().first()
        if row is None:
            raise UsageError(f"no {table.name} row with id {entity_id}")
        record = dict(row)
        branch = _branch(conn, record)
        tz = branch.get("timezone") or "UTC"
        lines: Lines = [
            ("rule", f"{item.rule.id}: {item.rule.title}"),
            *((f"title {loc}", text) for loc, text in sorted(item.rule.titles.items())),
            ("source", item.rule.source or "-"),
            ("entity", f"{table.name} {record.get('number') or record['id']} (time zone {tz})"),
            ("as of", as_of.astimezone(ZoneInfo(tz)).isoformat()),
        ]
        if item.rule.disabled:
            lines.append(("disabled", f"not judged: {item.rule.disabled}"))
        within = _scope_lines(item, branch or record, lines)
        matched = _condition_lines(item, record, as_of, lines) and within
        if isinstance(item.rule, ReminderRule):
            lines += _reminder_lines(item, record, tz, matched, as_of)
        elif isinstance(item, CompiledTally):
            lines += _tally_lines(conn, item, record["id"], matched, as_of)
        elif isinstance(item.rule, ClassificationRule):
            lines += _classification_lines(conn, item, record, key, matched, as_of)
        elif isinstance(item, CompiledObligation):
            lines += _obligation_lines(conn, policy, item, key, matched, as_of)
        else:
            version = _version_judging(conn, policy, templates, item, record, as_of, lines)
            if version is not None:
                judged, calendars = version
                lines += _deadline_lines(conn, calendars, judged, record, branch, matched, as_of)
        lines += _reach_lines(conn, policy, item, record)
        lines += _recorded(conn, item, record)
    return lines


def _reach_lines(
    conn: Connection, policy: Policy, item: CompiledRule[Any], record: dict[str, Any]
) -> Lines:
    """Who each of the rule's notices reaches for this row, as the night would queue it."""
    rule = item.rule
    if isinstance(rule, DeadlineRule):
        actions: dict[str, Action] = rule.actions()
    elif isinstance(rule, ClassificationRule):
        actions = {f"outcome {o}": a for o, a in rule.on_outcome.items()}
        actions.update({"mismatch": rule.on_mismatch} if rule.on_mismatch else {})
    else:
        actions = {"notice": rule} if isinstance(rule, Action) else {}
    customers = [record["customer_id"]] if record.get("customer_id") else []
    directory = Directory(conn, customers, policy.roles)
    table = entity_table(rule.entity)
    return [
        (f"reaches ({state}, {plan.template})", directory.describe(table, plan, record))
        for state, action in actions.items()
        for plan in action.notices()
    ]


def explain_warranty(settings: Settings, engine: Engine, unit_id: str, as_of: datetime) -> Lines:
    """Every part's coverage window of one unit, the basis used and any promotion applied."""
    policy, _ = load_checked_policy(settings)
    require_current(engine)
    if not unit_id.isdigit():
        raise UsageError(f"a unit id is a number, not {unit_id!r}")
    key = int(unit_id)
    units = policy.views.narrowed("units", lambda t: t.c.id == key)
    with engine.connect() as conn:
        row = conn.execute(select(units).where(units.c.id == key)).mappings().first()
        if row is None:
            raise UsageError(f"no units row with id {unit_id}")
        unit = dict(row)
        branch = _branch(conn, unit)
        customer = conn.scalar(select(Customer.name).where(Customer.id == unit["customer_id"]))
        contracts = _covering_contracts(conn, unit, policy.warranty.contract_kinds)
    tz = ZoneInfo(branch.get("timezone") or "UTC")
    today = as_of.astimezone(tz).date()
    lines: Lines = [
        (
            "unit",
            f"{unit['serial_number']}: {unit['product_model']} {unit['product_name']} "
            f"({unit['product_category']})",
        ),
        ("customer", customer or "-"),
        ("as of", f"{as_of.astimezone(tz).isoformat()} ({tz.key})"),
    ]
    warranty = unit_warranty(policy.warranty, unit)
    term = warranty.term
    if term is None:
        terms = ", ".join(t.id for t in policy.warranty.terms) or "none in the policy"
        return [*lines, ("term", f"none for this product (terms: {terms})"), *contracts]
    lines.append(("term", f"{term.id}: {term.title or '-'} (for {term.selector})"))
    for basis in term.basis:
        value = unit.get(basis_field(basis))
        used = " (used)" if basis == warranty.basis else ""
        if basis in PROVEN_BASES and value is not None and not basis_present(basis, unit):
            shown = f"{value}, no proof of purchase"
        else:
            shown = str(value) if value is not None else "-"
        lines.append(("basis", f"{BASIS_WORDS[basis]}: {shown}{used}"))
    if warranty.basis is None:
        lines.append(("coverage", "none: the unit has none of these dates"))
    promotion = warranty.promotion
    lines.append(
        (
            "promotion",
            f"{promotion.id}: {promotion.title or '-'} (bought {promotion.first} to "
            f"{promotion.last})"
            if promotion
            else "none",
        )
    )
    for window in warranty.windows:
        length = str(window.term)
        if window.extension:
            length += f" + {window.extension} ({promotion.id if promotion else '-'})"
        state = (
            "covered"
            if window.starts_on <= today <= window.ends_on
            else "ended"
            if today > window.ends_on
            else "not started"
        )
        lines.append(
            ("part", f"{window.part} {length}: {window.starts_on} to {window.ends_on}, {state}")
        )
    if UNIT_PART in term.parts:
        lines.append(("other parts", "fall under the unit term"))
    lines.append(("void when", term.void_text or "-"))
    return [*lines, *contracts]


def _covering_contracts(conn: Connection, unit: dict[str, Any], kinds: tuple[str, ...]) -> Lines:
    contracts = Contract.__table__
    found = conn.execute(
        select(contracts)
        .where(
            contracts.c.customer_id == unit["customer_id"],
            (contracts.c.unit_id == unit["id"]) | contracts.c.unit_id.is_(None),
            contracts.c.kind.in_(kinds),
        )
        .order_by(contracts.c.starts_on)
    ).mappings()
    lines: Lines = [
        (
            "contract",
            f"{c['number']} {c['kind']} {c['status']} {c['starts_on']} to {c['ends_on']}"
            + ("" if c["unit_id"] is not None else " (all the customer's units)"),
        )
        for c in found
    ]
    return lines or [("contract", "none covers this unit")]


def _one_row_source(item: CompiledRule[Any], key: Any) -> Any:
    # A derived view is narrowed to the one row before its fields are computed.
    if item.views is None:
        return item.table
    return item.views.narrowed(item.rule.entity, lambda t: t.c.id == key)


def _classification_lines(
    conn: Connection,
    item: CompiledRule[Any],
    record: dict[str, Any],
    key: Any,
    matched: bool,
    as_of: datetime,
) -> Lines:
    rule = item.rule
    lines: Lines = []
    if "warranty_term" in record:
        lines.append(("warranty", coverage_text(record)))
        number = record.get("contract_number")
        day = record.get("received_on")
        lines.append(("contract", f"{number} covers {day}" if number else f"none covers {day}"))
    decided = None
    if matched and classification.is_effective(item, as_of):
        stmt = classification.decisions(item, as_of, only=lambda t: t.c.id == key)
        decided = conn.execute(stmt).mappings().first()
    reached = True
    for index, row in enumerate(rule.first_match, start=1):
        if not reached:
            lines.append((f"row {index}", f"(not reached) {row.when or 'otherwise'}"))
            continue
        value = True if row.when is None else evaluate(parse(row.when), record, as_of)
        mark = "yes" if value else "NO " if value is False else "n/a"
        lines.append((f"row {index}", f"{mark} {row.when or 'otherwise'} -> {row.outcome}"))
        reached = value is not True
    if decided is None:
        state = (
            f"rule not effective before {rule.effective_from}"
            if not classification.is_effective(item, as_of)
            else "condition does not hold: not classified"
        )
        return [*lines, ("decision", state)]
    outcome, index = decided[classification.DECISION], decided[classification.ROW]
    where = f"row {index + 1}" if index is not None else "no row matched"
    lines.append(("decision", f"{outcome} ({where})"))
    if rule.recorded is not None:
        value = record.get(rule.recorded)
        verdict = "not recorded" if value is None else "agrees" if value == outcome else "mismatch"
        lines.append(("recorded", f"{value or '-'}: {verdict}"))
    return lines


def _branch(conn: Connection, record: dict[str, Any]) -> dict[str, Any]:
    if "branch_id" not in record:
        return {}
    found = conn.execute(select(Branch.__table__).where(Branch.id == record["branch_id"]))
    row = found.mappings().first()
    return dict(row) if row else {}


def _approval_line(
    conn: Connection, ledger: LedgerSettings, period: Period, branch_id: int | None
) -> tuple[str, str]:
    """Whether the notices of the period's entries at this branch wait for approval."""
    assert ledger.approval is not None
    month = period.closing_month.key
    table = LedgerApproval.__table__
    last = conn.execute(
        select(table.c.approved_by, table.c.approved_at, table.c.released_run_id)
        .where(table.c.period == month, table.c.branch_id == branch_id)
        .order_by(table.c.id.desc())
    ).first()
    rule = f"notices wait for {ledger.approval.by} (aftersales approve {month} --by NAME)"
    if last is None:
        return ("approval", f"{rule}; nothing held yet")
    if last.approved_by is None:
        return ("approval", f"{rule}; waiting")
    sent = "sent" if last.released_run_id else "sent by the next run"
    return (
        "approval",
        f"approved by {last.approved_by} at {last.approved_at:%Y-%m-%d %H:%M}; {sent}",
    )


def _scope_lines(item: CompiledRule[Any], branch: dict[str, Any], lines: Lines) -> bool:
    """The rule's branch scope and whether this entity's branch lies in it."""
    scope = item.rule.branches
    if scope is None:
        return True
    within = branch_in_scope(scope, branch)
    here = f"{branch.get('code') or '-'} ({branch.get('country') or '-'})"
    lines.append(("branches", f"{scope}: {here} is {'in' if within else 'NOT in'} scope"))
    return within


def _condition_lines(
    item: CompiledRule[Any], record: dict[str, Any], as_of: datetime, lines: Lines
) -> bool:
    if item.condition is None:
        return True
    lines.append(("when", item.rule.when or ""))
    for text, value in explain_condition(item.condition, record, as_of):
        lines.append(("  " + ("yes" if value else "NO " if value is False else "n/a"), text))
    # The parts are for reading; the verdict is the whole condition, as the night judges it.
    return evaluate(item.condition, record, as_of) is True


def _reminder_lines(
    item: CompiledRule[Any], record: dict[str, Any], tz: str, matched: bool, as_of: datetime
) -> Lines:
    rule, local = item.rule, ZoneInfo(tz)
    anchor = record[rule.date]
    if anchor is None:
        return [(rule.date, "empty: the reminder cannot fall due")]
    due, stale = reminder.due_window(item, anchor, local)
    lines = [
        (rule.date, str(anchor)),
        ("offset", rule.offset.spoken()),
        ("due at", f"{due.astimezone(local).isoformat()} (local)"),
        ("stale from", f"{stale.astimezone(local).isoformat()} (local)"),
    ]
    if not reminder.is_effective(item, as_of):
        state = f"rule not effective before {rule.effective_from}"
    elif not matched:
        state = "condition does not hold: no reminder"
    elif as_of < due:
        state = f"not due yet ({(due - as_of).days} days to go)"
    elif as_of >= stale:
        state = "stale: too late to send"
    else:
        state = "due"
    return [*lines, ("state", state)]


def _version_judging(
    conn: Connection,
    policy: Policy,
    templates: NoticeTemplates,
    item: CompiledRule[Any],
    record: dict[str, Any],
    as_of: datetime,
    lines: Lines,
) -> tuple[CompiledRule[Any], Mapping[str, BusinessCalendar]] | None:
    """The version of a deadline that judges this entity (the one in force when its clock
    stopped, engine.rule_versions) with its calendars; None when none does. Says so in
    `lines` when it is not the policy's own."""
    stopped = deadline.stopped_at(item.rule, record, as_of)
    version = PolicyHistory(conn, policy, as_of, templates).judging(item.rule.id, stopped)
    if version is None or version.policy_hash == policy.hash:
        return item, policy.calendars
    when = f"stopped {stopped.isoformat() if stopped else '-'}"
    if version.compiled is None:
        lines.append(("version", f"{when}, when the rule was not in force: not judged"))
        return None
    lines.append(("version", f"{when}: judged by the rule as in policy {version.policy_hash}"))
    return version.compiled, version.calendars


def _deadline_lines(
    conn: Connection,
    calendars: Mapping[str, BusinessCalendar],
    item: CompiledRule[Any],
    record: dict[str, Any],
    branch: dict[str, Any],
    matched: bool,
    as_of: datetime,
) -> Lines:
    rule = item.rule
    row = {
        **record,
        deadline.TZ_LABEL: branch.get("timezone"),
        deadline.CALENDAR_LABEL: branch.get("calendar"),
    }
    calendar = deadline.calendar_for(item, row, calendars)
    if isinstance(calendar, str):
        return [("calendar", calendar), ("state", "cannot be judged")]
    if record[rule.start] is None:
        return [(rule.start, "empty: the clock has not started")]
    pauses: list[deadline.Pause] = []
    if rule.pause_while:
        history = conn.execute(
            select(StatusChange.service_request_id, StatusChange.status, StatusChange.changed_at)
            .where(
                StatusChange.service_request_id == record["id"], StatusChange.changed_at <= as_of
            )
            .order_by(StatusChange.changed_at, StatusChange.id)
        )
        pauses = deadline.pause_intervals(history, rule.pause_while).get(record["id"], [])
    clock = deadline.measure(item, record, calendar, pauses, as_of)
    if clock is None:
        return [(str(rule.by), "empty: no deadline to measure against")]
    return _timeline(item, clock, calendar, matched, as_of)


def _timeline(
    item: CompiledRule[Any],
    clock: deadline.Clock,
    calendar: BusinessCalendar,
    matched: bool,
    as_of: datetime,
) -> Lines:
    rule, local = item.rule, calendar.timezone

    def at(t: datetime) -> str:
        return t.astimezone(local).strftime("%Y-%m-%d %H:%M %a")

    target = f"within {rule.within}" if rule.within else f"by {rule.by}"
    lines = [
        ("calendar", f"{calendar.name} ({local.key})"),
        ("target", target),
        (f"start ({rule.start})", at(clock.start)),
    ]
    for begin, end in clock.pauses:
        span = calendar.between(begin, end or as_of)
        lines.append(("paused", f"{at(begin)} to {at(end) if end else 'now'}: {_hm(span)}"))
    if clock.warn_at:
        lines.append(("warning at", f"{at(clock.warn_at)} ({rule.warn_at})"))
    lines.append(("deadline", at(clock.deadline)))
    for level, instant in enumerate(clock.escalations, start=1):
        lines.append((f"escalation {level}", at(instant)))
    repeats = repeats_of(rule.repeats(), clock, calendar, as_of)
    for state, every in rule.repeats().items():
        if repeats is None or repeats.state != state:
            lines.append((f"{state} repeats", f"every {every}, none under way"))
            continue
        done = f"{repeats.done} done" + (f", the last {at(repeats.last)}" if repeats.last else "")
        upcoming = at(repeats.next) if repeats.next else "none (the deadline comes first)"
        lines.append((f"{state} repeats", f"every {every}: {done}; next {upcoming}"))
    stop = at(clock.stop) if clock.stop else "not yet"
    lines.append((f"stop ({', '.join(rule.stop)})", stop))
    used = f"{_hm(clock.used)} used"
    if clock.left is not None:
        used += f", {_hm(clock.left)} left" if clock.left > timedelta(0) else ", none left"
    lines.append(("working time", used + (f", {_hm(clock.paused)} paused" if clock.paused else "")))
    for day, why in calendar.skipped_days(clock.start, max(clock.deadline, as_of)):
        lines.append(("skipped", f"{day.isoformat()} {day:%a}: {why}"))
    if not deadline.is_effective(item, as_of):
        state = f"rule not effective before {rule.effective_from}"
    elif not matched:
        state = "condition does not hold: no timer"
    elif clock.stop is not None and clock.stop <= as_of - deadline.LATE_STOP_LOOKBACK:
        state = "stopped too long ago to be judged again"
    else:
        reached = deadline.state_of(clock, as_of)
        if repeats is not None and repeats.latest is not None:
            reached.append(repeats.latest)
        state = ", ".join(s for s, _ in reached) or (
            "on time" if clock.running else "stopped in time"
        )
    return [*lines, ("state", state)]


def _tally_lines(
    conn: Connection, item: CompiledTally, key: Any, matched: bool, as_of: datetime
) -> Lines:
    rule, ledger = item.rule, item.ledger
    row = tally.one_row(conn, item, key, as_of) or {}
    day = tally_amounts.local_day(item, row) if row.get(rule.at) is not None else None
    if day is None:
        return [(rule.at, "empty: the entity belongs to no period"), ("state", "not counted")]
    local = row.get(tally_amounts.LOCAL)
    lines: Lines = [(rule.at, f"{local} (branch time)" if local else str(day))]
    inside = True
    if rule.local_hours and local:
        inside = tally_amounts.inside(local[11:16], rule.local_hours)
        hours = "-".join(rule.local_hours)
        lines.append(("local hours", f"{hours}: {'inside' if inside else 'outside'}"))
    period = Period.containing(rule.period, day)
    closes, until = period.closes_at(ledger), period.open_until(ledger)
    state = "closed" if period.key in closed(conn, [period.key]) else "not closed yet"
    lines.append(("period", f"{period}: closes {closes.isoformat()}, {state}"))
    candidates = [
        (role, row.get(tally_amounts.PARTY.format(i))) for i, role in enumerate(rule.charge)
    ]
    people = {
        person.id: person
        for person in conn.execute(
            select(Staff.id, Staff.name, Staff.role).where(
                Staff.id.in_([w for _, w in candidates if w])
            )
        )
    }
    for role, who in candidates:
        name = people[who].name if who in people else who
        lines.append(("charge", f"{role}: {name} (staff {who})" if who else f"{role}: nobody"))
    charged = next((people[w] for _, w in candidates if w in people), None)
    amount = rule.amount_for(charged.role if charged else None)
    branch = {part: row.get(tally_amounts.BRANCH.format(part)) for part in ("code", "country")}
    currency = item.currency(branch) or "(no currency for the branch)"
    base = tally_amounts.base_amount(item, amount, row, currency, Counter())
    what = "penalty" if rule.sign < 0 else "reward"
    if base is not None:
        times, why = tally_amounts.factor(rule, row)
        shown = f"{tally_amounts.money(base)} {currency}"
        lines.append(("amount", f"{what} {shown}" + (f" × {times} ({why})" if why else "")))
    else:
        measured = rule.measure or "score"
        lines.append(("amount", f"{what} {amount}, on the {measured} per person and period"))
    entries = conn.execute(
        select(
            LedgerEntry.period,
            LedgerEntry.kind,
            LedgerEntry.amount,
            LedgerEntry.currency,
            LedgerEntry.party_id,
            LedgerEntry.entity_ids,
        )
        .where(LedgerEntry.rule_id == rule.id, LedgerEntry.period == period.key)
        .order_by(LedgerEntry.id)
    ).all()
    for when, kind, amount, booked_in, party, ids in entries:
        if str(key) in map(str, ids):
            lines.append(("ledger", f"{when} {kind} {amount} {booked_in} to staff {party}"))
    if needs_approval(ledger, branch):
        lines.append(_approval_line(conn, ledger, period, row.get("branch_id")))
    if not tally.is_effective(item, as_of):
        verdict = f"rule not effective before {rule.effective_from}"
    elif not matched or not inside or not any(who for _, who in candidates):
        verdict = "not counted"
    elif as_of < closes:
        verdict = f"counts in {period}, booked at its close"
    elif as_of >= until:
        verdict = f"counts in {period}; closed and no longer corrected"
    else:
        verdict = f"counts in {period}; open for corrections until {until.isoformat()}"
    return [*lines, ("state", verdict)]


def _obligation_lines(
    conn: Connection,
    policy: Policy,
    item: CompiledObligation,
    key: int,
    matched: bool,
    as_of: datetime,
) -> Lines:
    """Each period checked at `as_of` (or the one due day): records done, on time, verdict."""
    spec = item.rule
    if not matched:
        return [("state", "condition does not hold: nothing is due")]
    zones = list(conn.scalars(select(Branch.timezone).distinct())) or ["UTC"]
    lines: Lines = [("records", spec.record.entity + (
        f" where {spec.record.when}" if spec.record.when else ""
    ) + f": {_count(spec.count, spec.every)}, due {spec.due.spoken()}")]  # fmt: skip
    checks = obligation.occasions(item, as_of) if spec.every else [None]
    if spec.every and spec.active:
        lines.append(("in force", f"{spec.active[0]} to {spec.active[1]} ({spec.partial_periods} "
                                  "for partial periods)"))  # fmt: skip
    for occasion in checks:
        stmt = obligation.query(item, occasion, as_of, zones, short_only=False)
        row = conn.execute(stmt.where(item.table.c.id == key)).mappings().first()
        label = occasion.key if occasion else f"{spec.date} {row[spec.date] if row else '-'}"
        if row is None:
            lines.append((label, "not due: not in force for the whole period"))
            continue
        if occasion is None and row[spec.date] is None:
            lines.append((label, "empty: nothing is due"))
            continue
        found = obligation.evaluate(item, occasion, [row], as_of, calendars=policy.calendars)
        due_on = occasion.due_on if occasion else spec.due.add_to(row[spec.date])
        done = row[obligation.DONE]
        need = obligation.required(item, occasion, row.get(obligation.REQUIRED))
        state = found[0].state if found else ("not due yet" if as_of < obligation.due_at(
            due_on, row[obligation.TZ] or "UTC") else "fulfilled or no longer checked")  # fmt: skip
        if not need:
            state = "none needed: not due"
        elif occasion and not obligation.works_on(row, occasion, policy.calendars):
            state = "a day off in the branch's calendar: not due"
        on_time = f"{need} needed, {row[obligation.ON_TIME]} on time, " if occasion else ""
        lines.append((label, f"by {due_on.isoformat()}: {on_time}{done} recorded; {state}"))
    return lines


def _count(count: int | str | PlanCount, every: str | None) -> str:
    """`4 per month`, `as many as visits_planned per month`, or `the customer_visits plan
    per quarter, split evenly into months`."""
    if isinstance(count, PlanCount):
        return count.spoken() + (f" into {every}s" if count.split else "")
    needed = str(count) if isinstance(count, int) else f"as many as {count}"
    return needed + (f" per {every}" if every else "")


def _hm(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}"


def _recorded(conn: Connection, item: CompiledRule[Any], record: dict[str, Any]) -> Lines:
    found = conn.execute(
        select(
            Finding.key,
            Finding.state,
            Finding.recorded_at,
            Finding.policy_hash,
            Finding.rule_digest,
        ).where(
            Finding.rule_id == item.rule.id,
            Finding.entity == item.table.name,
            Finding.entity_id == str(record["id"]),
        )
    ).all()
    lines: Lines = [
        ("finding", f"{state} recorded {when.isoformat()} (policy {version}, rule {digest or '-'})")
        for _, state, when, version, digest in found
    ]
    digest = aliased(Notice)
    notices = conn.execute(
        select(Notice.recipient_role, Notice.recipient_address, Notice.status, digest.status)
        .outerjoin(digest, digest.id == Notice.digest_id)
        .where(Notice.finding_key.in_([key for key, *_ in found]))
    ).all()
    for role, address, status, in_digest in notices:
        # A bundled item's fate is its digest's.
        fate = f"{in_digest} (in the night's digest)" if in_digest else status
        lines.append(("notice", f"{role} <{address or 'no address'}>: {fate}"))
    return lines
