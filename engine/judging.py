"""Judging a run's rules one by one: each rule's findings recorded, queued and spooled a chunk
at a time, its closed states and next instants kept, inside a savepoint of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import islice
from types import ModuleType
from typing import IO, Any

from sqlalchemy import Connection

from engine.due_parts import DueParts
from engine.findings import Finding, close_missing, record_findings, reopen
from engine.incremental import Plan, judged_ids, keep_watches, scope_for, watched
from engine.ledger.book import LEDGER_DETAILS
from engine.notices.outbox import QueueReport, queue_notices
from engine.notices.recipients import Directory
from engine.policy import CompiledRule, Policy
from engine.rule_versions import PolicyHistory, judge_by_version
from engine.rules import FAMILIES, deadline
from engine.rules.scope import Scope
from engine.run_result import RuleOutcome, RunResult, spent

_CHUNK = 5000
"""Findings passed on at a time: a first night at a large site finds tens of thousands for one
rule, each holding its entity's row."""


def rules_due(
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


class _JudgeError(Exception):
    """A rule could not be judged: a result of the night, not its failure."""


class RulePassing:
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
        # Which version of a changed rule judges the items that closed before the change.
        self.versions = PolicyHistory(conn, policy, result.as_of, outgoing["templates"])
        # Branches and staff, read once for the run's notices when there are any.
        self.directory: Directory | None = None
        self.queued = QueueReport()
        self.bookings: list[Finding] = []
        self.found = self.new = self.history = 0

    def take(self, compiled: CompiledRule[Any], family: ModuleType, outcome: RuleOutcome) -> None:
        """Judge one rule and pass its findings on; a judging error is kept in `outcome`."""
        mark, queued, bookings = self.spool.tell(), QueueReport(), []
        found = new = history = 0
        live_from = self.policy.live_from(compiled.rule)
        scope = scope_for(self.conn, self.plan, compiled, family, self.result.as_of)
        if scope is not None and not scope.full:
            outcome.mode = "incremental"
        standing: set[str] = set()
        try:
            # A savepoint per rule: one broken rule becomes a result, not a failed night.
            with self.conn.begin_nested():
                for chunk in self._judged(compiled, family, outcome, scope):
                    fresh, live = self._pass_on(chunk, queued, live_from)
                    found, new = found + len(chunk), new + len(fresh)
                    history += len(fresh) - len(live)
                    bookings += (f for f in live if LEDGER_DETAILS in f.details)
                    standing.update(f.key for f in chunk if f.standing)
                if family is deadline:
                    outcome.closed = self._close(compiled.rule.id, standing, scope)
                if scope is not None and watched(compiled, family):
                    keep_watches(self.conn, compiled.rule.id, scope)
        except _JudgeError as exc:
            outcome.error = str(exc)
            self.spool.seek(mark)
            self.spool.truncate()
            return
        outcome.findings, outcome.new, outcome.history = found, new, history
        self.found, self.new = self.found + found, self.new + new
        self.history += history
        self.queued.add(queued)
        self.bookings += bookings

    def people(self) -> Directory:
        """The run's branches and staff, read at first need."""
        if self.directory is None:
            self.directory = Directory(self.conn, roles=self.policy.roles)
        return self.directory

    def _close(self, rule_id: str, standing: set[str], scope: Scope | None) -> int:
        """Close the rule's states no longer found; returns how many."""
        as_of = self.result.as_of
        closed = close_missing(self.conn, rule_id, standing, as_of, judged_ids(scope))
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
            findings, outcome.skipped = judge_by_version(
                self.conn, self.versions, compiled, family, self.result.as_of, **narrowing
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

    def _pass_on(
        self, chunk: list[Finding], queued: QueueReport, live_from: datetime | None
    ) -> tuple[list[Finding], list[Finding]]:
        """Record, queue and spool one chunk of findings; returns those that were new, and of
        those the ones due since the rule went live (the others are history: no notices)."""
        timings, as_of = self.result.timings, self.result.as_of
        step = time.perf_counter()
        new_keys = record_findings(
            self.conn,
            chunk,
            run_id=self.result.run_id,
            as_of=as_of,
            policy_hash=self.policy.hash,
            rule_digest=self.policy.digests.get(chunk[0].rule_id),
        )
        step = spent(timings, "record_s", step)
        fresh = [f for f in chunk if f.key in new_keys]
        reopen(self.conn, [f for f in chunk if f.key not in new_keys])
        past = [_history(f, live_from) for f in fresh]
        live = [f for f, history in zip(fresh, past, strict=True) if not history]
        if live:
            queued.add(queue_notices(self.conn, live, **self.outgoing, directory=self.people()))
        self.spool.writelines(
            json.dumps(f.artifact(True, history), ensure_ascii=False) + "\n"
            for f, history in zip(fresh, past, strict=True)
        )
        spent(timings, "notices_s", step)
        return fresh, live


def _history(finding: Finding, live_from: datetime | None) -> bool:
    """True for a finding that fell due before its rule went live (a go-live's past)."""
    return live_from is not None and finding.due_at is not None and finding.due_at < live_from


def time_families(policy: Policy, result: RunResult) -> None:
    """The seconds spent judging, per family and in all, into the run's timings."""
    spent = {
        family: sum(r.seconds for r in result.rules if r.family == family)
        for family in policy.by_family()
    }
    result.timings["evaluate_s"] = round(sum(spent.values()), 4)
    for family, seconds in spent.items():
        result.timings[f"evaluate_{family}_s"] = round(seconds, 4)
