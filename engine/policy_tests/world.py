"""The small world every case starts from, and the case's rows written as the import's CSV.

A case lists only the rows and columns it is about; the branch, the staff who receive notices,
a customer and two products are here, and each table's required columns have defaults. A case
row with the id of a world row changes that row (`branches: [{id: 1, timezone: ...}]`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
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
        dict(
            id=1,
            code="SH-01",
            name="上海服务中心",
            timezone="Asia/Shanghai",
            country="CN",
            calendar="cn-office",
            locale="zh-CN",
            email="desk@sh.example",
        )
    ],
    "staff": [_staff(role) for role in STAFF_ID],
    "customers": [
        dict(
            id=1,
            branch_id=1,
            name="王先生",
            email="customer1@example.com",
            locale="zh-CN",
            region="urban",
        )
    ],
    "products": [
        dict(id=1, model="AC-KFR35", name="Split air conditioner", category="air_conditioner"),
        dict(id=2, model="IN-SP700", name="Spectrophotometer", category="instrument"),
    ],
}
"""One Shanghai branch with one person per role, a customer, an air conditioner and an
instrument model (docs/policy.md lists it)."""

_TECH = STAFF_ID["technician"]

COLUMN_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "branches": dict(
        code="B-{id}",
        name="branch {id}",
        timezone="Asia/Shanghai",
        country="CN",
        calendar="cn-office",
        locale="zh-CN",
    ),
    "staff": dict(
        branch_id=1,
        name="staff {id}",
        email="staff{id}@sh.example",
        role="technician",
        locale="zh-CN",
    ),
    "customers": dict(
        branch_id=1,
        name="customer {id}",
        email="customer{id}@example.com",
        locale="zh-CN",
        region="urban",
    ),
    "products": dict(model="MODEL-{id}", name="product {id}", category="air_conditioner"),
    "units": dict(product_id=1, customer_id=1, branch_id=1, serial_number="SN-{id}"),
    "contracts": dict(
        number="MC-{id}",
        customer_id=1,
        branch_id=1,
        kind="maintenance",
        status="active",
        sales_rep_id=STAFF_ID["sales_rep"],
    ),
    "service_requests": dict(
        number="SR-{id}",
        branch_id=1,
        customer_id=1,
        technician_id=_TECH,
        kind="repair",
        region="urban",
        status="received",
    ),
    "status_changes": dict(service_request_id=1),
    "complaints": dict(
        number="CP-{id}",
        branch_id=1,
        customer_id=1,
        kind="appeal",
        severity="general",
        status="open",
    ),
    "surveys": dict(branch_id=1, service_request_id=1, technician_id=_TECH),
    "hotline_calls": dict(branch_id=1, on_duty_staff_id=STAFF_ID["hotline_operator"]),
    "inspections": dict(branch_id=1, contract_id=1, technician_id=_TECH),
    "improvements": dict(branch_id=1, staff_id=_TECH, title="improvement {id}"),
    "targets": dict(branch_id=1, staff_id=_TECH, item="task"),
    "work_records": dict(branch_id=1),
}
"""Each table's required columns (and the people notices reach), for a case row without them;
`{id}` is the row's id, so numbers and serials stay unique."""


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
            defaults = {
                c: v.format(id=row_id) if isinstance(v, str) else v
                for c, v in COLUMN_DEFAULTS.get(table, {}).items()
            }
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
