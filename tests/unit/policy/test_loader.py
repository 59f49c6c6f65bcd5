"""Policy loading: the shipped policy is valid; every kind of mistake is reported with its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from policyfiles import problems_of, write_policy

from engine.errors import PolicyError
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.models import NoticePlan

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")

RULE = """\
reminders:
  - id: maintenance-renewal
    title: Maintenance expiry notice one month before the contract ends
    source: "000 art.15"
    entity: contracts
    when: kind == 'maintenance' and status == 'active'
    date: ends_on
    offset: 1 month before
    notice: maintenance_expiry
    notify: [customer]
"""


def test_shipped_policy_is_valid_and_has_the_seed_reminders():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    assert {"maintenance-renewal", "free-maintenance-ending"} <= set(policy.rule_ids())
    renewal = next(r.rule for r in policy.reminders if r.rule.id == "maintenance-renewal")
    assert renewal.notices() == (
        NoticePlan("customer", "maintenance_expiry", None, False),
        NoticePlan("sales_rep", "renewal_task", None, False),
    )
    assert str(renewal.offset) == "-1 month"
    assert len(policy.hash) == 16


def test_policy_hash_changes_with_content(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE)
    first = load_policy(folder, TEMPLATES).hash
    (folder / "contracts.yaml").write_text(RULE.replace("1 month", "2 months"), encoding="utf-8")
    assert load_policy(folder, TEMPLATES).hash != first


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    folder = write_policy(
        tmp_path, contracts=RULE.replace("notify: [customer]", "notify: [customer")
    )
    (problem,) = problems_of(folder)
    assert problem.location.file == folder / "contracts.yaml"
    assert "syntax" in problem.message
    assert problem.location.line is not None and problem.location.line >= 10


def test_duplicate_key_is_refused_at_its_line(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE + "    date: starts_on\n")
    (problem,) = problems_of(folder)
    assert "duplicate key 'date'" in problem.message
    assert problem.location.line == 11
    assert "line 7" in problem.message


def test_unknown_field_in_condition_points_at_the_field(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE.replace("status ==", "sttus =="))
    (problem,) = problems_of(folder)
    assert "sttus" in problem.message
    line = RULE.splitlines()[5]
    assert (problem.location.line, problem.location.column) == (6, line.index("status") + 1)
    assert "status" in (problem.hint or "")


def test_negative_duration_is_refused(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE + "    send_until: -3 days\n")
    (problem,) = problems_of(folder)
    assert "send_until" in problem.message and "negative" in problem.message
    assert problem.location.line == 11


def test_template_that_does_not_exist(tmp_path):
    folder = write_policy(
        tmp_path, contracts=RULE.replace("maintenance_expiry", "maintenance_expiri")
    )
    (problem,) = problems_of(folder)
    assert "no notice template 'maintenance_expiri'" in problem.message
    assert problem.hint == "did you mean 'maintenance_expiry'?"
    assert problem.location.line == 9


def test_unquoted_time_and_unknown_key_and_unknown_role_all_reported_at_once(tmp_path):
    bad = RULE.replace('source: "000 art.15"', "source: 10:30") + "    repeat: weekly\n"
    second = RULE.replace("maintenance-renewal", "second").replace("1 month before", "a month")
    third = RULE.replace("maintenance-renewal", "third").replace("[customer]", "[sales_repp]")
    other = second + third.removeprefix("reminders:\n")
    folder = write_policy(tmp_path, contracts=bad, more=other)
    messages = [str(p) for p in problems_of(folder)]
    joined = "\n".join(messages)
    assert "10:30 reads as the number 630" in joined
    assert "unknown key 'repeat'" in joined
    assert "unknown role 'sales_repp'" in joined and "did you mean 'sales_rep'?" in joined
    assert "more.yaml:8" in joined and "'a month' is not a duration" in joined


def test_duplicate_rule_ids_across_files(tmp_path):
    folder = write_policy(tmp_path, a=RULE, b=RULE)
    (problem,) = problems_of(folder)
    assert "already used at" in problem.message and problem.location.file.name == "b.yaml"


def test_date_field_must_be_a_date(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE.replace("date: ends_on", "date: number"))
    (problem,) = problems_of(folder)
    assert "'number' is not a date field of contracts" in problem.message


def test_template_syntax_error_names_template_file_and_line(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "notices", templates)
    (templates / "maintenance_expiry" / "en.txt.j2").write_text("Dear\n{{ customer.name \n")
    folder = write_policy(tmp_path, contracts=RULE)
    with pytest.raises(PolicyError) as caught:
        load_policy(folder, NoticeTemplates(templates))
    (problem,) = caught.value.problems
    assert problem.location.file == templates / "maintenance_expiry" / "en.txt.j2"
    assert problem.location.line == 2


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(PolicyError, match="no such policy folder"):
        load_policy(tmp_path / "nope", TEMPLATES)
    with pytest.raises(PolicyError, match=r"no \*\.yaml policy files"):
        load_policy(tmp_path, TEMPLATES)


def test_alias_bomb_is_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for n in range(1, 9):
        bomb += f"b{n}: &b{n} [" + ", ".join([f"*{'a' if n == 1 else f'b{n - 1}'}"] * 9) + "]\n"
    folder = write_policy(tmp_path, bomb=bomb)
    (problem,) = problems_of(folder)
    assert "expands to more than" in problem.message


def test_a_rule_that_fails_does_not_shift_the_places_of_the_next_ones(tmp_path):
    first = RULE.replace("1 month before", "1 mnth before")
    second = RULE.replace("maintenance-renewal", "second").replace("status ==", "staus ==")
    folder = write_policy(tmp_path, contracts=first + second.removeprefix("reminders:\n"))
    problems = {p.message.split(":")[0]: p for p in problems_of(folder)}
    assert problems["reminders.0.offset"].location.line == 8
    unknown = next(p for p in problems.values() if "staus" in p.message)
    assert unknown.location.line == 15  # the second rule's `when`, not the first's


def test_impossible_dates_are_problems_not_crashes(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE + "    effective_from: 2026-13-01\n")
    (problem,) = problems_of(folder)
    assert "cannot read '2026-13-01'" in problem.message and problem.location.line == 11


def test_names_longer_than_the_database_keeps_are_refused(tmp_path):
    long_name = "maintenance_contract_renewal_task_for_the_sales_rep"
    folder = write_policy(
        tmp_path, contracts=RULE.replace("notice: maintenance_expiry", f"notice: {long_name}")
    )
    (problem,) = problems_of(folder)
    assert "notice" in problem.message and "40" in problem.message


def test_hour_offsets_on_a_date_field_are_refused(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE.replace("1 month before", "12 hours before"))
    (problem,) = problems_of(folder)
    assert "ends_on is a date without a time" in problem.message
