"""Store measured KPI values: each month measured tonight replaces what an earlier night left;
the months before the reported one keep what was stored while they were recent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from engine.db.models import KpiValue
from engine.db.session import chunks
from engine.rules.metric import Measured


def record_kpis(
    conn: Connection,
    measured: Sequence[Measured],
    months: Sequence[str],
    metric_ids: Sequence[str],
    *,
    run_id: str,
    policy_hash: str,
    as_of: datetime,
) -> int:
    """Replace the values of these metrics and months with `measured`; returns rows written."""
    if not metric_ids or not months:
        return 0
    # Delete and insert, not upsert: a branch or person with nothing left to measure loses
    # its stale value too.
    conn.execute(
        delete(KpiValue).where(KpiValue.metric_id.in_(metric_ids), KpiValue.period.in_(months))
    )
    rows = [
        {
            "metric_id": m.metric_id,
            "period": m.period,
            "scope": m.scope,
            "party_id": m.party_id,
            "branch_id": m.branch_id,
            "numerator": m.numerator,
            "denominator": m.denominator,
            "value": m.value,
            "policy_hash": policy_hash,
            "run_id": run_id,
            "computed_at": as_of,
        }
        for m in measured
    ]
    for chunk in chunks(rows, 1000):
        conn.execute(insert(KpiValue), chunk)
    return len(rows)


def kept_values(
    conn: Connection, metric_ids: Sequence[str], months: Sequence[str]
) -> list[Measured]:
    """The values stored for these metrics and months, as they were measured."""
    if not metric_ids or not months:
        return []
    v = KpiValue
    rows = conn.execute(
        select(
            v.metric_id, v.period, v.scope, v.party_id, v.branch_id,
            v.numerator, v.denominator, v.value,
        ).where(v.metric_id.in_(metric_ids), v.period.in_(months))
    )  # fmt: skip
    return [Measured(*row) for row in rows]
