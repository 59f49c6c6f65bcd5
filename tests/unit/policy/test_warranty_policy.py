"""Warranty terms and classification tables: the shipped ones load; every mistake has its place."""

from __future__ import annotations

from pathlib import Path

from policyfiles import problems_of, write_policy
from sqlalchemy import Table

from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")

WARRANTY = """\
warranty:
  void_when: human_damage or unauthorised_repair
  terms:
    - id: air-conditioners
      products: {category: air_conditioner}
      parts: {unit: 1 year, compressor: 3 years}
    - id: vrf
      products: {model: AC-VRF160}
      parts: {unit: 2 years}
  promotions:
    - id: winter-2025
      bought_between: [2025-12-01, 2025-12-31]
      extend: {unit: 6 months}
"""

TABLE = """\
classifications:
  - id: service-category
    title: Service category from warranty and contract cover
    entity: service_requests
    when: status != 'cancelled'
    recorded: category
    first_match:
      - {when: kind == 'admin', then: admin}
      - {when: in_warranty, then: free}
      - {when: under_contract, then: contract}
      - {otherwise: paid}
    on_outcome:
      paid: {when: dispatched_at is null, notice: quote, notify: [customer]}
"""


def test_shipped_warranty_policy_has_part_terms_promotion_and_the_category_table():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    book = policy.warranty
    ac = book.term_for("air_conditioner", "AC-KFR35")
    assert ac is not None and ac.id == "air-conditioners"
    assert str(ac.parts["unit"]) == "1 year" and str(ac.parts["compressor"]) == "3 years"
    assert ac.basis == ("purchase_with_proof", "installed_on", "manufactured_with_proof")
    assert ac.void_text == "human_damage or unauthorised_repair"
    assert book.term_for("air_conditioner", "AC-VRF160").id == "vrf-outdoor-units"
    assert book.term_for("instrument", "IN-PH200").basis == (
        "purchase_with_proof",
        "manufactured_with_proof",
    )
    assert [p.id for p in book.promotions] == ["winter-2025"]
    item = policy.rule("service-category")
    assert [row.outcome for row in item.rule.first_match] == [
        "admin",
        "free",
        "contract",
        "paid",
    ]
    assert "in_warranty" in item.table.c and "under_contract" in item.table.c
    assert set(policy.by_family()) == {
        "reminder", "deadline", "classification", "tally", "obligation"
    }  # fmt: skip


def test_rules_naming_no_derived_field_read_the_plain_table():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    assert isinstance(policy.rule("free-maintenance-ending").table, Table)
    assert isinstance(policy.rule("dispatch-urban").table, Table)
    assert not isinstance(policy.rule("maintenance-renewal").table, Table)  # `not renewed`
    assert not isinstance(policy.rule("warranty-ending").table, Table)  # warranty_ends_on


def test_unknown_field_in_void_when_points_at_it(tmp_path):
    folder = write_policy(tmp_path, w=WARRANTY.replace("human_damage or", "human_damge or"))
    (problem,) = problems_of(folder)
    assert "unknown field human_damge in service_requests" in problem.message
    assert (problem.location.line, problem.location.column) == (2, 14)
    assert "did you mean human_damage?" in (problem.hint or "")


def test_void_when_cannot_depend_on_the_night(tmp_path):
    folder = write_policy(
        tmp_path, w=WARRANTY.replace("unauthorised_repair", "received_at < as_of - 1 year")
    )
    (problem,) = problems_of(folder)
    assert "cannot use as_of" in problem.message and problem.location.line == 2


def test_terms_are_calendar_time_and_bases_are_known(tmp_path):
    bad = WARRANTY.replace("compressor: 3 years", "compressor: 36 working hours").replace(
        "  void_when:", "  basis: [purchase_with_proof, serial_date]\n  void_when:"
    )
    problems = problems_of(write_policy(tmp_path, w=bad))
    text = "\n".join(str(p) for p in problems)
    assert "warranty terms are calendar days, weeks, months or years" in text
    assert "warranty.basis.1: Input should be" in text and "'manufactured_on'" in text


def test_two_terms_for_one_category_are_ambiguous(tmp_path):
    twice = WARRANTY.replace(
        "products: {model: AC-VRF160}", "products: {category: air_conditioner}"
    )
    (problem,) = problems_of(write_policy(tmp_path, w=twice))
    assert "terms 'air-conditioners' and 'vrf' are both for category air_conditioner" in str(
        problem
    )


def test_promotion_extends_a_part_that_no_term_has(tmp_path):
    folder = write_policy(
        tmp_path, w=WARRANTY.replace("extend: {unit: 6 months}", "extend: {compresor: 6 months}")
    )
    (problem,) = problems_of(folder)
    assert "promotion 'winter-2025' extends 'compresor', which no term covers" in problem.message
    assert problem.hint == "did you mean 'compressor'?"
    assert problem.location.line == 13


def test_promotion_window_in_order(tmp_path):
    folder = write_policy(
        tmp_path, w=WARRANTY.replace("[2025-12-01, 2025-12-31]", "[2025-12-31, 2025-12-01]")
    )
    (problem,) = problems_of(folder)
    assert "2025-12-01 comes before 2025-12-31" in problem.message


def test_warranty_section_in_one_file_only(tmp_path):
    (problem,) = problems_of(write_policy(tmp_path, a=WARRANTY, b=WARRANTY))
    assert "`warranty` is given in more than one file" in problem.message


def test_table_conditions_know_the_derived_fields(tmp_path):
    folder = write_policy(
        tmp_path, w=WARRANTY, t=TABLE.replace("when: in_warranty", "when: in_waranty")
    )
    (problem,) = problems_of(folder)
    assert "unknown field in_waranty in service_requests" in problem.message
    assert "did you mean in_warranty?" in (problem.hint or "")
    assert problem.location.line == 9


def test_outcomes_are_values_of_the_recorded_field(tmp_path):
    folder = write_policy(tmp_path, w=WARRANTY, t=TABLE.replace("then: free", "then: fre"))
    (problem,) = problems_of(folder)
    assert problem.message == "'fre' is not a value of category"
    assert problem.hint == "did you mean 'free'?"


def test_otherwise_is_the_last_row_and_actions_name_outcomes(tmp_path):
    swapped = TABLE.replace(
        "      - {when: under_contract, then: contract}\n      - {otherwise: paid}",
        "      - {otherwise: paid}\n      - {when: under_contract, then: contract}",
    )
    unknown = TABLE.replace("      paid: {when", "      charged: {when").replace(
        "service-category", "other"
    )
    problems = problems_of(write_policy(tmp_path, w=WARRANTY, t=swapped, u=unknown))
    text = "\n".join(str(p) for p in problems)
    assert "`otherwise` must be the last row" in text
    assert "on_outcome: 'charged' is not an outcome of the table" in text


def test_a_table_that_finds_nothing_is_refused(tmp_path):
    silent = TABLE.replace("    recorded: category\n", "").split("    on_outcome:")[0]
    (problem,) = problems_of(write_policy(tmp_path, w=WARRANTY, t=silent))
    assert "give `recorded`" in problem.message


def test_warranty_is_not_a_rule_id(tmp_path):
    folder = write_policy(
        tmp_path, w=WARRANTY, t=TABLE.replace("id: service-category", "id: warranty")
    )
    (problem,) = problems_of(folder)
    assert problem.message == "the rule id 'warranty' is reserved"


def test_reminder_on_the_derived_warranty_end(tmp_path):
    reminder = """\
reminders:
  - id: warranty-ending
    title: Warranty ends in a month
    entity: {entity}
    date: warranty_ends_on
    offset: 1 month before
    notice: warranty_ending
    notify: [customer]
"""
    policy = load_policy(
        write_policy(tmp_path, w=WARRANTY, r=reminder.format(entity="units")), TEMPLATES
    )
    assert policy.rule("warranty-ending").table.name == "units"
    (tmp_path / "b").mkdir()
    folder = write_policy(tmp_path / "b", w=WARRANTY, r=reminder.format(entity="contracts"))
    (problem,) = problems_of(folder)
    assert "'warranty_ends_on' is not a field of contracts" in problem.message
