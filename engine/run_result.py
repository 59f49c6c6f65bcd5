"""What a run did: per rule and in all, as the artifact and the run history show it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.rules.unjudged import Unjudged


@dataclass
class RuleOutcome:
    """How one rule fared in a run."""

    rule_id: str
    family: str
    findings: int = 0
    new: int = 0
    history: int = 0  # new findings due before the rule went live: recorded, no notices
    skipped: dict[str, int] = field(default_factory=dict)
    # Open rows it cannot judge for an empty field, counted with the branches' overdue summary
    unjudged: dict[str, int] = field(default_factory=dict)
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

    def record_unjudged(self, unjudged: Iterable[Unjudged]) -> None:
        """Add what each rule could not judge (engine.rules.unjudged) to its outcome."""
        outcomes = {outcome.rule_id: outcome for outcome in self.rules}
        for counted in unjudged:
            outcome = outcomes.get(counted.rule_id)
            if outcome is not None:
                reason = counted.reason
                outcome.unjudged[reason] = outcome.unjudged.get(reason, 0) + counted.count

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


def spent(timings: dict[str, float], step: str, since: float) -> float:
    """Add the time since `since` to `timings[step]`; returns now."""
    now = time.perf_counter()
    timings[step] = round(timings.get(step, 0.0) + now - since, 4)
    return now
