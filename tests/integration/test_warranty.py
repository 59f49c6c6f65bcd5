"""Seed rows 1 and 9: warranty coverage decides every repair call's category (shipped policy).

Air conditioners: whole unit 1 year, compressor 3 years; the warranty starts on the purchase
date with proof of purchase, else the installation date, else the serial-number date with a
proof of purchase (003 1.1.1.1-1.1.1.3: no proof, no warranty); human
damage and unauthorised repairs are paid; units bought in December 2025 get six more months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from engine.db.models import Notice
from engine.rules import classification
from engine.run import load_checked_policy, run_night

SHANGHAI = timedelta(hours=8)
# 10:00 in Shanghai on Tuesday 2026-11-10, and the night after it.
RECEIVED = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def _decided(settings: Any, engine: Any, as_of: datetime) -> dict[int, dict[str, Any]]:
    """Every call the shipped classification rule decides at `as_of`, by id."""
    policy, _ = load_checked_policy(settings)
    item = policy.rule("service-category")
    with engine.connect() as conn:
        rows = conn.execute(classification.decisions(item, as_of)).mappings()
        return {row["id"]: dict(row) for row in rows}


def _notices(engine: Any, template: str) -> list[Notice]:
    with Session(engine) as session:
        return list(session.scalars(select(Notice).where(Notice.template == template)))


def test_compressor_fault_is_free_for_three_years_a_fan_fault_only_for_one(
    service_data, settings_for
):
    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True,
                 installed_on=date(2025, 11, 15))  # fmt: skip
    compressor = data.request(ada, RECEIVED, unit_id=unit, fault_part="compressor")
    fan = data.request(ada, RECEIVED, unit_id=unit, fault_part="fan")

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    free = decided[compressor]
    assert free["_decision"] == "free"
    assert (free["warranty_term"], free["warranty_part"], free["warranty_basis"]) == (
        "air-conditioners",
        "compressor",
        "purchase_with_proof",
    )
    assert (free["warranty_starts_on"], free["warranty_ends_on"]) == (
        date(2025, 11, 1),
        date(2028, 10, 31),
    )
    paid = decided[fan]
    assert paid["_decision"] == "paid"
    # A fan has no term of its own: the whole unit's year applies, and it ended on Oct 31.
    assert (paid["warranty_part"], paid["warranty_ends_on"]) == ("unit", date(2026, 10, 31))
    assert paid["in_warranty_term"] is False and paid["in_warranty"] is False


def test_without_proof_of_purchase_the_warranty_starts_at_installation(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    installed = data.unit(ada, purchased_on=date(2025, 11, 1), installed_on=date(2025, 11, 15))
    serial_only = data.unit(ada, purchased_on=date(2026, 1, 1), manufactured_on=date(2026, 1, 1))
    serial_proven = data.unit(ada, manufactured_on=date(2026, 1, 1), proof_of_purchase=True)
    nothing = data.unit(ada, purchased_on=date(2025, 11, 1))
    calls = {
        unit: data.request(ada, RECEIVED, unit_id=unit, fault_part="fan")
        for unit in (installed, serial_only, serial_proven, nothing)
    }

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    by_install = decided[calls[installed]]
    assert by_install["warranty_basis"] == "installed_on"
    assert by_install["warranty_ends_on"] == date(2026, 11, 14)
    assert by_install["_decision"] == "free"
    # A serial number dates a unit but proves no purchase: without the proof, no warranty.
    unproven = decided[calls[serial_only]]
    assert (unproven["warranty_basis"], unproven["_decision"]) == (None, "paid")
    proven = decided[calls[serial_proven]]
    assert (proven["warranty_basis"], proven["warranty_ends_on"], proven["_decision"]) == (
        "manufactured_with_proof",
        date(2026, 12, 31),
        "free",
    )
    uncovered = decided[calls[nothing]]
    assert uncovered["warranty_basis"] is None and uncovered["warranty_ends_on"] is None
    assert uncovered["_decision"] == "paid"


def test_an_instrument_without_proof_of_purchase_is_repaired_as_out_of_warranty(
    service_data, settings_for
):
    """003 1.1.1.2: 客户无法提供购买证明……按非保修期范围情况处理."""
    data = service_data
    ada = data.customer("Ada Wong")
    made = date(2026, 5, 1)
    no_proof = data.unit(ada, "IN-SP700", purchased_on=date(2026, 6, 1),
                         installed_on=date(2026, 6, 2), manufactured_on=made)  # fmt: skip
    with_proof = data.unit(ada, "IN-SP700", manufactured_on=made, proof_of_purchase=True)
    unproven = data.request(ada, RECEIVED, unit_id=no_proof, fault_part="motor")
    proven = data.request(ada, RECEIVED, unit_id=with_proof, fault_part="motor")

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    assert (decided[unproven]["warranty_basis"], decided[unproven]["_decision"]) == (None, "paid")
    # With the proof, the instrument number's date starts the year (003 1.1.1.3).
    assert decided[proven]["warranty_basis"] == "manufactured_with_proof"
    assert decided[proven]["warranty_ends_on"] == date(2027, 4, 30)
    assert decided[proven]["_decision"] == "free"


def test_an_installation_job_is_free_only_inside_the_warranty(service_data, settings_for):
    """No seed makes installations free: they follow warranty and contract like any call."""
    data = service_data
    ada = data.customer("Ada Wong")
    new = data.unit(ada, purchased_on=date(2026, 11, 1), proof_of_purchase=True)
    old = data.unit(ada, purchased_on=date(2020, 11, 1), proof_of_purchase=True)
    fresh = data.request(ada, RECEIVED, unit_id=new, kind="installation")
    moved = data.request(ada, RECEIVED, unit_id=old, kind="installation")

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    assert decided[fresh]["_decision"] == "free"
    assert decided[moved]["_decision"] == "paid"


def test_human_damage_and_unauthorised_repair_are_paid_inside_the_warranty(
    service_data, settings_for
):
    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    damaged = data.request(ada, RECEIVED, unit_id=unit, fault_part="compressor", human_damage=True)
    opened = data.request(
        ada, RECEIVED, unit_id=unit, fault_part="compressor", unauthorised_repair=True
    )

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    for call in (damaged, opened):
        row = decided[call]
        assert row["in_warranty_term"] is True and row["warranty_void"] is True
        assert row["in_warranty"] is False and row["_decision"] == "paid"


def test_december_2025_promotion_lengthens_only_those_units(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    december = data.unit(ada, purchased_on=date(2025, 12, 5), proof_of_purchase=True)
    november = data.unit(ada, purchased_on=date(2025, 11, 30), proof_of_purchase=True)
    unproven = data.unit(ada, purchased_on=date(2025, 12, 5), installed_on=date(2025, 12, 6))
    heater = data.unit(ada, "WH-ELE60", purchased_on=date(2025, 12, 5), proof_of_purchase=True)
    received = datetime(2027, 1, 10, 2, 0, tzinfo=UTC)
    calls = {
        unit: data.request(ada, received, unit_id=unit, fault_part="fan")
        for unit in (december, november, unproven, heater)
    }

    decided = _decided(settings_for(str(data.engine.url)), data.engine, received + SHANGHAI)

    promoted = decided[calls[december]]
    assert promoted["warranty_promotion"] == "winter-2025"
    assert promoted["warranty_ends_on"] == date(2027, 6, 4)  # 1 year + 6 months
    assert promoted["_decision"] == "free"
    for unit, ends in ((november, date(2026, 11, 29)), (unproven, date(2026, 12, 5)),
                       (heater, date(2026, 12, 4))):  # fmt: skip
        row = decided[calls[unit]]
        assert row["warranty_promotion"] is None, unit
        assert (row["warranty_ends_on"], row["_decision"]) == (ends, "paid"), unit


def test_contract_cover_on_the_day_the_call_came_in(service_data, settings_for):
    data = service_data
    ada, bo = data.customer("Ada Wong"), data.customer("Bo Chen")
    old = data.unit(ada, purchased_on=date(2023, 3, 1), proof_of_purchase=True)
    spare = data.unit(ada, purchased_on=date(2023, 3, 1), proof_of_purchase=True)
    bos = data.unit(bo, purchased_on=date(2023, 3, 1), proof_of_purchase=True)
    data.contract(ada, date(2027, 3, 31), unit_id=old)
    data.contract(ada, date(2026, 10, 31), unit_id=spare, number="MC-ENDED")
    data.contract(ada, date(2027, 3, 31), unit_id=spare, status="cancelled", number="MC-X")
    data.contract(bo, date(2027, 3, 31), unit_id=None, kind="extended_warranty", number="EW-1")
    covered = data.request(ada, RECEIVED, unit_id=old, fault_part="fan")
    damaged = data.request(ada, RECEIVED, unit_id=old, fault_part="fan", human_damage=True)
    ended = data.request(ada, RECEIVED, unit_id=spare, fault_part="fan")
    all_units = data.request(bo, RECEIVED, unit_id=bos, fault_part="board")

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    assert decided[covered]["_decision"] == "contract"
    assert decided[covered]["under_contract"] is True
    assert decided[damaged]["_decision"] == "paid"  # the exclusions void contract cover too
    assert decided[ended]["under_contract"] is False and decided[ended]["_decision"] == "paid"
    assert decided[all_units]["contract_number"] == "EW-1"
    assert decided[all_units]["_decision"] == "contract"


@pytest.mark.slow
def test_the_day_a_call_came_in_is_the_branchs_day(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    # Both on 2026-10-31 in UTC; the second is already November 1st in Shanghai.
    last_evening = data.request(
        ada, datetime(2026, 10, 31, 15, 30, tzinfo=UTC), unit_id=unit, fault_part="fan"
    )
    after_midnight = data.request(
        ada, datetime(2026, 10, 31, 17, 0, tzinfo=UTC), unit_id=unit, fault_part="fan"
    )

    decided = _decided(settings_for(str(data.engine.url)), data.engine, NIGHT)

    assert decided[last_evening]["received_on"] == date(2026, 10, 31)
    assert decided[last_evening]["_decision"] == "free"
    assert decided[after_midnight]["received_on"] == date(2026, 11, 1)
    assert decided[after_midnight]["_decision"] == "paid"


def test_charged_for_a_part_still_under_warranty_is_one_mismatch(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    wrong = data.request(
        ada, RECEIVED, unit_id=unit, fault_part="compressor", category="paid",
        status="dispatched", dispatched_at=RECEIVED + timedelta(hours=1),
    )  # fmt: skip
    right = data.request(ada, RECEIVED, unit_id=unit, fault_part="compressor", category="free")
    unrecorded = data.request(ada, RECEIVED, unit_id=unit, fault_part="compressor")
    settings = settings_for(str(data.engine.url))

    first = run_night(settings, data.engine, as_of=NIGHT)
    run_night(settings, data.engine, as_of=NIGHT + timedelta(days=1))

    assert data.findings("service-category") == [(str(wrong), "free", "mismatch")]
    (finding,) = [f for f in first.findings if f["rule"] == "service-category"]
    assert finding["family"] == "classification" and finding["new"] is True
    assert finding["reason"].startswith("service_requests SR-")
    assert ": recorded paid, policy says free (row 2: in_warranty); " in finding["reason"]
    assert "compressor term of air-conditioners: from 2025-11-01" in finding["reason"]
    assert "to 2028-10-31" in finding["reason"]
    (notice,) = _notices(data.engine, "category_mismatch")
    assert notice.recipient_address == "service_supervisor@sh.example"
    assert "登记为收费，按政策应为免费（保修）" in notice.subject
    assert {right, unrecorded}.isdisjoint(int(f[0]) for f in data.findings("service-category"))


def test_paid_call_gets_one_quote_before_work_starts(service_data, settings_for):
    data = service_data
    li = data.customer("Li Wei", locale="zh-CN")
    unit = data.unit(li, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    waiting = data.request(li, RECEIVED, unit_id=unit, fault_part="fan", category="paid")
    on_the_way = data.request(li, RECEIVED, unit_id=unit, fault_part="fan", category="paid",
                              status="dispatched", dispatched_at=RECEIVED + timedelta(hours=1),
                              )  # fmt: skip
    started = data.request(li, RECEIVED, unit_id=unit, fault_part="fan", category="paid",
                           status="on_site", dispatched_at=RECEIVED + timedelta(hours=1),
                           arrived_at=RECEIVED + timedelta(hours=2))  # fmt: skip
    settings = settings_for(str(data.engine.url))

    for night in range(3):
        run_night(settings, data.engine, as_of=NIGHT + timedelta(days=night))

    # A technician already on the way still needs the customer's consent before the work.
    assert sorted(data.findings("service-category")) == sorted(
        [(str(waiting), "paid", "outcome"), (str(on_the_way), "paid", "outcome")]
    )
    quote, _ = _notices(data.engine, "quote")
    assert quote.recipient_address == "li.wei@example.com" and quote.locale == "zh-CN"
    assert quote.subject.startswith("维修单 SR-")
    assert quote.subject.endswith("：不在保修范围内，施工前将向您报价")
    assert "整机的保修期已于2026年10月31日届满" in quote.body_text
    assert "施工前" in quote.body_text and quote.body_html
    assert started not in {int(f[0]) for f in data.findings("service-category")}


def test_the_rule_is_one_statement_however_many_calls(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    for hour in range(40):
        data.request(ada, RECEIVED - timedelta(hours=hour), unit_id=unit, fault_part="fan",
                     category="free" if hour % 2 else "paid")  # fmt: skip
    policy, _ = load_checked_policy(settings_for(str(data.engine.url)))
    item = policy.rule("service-category")
    sent: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            sent.append(statement)

    event.listen(data.engine, "before_cursor_execute", seen)
    try:
        with data.engine.connect() as conn:
            findings = list(classification.judge(conn, item, {}, NIGHT)[0])
    finally:
        event.remove(data.engine, "before_cursor_execute", seen)
    assert len(sent) == 1 and sent[0].lstrip().upper().startswith("SELECT")
    assert sum(f.state == "mismatch" for f in findings) == 20


def test_warranty_ending_letter_a_month_before_unless_a_contract_takes_over(
    service_data, settings_for
):
    data = service_data
    ada, li = data.customer("Ada Wong"), data.customer("Li Wei", locale="zh-CN")
    # Water heaters: whole unit 1 year, from 2025-12-24 to 2026-12-23.
    plain = data.unit(ada, "WH-ELE60", purchased_on=date(2025, 12, 24), proof_of_purchase=True)
    extended = data.unit(li, "WH-ELE60", purchased_on=date(2025, 12, 24), proof_of_purchase=True)
    data.contract(li, date(2028, 12, 23), unit_id=extended, kind="extended_warranty", number="EW-7")
    settings = settings_for(str(data.engine.url))
    night = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a month before

    early = run_night(settings, data.engine, as_of=night - timedelta(days=1))
    due = run_night(settings, data.engine, as_of=night)
    run_night(settings, data.engine, as_of=night + timedelta(days=1))

    assert not [f for f in early.findings if f["rule"] == "warranty-ending"]
    (finding,) = [f for f in due.findings if f["rule"] == "warranty-ending"]
    assert (finding["entity"], finding["entity_id"]) == ("units", str(plain))
    assert finding["occurrence"] == "2026-12-23"
    (letter,) = _notices(data.engine, "warranty_ending")
    assert letter.recipient_address == "ada.wong@example.com"
    assert letter.subject == (
        "The warranty of your Electric water heater 60 L ends on December 23, 2026"
    )


def test_explain_warranty_lists_every_part_with_basis_and_promotion(service_data, settings_for):
    from typer.testing import CliRunner

    from engine.cli import app

    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 12, 5), proof_of_purchase=True,
                 installed_on=date(2025, 12, 9), serial_number="ACKFR35-0042")  # fmt: skip
    data.contract(ada, date(2027, 12, 31), unit_id=unit, kind="extended_warranty", number="EW-9")
    url = data.engine.url.render_as_string(hide_password=False)
    settings = settings_for(url)

    result = CliRunner().invoke(
        app,
        ["explain", "warranty", str(unit), "--db", url, "--as-of", "2026-11-23T10:00:00+08:00",
         "--rules", str(settings.rules), "--templates", str(settings.templates)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "unit ACKFR35-0042: AC-KFR35 Split air conditioner 3.5 kW (air_conditioner)" in text
    assert "term air-conditioners" in text
    assert "basis purchase date, with proof of purchase: 2025-12-05 (used)" in text
    assert "installation date: 2025-12-09" in text
    assert "promotion winter-2025" in text
    assert "unit 1 year + 6 months (winter-2025): 2025-12-05 to 2027-06-04, covered" in text
    assert "compressor 3 years: 2025-12-05 to 2028-12-04, covered" in text
    assert "labour 1 year + 6 months (winter-2025): 2025-12-05 to 2027-06-04, covered" in text
    assert "void when human_damage or unauthorised_repair" in text
    assert "contract EW-9 extended_warranty active 2026-12-31 to 2027-12-31" in text


def test_explain_classification_shows_the_decision_row_by_row(service_data, settings_for):
    from typer.testing import CliRunner

    from engine.cli import app

    data = service_data
    ada = data.customer("Ada Wong")
    unit = data.unit(ada, purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    fan = data.request(ada, RECEIVED, unit_id=unit, fault_part="fan", category="free")
    url = data.engine.url.render_as_string(hide_password=False)
    settings = settings_for(url)

    result = CliRunner().invoke(
        app,
        ["explain", "service-category", str(fan), "--db", url, "--as-of", NIGHT.isoformat(),
         "--rules", str(settings.rules), "--templates", str(settings.templates)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "row 2 NO in_warranty" in text
    assert "row 4 yes otherwise" in text
    assert "decision paid (row 4)" in text
    assert "recorded free: mismatch" in text
    assert "fan falls under the unit term of air-conditioners" in text
