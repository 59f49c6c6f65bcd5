"""Policy files: reading, validating and cross-checking `rules/*.yaml`."""

from engine.policy.loader import CompiledRule, CompiledTally, Policy, load_policy, policy_hash
from engine.policy.models import (
    Action,
    ClassificationRule,
    DeadlineRule,
    Defaults,
    PolicyFile,
    Recipient,
    ReminderRule,
)
from engine.policy.tally_spec import LedgerSettings, TallyRule

__all__ = [
    "Action",
    "ClassificationRule",
    "CompiledRule",
    "CompiledTally",
    "DeadlineRule",
    "Defaults",
    "LedgerSettings",
    "Policy",
    "PolicyFile",
    "Recipient",
    "ReminderRule",
    "TallyRule",
    "load_policy",
    "policy_hash",
]
