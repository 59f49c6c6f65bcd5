"""`branches:` limits a rule to some branches; a wrong one is reported at its place."""

from __future__ import annotations

from pathlib import Path

from policyfiles import TEMPLATES, problems_of, write_policy

from engine.policy import load_policy
from engine.policy.branch_scope import branch_in_scope
from engine.policy.jsonschema import policy_json_schema

ROOT = Path(__file__).resolve().parents[3]

RULE = """\
reminders:
  - id: maintenance-renewal
    title: Maintenance expiry notice one month before the contract ends
    entity: contracts
    date: ends_on
    offset: 1 month before
    notice: maintenance_expiry
    notify: [customer]
"""


def test_a_scope_by_country_and_code_with_exceptions(tmp_path):
    scoped = RULE + "    branches: {country: [CN, TW], except: {code: [SH-SJ]}}\n"
    (reminder,) = load_policy(write_policy(tmp_path, contracts=scoped), TEMPLATES).reminders
    scope = reminder.rule.branches
    assert str(scope) == "branches of country CN, TW, except code SH-SJ"
    assert branch_in_scope(scope, {"code": "SH-01", "country": "CN"})
    assert not branch_in_scope(scope, {"code": "SH-SJ", "country": "CN"})
    assert not branch_in_scope(scope, {"code": "MAD-01", "country": "ES"})


def test_a_country_must_be_an_iso_code_and_is_reported_at_its_line(tmp_path):
    folder = write_policy(tmp_path, contracts=RULE + "    branches: {country: [china]}\n")
    (problem,) = problems_of(folder)
    assert "branches.country" in problem.message
    assert (problem.location.file, problem.location.line) == (folder / "contracts.yaml", 9)


def test_an_empty_scope_is_refused(tmp_path):
    (problem,) = problems_of(write_policy(tmp_path, contracts=RULE + "    branches: {}\n"))
    assert "country" in problem.message and problem.location.line == 9


def test_a_table_without_branches_cannot_be_scoped(tmp_path):
    rule = RULE.replace("entity: contracts", "entity: status_changes").replace(
        "ends_on", "changed_at"
    )
    folder = write_policy(tmp_path, contracts=rule + "    branches: {code: [SH-01]}\n")
    problem = next(p for p in problems_of(folder) if "branches" in p.message)
    assert "belong to no branch" in problem.message
    assert (problem.location.line, problem.location.column) == (9, 5)


def test_the_shipped_fines_apply_to_china_only_and_each_country_has_its_currency():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    fines = {t.rule.id: t.rule.branches for t in policy.tallies if t.rule.sign < 0}
    assert set(fines) == {"unanswered-hotline", "verified-complaint", "false-inspection-report"}
    assert all(scope is not None and scope.country == ("CN",) for scope in fines.values())
    assert all(t.rule.branches is None for t in policy.tallies if t.rule.sign > 0)
    assert policy.ledger.currency_for({"code": "MAD-01", "country": "ES"}) == "EUR"
    assert policy.ledger.approval is not None


def test_the_schema_offers_branches_on_every_rule_and_approval_on_the_ledger():
    defs = policy_json_schema()["$defs"]
    for model in ("ReminderRule", "DeadlineRule", "ClassificationRule", "TallyRule",
                  "ObligationRule", "MetricRule"):  # fmt: skip
        assert "branches" in defs[model]["properties"], model
    assert "except" in defs["BranchScope"]["properties"]
    assert defs["Approval"]["required"] == ["by"]
    assert "approval" in defs["LedgerSettings"]["properties"]
