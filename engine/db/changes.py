"""Change markers: which service rows were written or deleted since a run took its marker.

Every service table has `row_version`, kept by database triggers whoever writes the row (the
importer, the engine, or another system writing the tables directly), and a deleted row leaves
a tombstone in `deleted_rows`. A run takes a marker M with `take_marker`; the next run asks
for the rows with `row_version > M` (`changed_ids`) and the tombstones above M
(`deleted_since`). A row whose foreign key changes (a status change moved to another call, a
contract to another customer) leaves the same kind of record, with the references it had: what
it referred to before changed too, for the rules that read it. Nothing committed is missed:

- SQLite: a row takes the value of the one-row `change_clock` when it is inserted or updated;
  a marker is the clock's value, bumped in a transaction of its own. SQLite has one writer at
  a time, so every row stamped with a value <= M was committed before the bump, and every row
  written after it has a larger value.
- PostgreSQL: a row takes the id of the transaction that wrote it; a marker is the oldest
  transaction id still running, minus one. Transactions below it had all ended when the
  marker was taken (their rows are visible to the run); one still running has an id above M,
  so its rows are found by the next run, however long it stays open. Transaction ids are
  the server's, so a long writing transaction in another database of the same server holds
  markers back too: the next runs re-read more rows than changed, never fewer.

Rows written before the triggers existed (migration 0007) keep `row_version` empty: unchanged
since then. A writer may stamp rows itself, as the demo's bulk loader does, but only with
`current_version` read in the writing transaction; the triggers then leave those rows alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, delete, select

from engine.db.models import SERVICE_TABLES, DeletedRow

__all__ = [
    "ENGINE_KEPT_COLUMNS",
    "Tombstone",
    "changed_ids",
    "create_triggers_sql",
    "current_version",
    "deleted_since",
    "drop_triggers_sql",
    "install_triggers",
    "prune_tombstones",
    "take_marker",
    "tracked_tables",
]

ENGINE_KEPT_COLUMNS: frozenset[str] = frozenset(
    column.name
    for model in SERVICE_TABLES
    for column in model.__table__.columns  # type: ignore[attr-defined]
    if column.info.get("kept_by")
)
"""Service-table columns the database keeps itself: not imported, not written by feeds."""

_PG_VERSION = "pg_current_xact_id()::text::bigint"
_SQLITE_VERSION = "(SELECT value FROM change_clock)"


@dataclass(frozen=True)
class Tombstone:
    """A service row deleted since a marker: its table, id and foreign keys at deletion."""

    table: str
    row_id: int
    refs: dict[str, Any]


def take_marker(bind: Connection | Engine) -> int:
    """Take a run's marker: rows changed after it have `row_version` above the value returned.

    The marker is taken in a transaction of its own, committed here (on SQLite it moves the
    clock on, waiting for a writer in progress). Given a Connection, it must not be in a
    transaction (SQLAlchemy refuses) and is left outside one. Read the data the run judges
    afterwards, in a later transaction, so that everything at or below the marker is visible.
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return take_marker(conn)
    with bind.begin():
        if bind.dialect.name == "sqlite":
            sql = "UPDATE change_clock SET value = value + 1 RETURNING value - 1"
        else:
            sql = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1"
        return int(bind.exec_driver_sql(sql).scalar_one())


def current_version(conn: Connection) -> int:
    """The row_version the triggers would give a row written now in `conn`'s transaction."""
    sql = _SQLITE_VERSION if conn.dialect.name == "sqlite" else _PG_VERSION
    return int(conn.exec_driver_sql(f"SELECT {sql}").scalar_one())


def changed_ids(table: Table, since: int) -> Select[tuple[int]]:
    """Ids of `table`'s rows inserted or updated after marker `since` (an index range read)."""
    return select(table.c.id).where(table.c.row_version > since)


def deleted_since(conn: Connection, since: int) -> list[Tombstone]:
    """The service rows deleted after marker `since`, oldest first."""
    rows = conn.execute(
        select(DeletedRow.table_name, DeletedRow.row_id, DeletedRow.refs)
        .where(DeletedRow.row_version > since)
        .order_by(DeletedRow.row_version, DeletedRow.id)
    )
    return [Tombstone(name, row_id, dict(refs)) for name, row_id, refs in rows]


def prune_tombstones(conn: Connection, before: int) -> int:
    """Delete tombstones at or below marker `before` (runs after it saw them); returns how many."""
    return conn.execute(delete(DeletedRow).where(DeletedRow.row_version <= before)).rowcount


# ---------------------------------------------------------------- the triggers


def tracked_tables() -> dict[str, tuple[str, ...]]:
    """Each service table with its foreign-key columns, which a tombstone keeps, from the models."""
    tracked = {}
    for model in SERVICE_TABLES:
        table: Table = model.__table__  # type: ignore[attr-defined]
        # Tombstones and the SQLite triggers name a row by `id` (the rowid on SQLite).
        assert [c.name for c in table.primary_key] == ["id"], table.name
        tracked[table.name] = tuple(c.name for c in table.columns if c.foreign_keys)
    return tracked


def _names(table: str) -> tuple[str, str, str]:
    return (
        f"trg_{table}_stamp_insert",
        f"trg_{table}_stamp_update",
        f"trg_{table}_tombstone",
        f"trg_{table}_moved",
    )


# PostgreSQL: one function stamps rows of every table; the tombstone function gets the
# table's foreign-key columns as trigger arguments and picks them out of the deleted row.
_PG_FUNCTIONS = (
    f"""CREATE OR REPLACE FUNCTION aftersales_stamp_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := {_PG_VERSION};
    RETURN NEW;
END $$""",
    f"""CREATE OR REPLACE FUNCTION aftersales_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
BEGIN
    INSERT INTO deleted_rows (table_name, row_id, refs, row_version, deleted_at)
    SELECT TG_TABLE_NAME, (old_row ->> 'id')::bigint,
           coalesce(jsonb_object_agg(ref, old_row -> ref), '{{}}')::json, {_PG_VERSION}, now()
    FROM unnest(TG_ARGV) AS ref;
    RETURN NULL;
END $$""",
)


def _pg_triggers(table: str, refs: Sequence[str]) -> list[str]:
    insert, update, tombstone, moved = _names(table)
    args = ", ".join(f"'{ref}'" for ref in refs)
    changed = " OR ".join(f'OLD."{ref}" IS DISTINCT FROM NEW."{ref}"' for ref in refs)
    # A foreign key changed leaves what the row referred to before, as a deletion does.
    follow = [
        f'CREATE TRIGGER "{moved}" AFTER UPDATE ON "{table}" FOR EACH ROW '
        f"WHEN ({changed}) EXECUTE FUNCTION aftersales_tombstone({args})"
    ]
    return [
        *(follow if refs else []),
        # A writer that stamped the row itself (NEW differs) is left alone: no function call.
        f'CREATE TRIGGER "{insert}" BEFORE INSERT ON "{table}" FOR EACH ROW '
        "WHEN (NEW.row_version IS NULL) EXECUTE FUNCTION aftersales_stamp_row()",
        f'CREATE TRIGGER "{update}" BEFORE UPDATE ON "{table}" FOR EACH ROW '
        "WHEN (NEW.row_version IS NOT DISTINCT FROM OLD.row_version) "
        "EXECUTE FUNCTION aftersales_stamp_row()",
        f'CREATE TRIGGER "{tombstone}" AFTER DELETE ON "{table}" FOR EACH ROW '
        f"EXECUTE FUNCTION aftersales_tombstone({args})",
    ]


def _sqlite_triggers(table: str, refs: Sequence[str]) -> list[str]:
    insert, update, tombstone, moved = _names(table)
    stamp = f'UPDATE "{table}" SET row_version = {_SQLITE_VERSION} WHERE rowid = NEW.rowid'
    refs_json = ", ".join(f"'{ref}', OLD.{ref}" for ref in refs)
    leave = (
        "INSERT INTO deleted_rows (table_name, row_id, refs, row_version, deleted_at) "
        f"VALUES ('{table}', OLD.id, json_object({refs_json}), {_SQLITE_VERSION}, "
        "datetime('now'))"
    )
    changed = " OR ".join(f"OLD.{ref} IS NOT NEW.{ref}" for ref in refs)
    # A foreign key changed leaves what the row referred to before, as a deletion does.
    follow = [
        f'CREATE TRIGGER "{moved}" AFTER UPDATE ON "{table}" FOR EACH ROW '
        f"WHEN {changed} BEGIN {leave}; END"
    ]
    return [
        *(follow if refs else []),
        f'CREATE TRIGGER "{insert}" AFTER INSERT ON "{table}" FOR EACH ROW '
        f"WHEN NEW.row_version IS NULL BEGIN {stamp}; END",
        # SQLite cannot assign NEW, so the row is stamped by a second UPDATE. Skipping rows
        # that already hold the clock's value makes that UPDATE a no-op for this trigger,
        # so it ends even with PRAGMA recursive_triggers on.
        f'CREATE TRIGGER "{update}" AFTER UPDATE ON "{table}" FOR EACH ROW '
        "WHEN NEW.row_version IS OLD.row_version "
        f"AND NEW.row_version IS NOT {_SQLITE_VERSION} BEGIN {stamp}; END",
        f'CREATE TRIGGER "{tombstone}" AFTER DELETE ON "{table}" FOR EACH ROW BEGIN {leave}; END',
    ]


def _drop_triggers(dialect: str, tables: Mapping[str, Sequence[str]]) -> list[str]:
    on = "" if dialect == "sqlite" else " ON {}"
    return [
        f'DROP TRIGGER IF EXISTS "{name}"' + on.format(f'"{table}"')
        for table in tables
        for name in _names(table)
    ]


def drop_triggers_sql(dialect: str, tables: Mapping[str, Sequence[str]]) -> list[str]:
    """Statements dropping the change triggers of `tables` (and PostgreSQL's functions)."""
    drops = _drop_triggers(dialect, tables)
    if dialect == "sqlite":
        return drops
    return [
        *drops,
        "DROP FUNCTION IF EXISTS aftersales_stamp_row()",
        "DROP FUNCTION IF EXISTS aftersales_tombstone()",
    ]


def create_triggers_sql(dialect: str, tables: Mapping[str, Sequence[str]]) -> list[str]:
    """Statements (re)creating the change triggers of `tables` (name -> foreign-key columns)."""
    drops = _drop_triggers(dialect, tables)
    if dialect == "sqlite":
        return drops + [s for t, refs in tables.items() for s in _sqlite_triggers(t, refs)]
    return [
        *drops,
        *_PG_FUNCTIONS,
        *(s for t, refs in tables.items() for s in _pg_triggers(t, refs)),
    ]


def install_triggers(conn: Connection) -> None:
    """(Re)create every change trigger from the models, e.g. after SQLite rebuilt a table."""
    for statement in create_triggers_sql(conn.dialect.name, tracked_tables()):
        conn.exec_driver_sql(statement)
