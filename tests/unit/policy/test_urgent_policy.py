"""`urgent: true` on a notice: what the shipped policy marks, what the loader refuses."""

from __future__ import annotations

import json

from policyfiles import ROOT, TEMPLATES, problems_of, write_policy

from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema

COMPLAINTS = """\
reminders:
  - id: complaint-received
    title: The customer is told the complaint was received
    entity: complaints
    date: received_at
    offset: 0 hours after
    notice: complaint_received
    notify: [customer]
    urgent: true
"""


def _urgency(policy, rule_id: str) -> dict[str, bool]:
    """Per state (or `due` for a reminder): whether every notice it sends is urgent."""
    rule = next(c.rule for c in policy.rules() if c.rule.id == rule_id)
    actions = rule.actions() if hasattr(rule, "actions") else {"due": rule}
    return {state: all(p.urgent for p in action.notices()) for state, action in actions.items()}


def test_the_hour_level_clocks_and_the_at_once_rules_are_urgent():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    for rule_id in ("dispatch-urban", "dispatch-suburban"):
        # The 80 % warning too: held until the morning it would come after the deadline.
        assert _urgency(policy, rule_id) == {
            "warning": True,
            "breach": True,
            "escalation:1": True,
        }
    assert _urgency(policy, "repair-promised-time") == {"breach": True}
    assert _urgency(policy, "complaint-first-reply") == {"breach": True}
    # The 催办单 goes at once, each repeat too; the 洽办单 about a closed case can wait.
    assert _urgency(policy, "complaint-handling") == {
        "warning": False,
        "breach": True,
        "late_stop": False,
    }
    assert _urgency(policy, "serious-complaint") == {"due": True}
    # Day-level clocks and plain reminders still wait for the digest.
    assert _urgency(policy, "repair-with-parts") == {"warning": False, "breach": False}
    assert _urgency(policy, "factory-return") == {"warning": False, "breach": False}
    assert _urgency(policy, "general-complaint") == {"due": False}


def test_urgent_on_a_customer_only_notice_is_refused_with_its_place(tmp_path):
    folder = write_policy(tmp_path, complaints=COMPLAINTS)
    (problem,) = problems_of(folder)
    assert "customers' notices always go at once" in problem.message
    assert (problem.location.file, problem.location.line) == (folder / "complaints.yaml", 9)
    assert problem.hint is not None and "remove `urgent`" in problem.hint


def test_urgent_must_be_true_or_false(tmp_path):
    text = COMPLAINTS.replace("notify: [customer]", "notify: [customer, service_manager]")
    folder = write_policy(tmp_path, complaints=text.replace("urgent: true", "urgent: soon"))
    (problem,) = problems_of(folder)
    assert problem.location.line == 9
    assert "bool" in problem.message


def test_the_schema_offers_urgent_on_actions_and_reminders():
    defs = json.loads(json.dumps(policy_json_schema()))["$defs"]
    for model in ("Action", "ReminderRule", "Escalation", "OutcomeAction"):
        assert defs[model]["properties"]["urgent"]["type"] == "boolean"
        assert "digest" in defs[model]["properties"]["urgent"]["description"]
