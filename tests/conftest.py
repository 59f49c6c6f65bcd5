"""Shared fixtures: real SQLite files and a real PostgreSQL scratch database per test session."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from mailserver import Recorder, free_port
from sqlalchemy import Engine, create_engine, insert, select, text

from engine.db.models import (
    Branch,
    Complaint,
    Contract,
    Customer,
    Finding,
    Product,
    ServiceRequest,
    Staff,
    StatusChange,
    Unit,
)
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.settings import Settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the tests marked slow (CI=true does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the slow tests unless asked for (--slow) or in CI, which runs every test."""
    if config.getoption("--slow") or os.environ.get("CI") == "true":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


PG_ADMIN_URL = os.environ.get(
    "AFTERSALES_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A new database on the test server, dropped (whoever is connected) afterwards: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a fresh scratch database; skips without a server unless CI=true."""
    problem = _pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required when CI=true: {problem}")
        pytest.skip(f"no PostgreSQL server: {problem}")
    with pg_database("aftersales_test") as url:
        yield url


def _reset_pg(url: str) -> None:
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


PG_TURN_KEY = 731_500_019
"""The advisory lock key, on the server's `test` database, that test workers take turns by."""
_turn_server: list[Engine] = []


@contextmanager
def pg_turn(alone: bool) -> Iterator[None]:
    """A turn on the PostgreSQL server among parallel test workers: shared by tests that write,
    alone for those that read the change marker, which any writing transaction anywhere on the
    server holds back (another worker's test would make them find rows written before)."""
    if not _turn_server:
        _turn_server.append(create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT"))
    lock, unlock = ("lock", "unlock") if alone else ("lock_shared", "unlock_shared")
    with _turn_server[0].connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_{lock}(:key)"), {"key": PG_TURN_KEY})
        try:
            yield
        finally:
            conn.execute(text(f"SELECT pg_advisory_{unlock}(:key)"), {"key": PG_TURN_KEY})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of each kind: a real SQLite file, and the PostgreSQL scratch database
    (during a turn on the server: see pg_turn)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    url = request.getfixturevalue("pg_server")
    with pg_turn(alone=request.node.get_closest_marker("pg_alone") is not None):
        _reset_pg(url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A real, empty SQLite file."""
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def twin_url(db_url: str) -> Iterator[str]:
    """A second empty database of the same kind as db_url, for twin runs; dropped after."""
    if db_url.startswith("sqlite"):
        yield db_url.replace("service.db", "twin.db")
        return
    with pg_database("aftersales_twin") as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    """An Engine on a database of each kind with the current schema."""
    engine = connect(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings_for(tmp_path) -> Callable[[str], Settings]:
    """Settings for the shipped policy and templates, writing artifacts and .eml files to tmp."""

    def make(url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "db": url,
            "rules": ROOT / "rules",
            "templates": ROOT / "templates" / "notices",
            "artifacts_dir": tmp_path / "runs",
            "outbox_dir": tmp_path / "outbox",
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def midnight_settings_for(settings_for, tmp_path) -> Callable[..., Settings]:
    """settings_for with the shipped policy but every daily part at 00:00 local: for tests of
    the instant an obligation falls due or a period closes, to the minute, whatever the hour
    the schedule would do them (tested on its own in test_parts_done.py)."""
    rules = tmp_path / "midnight-rules"
    shutil.copytree(ROOT / "rules", rules)
    schedule = rules / "schedule.yaml"
    schedule.write_text(re.sub(r'"\d\d:\d\d"', '"00:00"', schedule.read_text("utf-8")), "utf-8")

    def make(url: str, **overrides: Any) -> Settings:
        return settings_for(url, **{"rules": rules, **overrides})

    return make


@pytest.fixture
def focused_settings_for(settings_for, tmp_path) -> Callable[..., Settings]:
    """settings_for with the shipped policy minus obligations and KPIs: for tests that follow
    reminders or tallies on hand-made data, where a team without visits is beside the point."""
    rules = tmp_path / "focused-rules"
    rules.mkdir()
    for path in (ROOT / "rules").glob("*.yaml"):
        if path.name not in ("obligations.yaml", "kpis.yaml"):
            shutil.copy(path, rules / path.name)

    def make(url: str, **overrides: Any) -> Settings:
        return settings_for(url, **{"rules": rules, **overrides})

    return make


@pytest.fixture
def unapproved_settings_for(focused_settings_for, tmp_path) -> Callable[..., Settings]:
    """focused_settings_for without `ledger.approval`: the close's notices go out at once, for
    tests of the close itself (the approval is tested in test_ledger_approval.py)."""
    rules = focused_settings_for("sqlite://").rules
    penalties = rules / "penalties.yaml"
    text = penalties.read_text("utf-8")
    penalties.write_text(re.sub(r"\n  approval:.*\n    by: .*", "", text), "utf-8")
    return focused_settings_for


PRODUCTS = {
    "AC-KFR35": ("Split air conditioner 3.5 kW", "air_conditioner"),
    "AC-VRF160": ("VRF outdoor unit 16 kW", "air_conditioner"),
    "IN-SP700": ("UV-Vis spectrophotometer", "instrument"),
    "WH-ELE60": ("Electric water heater 60 L", "water_heater"),
    "XX-GARDEN": ("Garden bench", "garden"),
}
"""Products ServiceData.unit() knows: model -> (name, category)."""


_COUNTRIES = {"Asia/Shanghai": "CN", "Asia/Taipei": "TW", "Europe/Madrid": "ES"}
"""A test branch's country, from its time zone: rules may be limited to countries."""


class ServiceData:
    """Builds small, hand-made service data: one branch in Shanghai with its staff."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._ids = itertools.count(1)
        self.staff: dict[str, int] = {}
        self.products: dict[str, int] = {}
        self.branch = self.add_branch("SH-01", "上海服务中心", "Asia/Shanghai", "cn-office", "sh")
        for role in ("sales_director", "vice_general_manager", "case_management"):
            self.staff[role] = self.add(
                Staff, branch_id=None, name=role.replace("_", " ").title(),
                email=f"{role}@hq.example", role=role, locale="en",
            )  # fmt: skip

    def add_branch(self, code: str, name: str, tz: str, calendar: str | None, mail: str) -> int:
        """A branch with one person in each branch role, mailed at <role>@<mail>.example."""
        branch = self.add(
            Branch, code=code, name=name, timezone=tz, country=_COUNTRIES.get(tz, code[:2]),
            calendar=calendar,
            locale="zh-CN", email=f"desk@{mail}.example",
        )  # fmt: skip
        roles = ("sales_rep", "team_lead", "service_supervisor", "service_manager", "technician")
        for role in (*roles, "responsible_department", "hotline_operator"):
            self.staff[f"{role}@{mail}"] = self.add(
                Staff, branch_id=branch, name=f"{role} {mail}", email=f"{role}@{mail}.example",
                role=role, locale="zh-CN",
            )  # fmt: skip
            self.staff.setdefault(role, self.staff[f"{role}@{mail}"])
        return branch

    def add(self, model: type, /, **values: Any) -> int:
        """Insert one row; returns its id (positional `model`: products have a `model` column)."""
        values.setdefault("id", next(self._ids))
        with self.engine.begin() as conn:
            conn.execute(insert(model), values)
        return values["id"]

    def findings(self, rule: str) -> list[tuple[str, str, str]]:
        """(entity_id, occurrence, state) of the findings `rule` recorded, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Finding.entity_id, Finding.occurrence, Finding.state)
                .where(Finding.rule_id == rule)
                .order_by(Finding.id)
            )
            return [tuple(row) for row in rows]

    def customer(self, name: str, locale: str = "en", email: str | None = "auto") -> int:
        """A customer of the branch; email defaults to one made from the name."""
        address = f"{name.lower().replace(' ', '.')}@example.com" if email == "auto" else email
        return self.add(
            Customer, branch_id=self.branch, name=name, email=address, locale=locale,
            region="urban", phone="+86 21 5555 0000",
        )  # fmt: skip

    def request(self, customer: int, received_at: datetime, **values: Any) -> int:
        """An urban repair call received at `received_at`, nothing done yet."""
        defaults = {
            "number": f"SR-{next(self._ids)}", "branch_id": self.branch, "customer_id": customer,
            "technician_id": self.staff["technician"], "kind": "repair", "region": "urban",
            "status": "received", "received_at": received_at,
        }  # fmt: skip
        return self.add(ServiceRequest, **{**defaults, **values})

    def status(self, request: int, status: str, at: datetime) -> None:
        """One entry of a call's status history."""
        self.add(StatusChange, service_request_id=request, status=status, changed_at=at)

    def complaint(self, customer: int, accepted_at: datetime, **values: Any) -> int:
        """A general appeal accepted at `accepted_at`, not answered yet."""
        defaults = {
            "number": f"CP-{next(self._ids)}", "branch_id": self.branch, "customer_id": customer,
            "kind": "appeal", "severity": "general", "status": "open",
            "received_at": accepted_at, "accepted_at": accepted_at,
        }  # fmt: skip
        return self.add(Complaint, **{**defaults, **values})

    def unit(self, customer: int, model: str = "AC-KFR35", **values: Any) -> int:
        """A unit of product `model` (air conditioner unless named) owned by `customer`."""
        if model not in self.products:
            name, category = PRODUCTS[model]
            self.products[model] = self.add(Product, model=model, name=name, category=category)
        defaults = {
            "product_id": self.products[model], "customer_id": customer, "branch_id": self.branch,
            "serial_number": f"{model}-{next(self._ids):06d}", "proof_of_purchase": False,
        }  # fmt: skip
        return self.add(Unit, **{**defaults, **values})

    def contract(self, customer: int, ends_on: date, **values: Any) -> int:
        """An active maintenance contract of one year ending on `ends_on`."""
        number = f"MC-{ends_on:%Y%m%d}-{customer}"
        defaults = {
            "number": number, "customer_id": customer, "branch_id": self.branch,
            "kind": "maintenance", "status": "active", "starts_on": ends_on - timedelta(days=365),
            "ends_on": ends_on, "sales_rep_id": self.staff["sales_rep"],
            "amount": Decimal("12000.00"), "currency": "CNY",
        }  # fmt: skip
        return self.add(Contract, **{**defaults, **values})


@pytest.fixture
def service_data(db: Engine) -> ServiceData:
    """A database of each kind holding one Shanghai branch and its staff."""
    return ServiceData(db)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    """A plain SMTP server on loopback that offers no STARTTLS."""
    handler = Recorder()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost"
    )
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()
