"""A whole night under the run lock: evaluate, queue, deliver, and keep the run history true.

Used by `aftersales run`, `aftersales schedule` and jobs/nightly.py alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from engine.db.lock import database_identity, run_lock
from engine.db.models import Notice, Run
from engine.db.schema import current_revision, head_revision, require_current
from engine.errors import PolicyError
from engine.notices.delivery import (
    JOURNAL_NAME,
    DeliveryReport,
    OutcomeJournal,
    deliver,
    sender_from_settings,
)
from engine.notices.outbox import alert_operations
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
    full: bool = False,
) -> NightResult:
    """Evaluate at `as_of` and deliver, holding the run lock; RunLocked if another run is on.
    `full` judges every entity, not only what changed or came due."""
    if dry_run:  # reads only: no need to keep a real night waiting
        dry = run_night(settings, engine, as_of=as_of, dry_run=True, out=out, full=full)
        return NightResult(dry, None)
    require_current(engine)
    with run_lock(engine):
        abandon_unfinished_runs(engine)
        log.info("run started", extra={"as_of": as_of.isoformat()})
        try:
            result = run_night(settings, engine, as_of=as_of, out=out, progress=progress, full=full)
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
    """Send what is due in the outbox now, by SMTP or as .eml files, and alert operations
    when the mail server cannot be used or a letter's fate is unknown."""
    now = datetime.now(UTC)
    report = _deliver(settings, engine, now)
    if report.transport_failure is not None:
        report_transport_failure(settings, engine, report.transport_failure, now)
    if report.unknown_notices:
        # A server that died mid-DATA is often down too: then the alert waits with the rest.
        report_unknown_outcomes(settings, engine, report, now)
        if report.transport_failure is None:
            # The alert itself goes out now, not at the next cycle.
            follow_up = _deliver(settings, engine, datetime.now(UTC))
            report.add(follow_up)
            if follow_up.unknown_notices:
                report_unknown_outcomes(settings, engine, follow_up, datetime.now(UTC))
    return report


def _deliver(settings: Settings, engine: Engine, now: datetime) -> DeliveryReport:
    report = deliver(
        engine,
        sender_from_settings(settings),
        now=now,
        mail_from=settings.mail_from,
        window=settings.delivery.window(),
        journal=delivery_journal(settings, engine),
        patience_s=settings.delivery.record_patience_s,
    )
    log.info(
        "delivery finished",
        extra={"sent": report.sent, "failed": report.failed, "dead": report.dead,
               "unknown": report.unknown, "held_for_window": report.held,
               "left": report.skipped, "from_journal": report.from_journal},
    )  # fmt: skip
    return report


def delivery_journal(settings: Settings, engine: Engine) -> OutcomeJournal:
    """Where delivery keeps outcomes the database would not take (engine.notices.journal)."""
    # Keyed like the run lock: any spelling of the SQLite file's path finds its lines.
    where = database_identity(engine) or engine.url.render_as_string(hide_password=True)
    return OutcomeJournal(settings.artifacts_dir / JOURNAL_NAME, where)


TRANSPORT_FAILED = "transport_failed"
OUTCOME_UNKNOWN = "outcome_unknown"


def report_transport_failure(
    settings: Settings, engine: Engine, reason: str, now: datetime
) -> None:
    """Alert operations once per outage: an outage starts with the first failure after a
    letter went out, and ends when one goes out again (the alert itself, usually)."""
    with engine.begin() as conn:
        alerted = conn.scalar(
            select(func.max(Notice.created_at)).where(Notice.template == TRANSPORT_FAILED)
        )
        if alerted is not None:
            since = select(func.count()).where(Notice.sent_at >= alerted)
            if not conn.scalar(since):
                log.warning(
                    "mail server still unusable; operations were alerted when it started",
                    extra={"reason": reason, "outage_alerted_at": alerted.isoformat()},
                )
                return
        queued = _alert_operations(
            settings, conn, key=f"transport-failed|{now.isoformat()}", template=TRANSPORT_FAILED,
            context={"reason": reason, "since": now, "server": _server(settings)},
            run_id="delivery", as_of=now,
        )  # fmt: skip
    log.error(
        "mail server unusable: delivery stopped, letters left as they were",
        extra={"reason": reason, "operations_alerted": queued},
    )


def report_unknown_outcomes(
    settings: Settings, engine: Engine, report: DeliveryReport, now: datetime
) -> None:
    """Tell operations, once per delivery, which letters may or may not have been sent."""
    notices = [f"notice {u.notice_id} {u.message_id}: {u.reason}" for u in report.unknown_notices]
    with engine.begin() as conn:
        queued = _alert_operations(
            settings, conn, key=f"outcome-unknown|{now.isoformat()}", template=OUTCOME_UNKNOWN,
            context={"notices": notices, "server": _server(settings), "as_of": now},
            run_id="delivery", as_of=now,
        )  # fmt: skip
    log.error(
        "letters whose delivery is unknown: check the mail server's log before resending",
        extra={"notices": len(notices), "operations_alerted": queued},
    )


def _server(settings: Settings) -> str:
    smtp = settings.smtp
    return f"{smtp.host}:{smtp.port}" if smtp.host else str(settings.outbox_dir)


def _alert_operations(
    settings: Settings,
    conn: Connection,
    *,
    key: str,
    template: str,
    context: dict[str, Any],
    run_id: str,
    as_of: datetime,
) -> int:
    """Queue an engine notice to every active `operations` staff member; how many."""
    return alert_operations(
        conn, templates=NoticeTemplates(settings.templates), mail_from=settings.mail_from,
        key=key, template=template, context=context, run_id=run_id, as_of=as_of,
    )  # fmt: skip


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
        _alert_operations(
            settings, conn, key=f"policy-invalid|{version}", template="policy_invalid",
            context={"problems": [str(p) for p in problems.problems],
                     "folder": str(settings.rules), "version": version, "as_of": as_of},
            run_id=run_id, as_of=as_of,
        )  # fmt: skip
    log.error("policy invalid: nothing evaluated", extra={"problems": len(problems.problems)})
    deliver_outbox(settings, engine)


def _flat(counts: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in counts.items() if isinstance(v, int | float | str)}
