"""The small world every case starts from, and the case's rows written as the import's CSV.

A case lists only the rows and columns it is about; the branch, the staff who receive notices,
a customer and two products are here, and each table's required columns have defaults. A case
row with the id of a world row changes that row (`branches: [{id: 1, timezone: ...}]`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.policy_tests.cases import TABLE_NAMES, LocatedCase

BRANCH_ROLES = (
    "technician",
    "team_lead",
    "service_supervisor",
    "service_manager",
    "sales_rep",
    "hotline_operator",
    "responsible_department",
)
HEAD_OFFICE_ROLES = (
    "sales_director",
    "vice_general_manager",
    "case_management",
    "general_manager",
    "accounting",
    "payroll",
    "operations",
)
STAFF_ID = {role: i for i, role in enumerate((*BRANCH_ROLES, *HEAD_OFFICE_ROLES), start=1)}
"""The world's staff ids by role: technician 1, team_lead 2, ... operations 14."""

_SUPERVISOR = {"technician": "team_lead", "team_lead": "service_supervisor"}


def _staff(role: str) -> dict[str, Any]:
    in_branch = role in BRANCH_ROLES
    boss = _SUPERVISOR.get(role)
    return {
        "id": STAFF_ID[role],
        "branch_id": 1 if in_branch else None,
        "name": role.replace("_", " "),
        "email": f"{role}@{'sh' if in_branch else 'hq'}.example",
        "role": role,
        "supervisor_id": STAFF_ID[boss] if boss else None,
        "locale": "zh-CN" if in_branch else "en",
    }


WORLD: Mapping[str, list[dict[str, Any]]] = {
    "branches": [
        {
            "id": 1, "code": "SH-01", "name": "上海服务中心", "timezone": "Asia/Shanghai",
            "country": "CN", "calendar": "cn-office", "locale": "zh-CN",
            "email": "desk@sh.example",
        }  # fmt: skip
    ],
    "staff": [_staff(role) for role in STAFF_ID],
    "customers": [
        {
            "id": 1, "branch_id": 1, "name": "王先生", "email": "customer1@example.com",
            "locale": "zh-CN", "region": "urban",
        }  # fmt: skip
    ],
    "products": [
        {"id": 1, "model": "AC-KFR35", "name": "Split air conditioner", "category": "air_conditioner"},
        {"id": 2, "model": "IN-SP700", "name": "Spectrophotometer", "category": "instrument"},
    ],
}
"""One Shanghai branch with one person per role, a customer, an air conditioner and an
instrument model (docs/policy.md lists it)."""

_Default = Callable[[int], Any]


def _fixed(value: Any) -> _Default:
    return lambda _id: value


_TECH, _ONE = _fixed(STAFF_ID["technician"]), _fixed(1)

COLUMN_DEFAULTS: Mapping[str, Mapping[str, _Default]] = {
    "branches": {
        "code": lambda i: f"B-{i}", "name": lambda i: f"branch {i}",
        "timezone": _fixed("Asia/Shanghai"), "country": _fixed("CN"),
        "calendar": _fixed("cn-office"), "locale": _fixed("zh-CN"),
    },  # fmt: skip
    "staff": {
        "branch_id": _ONE, "name": lambda i: f"staff {i}", "email": lambda i: f"staff{i}@sh.example",
        "role": _fixed("technician"), "locale": _fixed("zh-CN"),
    },  # fmt: skip
    "customers": {
        "branch_id": _ONE, "name": lambda i: f"customer {i}",
        "email": lambda i: f"customer{i}@example.com", "locale": _fixed("zh-CN"),
        "region": _fixed("urban"),
    },  # fmt: skip
    "products": {
        "model": lambda i: f"MODEL-{i}", "name": lambda i: f"product {i}",
        "category": _fixed("air_conditioner"),
    },  # fmt: skip
    "units": {
        "product_id": _ONE, "customer_id": _ONE, "branch_id": _ONE,
        "serial_number": lambda i: f"SN-{i:06d}",
    },  # fmt: skip
    "contracts": {
        "number": lambda i: f"MC-{i}", "customer_id": _ONE, "branch_id": _ONE,
        "kind": _fixed("maintenance"), "status": _fixed("active"),
        "sales_rep_id": _fixed(STAFF_ID["sales_rep"]),
    },  # fmt: skip
    "service_requests": {
        "number": lambda i: f"SR-{i}", "branch_id": _ONE, "customer_id": _ONE,
        "technician_id": _TECH, "kind": _fixed("repair"), "region": _fixed("urban"),
        "status": _fixed("received"),
    },  # fmt: skip
    "status_changes": {"service_request_id": _ONE},
    "complaints": {
        "number": lambda i: f"CP-{i}", "branch_id": _ONE, "customer_id": _ONE,
        "kind": _fixed("appeal"), "severity": _fixed("general"), "status": _fixed("open"),
    },  # fmt: skip
    "surveys": {"branch_id": _ONE, "service_request_id": _ONE, "technician_id": _TECH},
    "hotline_calls": {
        "branch_id": _ONE, "on_duty_staff_id": _fixed(STAFF_ID["hotline_operator"]),
    },  # fmt: skip
    "inspections": {"branch_id": _ONE, "contract_id": _ONE, "technician_id": _TECH},
    "improvements": {"branch_id": _ONE, "staff_id": _TECH, "title": lambda i: f"improvement {i}"},
    "targets": {"branch_id": _ONE, "staff_id": _TECH, "item": _fixed("task")},
    "work_records": {"branch_id": _ONE},
}
"""Each table's required columns (and the people notices reach), for a case row without them."""


def rows_of(case: LocatedCase) -> dict[str, list[tuple[dict[str, Any], int | None]]]:
    """Per table, the rows to import: the world's, changed or added to by the case's; each
    with the index of the case row it comes from (None: the world's alone)."""
    tables: dict[str, list[tuple[dict[str, Any], int | None]]] = {}
    for table in TABLE_NAMES:
        rows: dict[int, tuple[dict[str, Any], int | None]] = {
            row["id"]: (dict(row), None) for row in WORLD.get(table, [])
        }
        next_id = max(rows, default=0) + 1
        for index, given in enumerate(case.case.given.get(table, [])):
            row_id = given.get("id")
            if not isinstance(row_id, int):
                row_id = next_id
            next_id = max(next_id, row_id + 1)
            base = rows.get(row_id, ({}, None))[0]
            defaults = {c: make(row_id) for c, make in COLUMN_DEFAULTS.get(table, {}).items()}
            rows[row_id] = ({**defaults, **base, **given, "id": row_id}, index)
        if rows:
            tables[table] = [rows[i] for i in sorted(rows)]
    return tables


def write_csv(folder: Path, tables: Mapping[str, list[tuple[dict[str, Any], int | None]]]) -> None:
    """One `<table>.csv` per table, as `aftersales import` reads them."""
    for table, rows in tables.items():
        columns = list(dict.fromkeys(c for row, _ in rows for c in row))
        with (folder / f"{table}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows([_cell(row.get(c)) for c in columns] for row, _ in rows)


def _cell(value: Any) -> str:
    """A YAML value as the import reads it: empty for null, true/false, ISO dates and instants."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
