"""Which entities an incremental run judges because something they depend on changed.

A rule judges an entity from its own row and from rows up to two foreign-key steps away, in
either direction: a call's status history and its unit, the unit's product, the contracts of
the unit's customer, a contract's renewal. So the entities touched since a run's change marker
are those whose row was written or deleted, or lies within two steps of one that was.

Branches are not followed: a branch carries the calendar and time zone every clock of it runs
on, so a changed branch makes the run a full one (engine.run). Staff are not followed either:
who holds a role decides where a notice goes when it is queued, never what a rule finds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, Table, select

from engine.db.changes import changed_ids, deleted_since
from engine.db.models import SERVICE_TABLES, Branch, Staff
from engine.db.session import chunks

_NOT_FOLLOWED = {Branch.__tablename__, Staff.__tablename__}
_CHUNK = 500  # ids per IN list

TOO_MANY = 20_000
"""Past this many touched entities a rule is judged in full: one pass over the candidates
costs less than the lists of ids."""


@dataclass(frozen=True)
class Changes:
    """The service rows written or deleted since a marker, by table, and whether a branch was."""

    rows: dict[str, frozenset[int]]
    branches: bool

    def __bool__(self) -> bool:
        return self.branches or any(self.rows.values())


def read_changes(conn: Connection, since: int) -> Changes:
    """What changed after marker `since`: rows written, rows deleted and the rows a deleted
    one referred to (a status change deleted changes its call)."""
    found: dict[str, set[int]] = defaultdict(set)
    tables = _tables()
    for name, table in tables.items():
        found[name].update(conn.scalars(changed_ids(table, since)))
    for tomb in deleted_since(conn, since):
        found[tomb.table].add(tomb.row_id)
        for column, value in tomb.refs.items():
            target = _target(tables[tomb.table], column)
            if value is not None and target is not None:
                found[target].add(int(value))
    branches = bool(found.pop(Branch.__tablename__, None))
    return Changes({name: frozenset(ids) for name, ids in found.items() if ids}, branches)


def touched(conn: Connection, changes: Changes, entity: str) -> frozenset[int] | None:
    """Ids of `entity` rows within two steps of a change; None when there are more than
    TOO_MANY (judge the rule in full)."""
    near = {name: set(ids) for name, ids in changes.rows.items()}
    for name in _neighbours(entity):
        near.setdefault(name, set()).update(_one_step(conn, name, changes.rows))
        if len(near[name]) > TOO_MANY:  # a hub row changed (a product): no use going on
            return None
    out = set(changes.rows.get(entity, ())) | _one_step(conn, entity, near)
    return None if len(out) > TOO_MANY else frozenset(out)


def _one_step(
    conn: Connection, name: str, changed: dict[str, set[int]] | dict[str, frozenset[int]]
) -> set[int]:
    """Rows of table `name` that refer to a changed row, or that a changed row refers to."""
    tables = _tables()
    table = tables[name]
    out: set[int] = set()
    for fk in table.foreign_keys:  # this table's rows referring to changed rows
        ids = changed.get(fk.column.table.name)
        if ids and fk.column.table.name not in _NOT_FOLLOWED:
            for chunk in chunks(sorted(ids), _CHUNK):
                out.update(conn.scalars(select(table.c.id).where(fk.parent.in_(chunk))))
    for other, source in tables.items():  # rows that changed rows of other tables refer to
        ids = changed.get(other)
        if not ids:
            continue
        for fk in source.foreign_keys:
            if fk.column.table.name != name:
                continue
            for chunk in chunks(sorted(ids), _CHUNK):
                stmt = select(fk.parent).where(source.c.id.in_(chunk), fk.parent.is_not(None))
                out.update(conn.scalars(stmt))
    return out


def _neighbours(name: str) -> set[str]:
    """Tables one foreign-key step from `name`, either way, branches and staff left out."""
    tables = _tables()
    out = {fk.column.table.name for fk in tables[name].foreign_keys}
    out |= {
        other
        for other, t in tables.items()
        if any(fk.column.table.name == name for fk in t.foreign_keys)
    }
    return out - _NOT_FOLLOWED - {name}


def _target(table: Table, column: str) -> str | None:
    """The table a foreign-key column refers to."""
    for fk in table.c[column].foreign_keys:
        return fk.column.table.name
    return None


def _tables() -> dict[str, Table]:
    """The service tables with a change marker, by name."""
    return {
        model.__tablename__: model.__table__  # type: ignore[attr-defined]
        for model in SERVICE_TABLES
        if "row_version" in model.__table__.c  # type: ignore[attr-defined]
    }
