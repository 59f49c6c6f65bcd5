"""`aftersales status`: the run history, the outbox, and when the next cycle is."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from engine.db.models import Run
from engine.db.schema import require_current
from engine.ledger.approval import waiting
from engine.notices.outbox_admin import outbox_counts
from engine.settings import Settings


def read_status(settings: Settings, engine: Engine, *, limit: int, now: datetime) -> dict[str, Any]:
    """The newest `limit` runs, outbox counts by state, the ledger's months waiting for
    approval, and the next scheduled run."""
    require_current(engine)
    with engine.connect() as conn:
        runs = conn.execute(select(Run).order_by(Run.started_at.desc()).limit(limit)).all()
        by_state = outbox_counts(conn)
        held = [w.artifact() for w in waiting(conn)]
    # The loop counts its cadence from each cycle's start (engine.scheduler.CycleLoop).
    upcoming = max(runs[0].started_at + settings.schedule_every, now) if runs else now
    return {
        "runs": [_run(row) for row in runs],
        "outbox": by_state,
        "awaiting_approval": held,
        "next_run": f"{upcoming:%Y-%m-%d %H:%M} UTC, if `aftersales schedule` is running "
        f"(a cycle every {_minutes(settings.schedule_every)})",
    }


def _minutes(every: timedelta) -> str:
    minutes = int(every.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _run(row: Any) -> dict[str, Any]:
    counts = row.counts or {}
    # Stored instants are whole seconds; the run's own timing is finer.
    took = (row.timings or {}).get("total_s")
    return {
        "id": row.id,
        "as_of": row.as_of,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "seconds": took,
        "outcome": row.outcome,
        "policy_hash": row.policy_hash,
        "findings_new": counts.get("findings_new"),
        "findings_total": counts.get("findings_total"),
        "notices_queued": counts.get("notices_queued"),
        "notices_sent": counts.get("notices_sent"),
        "notices_failed": sum(counts.get(k) or 0 for k in ("notices_failed", "notices_dead")),
        "timings": row.timings,
        "error": row.error,
    }
