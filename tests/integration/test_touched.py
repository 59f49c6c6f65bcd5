"""Which entities an incremental run judges after a change, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import delete, update

from engine.db.changes import take_marker
from engine.db.models import Branch, Contract, Product, StatusChange, Unit
from engine.touched import read_changes, touched

AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_changes_reach_entities_two_steps_away_and_no_further(service_data):
    engine = service_data.engine
    ada, bob = service_data.customer("Ada Wong"), service_data.customer("Bob Li")
    unit = service_data.unit(ada)
    on_unit = service_data.request(ada, AT, unit_id=unit)
    elsewhere = service_data.request(bob, AT)
    service_data.status(on_unit, "dispatched", AT)
    contract = service_data.contract(bob, date(2027, 1, 31))
    marker = take_marker(engine)

    def after(change) -> tuple[frozenset[int] | None, frozenset[int] | None, bool]:
        nonlocal marker
        with engine.begin() as conn:
            change(conn)
        with engine.connect() as conn:
            changes = read_changes(conn, marker)
            found = touched(conn, changes, "service_requests"), touched(conn, changes, "contracts")
        marker = take_marker(engine)
        return (*found, changes.branches)

    # PostgreSQL markers may re-read rows of transactions that ended just before (never fewer):
    # exact there only without other sessions writing, so only SQLite's sets are exact.
    exact = engine.dialect.name == "sqlite"

    def agree(found: frozenset[int] | None, expected: set[int]) -> bool:
        return found == expected if exact else found is not None and expected <= found

    with engine.connect() as conn:
        assert agree(touched(conn, read_changes(conn, marker), "service_requests"), set())
    # The unit's product: product -> unit -> call, two steps.
    product = Unit.__table__.c.product_id
    with engine.connect() as conn:
        product_id = conn.scalar(Unit.__table__.select().with_only_columns(product))
    calls, contracts, _ = after(
        lambda c: c.execute(update(Product).where(Product.id == product_id).values(name="New"))
    )
    assert agree(calls, {on_unit}) and agree(contracts, set())
    # A status change deleted: its call (the tombstone keeps the call's id).
    calls, _, _ = after(lambda c: c.execute(delete(StatusChange)))
    assert agree(calls, {on_unit})
    # A contract changed: the calls of its customer (contract -> customer -> call).
    calls, contracts, _ = after(
        lambda c: c.execute(update(Contract).where(Contract.id == contract).values(amount=99))
    )
    assert agree(calls, {elsewhere}) and agree(contracts, {contract})
    # A branch changed: the run judges everything (engine.incremental), nothing to list here.
    *_, branches = after(lambda c: c.execute(update(Branch).values(name="Renamed")))
    assert branches
