"""Policy files: reading, validating and cross-checking `rules/*.yaml`."""

from engine.policy.loader import Policy, Reminder, load_policy, policy_hash
from engine.policy.models import Defaults, PolicyFile, Recipient, ReminderRule

__all__ = [
    "Defaults",
    "Policy",
    "PolicyFile",
    "Recipient",
    "Reminder",
    "ReminderRule",
    "load_policy",
    "policy_hash",
]
