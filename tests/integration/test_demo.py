"""`aftersales init --demo`: data built around as_of so that the night at as_of has work."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import pg_turn
from sqlalchemy import Engine, create_engine, func, insert, select, text

from engine.db import demo as demo_module
from engine.db.changes import ENGINE_KEPT_COLUMNS
from engine.db.demo import REQUESTS_PER_SCALE, load_demo, scale_for_requests
from engine.db.models import (
    SERVICE_STATUSES,
    Base,
    Branch,
    Complaint,
    Contract,
    Customer,
    HotlineCall,
    Inspection,
    ServiceRequest,
    Staff,
    StatusChange,
    Survey,
    Unit,
)
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.errors import UsageError
from engine.policy.roles_spec import STANDARD_ROLES

# 18:00 UTC on a Monday: 02:00 on Tuesday in Shanghai and Taipei, 19:00 in Madrid.
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The scale-1 demo at AS_OF in each kind of database, loaded once for the read-only tests.

    PostgreSQL gets a database of its own next to the `db` fixture's scratch one, which the
    other tests reset at will.
    """
    if request.param == "sqlite":
        engine = connect(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}")
        upgrade(engine)
        load_demo(engine, AS_OF)
        yield engine
        engine.dispose()
        return
    scratch: str = request.getfixturevalue("pg_server")
    name = scratch.rsplit("/", 1)[1] + "_demo"
    admin = create_engine(scratch, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = connect(scratch.rsplit("/", 1)[0] + "/" + name)
    try:
        with pg_turn(alone=False):  # the load writes: change-marker tests wait for it
            upgrade(engine)
            load_demo(engine, AS_OF)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _rows(db: Engine, model: type) -> list[tuple[object, ...]]:
    """The rows as generated: without the change marker, which is the database's own."""
    table = model.__table__  # type: ignore[attr-defined]
    columns = [c for c in table.c if c.name not in ENGINE_KEPT_COLUMNS]
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(table.c.id))]


def test_same_as_of_and_seed_give_the_same_rows(db: Engine, tmp_path: Path) -> None:
    counts = load_demo(db, AS_OF)
    other = connect(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    try:
        assert load_demo(other, AS_OF) == counts
        for model in (Staff, Customer, Unit, Contract, ServiceRequest, Complaint, HotlineCall):
            assert _rows(db, model) == _rows(other, model), model.__tablename__
    finally:
        other.dispose()


def test_core_insert_fallback_writes_the_same_rows(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_demo(db, AS_OF)
    monkeypatch.setattr(demo_module._Writer, "_write_sqlite", demo_module._Writer._write_core)
    other = connect(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    try:
        load_demo(other, AS_OF)
        for model in (Contract, ServiceRequest, Complaint):
            assert _rows(db, model) == _rows(other, model), model.__tablename__
    finally:
        other.dispose()


def test_another_seed_gives_other_rows(db: Engine, tmp_path: Path) -> None:
    load_demo(db, AS_OF)
    other = connect(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    try:
        load_demo(other, AS_OF, seed=8)
        assert _rows(db, ServiceRequest) != _rows(other, ServiceRequest)
    finally:
        other.dispose()


def test_scale_one_is_three_hundred_requests(demo: Engine) -> None:
    with demo.connect() as conn:
        count = conn.execute(select(func.count()).select_from(ServiceRequest)).scalar_one()
    assert count == REQUESTS_PER_SCALE
    assert scale_for_requests(1_000_000) * REQUESTS_PER_SCALE >= 1_000_000
    assert scale_for_requests(1) == 1


def test_a_large_demo_opens_more_branches_instead_of_growing_teams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past BLOCKS_PER_BRANCH blocks the four branches open again, with teams of their own:
    a branch role then reaches as many people at any scale."""
    monkeypatch.setattr(demo_module, "BLOCKS_PER_BRANCH", 2)
    engine = connect(f"sqlite:///{tmp_path / 'demo.db'}")
    upgrade(engine)
    load_demo(engine, AS_OF, scale=3)
    with engine.connect() as conn:
        codes = conn.scalars(select(Branch.code).order_by(Branch.id)).all()
        calls = dict(
            conn.execute(
                select(Branch.code, func.count(ServiceRequest.id))
                .join(ServiceRequest, ServiceRequest.branch_id == Branch.id)
                .group_by(Branch.code)
            ).all()
        )
        leads = dict(
            conn.execute(
                select(Branch.code, func.count(Staff.id))
                .join(Staff, Staff.branch_id == Branch.id)
                .where(Staff.role == "team_lead")
                .group_by(Branch.code)
            ).all()
        )
    engine.dispose()
    assert codes == [
        "SH-01",
        "SH-SJ",
        "TPE-01",
        "MAD-01",
        "SH-01-2",
        "SH-SJ-2",
        "TPE-01-2",
        "MAD-01-2",
    ]
    assert sum(calls.values()) == 3 * REQUESTS_PER_SCALE
    assert calls["SH-01"] == 2 * calls["SH-01-2"]
    # Two blocks' teams, then one block's: the second SH-01 is no bigger than a scale-1 one.
    assert leads["SH-01-2"] <= leads["SH-01"] <= leads["SH-01-2"] + 1


def test_second_load_is_refused(db: Engine) -> None:
    load_demo(db, AS_OF)
    with pytest.raises(UsageError, match="demo data already present"):
        load_demo(db, AS_OF)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Branch)).scalar_one() == 4


def test_naive_as_of_is_refused(db: Engine) -> None:
    with pytest.raises(UsageError, match="time zone"):
        load_demo(db, AS_OF.replace(tzinfo=None))


def test_branches_in_shanghai_taipei_and_madrid(demo: Engine) -> None:
    with demo.connect() as conn:
        branches = conn.execute(select(Branch)).all()
    zones = {(b.timezone, b.country, b.locale) for b in branches}
    assert ("Asia/Shanghai", "CN", "zh-CN") in zones
    assert ("Asia/Taipei", "TW", "zh-TW") in zones
    assert ("Europe/Madrid", "ES", "es") in zones
    assert {b.calendar for b in branches} >= {"cn-office", "es-madrid"}
    assert all(b.email for b in branches)


def test_every_branch_has_every_role_and_a_reporting_line(demo: Engine) -> None:
    with demo.connect() as conn:
        staff = conn.execute(select(Staff)).all()
    by_id = {s.id: s for s in staff}
    roles: dict[int | None, set[str]] = defaultdict(set)
    for person in staff:
        roles[person.branch_id].add(person.role)
        assert person.email and person.email.endswith("@aftersales.example")
    for branch_id in (1, 2, 3, 4):
        assert roles[branch_id] - {"quality"} == set(STANDARD_ROLES)
    assert {"sales_director", "vice_general_manager", "accounting", "payroll", "operations"} <= (
        roles[None]
    )
    for tech in (s for s in staff if s.role == "technician"):
        lead = by_id[tech.supervisor_id]
        supervisor = by_id[lead.supervisor_id]
        manager = by_id[supervisor.supervisor_id]
        assert (lead.role, supervisor.role, manager.role) == (
            "team_lead",
            "service_supervisor",
            "service_manager",
        )


def test_customers_write_in_four_languages(demo: Engine) -> None:
    with demo.connect() as conn:
        customers = conn.execute(select(Customer)).all()
    assert {c.locale for c in customers} == {"zh-CN", "zh-TW", "es", "en"}
    assert {c.region for c in customers} == {"urban", "suburban"}
    assert any(c.email is None for c in customers)
    assert all(c.email.endswith("example.com") for c in customers if c.email)


def test_maintenance_contracts_end_within_a_month_in_several_locales(demo: Engine) -> None:
    today = AS_OF.date()
    with demo.connect() as conn:
        due = conn.execute(
            select(Contract.sales_rep_id, Contract.branch_id, Customer.locale)
            .join(Customer, Customer.id == Contract.customer_id)
            .where(
                Contract.kind == "maintenance",
                Contract.status == "active",
                Contract.ends_on > today,
                Contract.ends_on <= today + timedelta(days=30),
            )
        ).all()
        reps = {
            s.id: s.branch_id for s in conn.execute(select(Staff).where(Staff.role == "sales_rep"))
        }
    assert len(due) >= 5
    assert {row.locale for row in due} == {"zh-CN", "zh-TW", "es", "en"}
    assert all(reps[row.sales_rep_id] == row.branch_id for row in due)


def test_free_maintenance_ends_within_three_months(demo: Engine) -> None:
    today = AS_OF.date()
    with demo.connect() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(Contract)
            .where(
                Contract.kind == "free_maintenance",
                Contract.status == "active",
                Contract.ends_on > today,
                Contract.ends_on <= today + timedelta(days=95),
            )
        ).scalar_one()
    assert count >= 4


def test_renewed_contracts_point_to_their_successor(demo: Engine) -> None:
    with demo.connect() as conn:
        contracts = {c.id: c for c in conn.execute(select(Contract))}
    successors = [c for c in contracts.values() if c.renewal_of_id is not None]
    assert successors
    for new in successors:
        old = contracts[new.renewal_of_id]
        assert old.status == "renewed"
        assert old.renewed_at is not None
        assert new.starts_on == old.ends_on + timedelta(days=1)
    assert any(c.status == "lapsed" and c.ends_on < AS_OF.date() for c in contracts.values())


def test_requests_in_every_status_with_consistent_history(demo: Engine) -> None:
    with demo.connect() as conn:
        requests = conn.execute(select(ServiceRequest)).all()
        changes = defaultdict(list)
        for change in conn.execute(select(StatusChange).order_by(StatusChange.id)):
            changes[change.service_request_id].append(change)
    assert {r.status for r in requests} == set(SERVICE_STATUSES)
    for request in requests:
        times = [
            t
            for t in (
                request.received_at,
                request.dispatched_at,
                request.arrived_at,
                request.completed_at,
                request.collected_at,
            )
            if t is not None
        ]
        assert times == sorted(times), request.number
        assert times[-1] <= AS_OF
        assert request.promised_at is not None
        history = changes[request.id]
        assert history[0].status == "received"
        assert history[0].changed_at == request.received_at
        assert history[-1].status == request.status
        assert [h.changed_at for h in history] == sorted(h.changed_at for h in history)
    paused = {h.status for hs in changes.values() for h in hs}
    assert {"waiting_parts", "waiting_customer", "factory_return"} <= paused
    assert any(r.repeat_of_id for r in requests)
    assert any(r.human_damage for r in requests)
    assert any(r.needs_parts and r.status == "collected" for r in requests)
    assert {r.region for r in requests} == {"urban", "suburban"}


def test_calls_received_today_wait_for_dispatch(demo: Engine) -> None:
    with demo.connect() as conn:
        waiting = conn.execute(
            select(ServiceRequest.received_at).where(
                ServiceRequest.status == "received",
                ServiceRequest.received_at > AS_OF - timedelta(days=4),
            )
        ).all()
    # Two per branch: one near the 6/7 working-hour limit, one past it.
    assert len(waiting) >= 8


def test_overdue_and_late_complaints(demo: Engine) -> None:
    with demo.connect() as conn:
        complaints = conn.execute(select(Complaint)).all()
    overdue = [
        c
        for c in complaints
        if c.first_reply_at is None and c.received_at < AS_OF - timedelta(hours=24)
    ]
    assert len(overdue) >= 4
    assert {c.kind for c in complaints} == {"appeal", "claim"}
    assert {c.severity for c in complaints} == {"general", "serious"}
    assert any(
        c.first_reply_at is not None and c.first_reply_at - c.received_at > timedelta(hours=24)
        for c in complaints
    )
    closed = [c for c in complaints if c.status == "closed"]
    assert closed
    assert all(c.closed_at is not None and c.closed_at <= AS_OF for c in closed)
    assert any(c.verified and c.responsible_staff_id is None for c in closed)
    assert any(c.repeat_of_id for c in complaints)
    assert any(c.customer_satisfied is False for c in closed)


def test_unanswered_hotline_calls_last_month_inside_service_hours(demo: Engine) -> None:
    with demo.connect() as conn:
        zones = {b.id: ZoneInfo(b.timezone) for b in conn.execute(select(Branch))}
        calls = conn.execute(select(HotlineCall).where(HotlineCall.answered.is_(False))).all()
    inside: set[int] = set()
    outside = 0
    for call in calls:
        local = call.received_at.astimezone(zones[call.branch_id])
        last_month = (local.year, local.month) == (2026, 10)
        if last_month and 9 <= local.hour < 22:
            inside.add(call.branch_id)
            assert call.on_duty_staff_id is not None
        elif last_month:
            outside += 1
    assert inside == {1, 2, 3, 4}
    assert outside >= 4


def test_surveys_and_inspections(demo: Engine) -> None:
    with demo.connect() as conn:
        surveys = conn.execute(select(Survey)).all()
        done = conn.execute(
            select(func.count())
            .select_from(ServiceRequest)
            .where(ServiceRequest.completed_at < AS_OF - timedelta(days=2))
        ).scalar_one()
        inspections = conn.execute(select(Inspection)).all()
    assert len(surveys) > done / 2
    assert all(1 <= s.attitude <= 4 and s.surveyed_at <= AS_OF for s in surveys)
    assert [i.falsified for i in inspections].count(True) == 1


def test_tables_take_new_rows_after_the_demo(db: Engine) -> None:
    load_demo(db, AS_OF)
    with db.begin() as conn:
        new_id = conn.execute(
            insert(Branch.__table__)
            .values(code="BCN-01", name="Barcelona", timezone="Europe/Madrid", country="ES",
                    locale="es")
            .returning(Branch.__table__.c.id)
        ).scalar_one()  # fmt: skip
    assert new_id == 5
    if db.dialect.name == "postgresql":
        with db.connect() as conn:
            fks = conn.execute(
                text("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
            ).scalar_one()
        expected = sum(len(t.foreign_key_constraints) for t in Base.metadata.tables.values())
        assert fks == expected  # the foreign keys dropped for the load are back
