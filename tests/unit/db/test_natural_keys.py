"""The natural keys of `import --upsert` fit the tables, and their lookups are served by indexes."""

from __future__ import annotations

from sqlalchemy import Table

from engine.db.models import SERVICE_TABLES
from engine.db.natural_keys import NATURAL_KEYS

TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in SERVICE_TABLES}  # type: ignore[misc]

# Small tables whose key column has no index of its own (docs/feeding.md says so).
UNINDEXED = {("staff", "email"), ("improvements", "staff_id")}


def _leads_an_index(table: Table, probe: tuple[str, ...]) -> bool:
    if len(probe) == 1 and table.c[probe[0]].unique:
        return True
    return any(
        tuple(c.name for c in index.columns)[: len(probe)] == probe for index in table.indexes
    )


def test_every_service_table_has_its_key_declared_in_import_order() -> None:
    assert list(NATURAL_KEYS) == list(TABLES)


def test_key_columns_are_columns_and_the_probe_is_part_of_the_key() -> None:
    for name, key in NATURAL_KEYS.items():
        assert all(c in TABLES[name].c for c in key.columns), name
        assert set(key.probe) <= set(key.columns), name
        assert bool(key.probe) == bool(key.columns), name


def test_each_lookup_is_served_by_an_index() -> None:
    for name, key in NATURAL_KEYS.items():
        if key.probe and (name, key.probe[0]) not in UNINDEXED:
            assert _leads_an_index(TABLES[name], key.probe), name
