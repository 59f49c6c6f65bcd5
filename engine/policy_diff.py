"""What a policy change would do: rules added, removed and changed (split into what changed,
as dbt's `state:modified.body/.configs`), the findings and notices that would appear,
disappear or move, and the open ledger period's amounts, judged on the database as it is.

Both policies are judged by the families' own `judge` (the path a night takes) inside one
transaction that is rolled back: nothing is written, not even a run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.db.models import Finding as FindingRow
from engine.db.session import chunks
from engine.findings import Finding, instant_text
from engine.notices.templates import NoticeTemplates
from engine.policy import CompiledRule, Policy
from engine.policy.digest import dump
from engine.rule_versions import PolicyHistory, judge_by_version
from engine.rules import FAMILIES, tally

EXAMPLES = 3
"""Example entities shown per rule and kind of change."""

_PARTS = {
    **dict.fromkeys(("when", "branches", "entity", "start", "stop", "pause_while", "date",
                     "active", "record", "recorded", "first_match"), "condition"),
    **dict.fromkeys(("within", "by", "calendar", "warn_at", "offset", "send_until", "every",
                     "due", "look_back", "working_days", "effective_from", "period", "at",
                     "local_hours", "partial_periods", "after", "repeat"), "timing"),
    **dict.fromkeys(("notify", "charge", "role", "department", "otherwise"), "recipients"),
    **dict.fromkeys(("notice", "urgent"), "notices"),
    **dict.fromkeys(("penalty", "reward", "by_role", "cap", "multiply", "score", "measure",
                     "min_count", "currency", "count", "amount"), "amounts"),
    **dict.fromkeys(("title", "titles", "source"), "wording"),
    "disabled": "enabled",
}  # fmt: skip
"""What a changed key of a rule is about; the innermost known key of a changed path decides."""

_SECTIONS = ("defaults", "ledger", "kpi_report", "schedule", "roles")
"""Parts of a policy besides its rules, compared as a whole."""


@dataclass(frozen=True, slots=True)
class Example:
    """One entity whose findings change, with its states before and after."""

    entity: str
    entity_id: str
    occurrence: str
    before: dict[str, str | None]  # state -> due instant
    after: dict[str, str | None]
    explain: str


@dataclass
class RuleDiff:
    """What changes for one rule: its text, its findings, its open period's amounts."""

    rule: str
    family: str
    change: str | None = None  # added, removed, changed; None when only its findings change
    parts: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # appear, disappear, change
    notices: dict[str, Counter[str]] = field(
        default_factory=lambda: {"appear": Counter(), "disappear": Counter()}
    )
    examples: dict[str, list[Example]] = field(default_factory=lambda: defaultdict(list))
    amounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """True when anything about the rule changes."""
        return bool(self.change or self.counts or self.amounts)

    def document(self) -> dict[str, Any]:
        """The rule's entry in `--format json`."""
        return {
            "rule": self.rule,
            "family": self.family,
            "change": self.change,
            "parts": self.parts,
            "findings": {k: self.counts.get(k, 0) for k in ("appear", "disappear", "change")},
            "notices": {k: dict(sorted(v.items())) for k, v in self.notices.items()},
            "examples": {
                kind: [asdict(e) for e in self.examples.get(kind, ())]
                for kind in ("appear", "disappear", "change")
            },
            "amounts": self.amounts,
        }


@dataclass
class PolicyDiff:
    """Every difference between two policies at one instant."""

    as_of: datetime
    before: str  # the policies' hashes
    after: str
    against: str  # what was compared with, in words
    sections: list[str]
    rules: list[RuleDiff]

    @property
    def differs(self) -> bool:
        """True when the comparison found any difference (exit 1)."""
        return bool(self.sections or self.rules)

    def document(self) -> dict[str, Any]:
        """The stable JSON shape of `aftersales diff --format json` (docs/policy.md)."""
        return {
            "as_of": instant_text(self.as_of),
            "policy": {"before": self.before, "after": self.after, "against": self.against},
            "differs": self.differs,
            "sections": self.sections,
            "rules": [r.document() for r in self.rules],
        }


def compare(
    engine: Engine,
    before: Policy,
    after: Policy,
    as_of: datetime,
    templates: NoticeTemplates,
    *,
    against: str,
    explain_rules: Mapping[str, Path | None],
) -> PolicyDiff:
    """Compare two loaded policies on the database at `as_of`; writes nothing. Each side
    judges as its night would: items closed under an earlier version of a rule by that version
    (engine.rule_versions, whose kept versions load with `templates`).
    `explain_rules`: the folder to name in each example's explain command, per side."""
    old, new = _identities(before), _identities(after)
    diffs: dict[str, RuleDiff] = {}
    for rule_id in [*old, *(r for r in new if r not in old)]:
        mine = diffs[rule_id] = RuleDiff(rule_id, _family(new.get(rule_id) or old[rule_id]))
        if rule_id not in old:
            mine.change = "added"
        elif rule_id not in new:
            mine.change = "removed"
        else:
            mine.parts = changed_parts(dump(old[rule_id].rule), dump(new[rule_id].rule))
            mine.change = "changed" if mine.parts else None
    with engine.connect() as conn, conn.begin() as tx:
        was = _judged(conn, before, as_of, templates)
        now = _judged(conn, after, as_of, templates)
        for rule_id, mine in diffs.items():
            folder = explain_rules.get("after" if rule_id in new else "before")
            explain = _explain(as_of, folder)
            _findings(conn, mine, was.get(rule_id, {}), now.get(rule_id, {}), explain)
            mine.amounts = _amounts(
                _running(conn, before, rule_id, as_of), _running(conn, after, rule_id, as_of),
                partial(explain, rule_id),
            )  # fmt: skip
        tx.rollback()  # deadline judging fills a temporary table; leave nothing behind
    sections = [s for s in _SECTIONS if dump(getattr(before, s)) != dump(getattr(after, s))]
    rules = [d for d in diffs.values() if d.differs]
    return PolicyDiff(as_of, before.hash, after.hash, against, sections, rules)


def changed_parts(before: Any, after: Any) -> list[str]:
    """What the differing keys of two dumped rules are about (condition, timing, ...)."""
    return sorted({_part(path) for path in _differing(before, after, ())})


def _part(path: tuple[Any, ...]) -> str:
    keys = [k for k in path if isinstance(k, str)]
    return next((_PARTS[k] for k in reversed(keys) if k in _PARTS), keys[0] if keys else "rule")


def _differing(a: Any, b: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted({*a, *b}):
            yield from _differing(a.get(key), b.get(key), (*path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differing(x, y, (*path, index))
    elif a != b:
        yield path


def _identities(policy: Policy) -> dict[str, CompiledRule[Any]]:
    """Every rule by id: judged, disabled and metrics alike."""
    every = [*policy.rules(), *policy.disabled, *policy.metrics]
    return {r.rule.id: r for r in every}


def _family(compiled: CompiledRule[Any]) -> str:
    return type(compiled.rule).__name__.removesuffix("Rule").lower()


_Item = tuple[str, str, str]  # entity, entity id, occurrence


def _judged(
    conn: Connection, policy: Policy, as_of: datetime, templates: NoticeTemplates
) -> dict[str, dict[_Item, list[Finding]]]:
    """Each effective rule's findings at `as_of`, by rule and item, as a full night finds them."""
    found: dict[str, dict[_Item, list[Finding]]] = {}
    history = PolicyHistory(conn, policy, as_of, templates)
    for family, rules in policy.by_family().items():
        judge = FAMILIES[family]
        for compiled in rules:
            if not judge.is_effective(compiled, as_of):
                continue
            items = found.setdefault(compiled.rule.id, defaultdict(list))
            findings, _ = judge_by_version(conn, history, compiled, judge, as_of)
            for f in findings:
                items[(f.entity, f.entity_id, f.occurrence)].append(f)
    return found


Explain = Callable[[str, str], str]
"""The `aftersales explain` command for a rule and an entity id."""


def _explain(as_of: datetime, folder: Path | None) -> Explain:
    rules = f" --rules {folder}" if folder is not None else ""

    def command(rule_id: str, entity_id: str) -> str:
        return f"aftersales explain {rule_id} {entity_id} --as-of {instant_text(as_of)}{rules}"

    return command


def _findings(
    conn: Connection,
    mine: RuleDiff,
    was: Mapping[_Item, list[Finding]],
    now: Mapping[_Item, list[Finding]],
    explain: Explain,
) -> None:
    """Count and exemplify the items whose findings appear, disappear or change, and the
    notices of the states that appear or disappear."""
    states: dict[str, list[Finding]] = {"appear": [], "disappear": []}
    for item in sorted({*was, *now}):
        before = {f.state: f for f in was.get(item, ())}
        after = {f.state: f for f in now.get(item, ())}
        if _same(before, after):
            continue
        kind = "appear" if not before else "disappear" if not after else "change"
        mine.counts[kind] += 1
        states["appear"] += (after[s] for s in after.keys() - before.keys())
        states["disappear"] += (before[s] for s in before.keys() - after.keys())
        if len(mine.examples[kind]) < EXAMPLES:
            entity, entity_id, occurrence = item
            mine.examples[kind].append(
                Example(entity, entity_id, occurrence, _states(before), _states(after),
                        explain(mine.rule, entity_id))
            )  # fmt: skip
    keys = [f.key for found in states.values() for f in found]
    recorded = _recorded(conn, keys)
    for kind, found in states.items():
        # A state recorded already sent its notices, whichever policy finds it now.
        mine.notices[kind].update(n for f in found if f.key not in recorded for n in _notices(f))


def _recorded(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Those of `keys` the findings table holds."""
    column = FindingRow.__table__.c.key
    return {
        key
        for part in chunks(keys, 500)
        for key in conn.scalars(select(column).where(column.in_(part)))
    }


def _same(before: Mapping[str, Finding], after: Mapping[str, Finding]) -> bool:
    """Same states, due at the same instants, with the same notices to the same roles."""
    return before.keys() == after.keys() and all(
        before[s].due_at == after[s].due_at
        and before[s].recipients == after[s].recipients
        and before[s].notices == after[s].notices
        and before[s].amount == after[s].amount
        for s in before
    )


def _notices(finding: Finding) -> list[str]:
    """A finding's notices as `template → role`."""
    return [f"{n.template} → {n.role}" for n in finding.notices]


def _states(findings: Mapping[str, Finding]) -> dict[str, str | None]:
    return {s: instant_text(f.due_at) if f.due_at else None for s, f in sorted(findings.items())}


def _running(
    conn: Connection, policy: Policy, rule_id: str, as_of: datetime
) -> dict[str, Any] | None:
    """A tally rule's open period, its amounts so far per currency and per entity; None for
    any other rule or one not in effect."""
    compiled = next((t for t in policy.tallies if t.rule.id == rule_id), None)
    if compiled is None or not tally.is_effective(compiled, as_of):
        return None
    period = tally.open_period(compiled, as_of)
    rows = tally.tallied(conn, compiled, [period], as_of, Counter())
    return {
        "period": period.key,
        "totals": _totals((t.currency, t.amount) for t in rows),
        "entities": {k: v for t in rows for k, v in t.per_entity.items()},
    }


def _totals(amounts: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for currency, amount in amounts:
        totals[currency] += amount
    return totals


def _amounts(
    before: dict[str, Any] | None, after: dict[str, Any] | None, explain: Callable[[str], str]
) -> list[dict[str, Any]]:
    """The open period's totals per currency that differ, with a few entities whose do."""
    empty: dict[str, Any] = {"period": None, "totals": {}, "entities": {}}
    before, after = before or empty, after or empty
    was, now = before["entities"], after["entities"]
    moved = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))[:EXAMPLES]
    examples = [{"entity_id": k, "explain": explain(k)} for k in moved]
    out = []
    for currency in sorted({*before["totals"], *after["totals"]}):
        old, new = before["totals"].get(currency, Decimal(0)), after["totals"].get(currency)
        new = new if new is not None else Decimal(0)
        if old != new:
            out.append({
                "period": after["period"] or before["period"], "currency": currency,
                "before": str(old), "after": str(new), "examples": examples,
            })  # fmt: skip
    return out


def render_text(diff: PolicyDiff) -> list[str]:
    """The comparison as lines for a terminal, rule by rule."""
    lines = [
        f"policy {diff.after} against {diff.against} ({diff.before}) at {instant_text(diff.as_of)}"
    ]
    if diff.sections:
        lines.append("changed sections: " + ", ".join(diff.sections))
    for rule in diff.rules:
        head = f"{rule.rule} ({rule.family})"
        if rule.change:
            head += f": {rule.change}" + (f" ({', '.join(rule.parts)})" if rule.parts else "")
        lines.append(head)
        counts = [f"{rule.counts[k]} {k}" for k in ("appear", "disappear", "change")
                  if rule.counts[k]]  # fmt: skip
        if counts:
            lines.append("  findings: " + ", ".join(counts))
        for kind, notices in rule.notices.items():
            if notices:
                told = ", ".join(f"{n} × {what}" for what, n in sorted(notices.items()))
                lines.append(f"  notices that would {kind}: {told}")
        for kind, examples in rule.examples.items():
            for e in examples:
                lines.append(
                    f"  {kind}: {e.entity} {e.entity_id} ({e.occurrence}): "
                    f"{_shown(e.before)} → {_shown(e.after)}"
                )
                lines.append(f"    {e.explain}")
        for amount in rule.amounts:
            lines.append(
                f"  open period {amount['period']}: {amount['before']} → {amount['after']} "
                f"{amount['currency']}"
            )
            lines.extend(f"    {e['entity_id']}: {e['explain']}" for e in amount["examples"])
    lines.append(f"{len(diff.rules)} rules differ" if diff.differs else "no difference")
    return lines


def _shown(states: Mapping[str, str | None]) -> str:
    if not states:
        return "nothing"
    return ", ".join(f"{s} due {at}" if at else s for s, at in states.items())
