"""Policy files: reading, validating and cross-checking `rules/*.yaml`."""

from engine.policy.loader import CompiledRule, Policy, load_policy, policy_hash
from engine.policy.models import (
    Action,
    ClassificationRule,
    DeadlineRule,
    Defaults,
    PolicyFile,
    Recipient,
    ReminderRule,
)

__all__ = [
    "Action",
    "ClassificationRule",
    "CompiledRule",
    "DeadlineRule",
    "Defaults",
    "Policy",
    "PolicyFile",
    "Recipient",
    "ReminderRule",
    "load_policy",
    "policy_hash",
]
