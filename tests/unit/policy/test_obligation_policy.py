"""Obligation rules in policy files: periods, counts from data, mistakes with file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest
from policyfiles import line_col, problems_of, write_policy

from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema
from engine.policy.obligation_spec import ObligationRule, PlanCount

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")

VISITS = """\
obligations:
  - id: visits
    title: Customer visits per the quarterly plan
    entity: staff
    when: role == 'team_lead'
    every: month
    record:
      entity: work_records
      link: staff_id
      when: kind == 'visit'
      at: done_on
    count: {plan: customer_visits, per: quarter, split: evenly}
    due: 0 days after
    notice: obligation_notice
    notify: [team_lead]
"""


def _problems(tmp_path: Path, text: str) -> list:
    return problems_of(write_policy(tmp_path, obligations=text))


def test_the_shipped_policy_asks_for_daily_reports_and_the_planned_visits():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    rules = {o.rule.id: o.rule for o in policy.obligations}
    assert {rules[r].every for r in ("technician-daily-report", "daily-work-log")} == {"day"}
    assert rules["technician-daily-report"].working_days
    assert rules["yearly-service-review"].every == "year"
    assert rules["monthly-customer-visits"].count == PlanCount(
        plan="customer_visits", per="quarter", split="evenly"
    )
    for rule_id in (
        "technician-daily-report",
        "supervisor-daily-report",
        "daily-work-log",
        "monthly-handbook-update",
        "monthly-customer-visits",
        "yearly-service-review",
    ):
        assert rules[rule_id].source  # each cites its article


def test_a_plan_loads_and_the_json_schema_knows_every_period_and_count_form(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "obligations.yaml").write_text(VISITS, encoding="utf-8")
    (rule,) = load_policy(folder, TEMPLATES).obligations
    assert rule.rule.count == PlanCount(plan="customer_visits", per="quarter", split="evenly")
    schema = str(policy_json_schema())
    for word in ("half-year", "week", "working_days", "plan", "split"):
        assert word in schema


def test_an_unknown_count_field_points_at_it_with_a_hint(tmp_path):
    text = VISITS.replace("count: {plan: customer_visits, per: quarter, split: evenly}",
                          "count: supervisor_idd")  # fmt: skip
    (problem,) = _problems(tmp_path, text)
    assert "'supervisor_idd' is not a field of staff" in problem.message
    assert (problem.location.line, problem.location.column) == line_col(text, "supervisor_idd")
    assert problem.hint == "did you mean 'supervisor_id'?"
    text = text.replace("supervisor_idd", "name")
    (problem,) = _problems(tmp_path, text)
    assert "'name' is not a number field of staff" in problem.message


def test_a_plan_linked_by_an_unknown_field_points_at_the_link(tmp_path):
    text = VISITS.replace("split: evenly}", "split: evenly, link: staf_id}")
    (problem,) = _problems(tmp_path, text)
    assert "'staf_id' is not a field of targets" in problem.message
    assert problem.location.line == line_col(text, "staf_id")[0]
    assert problem.hint == "did you mean 'staff_id'?"


BASE = {
    "id": "v", "title": "v", "entity": "staff", "every": "month", "due": "0 days after",
    "record": {"entity": "work_records", "link": "staff_id", "at": "done_on"},
    "count": {"plan": "customer_visits", "per": "quarter", "split": "evenly"},
    "notice": "obligation_notice", "notify": ["team_lead"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"every": "week"}, "a quarter is not made of whole weeks"),
        ({"count": {"plan": "customer_visits", "per": "month"}, "every": "quarter"},
         "a month is not made of whole quarters"),
        ({"count": {"plan": "customer_visits", "per": "quarter"}}, "split: evenly"),
        ({"working_days": True}, "`working_days` goes with `every: day`"),
        ({"every": "day", "working_days": True}, "cannot spare the days off"),
        ({"every": "fortnight"}, "every"),
        ({"count": 0}, "count"),
    ],
)  # fmt: skip
def test_plans_that_cannot_be_shared_and_misplaced_words_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        ObligationRule.model_validate({**BASE, **change})


def test_a_daily_plan_may_be_shared_among_the_days_of_a_quarter():
    rule = ObligationRule.model_validate({**BASE, "every": "day"})
    assert rule.count == PlanCount(plan="customer_visits", per="quarter", split="evenly")
