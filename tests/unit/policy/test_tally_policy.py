"""Tally rules in policy files: the phrases, and every mistake reported with file:line:column."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from policyfiles import line_col, problems_of, write_policy
from pydantic import ValidationError

from engine.errors import PolicyError
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.tally_spec import LedgerSettings, Measure, TallyRule

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")

TALLY = """\
ledger:
  currency: CNY
  close_on_day: 10
tallies:
  - id: verified-complaint
    title: Verified complaint, double when repeated
    entity: complaints
    when: verified
    at: closed_at
    period: month
    charge: responsible_staff, else team_lead
    penalty: 100 each
    multiply:
      - {when: repeat_of_id is not null, by: 2}
"""
BASE = {
    "id": "t",
    "title": "t",
    "entity": "complaints",
    "at": "closed_at",
    "period": "month",
    "charge": "responsible_staff",
}


def _problems(tmp_path: Path, text: str) -> list:
    return problems_of(write_policy(tmp_path, penalties=text))


def test_shipped_penalties_cover_seed_rows_14_to_17_and_20():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    ids = {t.rule.id for t in policy.tallies}
    assert ids == {
        "unanswered-hotline",
        "verified-complaint",
        "false-inspection-report",
        "effective-improvement",
        "survey-excellence",
        "quarterly-target-bonus",
    }
    assert policy.ledger.currency == {"CN": "CNY", "TW": "TWD", "ES": "EUR"}
    assert policy.ledger.close_on_day == 10
    hotline = next(t for t in policy.tallies if t.rule.id == "unanswered-hotline")
    assert hotline.rule.local_hours == ("09:00", "22:00")
    assert hotline.rule.amount.each == Decimal(50) and hotline.currency({"country": "CN"}) == "CNY"
    bonus = next(t.rule for t in policy.tallies if t.rule.id == "quarterly-target-bonus")
    assert [item.weight for item in bonus.score] == [
        None,
        Decimal("0.4"),
        Decimal("0.3"),
        Decimal("0.3"),
    ]
    assert bonus.score[0].gate is not None and bonus.score[0].gate.at_least == Decimal(94)
    assert bonus.amount_for("service_manager").per_point == Decimal(25)
    assert [b.at_least for b in bonus.score[1].bands] == [1, Decimal("0.95"), Decimal("0.9")]


def test_phrases_read_like_speech():
    rule = TallyRule.model_validate({**BASE, "penalty": "10% of compensation"})
    assert (rule.amount.share, rule.amount.of, rule.sign) == (Decimal("0.1"), "compensation", -1)
    assert str(rule.amount) == "10% of compensation"
    rule = TallyRule.model_validate({**BASE, "charge": "a, else b, else c", "reward": "50 each"})
    assert rule.charge == ("a", "b", "c") and rule.sign == 1
    assert Measure.model_validate("ratio of actual to target").fields == ("actual", "target")
    assert str(Measure.model_validate("average of  a,b")) == "average of a, b"
    assert Measure.model_validate("count").kind == "count"


def test_money_is_decimal_never_float():
    rule = TallyRule.model_validate(
        {**BASE, "measure": "count", "reward": {"bands": [{"at_least": 0.1, "amount": 0.3}]}}
    )
    band = rule.amount.bands[0]
    assert band.at_least == Decimal("0.1") and band.amount == Decimal("0.3")
    assert type(band.amount) is Decimal


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"penalty": 50}, "write '50 each'"),
        ({"penalty": "50 each", "reward": "5 each"}, "exactly one of `penalty` or `reward`"),
        ({"penalty": "50 each", "measure": "count"}, "bands need a `measure`"),
        ({"penalty": "1.234 each"}, "at most two decimals"),
        ({"penalty": "50 each", "charge": "a, b"}, "then stand-ins"),
        ({"penalty": "50 each", "local_hours": ["9:00", "22:00"]}, "is not a time of day"),
        ({"penalty": "50 each", "min_count": 3}, "`min_count` works with"),
        (
            {
                "measure": "count",
                "penalty": {"bands": [{"at_least": 1, "amount": 1}, {"at_least": 2, "amount": 2}]},
            },
            "highest `at_least` down",
        ),
        (
            {
                "reward": "8 per point",
                "score": [
                    {
                        "name": "a",
                        "weight": "40%",
                        "measure": "count",
                        "bands": [{"at_least": 1, "points": 1}],
                    }
                ],
            },
            "add up to 40%",
        ),
        ({"reward": "5 each", "multiply": [{"by": 0}]}, "above 0"),
        (
            {
                "reward": "5 each",
                "by_role": {"service_manager": {"bands": [{"at_least": 1, "amount": 9}]}},
            },
            "service_manager's amount .* is not in the form of '5 each'",
        ),
        (
            {
                "reward": "8 per point",
                "score": [
                    {
                        "name": "a",
                        "weight": "100%",
                        "measure": "count",
                        "bands": [{"at_least": 1, "points": 1}],
                    },
                    {"name": "gate", "weight": "10%", "measure": "count", "gate": {"at_least": 94}},
                ],
            },
            "a `gate` part has no `weight`",
        ),
        (
            {
                "reward": "8 per point",
                "score": [
                    {"name": "a", "measure": "count", "bands": [{"at_least": 1, "points": 1}]}
                ],
            },
            "needs a `weight` and `bands`",
        ),
    ],
)
def test_inconsistent_tallies_are_refused(extra, message):
    with pytest.raises(ValidationError, match=message):
        TallyRule.model_validate({**BASE, **extra})


def test_ledger_settings():
    assert LedgerSettings().close_on_day == 10
    with pytest.raises(ValidationError, match="not an ISO 4217"):
        LedgerSettings.model_validate({"currency": "RMB"})
    with pytest.raises(ValidationError, match="IANA"):
        LedgerSettings.model_validate({"timezone": "China/Beijing"})
    with pytest.raises(ValidationError, match="less than or equal to 28"):
        LedgerSettings.model_validate({"close_on_day": 31})


def test_unknown_field_in_a_multiplier_condition_points_at_it(tmp_path):
    text = TALLY.replace("repeat_of_id is not null", "repeat_off_id is not null")
    (problem,) = _problems(tmp_path, text)
    assert "unknown field repeat_off_id" in problem.message
    assert (problem.location.line, problem.location.column) == line_col(text, "repeat_off_id")
    assert "repeat_of_id" in (problem.hint or "")


def test_unknown_field_in_the_condition_and_a_bad_at_field_are_both_reported(tmp_path):
    text = TALLY.replace("when: verified", "when: verifed").replace("closed_at", "closed_on")
    problems = _problems(tmp_path, text)
    assert len(problems) == 2
    assert "'closed_on' is not a field of complaints" in str(problems)
    unknown = next(p for p in problems if "verifed" in p.message)
    assert (unknown.location.line, unknown.location.column) == line_col(text, "verifed")


def test_charging_a_customer_or_an_unknown_role_is_refused(tmp_path):
    text = TALLY.replace("else team_lead", "else team_leed")
    (problem,) = _problems(tmp_path, text)
    assert "cannot charge 'team_leed'" in problem.message
    assert problem.hint == "did you mean 'team_lead'?"
    assert (problem.location.line, problem.location.column) == line_col(text, "team_leed")
    (problem,) = _problems(tmp_path, TALLY.replace("responsible_staff, else", "customer, else"))
    assert "cannot charge 'customer': it is not a person of staff" in problem.message


def test_measures_need_number_fields_and_local_hours_need_a_timestamp(tmp_path):
    text = TALLY.replace("penalty: 100 each", "penalty: 10% of outcome").replace(
        "at: closed_at", "at: closed_at\n    local_hours: ['09:00', '22:00']"
    )
    (problem,) = _problems(tmp_path, text)
    assert "'outcome' is not a number field of complaints" in problem.message
    assert "compensation" in (problem.hint or "")
    dated = TALLY.replace("at: closed_at", "at: received_at").replace(
        "entity: complaints", "entity: inspections"
    )
    dated = dated.replace("when: verified", "when: falsified").replace(
        "responsible_staff, else team_lead", "technician"
    )
    dated = dated.replace("repeat_of_id is not null", "falsified")
    dated = dated.replace(
        "at: received_at", "at: inspected_on\n    local_hours: ['09:00', '22:00']"
    )
    (problem,) = _problems(tmp_path, dated)
    assert "'inspected_on' is not a timestamp field of inspections" in problem.message


def test_a_tally_needs_a_currency_and_one_ledger_section(tmp_path):
    (problem,) = _problems(tmp_path, TALLY.replace("  currency: CNY\n", ""))
    assert "no currency" in problem.message and "ledger: {currency: CNY}" in (problem.hint or "")
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.yaml").write_text(TALLY, encoding="utf-8")
    (folder / "b.yaml").write_text("ledger:\n  currency: EUR\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(folder, TEMPLATES)
    (problem,) = caught.value.problems
    assert "`ledger` is given in more than one file" in problem.message
    assert str(problem.location) == f"{folder / 'b.yaml'}:1:1"


def test_unknown_key_in_a_band_is_found_with_a_hint(tmp_path):
    text = TALLY.replace(
        "penalty: 100 each\n    multiply:\n      - {when: repeat_of_id is not null, by: 2}\n",
        "measure: count\n    penalty:\n      bands:\n        - {at_least: 3, amout: 200}\n",
    )
    problems = _problems(tmp_path, text)
    unknown = next(p for p in problems if "unknown key 'amout'" in p.message)
    assert unknown.hint == "did you mean 'amount'?"
    assert (unknown.location.line, unknown.location.column) == line_col(text, "amout")


def test_close_notice_templates_and_recipients_are_checked(tmp_path):
    text = TALLY.replace("  close_on_day: 10\n", "  close_on_day: 10\n  copy_to: [acounting]\n")
    text = text.replace("ledger:\n", "ledger:\n  notice: reward_notice\n")
    messages = "\n".join(str(p) for p in _problems(tmp_path, text))
    assert "no notice template 'reward_notice'" in messages
    assert "cannot send the close's notices to 'acounting'" in messages


def test_an_amount_for_an_undeclared_role_points_at_it(tmp_path):
    typo = "penalty: 100 each\n    by_role: {team_leed: 80 each}"
    text = TALLY.replace("penalty: 100 each", typo)
    (problem,) = _problems(tmp_path, text)
    assert "by_role: 'team_leed' is not a role the policy declares" in problem.message
    assert problem.hint == "did you mean 'team_lead'?"
    assert (problem.location.line, problem.location.column) == line_col(text, "team_leed")
