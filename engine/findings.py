"""Findings: what the rules found, keyed so that each exists once however often a night is run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.db.models import Finding as FindingRow
from engine.db.session import chunks

if TYPE_CHECKING:
    from engine.policy.models import NoticePlan

_CHUNK = 500


REPEAT = ":repeat-"
"""How a repeated state is named: `breach:repeat-2` is the breach's second repeat."""


def repeat_state(state: str, index: int) -> str:
    """`breach:repeat-2`: the second repeat of the breach."""
    return f"{state}{REPEAT}{index}"


def base_state(state: str) -> str:
    """The state a repeat repeats (`breach` for `breach:repeat-2`); other states unchanged."""
    return state.partition(REPEAT)[0]


def repeat_index(state: str) -> int | None:
    """N of `...:repeat-N`; None for a state that is not a repeat."""
    base, found, index = state.partition(REPEAT)
    return int(index) if found and base else None


def instant_text(value: datetime) -> str:
    """An instant as every file the engine writes gives it: UTC, `2026-11-22T16:00:00+00:00`."""
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a rule found about one entity at one occurrence."""

    rule_id: str
    family: str
    entity: str
    entity_id: str
    occurrence: str
    state: str
    reason: str
    due_at: datetime | None = None
    recipients: tuple[str, ...] = ()
    amount: Decimal | None = None
    currency: str | None = None
    # Whom each notice this finding sends goes to, with which template (NoticePlan).
    notices: tuple[NoticePlan, ...] = field(default=(), compare=False)
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # A running clock's state, which holds until a run no longer finds it; any other finding
    # is an event, done once recorded (closed_at = recorded_at).
    standing: bool = field(default=False, compare=False)
    # (policy hash, rule digest) of the earlier version that decided it: an item that closed
    # under that version (engine.rule_versions); None, the policy being run.
    decided_by: tuple[str, str | None] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Stable identity: rule, entity, occurrence and state; never a run date or line."""
        return "|".join((self.rule_id, self.entity, self.entity_id, self.occurrence, self.state))

    def artifact(self, new: bool, history: bool = False) -> dict[str, Any]:
        """The finding as it appears in the run artifact; `history`: due before its rule went
        live, so recorded without notices."""
        return {
            "rule": self.rule_id,
            "family": self.family,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "occurrence": self.occurrence,
            "state": self.state,
            "new": new,
            "history": history,
            "due_at": instant_text(self.due_at) if self.due_at else None,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "recipients": list(self.recipients),
            "reason": self.reason,
            "decided_by": (
                {"policy": self.decided_by[0], "rule": self.decided_by[1]}
                if self.decided_by
                else None
            ),
        }


def reopen(conn: Connection, findings: Sequence[Finding]) -> None:
    """Open again the standing findings among `findings` that a run had closed (their entity
    changed back, say a received time corrected twice)."""
    keys = [f.key for f in findings if f.standing]
    for chunk in chunks(keys, _CHUNK):
        conn.execute(
            update(FindingRow)
            .where(FindingRow.key.in_(chunk), FindingRow.closed_at.is_not(None))
            .values(closed_at=None)
        )


def close_missing(
    conn: Connection,
    rule_id: str,
    found: set[str],
    as_of: datetime,
    judged: set[str] | None = None,
) -> list[str]:
    """Close the rule's open findings a run no longer found: all of them (a full run), or
    those of the entities it judged (`judged`, entity ids). Returns their keys."""
    stmt = select(FindingRow.key).where(
        FindingRow.rule_id == rule_id, FindingRow.closed_at.is_(None)
    )
    if judged is None:
        gone = [key for key in conn.scalars(stmt) if key not in found]
    else:  # the entities judged, read by the index on rule and entity
        gone = []
        for chunk in chunks(sorted(judged), _CHUNK):
            keys = conn.scalars(stmt.where(FindingRow.entity_id.in_(chunk)))
            gone += (key for key in keys if key not in found)
    for chunk in chunks(gone, _CHUNK):
        conn.execute(update(FindingRow).where(FindingRow.key.in_(chunk)).values(closed_at=as_of))
    return gone


def close_rules_gone(conn: Connection, rule_ids: Sequence[str], as_of: datetime) -> list[str]:
    """Close the open findings of rules no longer in the policy; returns their keys."""
    stmt = select(FindingRow.key).where(
        FindingRow.closed_at.is_(None), FindingRow.rule_id.not_in(list(rule_ids))
    )
    gone = list(conn.scalars(stmt))
    for chunk in chunks(gone, _CHUNK):
        conn.execute(update(FindingRow).where(FindingRow.key.in_(chunk)).values(closed_at=as_of))
    return gone


def open_counts(conn: Connection) -> dict[str, int]:
    """Open findings per rule (a running clock's states still holding)."""
    stmt = (
        select(FindingRow.rule_id, func.count())
        .where(FindingRow.closed_at.is_(None))
        .group_by(FindingRow.rule_id)
        .order_by(FindingRow.rule_id)
    )
    return {rule_id: count for rule_id, count in conn.execute(stmt)}


def existing_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of `keys` are already recorded."""
    found: set[str] = set()
    for chunk in chunks(keys, _CHUNK):
        found.update(conn.scalars(select(FindingRow.key).where(FindingRow.key.in_(chunk))))
    return found


def record_findings(
    conn: Connection,
    findings: Sequence[Finding],
    *,
    run_id: str,
    as_of: datetime,
    policy_hash: str,
    rule_digest: str | None = None,
) -> set[str]:
    """Insert the findings not yet recorded, each with the version of its rule that decided
    it (`policy_hash`, `rule_digest`, unless it names an earlier one); return the keys that
    were new."""
    if not findings:
        return set()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    new: set[str] = set()
    for chunk in chunks(findings, _CHUNK):
        rows = [
            {
                "key": f.key,
                "rule_id": f.rule_id,
                "family": f.family,
                "entity": f.entity,
                "entity_id": f.entity_id,
                "occurrence": f.occurrence,
                "state": f.state,
                "due_at": f.due_at,
                "amount": f.amount,
                "currency": f.currency,
                "recipients": list(f.recipients),
                "reason": f.reason,
                "policy_hash": f.decided_by[0] if f.decided_by else policy_hash,
                "rule_digest": f.decided_by[1] if f.decided_by else rule_digest,
                "run_id": run_id,
                "recorded_at": as_of,
                "closed_at": None if f.standing else as_of,
            }
            for f in chunk
        ]
        # ON CONFLICT DO NOTHING keeps a concurrent or repeated night from duplicating a finding.
        if conn.dialect.name == "postgresql":
            new.update(conn.scalars(_PG_UNNEST_INSERT, _as_arrays(rows)))
            continue
        stmt = insert(FindingRow).on_conflict_do_nothing(index_elements=["key"])
        new.update(conn.scalars(stmt.returning(FindingRow.key), rows))
    return new


# One array per column: a single statement per chunk with 17 parameters, where a multi-row
# VALUES list has 17 per row and psycopg re-parses that long text for every chunk.
_PG_ARRAYS = {
    "key": "text",
    "rule_id": "text",
    "family": "text",
    "entity": "text",
    "entity_id": "text",
    "occurrence": "text",
    "state": "text",
    "due_at": "timestamptz",
    "amount": "numeric",
    "currency": "text",
    "recipients": "json",
    "reason": "text",
    "policy_hash": "text",
    "rule_digest": "text",
    "run_id": "text",
    "recorded_at": "timestamptz",
    "closed_at": "timestamptz",
}
_PG_UNNEST_INSERT = text(
    f"INSERT INTO findings ({', '.join(_PG_ARRAYS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _PG_ARRAYS.items())}) "
    "ON CONFLICT (key) DO NOTHING RETURNING key"
)


def _as_arrays(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column-wise values, bound the way the row types bind them (UTC, whole seconds)."""
    columns = FindingRow.__table__.c
    dialect = postgresql.dialect()
    out: dict[str, list[Any]] = {}
    for name, kind in _PG_ARRAYS.items():
        values = [row[name] for row in rows]
        if kind == "json":
            values = [json.dumps(v) for v in values]
        elif kind == "timestamptz":
            bind = columns[name].type.bind_processor(dialect) or (lambda v: v)
            values = [bind(v) for v in values]
        out[name] = values
    return out
