"""The tally family: penalties and rewards per person and period, booked to the ledger.

Nothing is booked for a period before it closes (00:00 on the ledger's `close_on_day` of the
next month). From its close on, each night recomputes the periods still open for corrections
(and any that closed while no night ran, however long ago: engine.ledger.book.to_settle)
and compares them with what the ledger holds; a difference becomes a finding about the person:

    charged       the first booking, made by the run that closes the period
    corrected:N   a later difference (the data changed after the close): the Nth correction

A re-run finds no difference and books nothing. Each rule is one query per night: the
condition, the local hours, who is charged and the flag of each `multiply` and `score`
condition are computed in SQL; engine.rules.tally_amounts does the arithmetic in Decimal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, DateTime, Select, and_, case, func, literal, or_, select

from engine.db.catalogue import role_routes
from engine.db.local_time import local_clock, local_wall_clock
from engine.db.models import Branch, Staff
from engine.expr import parse, to_sql
from engine.findings import Finding
from engine.ledger.book import LEDGER_DETAILS, Booked, booked, closed, to_settle
from engine.ledger.periods import Period
from engine.policy import CompiledTally
from engine.policy.branch_scope import applies
from engine.rules.scope import ClosedWindow
from engine.rules.tally_amounts import (
    BRANCH,
    FACTOR,
    LOCAL,
    PART,
    PARTY,
    Tallied,
    group,
    tally_group,
)

FAMILY = "tally"
_TIME_ZONES = timedelta(days=1)  # the UTC window is this much wider than the local periods


def is_effective(tally: CompiledTally, as_of: datetime) -> bool:
    """False while the rule's effective_from lies in the future."""
    start = tally.rule.effective_from
    return start is None or as_of.date() >= start


def is_instant(tally: CompiledTally) -> bool:
    """True when `at` is a timestamp (placed by its local day), False for a date field."""
    kind = tally.table.c[tally.rule.at].type
    return isinstance(getattr(kind, "impl", kind), DateTime)  # UtcDateTime decorates DateTime


def source_query(tally: CompiledTally, periods: Sequence[Period], as_of: datetime) -> Select[Any]:
    """The entities that count in these periods, with who is charged and the flags per row."""
    rule, table = tally.rule, tally.table
    at = table.c[rule.at]
    stmt, local = _rows(tally, as_of)
    first, last = min(p.start for p in periods), max(p.end for p in periods)
    if rule.effective_from is not None:  # no entity of a day before it counts (group)
        first = max(first, rule.effective_from)
    if local is not None:
        stmt = stmt.where(
            at >= datetime.combine(first, time(0), UTC) - _TIME_ZONES,
            at < datetime.combine(last, time(0), UTC) + _TIME_ZONES,
        )
        if rule.local_hours:
            stmt = stmt.where(in_local_hours(local_clock(local), *rule.local_hours))
    else:
        stmt = stmt.where(at >= first, at < last)
    stmt = stmt.where(*applies(tally, table, as_of))
    return stmt.where(at.is_not(None)).order_by(at, table.c.id)


def one_row(
    conn: Connection, tally: CompiledTally, entity_id: Any, as_of: datetime
) -> Mapping[str, Any] | None:
    """One entity with its local time, charge candidates and flags, whatever it matches."""
    stmt, _ = _rows(tally, as_of)
    return conn.execute(stmt.where(tally.table.c.id == entity_id)).mappings().first()


def _rows(tally: CompiledTally, as_of: datetime) -> tuple[Select[Any], Any]:
    """The entity's columns plus the derived ones: local wall clock, candidates, flags."""
    rule, table = tally.rule, tally.table
    stmt = select(table)
    zone: Any = literal("UTC")
    if "branch_id" in table.c:
        branches = Branch.__table__
        stmt = stmt.join(branches, branches.c.id == table.c.branch_id).add_columns(
            branches.c.code.label(BRANCH.format("code")),
            branches.c.country.label(BRANCH.format("country")),
        )
        zone = branches.c.timezone
    local = local_wall_clock(table.c[rule.at], zone) if is_instant(tally) else None
    if local is not None:
        stmt = stmt.add_columns(local.label(LOCAL))
    for index, role in enumerate(rule.charge):
        stmt = stmt.add_columns(_party(tally, role).label(PARTY.format(index)))
    for index, multiplier in enumerate(rule.multiply):
        if multiplier.when is not None:
            stmt = stmt.add_columns(_flag(tally, multiplier.when, as_of, FACTOR.format(index)))
    for index, item in enumerate(rule.score):
        if item.when is not None:
            stmt = stmt.add_columns(_flag(tally, item.when, as_of, PART.format(index)))
    return stmt, local


def judge(
    conn: Connection,
    tally: CompiledTally,
    calendars: Mapping[str, Any],
    as_of: datetime,
    window: ClosedWindow | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """What to book for the periods being settled at `as_of` (of a version of the rule, those
    that closed in its `window`), and the rows that were skipped."""
    periods = to_settle(conn, tally.rule.period, as_of, tally.ledger)
    if window is not None:
        ledger = (window.closing or tally).ledger
        periods = [p for p in periods if window.holds(p.closes_at(ledger))]
    if not periods:
        return [], {}
    skipped: Counter[str] = Counter()
    current = tallied(conn, tally, periods, as_of, skipped)
    keys = [p.key for p in periods]
    was = booked(conn, tally.rule.id, keys)
    staff = _staff(conn, {t.party for t in current} | {party for _, party in was})
    found = differences(tally, periods, current, was, closed(conn, keys), staff)
    return found, dict(skipped)


def closed_since(conn: Connection, tally: CompiledTally, as_of: datetime) -> datetime:
    """The earliest close among the periods a run at `as_of` settles (engine.rule_versions);
    `as_of` when it settles none."""
    periods = to_settle(conn, tally.rule.period, as_of, tally.ledger)
    return min((p.closes_at(tally.ledger) for p in periods), default=as_of)


def tallied(
    conn: Connection,
    tally: CompiledTally,
    periods: Sequence[Period],
    as_of: datetime,
    skipped: Counter[str],
) -> list[Tallied]:
    """Each person's amount in `periods` from the data as it is at `as_of`; reads only."""
    rows = conn.execute(source_query(tally, periods, as_of)).mappings()
    groups = group(tally, rows, periods, skipped)
    staff = _staff(conn, {g.party for g in groups})
    for one in groups:  # a role may have an amount of its own (by_role)
        one.role = staff.get(one.party, {}).get("role")
    return [t for g in groups if (t := tally_group(tally, g, skipped))]


def open_period(tally: CompiledTally, as_of: datetime) -> Period:
    """The rule's period `as_of` falls in (the ledger's time zone), not yet closed."""
    day = as_of.astimezone(ZoneInfo(tally.ledger.timezone)).date()
    return Period.containing(tally.rule.period, day)


def differences(
    tally: CompiledTally,
    periods: Sequence[Period],
    current: Sequence[Tallied],
    was: Mapping[tuple[str, int], Booked],
    done: set[str],
    staff: Mapping[int, Mapping[str, Any]],
) -> list[Finding]:
    """One finding per person and period whose amount differs from the ledger (pure)."""
    rule, ledger = tally.rule, tally.ledger
    now = {(t.period.key, t.party): t for t in current}
    by_key = {p.key: p for p in periods}
    out: list[Finding] = []
    for key in sorted(set(now) | set(was)):
        period_key, party = key
        new, old = now.get(key), was.get(key, Booked())
        total = new.amount if new else Decimal(0)
        change = total - old.total
        if not change:
            continue
        correction = period_key in done or key in was
        state = f"corrected:{old.corrections + 1}" if correction else "charged"
        per_entity = _per_entity_change(new, old)
        details = dict(new.details) if new else {}
        details["per_entity"] = {k: str(v) for k, v in per_entity.items()}
        details["direction"] = "penalty" if rule.sign < 0 else "reward"
        reason = new.reason if new else "nothing is owed any more"
        if correction:
            details.update(was=str(old.total), now=str(total))
            reason = f"correction of {period_key}: was {old.total:.2f}, now {total:.2f}; {reason}"
        person = dict(staff.get(party, {"id": party}))
        via = new.via if new else rule.charge[0]
        ids = list(per_entity) or list(new.entity_ids if new else ())
        out.append(
            Finding(
                rule_id=rule.id,
                family=FAMILY,
                entity="staff",
                entity_id=str(party),
                occurrence=period_key,
                state=state,
                reason=reason,
                due_at=by_key[period_key].closes_at(ledger),
                recipients=(via, *ledger.copy_to),
                amount=change,
                currency=new.currency if new else old.currency,
                record=person,
                details={
                    LEDGER_DETAILS: {
                        "party_id": party,
                        "branch_id": person.get("branch_id"),
                        "kind": "correction" if correction else "original",
                        "entity": tally.table.name,
                        "entity_ids": ids,
                        "details": details,
                    }
                },
            )
        )
    return out


def _per_entity_change(new: Tallied | None, old: Booked) -> dict[str, Decimal]:
    """Per entity, what changes against the ledger (rules with amounts per entity only)."""
    now = new.per_entity if new else {}
    changed = {
        e: now.get(e, Decimal(0)) - old.per_entity.get(e, Decimal(0))
        for e in {*now, *old.per_entity}
    }
    return {e: d for e, d in sorted(changed.items(), key=lambda i: (len(i[0]), i[0])) if d}


def in_local_hours(clock: Any, start: str, end: str) -> Any:
    """SQL: `HH:MM` text in [start, end), running past midnight when end comes first."""
    if start < end:
        return and_(clock >= start, clock < end)
    return or_(clock >= start, clock < end)


def _party(tally: CompiledTally, role: str) -> Any:
    """SQL naming the person `role` reaches for each row (lowest staff id among holders)."""
    table = tally.table
    route = role_routes(table, (role,))[role]
    if route.kind == "staff_column":
        return table.c[route.column or ""]
    holders = Staff.__table__.alias("holders")

    def holder(where: Any) -> Any:
        return (
            select(func.min(holders.c.id))
            .where(holders.c.role == route.role, holders.c.active.is_(True), where)
            .scalar_subquery()
        )

    # The branch's holder, else head office's: the same rule recipients follow.
    return func.coalesce(
        holder(holders.c.branch_id == table.c.branch_id), holder(holders.c.branch_id.is_(None))
    )


def _flag(tally: CompiledTally, when: str, as_of: datetime, label: str) -> Any:
    condition = to_sql(parse(when), tally.table, as_of)  # checked when the policy was loaded
    return case((condition, 1), else_=0).label(label)


def _staff(conn: Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    table = Staff.__table__
    rows = conn.execute(select(table).where(table.c.id.in_(sorted(ids)))).mappings()
    return {row["id"]: dict(row) for row in rows}
