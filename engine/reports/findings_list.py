"""`aftersales findings`: the recorded findings, filtered, as a table, CSV or JSON.

The run artifact lists only what a run changed; the database holds every finding, and this is
how it is read. Rows are streamed from the database, so a million findings as CSV or JSON never
sit in memory at once.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection, Row, Select, or_, select

from engine.db.models import Finding
from engine.findings import instant_text
from engine.reports import spreadsheet
from engine.reports.spreadsheet import Cell

__all__ = [
    "COLUMNS",
    "FindingFilter",
    "read_findings",
    "select_findings",
    "text_cells",
    "unknown_rules",
    "write_csv",
    "write_json",
]

COLUMNS = (
    "rule",
    "family",
    "entity",
    "entity_id",
    "occurrence",
    "state",
    "due_at",
    "recorded_at",
    "closed_at",
    "amount",
    "currency",
    "reason",
    "run_id",
    "policy_hash",
    "rule_digest",
)
"""The columns of every format, in order; JSON objects use them as keys."""

_SELECTED = (
    Finding.rule_id.label("rule"),
    Finding.family,
    Finding.entity,
    Finding.entity_id,
    Finding.occurrence,
    Finding.state,
    Finding.due_at,
    Finding.recorded_at,
    Finding.closed_at,
    Finding.amount,
    Finding.currency,
    Finding.reason,
    Finding.run_id,
    Finding.policy_hash,  # the version that decided it (engine.rule_versions)
    Finding.rule_digest,
)
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class FindingFilter:
    """Which findings to list; an empty tuple or None means no restriction."""

    rules: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    open_only: bool = False
    entity: str | None = None
    since: datetime | None = None
    limit: int | None = None


def select_findings(wanted: FindingFilter) -> Select[Any]:
    """The query for `wanted`, ordered by due_at (none last), rule and entity_id."""
    query = select(*_SELECTED)
    if wanted.rules:
        query = query.where(Finding.rule_id.in_(wanted.rules))
    if wanted.states:
        query = query.where(or_(*(_state_matches(state) for state in wanted.states)))
    if wanted.open_only:
        query = query.where(Finding.closed_at.is_(None))
    if wanted.entity is not None:
        query = query.where(Finding.entity == wanted.entity)
    if wanted.since is not None:
        query = query.where(Finding.recorded_at >= wanted.since)
    # NULLS LAST spelled out: SQLite puts NULLs first and PostgreSQL last. The id settles ties
    # (one entity's states at one instant) so that two listings agree row for row.
    query = query.order_by(
        Finding.due_at.asc().nulls_last(), Finding.rule_id, Finding.entity_id, Finding.id
    )
    return query if wanted.limit is None else query.limit(wanted.limit)


def _state_matches(state: str) -> Any:
    """`escalation:2` is that state; `escalation` (no level) is also every level of it."""
    if ":" in state:
        return Finding.state == state
    return or_(Finding.state == state, Finding.state.startswith(f"{state}:", autoescape=True))


def read_findings(conn: Connection, wanted: FindingFilter) -> Iterator[Row[Any]]:
    """The rows of `wanted`, fetched a batch at a time (a server-side cursor on PostgreSQL)."""
    result = conn.execution_options(yield_per=_BATCH).execute(select_findings(wanted))
    with result:
        yield from result


def unknown_rules(conn: Connection, rules: Sequence[str]) -> dict[str, list[str]]:
    """Each of `rules` that no finding has, with the recorded rule ids that look like it."""
    absent = [
        rule
        for rule in dict.fromkeys(rules)
        if conn.scalar(select(Finding.id).where(Finding.rule_id == rule).limit(1)) is None
    ]
    if not absent:
        return {}
    # Only when a rule is missing: DISTINCT reads the whole rule index.
    recorded = list(conn.scalars(select(Finding.rule_id).distinct()))
    return {rule: difflib.get_close_matches(rule, recorded, n=3, cutoff=0.6) for rule in absent}


def _cell(value: Any) -> Cell:
    """A column value for CSV: instants as text, amounts kept as numbers."""
    return instant_text(value) if isinstance(value, datetime) else value


def _text(value: Any) -> str | None:
    """A column value as text: instants in UTC, amounts exact and without an exponent."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return instant_text(value)
    return format(value, "f")  # the amount, a Decimal: 1E+2 must read 100


def text_cells(row: Row[Any]) -> list[str]:
    """One row's cells for the text table: empty where a value is missing."""
    return [_text(value) or "" for value in row]


def _json_object(row: Row[Any]) -> dict[str, str | None]:
    """One row as a JSON object: every value a string (the amount exact), null if missing."""
    return {name: _text(value) for name, value in zip(COLUMNS, row, strict=True)}


def write_csv(handle: TextIO, rows: Iterable[Row[Any]]) -> None:
    """A CSV document of `rows` under a header, text a spreadsheet would run made harmless."""
    spreadsheet.write_csv(handle, COLUMNS, ([_cell(value) for value in row] for row in rows))


def write_json(handle: TextIO, rows: Iterable[Row[Any]]) -> None:
    """A JSON array of `rows`, one object per line, written as the rows arrive."""
    separator = "[\n  "
    for row in rows:
        handle.write(separator + json.dumps(_json_object(row), ensure_ascii=False))
        separator = ",\n  "
    handle.write("[]\n" if separator == "[\n  " else "\n]\n")
