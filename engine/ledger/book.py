"""Reading and writing the append-only ledger: what is booked, entries, and closed periods.

Nothing here updates or deletes a row (the database refuses it anyway): a change to a closed
period is a new correcting entry. Each entry's key is the key of the finding that booked it,
unique in the table, so a repeated or concurrent night books nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.db.models import LedgerClose, LedgerEntry
from engine.findings import Finding
from engine.ledger.periods import Period, PeriodKind, settling
from engine.policy.tally_spec import LedgerSettings

LEDGER_DETAILS = "ledger"
"""The key of Finding.details that carries a booking (see tally.py)."""


@dataclass
class Booked:
    """What one rule has booked to one person for one period so far."""

    total: Decimal = Decimal(0)
    currency: str | None = None
    corrections: int = 0
    per_entity: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def booked(conn: Connection, rule_id: str, periods: Sequence[str]) -> dict[tuple[str, int], Booked]:
    """Per (period, person): the rule's booked total, corrections and amount per entity."""
    table = LedgerEntry.__table__
    rows = conn.execute(
        select(
            table.c.period,
            table.c.party_id,
            table.c.amount,
            table.c.currency,
            table.c.kind,
            table.c.details,
        )
        .where(table.c.rule_id == rule_id, table.c.period.in_(list(periods)))
        .order_by(table.c.id)
    )
    out: dict[tuple[str, int], Booked] = defaultdict(Booked)
    for period, party, amount, currency, kind, details in rows:
        entry = out[(period, party)]
        entry.total += amount
        entry.currency = currency
        entry.corrections += kind == "correction"
        for entity_id, value in (details or {}).get("per_entity", {}).items():
            entry.per_entity[entity_id] += Decimal(value)
    return dict(out)


def closed(conn: Connection, periods: Iterable[str]) -> set[str]:
    """Which of these periods a run has already closed."""
    table = LedgerClose.__table__
    wanted = list(periods)
    return set(conn.scalars(select(table.c.period).where(table.c.period.in_(wanted))))


def to_settle(
    conn: Connection, kind: PeriodKind, as_of: datetime, ledger: LedgerSettings
) -> list[Period]:
    """The periods of `kind` a night at `as_of` settles: those open for corrections, and every
    one that closed since the last close a run recorded, however long ago (oldest first)."""
    table = LedgerClose.__table__
    done = (Period.parse(key) for key in conn.scalars(select(table.c.period)))
    last = max((p for p in done if p.kind == kind), default=None)
    return settling(kind, as_of, ledger, after=last)


def close(
    conn: Connection,
    periods: Sequence[Period],
    ledger: LedgerSettings,
    *,
    run_id: str,
    as_of: datetime,
    policy_hash: str,
) -> list[Period]:
    """Record these periods as closed by this run; returns those that were not closed yet."""
    if not periods:
        return []
    rows = [
        {
            "period": p.key,
            "closes_at": p.closes_at(ledger),
            "run_id": run_id,
            "policy_hash": policy_hash,
            "created_at": as_of,
        }
        for p in periods
    ]
    stmt = _insert(conn, LedgerClose).on_conflict_do_nothing(index_elements=["period"])
    new = set(conn.scalars(stmt.returning(LedgerClose.period), rows))
    return [p for p in periods if p.key in new]


def book(
    conn: Connection,
    findings: Sequence[Finding],
    *,
    run_id: str,
    as_of: datetime,
    policy_hash: str,
) -> list[Finding]:
    """Write one entry per booking finding; returns the findings booked now (not before)."""
    bookings = [f for f in findings if LEDGER_DETAILS in f.details]
    if not bookings:
        return []
    rows: list[dict[str, Any]] = []
    for finding in bookings:
        booking = finding.details[LEDGER_DETAILS]
        rows.append(
            {
                "key": finding.key,
                "period": finding.occurrence,
                "party_id": booking["party_id"],
                "branch_id": booking["branch_id"],
                "rule_id": finding.rule_id,
                "kind": booking["kind"],
                "amount": finding.amount,
                "currency": finding.currency,
                "entity": booking["entity"],
                "entity_ids": booking["entity_ids"],
                "details": booking["details"],
                "reason": finding.reason,
                "policy_hash": policy_hash,
                "run_id": run_id,
                "created_at": as_of,
            }
        )
    stmt = _insert(conn, LedgerEntry).on_conflict_do_nothing(index_elements=["key"])
    new = set(conn.scalars(stmt.returning(LedgerEntry.key), rows))
    return [f for f in bookings if f.key in new]


def _insert(conn: Connection, model: type) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(model)
