"""Which version of a rule judges an item: the one in force when the item closed.

A policy version comes into force with the first successful run that judges with it (its
`as_of`); the runs' history gives the versions in order, and `policy_versions` their rule
digests (engine.policy.digest) and files. When a rule's digest differs between versions, the
items that closed while an earlier version was in force (a clock stopped, a ledger period
closed, an obligation's due day passed) are judged by that version, loaded from the files the
runs kept, with its calendars; open items, and items closed since the current version came
into force, by the policy being run. A rule absent from (or disabled in) the version in force
when an item closed does not judge that item. Items closed before the first run belong to the
first version.

A family that judges closed items says how far back it looks (`closed_since`) and takes the
window of closing instants it is to judge (`judge(..., window=...)`); versions whose window
ends before that horizon are not loaded at all.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from engine.calendar import BusinessCalendar
from engine.db.models import PolicyVersion, Run
from engine.errors import PolicyError
from engine.findings import Finding
from engine.notices.templates import NoticeTemplates
from engine.policy import CompiledRule, Policy, load_policy
from engine.policy_versions import write_folder
from engine.rules.scope import ClosedWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleVersion:
    """One version of a rule and the items it judges; `compiled` None: the rule was not in
    force then (absent or disabled), so those items are not judged."""

    window: ClosedWindow
    policy_hash: str
    digest: str | None
    compiled: CompiledRule[Any] | None
    calendars: Mapping[str, BusinessCalendar]


class PolicyHistory:
    """The policy versions successful runs judged with up to `as_of`, then `policy`."""

    def __init__(
        self, conn: Connection, policy: Policy, as_of: datetime, templates: NoticeTemplates
    ) -> None:
        self.conn, self.policy, self.templates, self.as_of = conn, policy, templates, as_of
        self._digests: dict[str, Mapping[str, str] | None] = {policy.hash: policy.digests}
        self._loaded: dict[str, Policy | None] = {policy.hash: policy}

    @cached_property
    def spans(self) -> list[tuple[datetime, str]]:
        """(since, policy hash) of each version in force, oldest first; read at first need,
        a rule family that judges closed items asking."""
        return [*_spans(self.conn, self.as_of), (self.as_of, self.policy.hash)]

    def versions(self, rule_id: str, horizon: Callable[[], datetime | None]) -> list[RuleVersion]:
        """The versions of a rule that judge the items closed from `horizon()` on (None: any),
        oldest first; the current one alone when the rule did not change in that time."""
        current = self.policy.digests.get(rule_id)
        windows: list[tuple[datetime | None, str, str | None]] = []  # since, hash, digest
        for since, policy_hash in self.spans:
            digest = self._digest(policy_hash, rule_id, current)
            if not windows or windows[-1][2] != digest:
                windows.append((since if windows else None, policy_hash, digest))
        if len(windows) == 1:
            return [self._version(rule_id, ClosedWindow(), self.policy.hash, current)]
        oldest, out = horizon(), []
        for index, (since, policy_hash, digest) in enumerate(windows):
            until = windows[index + 1][0] if index + 1 < len(windows) else None
            if until is not None and oldest is not None and until <= oldest:
                continue  # closed before the family looks back: nothing of it to judge
            out.append(self._version(rule_id, ClosedWindow(since, until), policy_hash, digest))
        if len(out) == 1:  # one version judges everything, whenever it closed
            return [self._version(rule_id, ClosedWindow(), self.policy.hash, current)]
        return out

    def judging(self, rule_id: str, closed_at: datetime | None) -> RuleVersion | None:
        """The version of a rule that judges an item closed at `closed_at` (None: open)."""
        versions = self.versions(rule_id, lambda: None)
        return next((v for v in versions if v.window.holds(closed_at)), None)

    def _digest(self, policy_hash: str, rule_id: str, current: str | None) -> str | None:
        """The rule's digest in a version; a version whose text was not kept (runs before
        it was) counts as the current one: it cannot be judged by."""
        if policy_hash not in self._digests:
            kept = self.conn.execute(
                select(PolicyVersion.rules, PolicyVersion.files).where(
                    PolicyVersion.hash == policy_hash
                )
            ).first()
            if kept is None:
                self._digests[policy_hash] = None
            elif kept.rules is not None:
                self._digests[policy_hash] = kept.rules
            else:  # kept before digests were: work them out from its files
                loaded = self._load(policy_hash, kept.files)
                self._digests[policy_hash] = None if loaded is None else loaded.digests
        digests = self._digests[policy_hash]
        return current if digests is None else digests.get(rule_id)

    def _version(
        self, rule_id: str, window: ClosedWindow, policy_hash: str, digest: str | None
    ) -> RuleVersion:
        if digest is None:
            return RuleVersion(window, policy_hash, None, None, {})
        current = self.policy.digests.get(rule_id)
        kept = None if digest == current else self._policy(policy_hash)
        if kept is not None and kept.digests.get(rule_id) == current:
            kept = None  # stored by an older engine: the rule reads the same today
        if kept is None:  # the rule as it reads now, or a kept version that no longer loads
            policy_hash, digest, policy = self.policy.hash, current, self.policy
        else:
            policy = kept
        compiled = policy.rule(rule_id)
        if compiled is None or any(r.rule.id == rule_id for r in policy.disabled):
            return RuleVersion(window, policy_hash, None, None, {})
        return RuleVersion(window, policy_hash, digest, compiled, policy.calendars)

    def _policy(self, policy_hash: str) -> Policy | None:
        """A kept version, loaded; None when it no longer loads."""
        if policy_hash not in self._loaded:
            files = self.conn.scalar(
                select(PolicyVersion.files).where(PolicyVersion.hash == policy_hash)
            )
            self._load(policy_hash, files or {})
        return self._loaded[policy_hash]

    def _load(self, policy_hash: str, files: Mapping[str, str]) -> Policy | None:
        policy: Policy | None = None
        with tempfile.TemporaryDirectory(prefix="aftersales-version-") as folder:
            try:
                policy = load_policy(write_folder(files, Path(folder)), self.templates)
            except PolicyError as exc:  # the engine moved on; judge by the current version
                log.warning("policy version %s no longer loads: %s", policy_hash, exc)
        self._loaded[policy_hash] = policy
        return policy


def _spans(conn: Connection, as_of: datetime) -> list[tuple[datetime, str]]:
    """(as_of of the first run, policy hash) of each run of successive successful runs up
    to `as_of` that judged with one policy version, oldest first: a policy judging at the
    instant of an earlier run (a diff at its as_of, a run again) comes into force after it."""
    # started_at breaks ties: runs again at one instant, with another policy, come in order.
    earlier = func.lag(Run.policy_hash).over(order_by=(Run.as_of, Run.started_at))
    runs = (
        select(Run.as_of, Run.started_at, Run.policy_hash, earlier.label("earlier"))
        .where(Run.outcome == "success", Run.as_of <= as_of)
        .subquery()
    )
    changes = select(runs.c.as_of, runs.c.policy_hash).where(
        (runs.c.earlier.is_(None)) | (runs.c.earlier != runs.c.policy_hash)
    )
    return [
        (row.as_of, row.policy_hash)
        for row in conn.execute(changes.order_by(runs.c.as_of, runs.c.started_at))
    ]


def judge_by_version(
    conn: Connection,
    history: PolicyHistory,
    compiled: CompiledRule[Any],
    family: Any,
    as_of: datetime,
    **narrowing: Any,
) -> tuple[Iterable[Finding], dict[str, int]]:
    """The rule's findings at `as_of` (family.judge), each item judged by the version of the
    rule in force when it closed; the findings of an earlier version say which it was."""
    judge = family.judge
    versions = (
        history.versions(compiled.rule.id, lambda: family.closed_since(conn, compiled, as_of))
        if hasattr(family, "closed_since")
        else []
    )
    if len(versions) <= 1:
        return judge(conn, compiled, history.policy.calendars, as_of, **narrowing)
    parts: list[Iterable[Finding]] = []
    skipped: Counter[str] = Counter()
    for version in versions:
        # A version on another table judged other items: none of these.
        if version.compiled is None or version.compiled.rule.entity != compiled.rule.entity:
            continue
        window = replace(version.window, closing=compiled)
        found, missed = judge(
            conn, version.compiled, version.calendars, as_of, window=window, **narrowing
        )
        if version.policy_hash != history.policy.hash:
            decided = (version.policy_hash, version.digest)
            found = [replace(f, decided_by=decided) for f in found]
        parts.append(found)
        skipped.update(missed)
    return chain.from_iterable(parts), dict(skipped)
