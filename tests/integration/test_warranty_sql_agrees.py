"""The night (SQL views) and explain (engine.warranty in Python) decide warranty alike.

A matrix of units (every start basis, promotion edges, month ends, leap days, products with
model, category and no term) and repair calls (own-term parts, fallback parts, exclusions,
calls around local midnight) is decided both ways on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert, select

from engine.db.models import ServiceRequest
from engine.expr.temporal import local_date
from engine.run import load_checked_policy
from engine.warranty import call_coverage, unit_warranty

MODELS = ("AC-KFR35", "AC-VRF160", "IN-SP700", "WH-ELE60", "XX-GARDEN")
PURCHASES = (None, date(2025, 12, 1), date(2025, 12, 31), date(2025, 1, 31), date(2024, 2, 29))
INSTALLS = (None, date(2025, 3, 31))
SERIALS = (None, date(2024, 8, 31))
PARTS = ("compressor", "fan", "lamp", None, "unit", "heating_element")
RECEIVED = (
    datetime(2026, 2, 28, 2, 0, tzinfo=UTC),
    datetime(2026, 11, 30, 17, 30, tzinfo=UTC),  # already December 1st in Shanghai
    datetime(2027, 6, 30, 9, 0, tzinfo=UTC),
    datetime(2025, 1, 31, 15, 59, tzinfo=UTC),
)


def _matrix(data: Any) -> None:
    customer = data.customer("Ada Wong")
    cases = itertools.product(MODELS, PURCHASES, (True, False), INSTALLS, SERIALS)
    rows = []
    for n, (model, bought, proof, installed, made) in enumerate(cases):
        unit = data.unit(customer, model, purchased_on=bought, proof_of_purchase=proof,
                         installed_on=installed, manufactured_on=made)  # fmt: skip
        for k in range(3):
            rows.append({
                "id": 10_000 + 3 * n + k, "number": f"SR-M{3 * n + k}", "branch_id": data.branch,
                "customer_id": customer, "unit_id": unit, "kind": "repair", "region": "urban",
                "status": "received", "fault_part": PARTS[(n + k) % len(PARTS)],
                "human_damage": (n + k) % 5 == 0, "unauthorised_repair": False,
                "needs_parts": False, "factory_return": False,
                "received_at": RECEIVED[(n * 3 + k) % len(RECEIVED)],
            })  # fmt: skip
    with data.engine.begin() as conn:
        conn.execute(insert(ServiceRequest), rows)


def test_sql_and_python_agree_on_every_call_and_unit(service_data, settings_for):
    data = service_data
    _matrix(data)
    policy, _ = load_checked_policy(settings_for(str(data.engine.url)))
    calls, units = policy.views.full("service_requests"), policy.views.full("units")
    with data.engine.connect() as conn:
        call_rows = [dict(r) for r in conn.execute(select(calls)).mappings()]
        unit_rows = [dict(r) for r in conn.execute(select(units)).mappings()]

    assert len(call_rows) == 3 * len(unit_rows) == 3 * 200
    decided = {"free": 0, "void": 0, "promotion": 0, "none": 0}
    for row in call_rows:
        assert row["received_on"] == local_date(row["received_at"], "Asia/Shanghai")
        python = asdict(call_coverage(policy.warranty, row))
        sql = {key: row[key] for key in python}
        assert sql == python, row["number"]
        decided["free"] += row["in_warranty"]
        decided["void"] += row["warranty_void"]
        decided["promotion"] += row["warranty_promotion"] is not None
        decided["none"] += row["warranty_basis"] is None
    # The matrix reaches every branch of the decision.
    assert all(decided.values()), decided

    for row in unit_rows:
        warranty = unit_warranty(policy.warranty, row)
        whole = warranty.window("unit")
        assert row["warranty_term"] == (warranty.term.id if warranty.term else None)
        assert row["warranty_basis"] == warranty.basis
        assert row["warranty_starts_on"] == warranty.starts_on
        assert row["warranty_ends_on"] == (whole.ends_on if whole else None), row["id"]
