"""A rule's digest: what decides its verdicts, hashed, so that runs can tell which version of
one rule judged an item and whether a rule changed between two policies (architecture
review 3.5).

The rule as validated (its effective_from included), the calendars every deadline and period
reads, and for what reads them the ledger's settings (tallies) and the warranty terms (rules
on the warranty view). Titles and letters count too: a rule whose wording changed is another
version, which costs nothing but a second look at the items it closed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from engine.policy.tally_spec import TallyRule


def dump(value: Any) -> Any:
    """A rule or policy section (a model, a mapping of them, None) as JSON data."""
    if isinstance(value, BaseModel):
        # warnings off: a Decimal field read as text (score points) dumps fine, but warns.
        return value.model_dump(mode="json", warnings=False)
    if isinstance(value, Mapping):
        return {k: dump(v) for k, v in value.items()}
    return value


def rule_digest(rule: BaseModel, context: Mapping[str, Any]) -> str:
    """16 hex digits naming this version of a rule in this context."""
    text = json.dumps({"rule": dump(rule), **context}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rule_digests(
    rules: Iterable[Any], calendars: Mapping[str, Any], ledger: Any, warranty: Any
) -> dict[str, str]:
    """Each compiled rule's digest by id; `calendars`, `ledger` and `warranty` as JSON data."""
    out = {}
    for compiled in rules:
        context: dict[str, Any] = {"calendars": calendars}
        if isinstance(compiled.rule, TallyRule):
            context["ledger"] = ledger
        if compiled.views is not None:  # the rule reads the warranty view
            context["warranty"] = warranty
        out[compiled.rule.id] = rule_digest(compiled.rule, context)
    return out
