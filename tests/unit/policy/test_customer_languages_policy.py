"""Customers read their letters in their own language (issue 19, 7): a customer notice without
a template for a language the branches use is refused, unless the policy says what those
customers read instead; staff notices keep falling back to the default language."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from policyfiles import line_col, problems_of, write_policy

from engine.errors import PolicyError
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema

ROOT = Path(__file__).resolve().parents[3]

TAIPEI = """\
calendars:
  tw-office:
    timezone: Asia/Taipei
    holidays: {country: TW}
    hours: {mon-fri: ["09:00-18:00"]}
"""

REMINDER = """\
reminders:
  - id: contract-ending
    title: The customer is told a month before the contract ends
    entity: contracts
    date: ends_on
    offset: 1 month before
    notice: ending_letter
    notify: [customer, {role: sales_rep, notice: staff_note}]
"""


@pytest.fixture
def templates(tmp_path) -> NoticeTemplates:
    """The shipped templates, plus a customer letter and a staff note in English only."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "notices", folder)
    for name in ("ending_letter", "staff_note"):
        (folder / name).mkdir()
        (folder / name / "en.subject.j2").write_text("Contract {{ entity.number }}\n")
        (folder / name / "en.txt.j2").write_text("Dear {{ recipient.name }},\n")
    return NoticeTemplates(folder)


def test_an_english_only_customer_letter_is_refused_where_a_branch_reads_chinese(
    tmp_path, templates
):
    folder = write_policy(tmp_path, calendars=TAIPEI, contracts=REMINDER)

    [problem] = problems_of(folder, templates)  # the staff note may fall back: no problem

    assert "customer notice 'ending_letter' has templates in en only" in problem.message
    assert "zh-TW would get no letter (zh-TW: calendar tw-office (TW))" in problem.message
    assert (problem.location.line, problem.location.column) == line_col(REMINDER, "ending_letter")
    assert problem.location.file == folder / "contracts.yaml"
    assert "ending_letter/zh-TW.subject.j2" in (problem.hint or "")
    assert "`defaults: {customer_fallback: {zh-TW: en}}`" in (problem.hint or "")


def test_a_recipient_s_own_customer_notice_is_pointed_at(tmp_path, templates):
    own = REMINDER.replace("notice: ending_letter", "notice: staff_note").replace(
        "[customer, {role: sales_rep, notice: staff_note}]",
        "[sales_rep, {role: customer, notice: ending_letter}]",
    )
    folder = write_policy(tmp_path, calendars=TAIPEI, contracts=own)

    [problem] = problems_of(folder, templates)

    assert "'ending_letter'" in problem.message
    assert (problem.location.line, problem.location.column) == line_col(own, "ending_letter")


def test_a_declared_fallback_lets_taipei_customers_read_english(tmp_path, templates):
    declared = "defaults:\n  customer_fallback: {zh-TW: en}\n"
    folder = write_policy(tmp_path, calendars=TAIPEI, contracts=declared + REMINDER)

    policy = load_policy(folder, templates)

    assert policy.defaults.customer_fallback == {"zh-TW": "en"}


def test_a_fallback_to_a_language_the_letter_lacks_too_is_refused(tmp_path, templates):
    declared = "defaults:\n  customer_fallback: {zh-TW: zh-CN}\n"
    folder = write_policy(tmp_path, calendars=TAIPEI, contracts=declared + REMINDER)

    [problem] = problems_of(folder, templates)

    assert "zh-TW would get no letter" in problem.message


def test_the_locales_customers_read_in_the_database_are_checked_too(tmp_path, templates):
    folder = write_policy(tmp_path, contracts=REMINDER)  # no calendar: English alone is in use
    load_policy(folder, templates)

    with pytest.raises(PolicyError) as caught:
        load_policy(folder, templates, {"es": ["branch MAD-01", "3 customers"]})

    [problem] = caught.value.problems
    assert "es would get no letter (es: branch MAD-01, 3 customers)" in problem.message


def test_the_editor_schema_knows_the_fallback_key():
    defaults = policy_json_schema()["$defs"]["Defaults"]["properties"]

    assert "customer_fallback" in defaults
