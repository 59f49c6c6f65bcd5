"""`repeat:` on a deadline's warning or breach: the syntax, its errors and the JSON Schema."""

from __future__ import annotations

import json
import re

from policyfiles import ROOT, TEMPLATES, problems_of, write_policy

from engine.policy import load_policy
from engine.policy.durations import Duration
from engine.policy.jsonschema import policy_json_schema

URGED = """\
deadlines:
  - id: complaint-handling
    title: Complaints are closed by their handling deadline
    entity: complaints
    start: accepted_at
    stop: closed_at
    by: handling_due_at
    on_breach:
      notice: urge_notice
      notify: [responsible_department]
      repeat: every 2 working days
"""


def test_the_shipped_policy_repeats_the_urge_notice_and_the_factory_follow_up():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    rules = {c.rule.id: c.rule for c in policy.rules() if hasattr(c.rule, "repeats")}
    assert rules["complaint-handling"].repeats() == {"breach": Duration(2, "day", True)}
    assert rules["complaint-handling"].by == "handling_due_at"
    assert rules["factory-return"].repeats() == {
        "warning": Duration(3, "day", True),
        "breach": Duration(3, "day", True),
    }
    assert rules["complaint-first-reply"].repeats() == {}


def test_repeat_reads_with_or_without_every(tmp_path):
    folder = write_policy(tmp_path, sla=URGED.replace("every 2 working days", "4 hours"))
    policy = load_policy(folder, TEMPLATES)
    (rule,) = [c.rule for c in policy.rules() if c.rule.id == "complaint-handling"]
    assert rule.repeats() == {"breach": Duration(4, "hour", False)}


def test_a_repeat_in_months_is_refused_with_its_place(tmp_path):
    folder = write_policy(tmp_path, sla=URGED.replace("every 2 working days", "every 1 month"))
    (problem,) = problems_of(folder)
    assert "a repeat counts minutes, hours, days or weeks" in problem.message
    assert (problem.location.file, problem.location.line) == (folder / "sla.yaml", 11)


def test_a_repeated_warning_needs_a_warning_point(tmp_path):
    text = URGED.replace("on_breach:", "on_warning:")
    (problem,) = problems_of(write_policy(tmp_path, sla=text))
    assert "`on_warning.repeat` needs `warn_at`" in problem.message
    assert problem.location.file.name == "sla.yaml"


def test_the_schema_offers_repeat_on_warnings_and_breaches():
    defs = json.loads(json.dumps(policy_json_schema()))["$defs"]
    deadline = defs["DeadlineRule"]["properties"]
    for state in ("on_warning", "on_breach"):
        assert {"$ref": "#/$defs/RepeatingAction"} in deadline[state]["anyOf"]
    (text, _none) = defs["RepeatingAction"]["properties"]["repeat"]["anyOf"]
    assert "every 2 working days" in text["description"]
    pattern = re.compile(text["pattern"])
    assert pattern.match("every 2 working days") and pattern.match("4 hours")
    assert not pattern.match("often")
