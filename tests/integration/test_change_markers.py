"""Change markers: rows anyone writes after a run's marker are found; deletions leave tombstones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, func, inspect, select, text

from engine.db.changes import (
    Tombstone,
    changed_ids,
    deleted_since,
    prune_tombstones,
    take_marker,
    tracked_tables,
)
from engine.db.demo import load_demo
from engine.db.models import SERVICE_TABLES, Branch, ServiceRequest, StatusChange
from engine.db.schema import MIGRATIONS, upgrade
from engine.db.session import connect

# PostgreSQL's marker is the server's oldest running transaction: other tests' writes would
# hold it back, so these take the server alone (tests/conftest.py pg_turn).
pytestmark = pytest.mark.pg_alone

BRANCHES = Branch.__table__
REQUESTS = ServiceRequest.__table__
CHANGES = StatusChange.__table__


@pytest.fixture
def other_system(db_url: str, db: Engine) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on the same database: no engine code, as another system has."""
    plain = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    yield plain
    plain.dispose()


def _sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _branch(code: str) -> str:
    return (
        "INSERT INTO branches (code, name, timezone, country, locale) "
        f"VALUES ('{code}', 'Branch {code}', 'Asia/Shanghai', 'CN', 'zh-CN')"
    )


def _request(number: str, branch: str) -> str:
    return (
        "INSERT INTO service_requests (number, branch_id, customer_id, kind, region, status, "
        "human_damage, unauthorised_repair, needs_parts, factory_return, received_at) "
        f"SELECT '{number}', b.id, c.id, 'repair', 'urban', 'received', false, false, false, "
        f"false, '2026-11-23 01:00:00' FROM branches b, customers c WHERE b.code = '{branch}'"
    )


def _changed(db: Engine, table, since: int) -> set[int]:
    with db.connect() as conn:
        return set(conn.scalars(changed_ids(table, since)))


def _ids(db: Engine, table, where: str) -> list[int]:
    with db.connect() as conn:
        return list(conn.scalars(select(table.c.id).where(text(where)).order_by(table.c.id)))


def test_rows_written_by_plain_sql_after_a_marker_are_changed_and_earlier_ones_not(
    db: Engine, other_system: Engine
):
    _sql(other_system, _branch("SH-01"), _branch("TP-01"))
    first = take_marker(db)
    assert _changed(db, BRANCHES, first) == set()

    _sql(
        other_system,
        _branch("MD-01"),
        "UPDATE branches SET email = 'desk@tp.example' WHERE code = 'TP-01'",
    )
    second = take_marker(db)
    assert second > first
    assert _changed(db, BRANCHES, first) == set(_ids(db, BRANCHES, "code IN ('MD-01', 'TP-01')"))
    assert _changed(db, BRANCHES, second) == set()


def test_a_writer_cannot_hide_an_update_by_keeping_row_version(db: Engine, other_system: Engine):
    _sql(other_system, _branch("SH-01"))
    marker = take_marker(db)
    _sql(other_system, "UPDATE branches SET name = 'Renamed', row_version = row_version")
    assert _changed(db, BRANCHES, marker) == set(_ids(db, BRANCHES, "code = 'SH-01'"))


@pytest.mark.slow
def test_a_deleted_status_change_leaves_a_tombstone_naming_its_request(
    db: Engine, other_system: Engine
):
    _sql(
        other_system,
        _branch("SH-01"),
        "INSERT INTO customers (branch_id, name, locale, region) "
        "SELECT id, 'Wang Wei', 'zh-CN', 'urban' FROM branches",
        _request("R-1", "SH-01"),
        "INSERT INTO status_changes (service_request_id, status, changed_at) "
        "SELECT id, 'received', '2026-11-23 01:00:00' FROM service_requests",
    )
    (request,) = _ids(db, REQUESTS, "number = 'R-1'")
    (change,) = _ids(db, CHANGES, "1 = 1")
    marker = take_marker(db)
    _sql(other_system, "DELETE FROM status_changes")

    later = take_marker(db)
    with db.connect() as conn:
        assert deleted_since(conn, marker) == [
            Tombstone("status_changes", change, {"service_request_id": request})
        ]
        assert deleted_since(conn, later) == []
        assert prune_tombstones(conn, later) == 1
        assert deleted_since(conn, marker) == []


def test_tombstones_of_tables_without_foreign_keys_have_empty_refs(
    db: Engine, other_system: Engine
):
    _sql(other_system, _branch("SH-01"))
    (branch,) = _ids(db, BRANCHES, "1 = 1")
    marker = take_marker(db)
    _sql(other_system, "DELETE FROM branches")
    with db.connect() as conn:
        assert deleted_since(conn, marker) == [Tombstone("branches", branch, {})]


def test_sqlite_stamping_ends_even_with_recursive_triggers_on(sqlite_url: str):
    engine = connect(sqlite_url)
    upgrade(engine)
    raw = create_engine(sqlite_url)
    with raw.begin() as conn:
        conn.exec_driver_sql("PRAGMA recursive_triggers = ON")
        conn.execute(text(_branch("SH-01")))
        conn.execute(text("UPDATE branches SET name = 'Again'"))
        conn.execute(text("UPDATE branches SET name = 'And again'"))
        assert conn.execute(text("SELECT row_version FROM branches")).scalar_one() == 1
    raw.dispose()
    engine.dispose()


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_postgresql_a_transaction_open_at_the_marker_is_in_the_next_window(
    db: Engine, other_system: Engine
):
    _sql(other_system, _branch("SH-01"))
    with other_system.connect() as slow:
        slow.execute(text(_branch("TP-01")))  # open, not committed: the marker is taken now
        first = take_marker(db)
        assert _ids(db, BRANCHES, "code = 'TP-01'") == []  # the run at `first` cannot see it
        slow.commit()
    take_marker(db)
    assert _changed(db, BRANCHES, first) == set(_ids(db, BRANCHES, "code = 'TP-01'"))


def _triggers(db: Engine) -> set[str]:
    with db.connect() as conn:
        if db.dialect.name == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        return set(conn.scalars(text(sql)))


def _expected_triggers() -> set[str]:
    return {
        f"trg_{table}_{kind}"
        for table in tracked_tables()
        for kind in ("stamp_insert", "stamp_update", "tombstone")
    }


@pytest.mark.slow
def test_init_on_a_fresh_database_gives_every_service_table_its_triggers(db: Engine):
    assert {m.__tablename__ for m in SERVICE_TABLES} == set(tracked_tables())
    assert _expected_triggers() <= _triggers(db)
    for model in SERVICE_TABLES:
        name = model.__tablename__
        assert f"ix_{name}_row_version" in {i["name"] for i in inspect(db).get_indexes(name)}


def _migrate(db: Engine, target: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def test_upgrade_from_0006_tracks_changes_to_rows_that_were_already_there(db_url: str):
    db = connect(db_url)
    _migrate(db, "0006")
    _sql(db, _branch("SH-01"), _branch("TP-01"))
    upgrade(db)
    with db.connect() as conn:
        assert conn.scalar(select(func.count()).where(BRANCHES.c.row_version.is_(None))) == 2
    marker = take_marker(db)
    _sql(db, "UPDATE branches SET name = 'Renamed' WHERE code = 'SH-01'")
    _sql(db, "DELETE FROM branches WHERE code = 'TP-01'")
    assert _changed(db, BRANCHES, marker) == set(_ids(db, BRANCHES, "code = 'SH-01'"))
    with db.connect() as conn:
        assert [t.table for t in deleted_since(conn, marker)] == ["branches"]
    db.dispose()


@pytest.mark.slow
def test_downgrade_to_0006_removes_the_markers_and_upgrading_again_restores_them(db: Engine):
    _migrate(db, "0006", down=True)
    assert not _expected_triggers() & _triggers(db)
    assert "row_version" not in {c["name"] for c in inspect(db).get_columns("branches")}
    assert not {"deleted_rows", "change_clock"} & set(inspect(db).get_table_names())
    _sql(db, _branch("SH-01"), "DELETE FROM branches")  # no trigger left behind

    upgrade(db)
    assert _expected_triggers() <= _triggers(db)
    marker = take_marker(db)
    _sql(db, _branch("TP-01"))
    assert _changed(db, BRANCHES, marker) == set(_ids(db, BRANCHES, "1 = 1"))


def test_the_demo_bulk_load_stamps_its_rows_before_the_next_marker(db: Engine):
    before = take_marker(db)
    load_demo(db, datetime(2026, 11, 23, 18, 0, tzinfo=UTC))
    after = take_marker(db)
    with db.connect() as conn:
        for model in SERVICE_TABLES:
            table = model.__table__
            versions = conn.execute(
                select(func.min(table.c.row_version), func.max(table.c.row_version))
            ).one()
            assert before < versions[0] and versions[1] <= after, table.name
        changed = changed_ids(CHANGES, after).subquery()
        assert conn.scalar(select(func.count()).select_from(changed)) == 0
