"""One night: evaluate the policy at `as_of`, record findings, queue notices, write the artifact.

Findings, notices and the run's own record commit in one transaction, so a crash leaves
either all of a night's work or none of it; the next run redoes what is missing. Delivery
happens after that commit and has its own bookkeeping (see engine/notices/delivery.py).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateError
from sqlalchemy import Connection, Engine, insert, update

from engine.artifact import artifact_path, write_artifact
from engine.db.changes import take_marker
from engine.db.models import Run
from engine.db.schema import require_current
from engine.due_parts import DueParts, branch_zones, due_parts, mark_done
from engine.findings import Finding, close_missing, open_counts, record_findings, reopen
from engine.incremental import Plan, judged_ids, keep_watches, plan_run, scope_for
from engine.kpis import record_kpis
from engine.ledger.book import LEDGER_DETAILS
from engine.ledger.close import Settlement, settle
from engine.notices.digest import bundle_digests
from engine.notices.outbox import QueueReport, queue_letters, queue_notices
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import CompiledRule, Policy, load_policy
from engine.policy.schedule_spec import PARTS
from engine.reports.kpis import KpiSummary, kpi_letters, read_report, write_report
from engine.reports.overdue import OverdueSummary, overdue_letters, write_page
from engine.reports.penalties import write_reports
from engine.rules import FAMILIES, deadline
from engine.rules.deadline import is_current
from engine.rules.metric import Measured, is_effective, measure, months_to_measure
from engine.rules.scope import Scope
from engine.settings import Settings

_CHUNK = 5000
"""Findings passed on at a time: a first night at a large site finds tens of thousands for one
rule, each holding its entity's row."""


@dataclass
class RuleOutcome:
    """How one rule fared in a run."""

    rule_id: str
    family: str
    findings: int = 0
    new: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    mode: str = "full"  # full, incremental (what changed or came due) or not due (its part)
    closed: int = 0


@dataclass
class RunResult:
    """What a run did; `document` is the artifact."""

    run_id: str
    as_of: datetime
    outcome: str
    counts: dict[str, int]
    timings: dict[str, float]
    rules: list[RuleOutcome]
    set_aside: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    mode: dict[str, Any] = field(default_factory=dict)
    parts_due: list[dict[str, str]] = field(default_factory=list)
    open_findings: dict[str, int] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)  # keys of states no longer found
    artifact: Path | None = None

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The artifact's findings (new ones and those whose state changed), read back from
        its file: the night streams them there rule by rule instead of holding them all."""
        if self.artifact is None:
            return []
        return json.loads(self.artifact.read_text("utf-8"))["findings"]

    def document(self, policy_hash: str, dry_run: bool) -> dict[str, Any]:
        """The run artifact (schema_version 2) but for its findings, which are spooled."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "policy_hash": policy_hash,
            "outcome": self.outcome,
            "dry_run": dry_run,
            "mode": self.mode,
            "parts_due": self.parts_due,
            "open_findings": self.open_findings,
            "closed_findings": self.closed,
            "counts": self.counts,
            "timings": self.timings,
            "rules": [vars(r) for r in self.rules],
            "notices_set_aside": self.set_aside,
            "ledger": self.ledger,
        }


def load_checked_policy(settings: Settings) -> tuple[Policy, NoticeTemplates]:
    """The policy and templates, validated together; raises PolicyError with every problem."""
    policy = load_policy(settings.rules, NoticeTemplates(settings.templates))
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
) -> RunResult:
    """Evaluate the policy at `as_of`: every rule in full, or, when the policy is unchanged
    since the last run, what changed or came due (engine.incremental); `full` forces the
    former. With dry_run nothing is written to the database.

    `progress` is called with each rule id as it is evaluated (for progress bars);
    `templates`, if given, renders the notices instead of those under settings.templates.
    """
    started = time.perf_counter()
    policy, loaded = load_checked_policy(settings)
    templates = templates or loaded
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
            plan = plan_run(conn, policy.hash, as_of, full=_why_full(full, due))
            result.mode = plan.artifact()
            # Rule by rule, a chunk at a time, findings go to the database, the outbox and the
            # spool at once: the night holds a chunk, or one rule's list where a judge makes one.
            night = _Passing(conn, policy, result, spool, outgoing, plan)
            for compiled, family, outcome in _rules(policy, result, progress, due):
                night.take(compiled, family, outcome)
            _time_families(policy, result)
            queued, overdue, bookings = night.queued, night.overdue, night.bookings
            found, new_total = night.found, night.new
            step = time.perf_counter()
            # The ledger is written in the same transaction as the findings it books.
            settling = due.is_due("tallies") or due.is_due("month_close")
            settled = settle(conn, bookings, **outgoing) if settling else Settlement()
            summary = overdue.finish().only(due.scopes("overdue_summary").branches)
            reported = _report_overdue(conn, summary, **outgoing)
            kpis, measured, stored = None, QueueReport(), 0
            if due.is_due("kpi_report"):
                kpis, measured, stored = _measure_kpis(conn, result, **outgoing)
            outgoing.pop("policy")
            bundled = QueueReport()
            if due.is_due("digests"):
                bundled = bundle_digests(conn, **outgoing, branches=_people(due))
            mark_done(conn, due, run_id, PARTS)
            result.open_findings = open_counts(conn)
            _spent(timings, "notices_s", step)
            result.counts = {
                "findings_new": new_total,
                "findings_total": found,
                "notices_queued": sum(
                    q.queued for q in (queued, settled, reported, measured, bundled)
                ),
                "notices_set_aside": sum(
                    q.set_aside for q in (queued, settled, reported, measured, bundled)
                ),
                "kpi_values": stored,
                "rule_errors": sum(1 for r in result.rules if r.error),
            }
            result.set_aside = dict(
                queued.reasons
                + settled.reasons
                + reported.reasons
                + measured.reasons
                + bundled.reasons
            )
            result.ledger = settled.artifact()
            result.outcome = "error" if result.counts["rule_errors"] else "success"
            _finish_run(conn, result)
            if dry_run:
                tx.rollback()
    finally:
        conn.close()

    if not dry_run:
        _write_reports(result, settled, summary, kpis, settings, templates, policy)


def _spent(timings: dict[str, float], step: str, since: float) -> float:
    """Add the time since `since` to `timings[step]`; returns now."""
    now = time.perf_counter()
    timings[step] = round(timings.get(step, 0.0) + now - since, 4)
    return now


def _report_overdue(
    conn: Connection,
    summary: OverdueSummary,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> QueueReport:
    """Tonight's overdue summary, queued to each branch's managers (once per local day)."""
    directory = Directory(conn)
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


def _measure_kpis(
    conn: Connection,
    result: RunResult,
    *,
    policy: Policy,
    templates: NoticeTemplates,
    mail_from: str,
    run_id: str,
    as_of: datetime,
) -> tuple[KpiSummary | None, QueueReport, int]:
    """Measure every metric for this month and the months the report compares, store the
    values, and queue the last complete month's report to each branch (once per month).
    Returns the report, what queueing it did, and the number of values stored."""
    report = QueueReport()
    if not policy.metrics:
        return None, report, 0
    step = time.perf_counter()
    months = months_to_measure(
        as_of.astimezone(ZoneInfo(policy.ledger.timezone)), policy.kpi_report.history + 1
    )
    measured: list[Measured] = []
    done: list[str] = []
    for metric in policy.metrics:
        outcome = RuleOutcome(metric.rule.id, "metric")
        result.rules.append(outcome)
        if not is_effective(metric, as_of):
            continue
        began = time.perf_counter()
        try:
            with conn.begin_nested():  # one broken metric is a result, not a failed night
                measured += measure(conn, metric, months, as_of)
            done.append(metric.rule.id)
        except Exception as exc:  # reported per rule in the artifact
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            outcome.seconds = round(time.perf_counter() - began, 4)
    keys = [m.key for m in months]
    stored = record_kpis(
        conn, measured, keys, done, run_id=run_id, policy_hash=policy.hash, as_of=as_of
    )
    summary = read_report(conn, measured, [m.rule for m in policy.metrics], keys[:-1])
    letters = kpi_letters(summary, policy.kpi_report, Directory(conn), report.reasons)
    queued = queue_letters(
        conn, letters, templates=templates, mail_from=mail_from, run_id=run_id, as_of=as_of
    )
    report.queued, report.set_aside = queued.queued, queued.set_aside
    report.reasons.update(queued.reasons)
    result.timings["metrics_s"] = round(time.perf_counter() - step, 4)
    return summary, report, stored


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
        paths = write_page(overdue, folder, templates, locale) if overdue.branches else []
        if kpis is not None:
            paths += write_report(kpis, folder, templates, locale)
        paths += write_reports(settled.summaries, folder, templates, locale, zone)
    except (TemplateError, OSError) as exc:  # the night is committed; say so, don't crash
        result.ledger["reports_error"] = f"{type(exc).__name__}: {exc}"
        return
    result.ledger["reports"] = [str(p) for p in paths]


def _rules(
    policy: Policy,
    result: RunResult,
    progress: Callable[[str], None] | None,
    due: DueParts,
) -> Iterator[tuple[CompiledRule[Any], ModuleType, RuleOutcome]]:
    """Each rule in effect at as_of with its family, in the policy's order; obligations and
    tallies only when their part is due."""
    for family, rules in policy.by_family().items():
        judge = FAMILIES[family]
        part = _DAILY_FAMILIES.get(family)
        for item in rules:
            if progress is not None:
                progress(item.rule.id)
            outcome = RuleOutcome(item.rule.id, family)
            result.rules.append(outcome)
            if part is not None and not due.is_due(part):
                outcome.mode = "not due"
            elif judge.is_effective(item, result.as_of):
                yield item, judge, outcome


_DAILY_FAMILIES = {"obligation": "obligations", "tally": "tallies"}
"""Families judged once a day, when their part of the schedule is due."""


def _why_full(full: bool, due: DueParts) -> str | None:
    """Why this run must judge everything whatever changed, if it must."""
    if full:
        return "asked for (--full)"
    if due.is_due("overdue_summary"):
        return "the overdue summary is due: it lists every late clock"
    return None


def _people(due: DueParts) -> list[int | None]:
    """Whose digests are due: the staff of these branches, and head office's (None)."""
    scopes = due.scopes("digests")
    return [*sorted(scopes.branches), *([None] if scopes.company else [])]


class _JudgeError(Exception):
    """A rule could not be judged: a result of the night, not its failure."""


class _Passing:
    """Passes each rule's findings on, a chunk at a time: recorded, queued, summarised and
    spooled. A rule that fails part-way leaves nothing behind (savepoint, spool cut back)."""

    def __init__(
        self,
        conn: Connection,
        policy: Policy,
        result: RunResult,
        spool: IO[str],
        outgoing: dict[str, Any],
        plan: Plan,
    ) -> None:
        self.conn, self.policy, self.result, self.spool = conn, policy, result, spool
        self.outgoing, self.plan = outgoing, plan
        self.titles = {compiled.rule.id: compiled.rule.title for compiled in policy.rules()}
        self.branches = Directory(conn).branches
        self.overdue = OverdueSummary(result.as_of)
        self.queued = QueueReport()
        self.bookings: list[Finding] = []
        self.found = self.new = 0

    def take(self, compiled: CompiledRule[Any], family: ModuleType, outcome: RuleOutcome) -> None:
        """Judge one rule and pass its findings on; a judging error is kept in `outcome`."""
        mark, queued, deadlines, bookings = self.spool.tell(), QueueReport(), [], []
        found = new = 0
        scope = scope_for(self.conn, self.plan, compiled, family, self.result.as_of)
        if scope is not None and not scope.full:
            outcome.mode = "incremental"
        standing: set[str] = set()
        try:
            # A savepoint per rule: one broken rule becomes a result, not a failed night.
            with self.conn.begin_nested():
                for chunk in self._judged(compiled, family, outcome, scope):
                    fresh = self._pass_on(chunk, queued)
                    found, new = found + len(chunk), new + len(fresh)
                    # A state passed through at a missed night is not overdue now.
                    deadlines += (f for f in chunk if f.family == "deadline" and is_current(f))
                    bookings += (f for f in fresh if LEDGER_DETAILS in f.details)
                    standing.update(f.key for f in chunk if f.standing)
                if family is deadline:
                    outcome.closed = self._close(compiled.rule.id, standing, scope)
        except _JudgeError as exc:
            outcome.error = str(exc)
            self.spool.seek(mark)
            self.spool.truncate()
            return
        outcome.findings, outcome.new = found, new
        self.found, self.new = self.found + found, self.new + new
        self.queued.add(queued)
        self.overdue.add(deadlines, self.branches, self.titles)
        self.bookings += bookings

    def _close(self, rule_id: str, standing: set[str], scope: Scope | None) -> int:
        """Close the rule's states no longer found; keep its clocks' next instants."""
        as_of = self.result.as_of
        closed = close_missing(self.conn, rule_id, standing, as_of, judged_ids(scope))
        if scope is not None:
            keep_watches(self.conn, rule_id, scope)
        self.result.closed += closed
        return len(closed)

    def _judged(
        self,
        compiled: CompiledRule[Any],
        family: ModuleType,
        outcome: RuleOutcome,
        scope: Scope | None,
    ) -> Iterator[list[Finding]]:
        """The rule's findings in chunks; the time spent judging goes to `outcome.seconds`."""
        began = time.perf_counter()
        narrowing = {} if scope is None else {"scope": scope}
        try:
            findings, outcome.skipped = family.judge(
                self.conn, compiled, self.policy.calendars, self.result.as_of, **narrowing
            )
            stream = iter(findings)
            while chunk := list(islice(stream, _CHUNK)):
                outcome.seconds += time.perf_counter() - began
                yield chunk
                began = time.perf_counter()
        except Exception as exc:  # reported per rule in the artifact
            raise _JudgeError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            outcome.seconds = round(outcome.seconds + time.perf_counter() - began, 4)

    def _pass_on(self, chunk: list[Finding], queued: QueueReport) -> list[Finding]:
        """Record, queue and spool one chunk of findings; returns those that were new."""
        timings, as_of = self.result.timings, self.result.as_of
        step = time.perf_counter()
        new_keys = record_findings(
            self.conn, chunk, run_id=self.result.run_id, as_of=as_of, policy_hash=self.policy.hash
        )
        step = _spent(timings, "record_s", step)
        fresh = [f for f in chunk if f.key in new_keys]
        reopen(self.conn, [f for f in chunk if f.key not in new_keys])
        queued.add(queue_notices(self.conn, fresh, **self.outgoing))
        self.spool.writelines(
            json.dumps(f.artifact(True), ensure_ascii=False) + "\n" for f in fresh
        )
        _spent(timings, "notices_s", step)
        return fresh


def _time_families(policy: Policy, result: RunResult) -> None:
    spent = {
        family: sum(r.seconds for r in result.rules if r.family == family)
        for family in policy.by_family()
    }
    result.timings["evaluate_s"] = round(sum(spent.values()), 4)
    for family, seconds in spent.items():
        result.timings[f"evaluate_{family}_s"] = round(seconds, 4)


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
