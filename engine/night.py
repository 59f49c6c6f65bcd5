"""A whole night under the run lock: evaluate, queue, deliver, and keep the run history true.

Used by `aftersales run`, `aftersales schedule` and jobs/nightly.py alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, select, update

from engine.db.lock import run_lock
from engine.db.models import Run, Staff
from engine.db.schema import current_revision, head_revision, require_current
from engine.errors import PolicyError
from engine.notices.delivery import DeliveryReport, deliver, sender_from_settings
from engine.notices.outbox import queue_plain_notice
from engine.notices.templates import NoticeTemplates
from engine.policy import policy_hash
from engine.run import RunResult, run_night
from engine.settings import Settings

log = logging.getLogger("aftersales.night")


@dataclass
class NightResult:
    """What a night did: the evaluation and, unless skipped, the delivery."""

    run: RunResult
    delivery: DeliveryReport | None


def one_night(
    settings: Settings,
    engine: Engine,
    *,
    as_of: datetime,
    dry_run: bool = False,
    send: bool = True,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> NightResult:
    """Evaluate at `as_of` and deliver, holding the run lock; RunLocked if another run is on."""
    if dry_run:  # reads only: no need to keep a real night waiting
        return NightResult(run_night(settings, engine, as_of=as_of, dry_run=True, out=out), None)
    require_current(engine)
    with run_lock(engine):
        abandon_unfinished_runs(engine)
        log.info("run started", extra={"as_of": as_of.isoformat()})
        try:
            result = run_night(settings, engine, as_of=as_of, out=out, progress=progress)
        except PolicyError as problems:
            report_invalid_policy(settings, engine, problems, as_of)
            raise
        log.info("run finished", extra={"run_id": result.run_id, **_flat(result.counts)})
        report = deliver_outbox(settings, engine) if send else None
        if report is not None:
            record_delivery(engine, result.run_id, report)
        return NightResult(result, report)


def deliver_locked(settings: Settings, engine: Engine) -> DeliveryReport:
    """`aftersales deliver`: send the outbox while holding the run lock."""
    with run_lock(engine):
        return deliver_outbox(settings, engine)


def deliver_outbox(settings: Settings, engine: Engine) -> DeliveryReport:
    """Send what is due in the outbox now, by SMTP or as .eml files."""
    report = deliver(
        engine,
        sender_from_settings(settings),
        now=datetime.now(UTC),
        mail_from=settings.mail_from,
        window=settings.delivery.window(),
    )
    log.info(
        "delivery finished",
        extra={"sent": report.sent, "failed": report.failed, "dead": report.dead,
               "unknown": report.unknown, "held_for_window": report.held},
    )  # fmt: skip
    return report


def record_delivery(engine: Engine, run_id: str, report: DeliveryReport) -> None:
    """Add the delivery's figures to the run's history record."""
    with engine.begin() as conn:
        counts = conn.scalar(select(Run.counts).where(Run.id == run_id)) or {}
        sent = {"notices_sent": report.sent, "notices_failed": report.failed,
                "notices_dead": report.dead, "notices_unknown": report.unknown}  # fmt: skip
        conn.execute(update(Run).where(Run.id == run_id).values(counts={**counts, **sent}))


def abandon_unfinished_runs(engine: Engine) -> int:
    """Mark runs still `running` as abandoned: with the lock held, none can be alive."""
    with engine.begin() as conn:
        return conn.execute(
            update(Run)
            .where(Run.outcome == "running")
            .values(outcome="abandoned", error="the process ended before the run finished")
        ).rowcount


def report_invalid_policy(
    settings: Settings, engine: Engine, problems: PolicyError, as_of: datetime
) -> None:
    """Record the failed night and tell the operations contact, once per broken version."""
    if current_revision(engine) != head_revision():
        return  # nowhere to record it; the command's own error says what to do
    files = sorted([*settings.rules.glob("*.yaml"), *settings.rules.glob("*.yml")])
    version = policy_hash(files) if files else "none"
    now = datetime.now(UTC)
    run_id = f"invalid-{version}-{now:%Y%m%dT%H%M%S}"
    with engine.begin() as conn:
        conn.execute(
            insert(Run).values(
                id=run_id,
                as_of=as_of,
                started_at=now,
                finished_at=now,
                outcome="invalid_policy",
                policy_hash=version,
                counts={"problems": len(problems.problems)},
                timings={},
                error=str(problems)[:4000],
            )
        )
        staff = Staff.__table__
        contacts = conn.execute(
            select(staff).where(staff.c.role == "operations", staff.c.active.is_(True))
        ).mappings()
        templates = NoticeTemplates(settings.templates)
        for person in contacts:
            queue_plain_notice(
                conn,
                key=f"policy-invalid|{version}",
                template="policy_invalid",
                templates=templates,
                recipient=person,
                context={"problems": [str(p) for p in problems.problems],
                         "folder": str(settings.rules), "version": version, "as_of": as_of},
                mail_from=settings.mail_from,
                run_id=run_id,
                as_of=as_of,
            )  # fmt: skip
    log.error("policy invalid: nothing evaluated", extra={"problems": len(problems.problems)})
    deliver_outbox(settings, engine)


def _flat(counts: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in counts.items() if isinstance(v, int | float | str)}
