"""Roles as data: declared with titles, every reference checked with its place; notify entries
naming the department on the row or a role at head office."""

from __future__ import annotations

from pathlib import Path

from policyfiles import TEMPLATES, problems_of, write_policy

from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema
from engine.policy.models import NoticePlan
from engine.policy.roles_spec import STANDARD_ROLES

ROOT = Path(__file__).resolve().parents[3]

ROLES = """\
roles:
  quality:
    title: {en: Quality department, zh-CN: 品质部}
  service_manager:
    title: {en: Service manager, zh-TW: 服務經理}
  responsible_department:
    title: {en: Department responsible}
"""

COMPLAINTS = """\
deadlines:
  - id: first-reply
    title: Reply within 24 hours
    entity: complaints
    start: accepted_at
    stop: first_reply_at
    within: 24 hours
    on_breach:
      notice: urge_notice
      notify: [{department: responsible_department, otherwise: responsible_department}]
    on_late_stop:
      notice: inquiry_notice
      notify: [{role: service_manager, at: head_office}]
"""


def test_notify_may_name_the_department_on_the_row_and_a_role_at_head_office(tmp_path):
    policy = load_policy(write_policy(tmp_path, roles=ROLES, sla=COMPLAINTS), TEMPLATES)
    (rule,) = policy.deadlines
    actions = rule.rule.actions()
    assert actions["breach"].notices() == (
        NoticePlan("responsible_department", "urge_notice", "responsible_department", False,
                   department=True),
    )  # fmt: skip
    assert actions["late_stop"].notices() == (
        NoticePlan("service_manager", "inquiry_notice", None, False, head_office=True),
    )
    assert set(policy.roles) == {"quality", "service_manager", "responsible_department"}
    assert policy.roles["service_manager"].title_in("zh-CN") == "服務經理"  # same language
    assert policy.roles["quality"].title_in("es") == "Quality department"  # else English


def test_an_undeclared_role_is_an_error_at_its_line_and_column_with_the_closest_role(tmp_path):
    sla = COMPLAINTS.replace("otherwise: responsible_department", "otherwise: qualty")
    sla = sla.replace("[{role: service_manager,", "[{role: team_lead,")
    problems = problems_of(write_policy(tmp_path, roles=ROLES, sla=sla))
    by_message = {p.message: p for p in problems}
    qualty = by_message["unknown role 'qualty' for complaints"]
    assert (qualty.location.file.name, qualty.location.line) == ("sla.yaml", 10)
    assert qualty.location.column == sla.splitlines()[9].index("qualty") + 1
    assert qualty.hint.startswith("did you mean 'quality'?")
    # team_lead is a role the engine knew, but this policy does not declare it.
    lead = by_message["unknown role 'team_lead' for complaints"]
    assert lead.location.line == 13
    assert lead.location.column == sla.splitlines()[12].index("team_lead") + 1


def test_a_department_must_be_a_text_field_and_head_office_a_staff_role(tmp_path):
    sla = COMPLAINTS.replace("{department: responsible_department,", "{department: accepted_at,")
    sla = sla.replace(
        "{role: service_manager, at: head_office}", "{role: customer, at: head_office}"
    )
    messages = [str(p) for p in problems_of(write_policy(tmp_path, roles=ROLES, sla=sla))]
    assert any("'accepted_at' is not a text field of complaints" in m for m in messages)
    assert any("`at: head_office` needs a staff role" in m for m in messages)
    missing = COMPLAINTS.replace("{department: responsible_department,", "{department: dept,")
    (tmp_path / "b").mkdir()
    (problem,) = problems_of(write_policy(tmp_path / "b", roles=ROLES, sla=missing))
    assert "'dept' is not a field of complaints" in problem.message


def test_role_and_department_are_one_or_the_other(tmp_path):
    sla = COMPLAINTS.replace("{department: responsible_department,", "{role: quality,")
    sla = sla.replace("{role: quality,", "{role: quality, department: responsible_department,")
    problems = problems_of(write_policy(tmp_path, roles=ROLES, sla=sla))
    (problem,) = [p for p in problems if "give exactly one of `role` or `department`" in p.message]
    assert problem.location.line == 10


def test_summary_recipients_are_checked_against_the_declared_roles(tmp_path):
    defaults = "defaults:\n  overdue_summary_to: [servce_manager]\n"
    (problem,) = problems_of(write_policy(tmp_path, roles=ROLES, sla=COMPLAINTS, d=defaults))
    assert "cannot send the overdue summary to 'servce_manager'" in problem.message
    assert problem.hint == "did you mean 'service_manager'?"


def test_who_phones_an_undeliverable_letter_is_checked_against_the_declared_roles(tmp_path):
    defaults = "defaults:\n  undeliverable: {notify: [servce_manager]}\n"
    (problem,) = problems_of(write_policy(tmp_path, roles=ROLES, sla=COMPLAINTS, d=defaults))
    assert "cannot ask to phone or post an undeliverable letter 'servce_manager'" in problem.message
    assert problem.hint == "did you mean 'service_manager'?"
    assert problem.location.line == 2


def test_a_role_is_declared_once_and_customer_is_not_a_staff_role(tmp_path):
    more = "roles:\n  quality:\n    title: {en: QA}\n  customer:\n    title: {en: Customer}\n"
    messages = [p.message for p in problems_of(write_policy(tmp_path, a=ROLES, b=more))]
    assert any(m.startswith("role 'quality' is already declared at") for m in messages)
    assert "'customer' is not a staff role" in messages


def test_a_policy_declaring_no_roles_gets_the_standard_ones_and_the_shipped_declares_more(
    tmp_path,
):
    policy = load_policy(write_policy(tmp_path, sla="deadlines: []\n"), TEMPLATES)
    assert tuple(policy.roles) == STANDARD_ROLES
    shipped = load_policy(ROOT / "rules", TEMPLATES)
    assert set(STANDARD_ROLES) < set(shipped.roles)
    seeds = {"general_manager", "hr", "quality", "production", "warehouse", "marketing"}
    assert seeds <= set(shipped.roles)
    assert all(set(spec.title) == {"en", "zh-CN", "zh-TW", "es"} for spec in shipped.roles.values())
    assert shipped.roles["accounting"].title_in("zh-CN") == "财务部"


def test_the_json_schema_knows_roles_departments_and_head_office():
    schema = policy_json_schema()
    (word, mapping) = schema["$defs"]["Recipient"]["anyOf"]  # `notify: [team_lead]` or {role: ...}
    assert word["type"] == "string"
    recipient = mapping["properties"]
    assert {"role", "department", "at", "otherwise"} <= set(recipient)
    assert "head_office" in str(recipient["at"])
    assert "roles" in schema["properties"]
    assert "title" in schema["$defs"]["RoleSpec"]["properties"]
