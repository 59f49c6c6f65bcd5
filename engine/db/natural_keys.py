"""How `aftersales import --upsert` recognises a row that is already in the database.

A row is found by its `id` when the file has an id column and the row gives one; otherwise by
its table's natural key below: the column(s) the department itself uses to name the row (a
call's number, a unit's serial) or, for event-like tables, the columns that together say which
event it was (a status change is its request, its status and its instant). docs/feeding.md
lists the same keys for the people who write the feeds; keep the two in step.

Each key also names the indexed columns a lookup narrows by (`probe`): a batch of keys becomes
one `probe_1 IN (...) AND probe_2 IN (...)` query per chunk, which both databases answer from an
index, and the exact key is compared in Python. SQLite does not use an index for a row-value
`(a, b) IN (...)`, hence the separate lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.db.changes import ENGINE_KEPT_COLUMNS

__all__ = ["ENGINE_KEPT_COLUMNS", "NATURAL_KEYS", "TableKey"]

"""Columns the database keeps by itself; an import file must not carry them."""


@dataclass(frozen=True, slots=True)
class TableKey:
    """A table's natural key, the indexed columns to look it up by, and whether it is an event."""

    columns: tuple[str, ...]
    """The natural key; empty when the table has none (rows are then found by id only)."""
    probe: tuple[str, ...]
    """Leading columns of an index (or unique columns) that narrow the lookup of a key."""
    event: bool = False
    """An event already present is left as it is: no update, no error."""


NATURAL_KEYS: dict[str, TableKey] = {
    "branches": TableKey(("code",), ("code",)),
    # No index on staff.email (a migration of its own); the table holds people, not events.
    "staff": TableKey(("email",), ("email",)),
    "customers": TableKey((), ()),
    "products": TableKey(("model",), ("model",)),
    "units": TableKey(("serial_number",), ("serial_number",)),
    "contracts": TableKey(("number",), ("number",)),
    "service_requests": TableKey(("number",), ("number",)),
    "status_changes": TableKey(
        ("service_request_id", "status", "changed_at"),
        ("service_request_id", "changed_at"),
        event=True,
    ),
    "complaints": TableKey(("number",), ("number",)),
    "surveys": TableKey(("service_request_id", "surveyed_at"), ("service_request_id",), event=True),
    "hotline_calls": TableKey(
        ("branch_id", "received_at", "caller_phone"), ("received_at",), event=True
    ),
    "inspections": TableKey(("contract_id", "inspected_on"), ("contract_id", "inspected_on")),
    # Like staff, improvements have no index of their own to look up by; a few per person.
    "improvements": TableKey(("staff_id", "title", "proposed_on"), ("staff_id",)),
    "targets": TableKey(("staff_id", "period_start", "item"), ("period_start",)),
    "work_records": TableKey(
        ("branch_id", "kind", "staff_id", "done_on", "contract_id", "customer_id"),
        ("branch_id", "done_on"),
    ),
}
"""Natural key of every service table, in the import's (dependency) order."""
