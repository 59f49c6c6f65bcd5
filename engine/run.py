"""One night: evaluate the policy at `as_of`, record findings, queue notices, write the artifact.

Findings, notices and the run's own record commit in one transaction, so a crash leaves
either all of a night's work or none of it; the next run redoes what is missing. Delivery
happens after that commit and has its own bookkeeping (see engine/notices/delivery.py).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateError
from sqlalchemy import Connection, Engine, insert, update

from engine.artifact import artifact_path, write_artifact
from engine.db.changes import prune_tombstones, take_marker
from engine.db.models import Run
from engine.db.schema import require_current
from engine.due_parts import DueParts, branch_zones, due_parts, mark_done
from engine.findings import close_rules_gone, open_counts
from engine.incremental import FULL, plan_run, software
from engine.judging import RulePassing, rules_due, time_families
from engine.kpis import kept_values, record_kpis
from engine.ledger.approval import releasable, waiting
from engine.ledger.close import Settlement, settle, settle_approved
from engine.ledger.periods import Period
from engine.notices.dead_letters import hand_over_dead_letters
from engine.notices.digest import bundle_digests
from engine.notices.outbox import QueueReport, queue_letters
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy, load_policy
from engine.policy.schedule_spec import PARTS
from engine.policy_versions import keep_version
from engine.reports.kpis import KpiSummary, kpi_letters, read_report, write_report
from engine.reports.overdue import (
    OverdueSummary,
    SummaryTerms,
    open_overdue,
    overdue_letters,
    write_page,
)
from engine.reports.penalties import write_reports
from engine.rules.metric import Measured, is_effective, measure, months_to_measure
from engine.rules.unjudged import count_unjudged
from engine.run_result import RuleOutcome, RunResult, spent
from engine.settings import Settings


def load_checked_policy(
    settings: Settings, in_use: Mapping[str, list[str]] | None = None
) -> tuple[Policy, NoticeTemplates]:
    """The policy and templates, validated together; raises PolicyError with every problem.
    `in_use`: the locales the database's readers read (engine.notices.languages)."""
    policy = load_policy(settings.rules, NoticeTemplates(settings.templates), in_use)
    limits = settings.rendering.limits()
    return policy, NoticeTemplates(settings.templates, policy.defaults.locale, limits)


def run_night(
    settings: Settings,
    engine: Engine,
    *,
    as_of: datetime,
    dry_run: bool = False,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
    templates: NoticeTemplates | None = None,
    full: bool = False,
    policy: Policy | None = None,
) -> RunResult:
    """Evaluate the policy at `as_of`: every rule in full, or, when the policy is unchanged
    since the last run, what changed or came due (engine.incremental); `full` forces the
    former. With dry_run nothing is written to the database.

    `progress` is called with each rule id as it is evaluated (for progress bars);
    `templates`, if given, renders the notices instead of those under settings.templates;
    `policy`, if given, is judged instead of reading settings.rules again (policy tests run
    many nights on one policy, checked once with load_checked_policy).
    """
    started = time.perf_counter()
    if policy is None:
        policy, loaded = load_checked_policy(settings)
        templates = templates or loaded
    elif templates is None:
        raise ValueError("a policy given to run_night comes with its templates")
    require_current(engine)
    timings = {"load_s": round(time.perf_counter() - started, 4)}
    run_id = uuid.uuid4().hex
    result = RunResult(run_id, as_of, "running", {}, timings, [])
    if not dry_run:
        # Taken before anything is read: what is written from now on, the next run reads.
        marker = take_marker(engine)
        # Committed on its own, so a run that dies leaves a trace in the history.
        with engine.begin() as conn:
            _start_run(conn, run_id, as_of, policy.hash, marker)
            keep_version(conn, policy)  # for `aftersales diff` to compare with later
    # The artifact's findings, one JSON object per line, on disk until the artifact is written.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        try:
            _evaluate_and_queue(
                settings, engine, policy, templates, result, dry_run, progress, spool, full
            )
        except BaseException as exc:
            if not dry_run:
                with engine.begin() as conn:
                    fail_run(conn, run_id, f"{type(exc).__name__}: {exc}")
            raise
        result.timings["total_s"] = round(time.perf_counter() - started, 4)
        if not dry_run:
            with engine.begin() as conn:
                conn.execute(update(Run).where(Run.id == run_id).values(timings=result.timings))
        path = out or artifact_path(settings.artifacts_dir, run_id, as_of)
        spool.seek(0)
        lines = (line.rstrip("\n") for line in spool)
        result.artifact = write_artifact(path, result.document(policy.hash, dry_run), lines)
    return result


def _evaluate_and_queue(
    settings: Settings,
    engine: Engine,
    policy: Policy,
    templates: NoticeTemplates,
    result: RunResult,
    dry_run: bool,
    progress: Callable[[str], None] | None,
    spool: IO[str],
    full: bool,
) -> None:
    run_id, as_of, timings = result.run_id, result.as_of, result.timings
    outgoing: dict[str, Any] = {
        "policy": policy,
        "templates": templates,
        "mail_from": settings.mail_from,
        "run_id": run_id,
        "as_of": as_of,
    }
    conn = engine.connect()
    try:
        with conn.begin() as tx:
            if dry_run:
                _start_run(conn, run_id, as_of, policy.hash, None)
            due = due_parts(
                conn, policy.schedule, branch_zones(conn), policy.ledger.timezone, as_of,
                close_on_day=policy.ledger.close_on_day,
            )  # fmt: skip
            result.parts_due = due.artifact()
            plan = plan_run(conn, policy, as_of, full="asked for (--full)" if full else None)
            result.mode = plan.artifact()
            # Rule by rule, a chunk at a time, findings go to the database, the outbox and the
            # spool at once: the night holds a chunk, or one rule's list where a judge makes one.
            night = RulePassing(conn, policy, result, spool, outgoing, plan)
            for compiled, family, outcome in rules_due(policy, result, progress, due):
                night.take(compiled, family, outcome)
            time_families(policy, result)
            if plan.mode == FULL:  # a rule taken out of the policy leaves nothing open
                result.closed += close_rules_gone(conn, policy.rule_ids(), as_of)
            queued, bookings = night.queued, night.bookings
            found, new_total = night.found, night.new
            step = time.perf_counter()
            # The ledger is written in the same transaction as the findings it books.
            settling = due.is_due("tallies") or due.is_due("month_close")
            settled = Settlement()
            if settling:
                settled = settle(conn, bookings, directory=night.people(), **outgoing)
            elif releasable(conn):
                settled = settle_approved(conn, directory=night.people(), **outgoing)
            elif policy.ledger.approval is not None:  # every artifact says what still waits
                settled.waiting = waiting(conn)
            summary = OverdueSummary(as_of)
            reported = QueueReport()
            if due.is_due("overdue_summary"):
                branches = night.people().branches
                scope = due.scopes("overdue_summary").branches
                unjudged = count_unjudged(conn, policy, as_of, scope)
                every = open_overdue(conn, as_of, branches, SummaryTerms.of(policy), unjudged)
                summary = every.only(scope)
                result.record_unjudged(unjudged)
                reported = _report_overdue(conn, summary, night.people(), **outgoing)
            kpis, measured, stored = None, QueueReport(), 0
            if due.is_due("kpi_report"):
                kpis, measured, stored = _kpi_report(conn, result, night.people(), **outgoing)
            # Letters set aside tonight, or dead in an earlier delivery: staff phone or post them.
            told = hand_over_dead_letters(conn, directory=night.people(), **outgoing)
            outgoing.pop("policy")
            bundled = QueueReport()
            if due.is_due("digests"):
                bundled = bundle_digests(conn, **outgoing, branches=_people(due))
            mark_done(conn, due, run_id, PARTS)
            result.open_findings = open_counts(conn)
            spent(timings, "notices_s", step)
            result.counts = {
                "findings_new": new_total,
                "findings_total": found,
                "findings_history": night.history,
                "notices_queued": sum(
                    q.queued for q in (queued, settled, reported, measured, told, bundled)
                ),
                "notices_set_aside": sum(
                    q.set_aside for q in (queued, settled, reported, measured, told, bundled)
                ),
                "kpi_values": stored,
                "rule_errors": sum(1 for r in result.rules if r.error),
            }
            result.set_aside = dict(
                queued.reasons
                + settled.reasons
                + reported.reasons
                + measured.reasons
                + told.reasons
                + bundled.reasons
            )
            result.ledger = settled.artifact()
            result.outcome = "error" if result.counts["rule_errors"] else "success"
            _finish_run(conn, result)
            if result.outcome == "success" and plan.marker is not None:
                # Later runs read changes after this run's marker, which is past these.
                prune_tombstones(conn, plan.marker)
            if dry_run:
                tx.rollback()
    finally:
        conn.close()

    if not dry_run:
        _write_reports(result, settled, summary, kpis, settings, templates, policy)


def _report_overdue(
    conn: Connection,
    summary: OverdueSummary,
    directory: Directory,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> QueueReport:
    """Tonight's overdue summary, queued to each branch's managers (once per local day)."""
    report = QueueReport()
    letters = overdue_letters(
        summary, policy.defaults.overdue_summary_to, directory, report.reasons
    )
    queued = queue_letters(
        conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
    )
    report.queued, report.set_aside = queued.queued, queued.set_aside + report.set_aside
    report.reasons.update(queued.reasons)
    return report


def _kpi_report(
    conn: Connection,
    result: RunResult,
    directory: Directory,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> tuple[KpiSummary | None, QueueReport, int]:
    """Measure and store the metrics, and queue the last complete month's report to each
    branch (once per month). Returns the report when it went out this run (else None), what
    queueing it did, and the number of values stored."""
    report = QueueReport()
    if not policy.metrics:
        return None, report, 0
    step = time.perf_counter()
    months = months_to_measure(
        as_of.astimezone(ZoneInfo(policy.ledger.timezone)), policy.kpi_report.history + 1
    )
    # The report fell due on the first of this month; before the policy went live it is
    # history, not sent, and the months only it compares need not be measured yet.
    live = policy.defaults.effective_from
    sending = live is None or months[-1].start >= live
    measured, stored = _measure_kpis(
        conn, result, policy, months if sending else months[-2:], run_id=run_id, as_of=as_of
    )
    summary = None
    if sending:
        keys = [m.key for m in months]
        summary = read_report(conn, measured, [m.rule for m in policy.metrics], keys[:-1])
        letters = kpi_letters(summary, policy.kpi_report, directory, report.reasons)
        queued = queue_letters(
            conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
        )
        report.queued, report.set_aside = queued.queued, queued.set_aside
        report.reasons.update(queued.reasons)
        # The page is the report as it went out: written with the month's letters, not each
        # night (`aftersales report kpi` writes it again from the data as it is now).
        if not (queued.queued or queued.set_aside):
            summary = None
    result.timings["metrics_s"] = round(time.perf_counter() - step, 4)
    return summary, report, stored


def _measure_kpis(
    conn: Connection,
    result: RunResult,
    policy: Policy,
    months: list[Period],
    *,
    run_id: str,
    as_of: datetime,
) -> tuple[list[Measured], int]:
    """Every metric's values for `months`, stored; returns them and the number stored. The
    last two (the reported month and the current one) still change with late data and are
    measured again; the months before keep what was stored while they were recent, and are
    measured once if nothing was."""
    older = [m.key for m in months[:-2]]
    kept = kept_values(conn, [m.rule.id for m in policy.metrics], older)
    stored_already = {(k.metric_id, k.period) for k in kept}
    measured: list[Measured] = []
    stored, done = 0, set()
    for metric in policy.metrics:
        rule_id = metric.rule.id
        outcome = RuleOutcome(rule_id, "metric")
        result.rules.append(outcome)
        if not is_effective(metric, as_of):
            continue
        todo = [m for m in months[:-2] if (rule_id, m.key) not in stored_already] + months[-2:]
        began = time.perf_counter()
        try:
            with conn.begin_nested():  # one broken metric is a result, not a failed night
                values = measure(conn, metric, todo, as_of)
                stored += record_kpis(
                    conn, values, [m.key for m in todo], [rule_id],
                    run_id=run_id, policy_hash=policy.hash, as_of=as_of,
                )  # fmt: skip
            measured += values
            done.add(rule_id)
        except Exception as exc:  # reported per rule in the artifact
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            outcome.seconds = round(time.perf_counter() - began, 4)
    measured += (k for k in kept if k.metric_id in done)
    return measured, stored


def _write_reports(
    result: RunResult,
    settled: Settlement,
    overdue: OverdueSummary,
    kpis: KpiSummary | None,
    settings: Settings,
    templates: NoticeTemplates,
    policy: Policy,
) -> None:
    """The overdue summary and the months settled, as HTML and CSV beside the run artifacts."""
    folder = settings.artifacts_dir / "reports"
    locale, zone = policy.defaults.locale, policy.ledger.timezone
    try:
        paths = write_page(overdue, folder, templates, locale, zone) if overdue.branches else []
        if kpis is not None:
            paths += write_report(kpis, folder, templates, locale)
        paths += write_reports(settled.summaries, folder, templates, locale, zone)
    except (TemplateError, OSError) as exc:  # the night is committed; say so, don't crash
        result.ledger["reports_error"] = f"{type(exc).__name__}: {exc}"
        return
    result.ledger["reports"] = [str(p) for p in paths]


def _people(due: DueParts) -> list[int | None]:
    """Whose digests are due: the staff of these branches, and head office's (None)."""
    scopes = due.scopes("digests")
    return [*sorted(scopes.branches), *([None] if scopes.company else [])]


def _start_run(
    conn: Connection, run_id: str, as_of: datetime, policy_hash: str, marker: int | None
) -> None:
    conn.execute(
        insert(Run).values(
            id=run_id,
            as_of=as_of,
            started_at=datetime.now(UTC),
            outcome="running",
            policy_hash=policy_hash,
            counts={},
            timings={},
            change_marker=marker,
            software=software(),
        )
    )


def _finish_run(conn: Connection, result: RunResult) -> None:
    per_rule = {r.rule_id: {"findings": r.findings, "new": r.new} for r in result.rules}
    conn.execute(
        update(Run)
        .where(Run.id == result.run_id)
        .values(
            outcome=result.outcome,
            mode=result.mode.get("mode"),
            finished_at=datetime.now(UTC),
            counts={**result.counts, "per_rule": per_rule},
            timings=result.timings,
        )
    )


def fail_run(conn: Connection, run_id: str, error: str) -> None:
    """Mark a run as failed with the reason."""
    conn.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(outcome="error", finished_at=datetime.now(UTC), error=error[:4000])
    )
