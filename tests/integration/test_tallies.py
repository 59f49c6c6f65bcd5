"""Seed rows 14-16 and 20: fines and rewards per person and month, booked once at the close.

Every test runs on a real SQLite file and on PostgreSQL. The shipped rules/penalties.yaml
closes a month at 00:00 Shanghai time on the 10th of the next month.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from engine.db.models import (
    HotlineCall,
    Improvement,
    Inspection,
    LedgerClose,
    LedgerEntry,
    Notice,
    Staff,
    Survey,
    Target,
)
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLOSE = datetime(2026, 11, 10, 0, 0, tzinfo=SHANGHAI)  # October closes here
AFTER_CLOSE = CLOSE + timedelta(hours=2)


def sh(*parts: int) -> datetime:
    """A Shanghai wall-clock instant, in UTC."""
    return datetime(*parts, tzinfo=SHANGHAI).astimezone(UTC)


def _entries(engine, rule: str | None = None) -> list[LedgerEntry]:
    table = LedgerEntry.__table__
    stmt = select(table).order_by(table.c.id)
    if rule:
        stmt = stmt.where(table.c.rule_id == rule)
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def _booked(engine, rule: str) -> dict[int, Decimal]:
    out: dict[int, Decimal] = {}
    for entry in _entries(engine, rule):
        out[entry.party_id] = out.get(entry.party_id, Decimal(0)) + entry.amount
    return out


def _run(data, settings_for, as_of: datetime = AFTER_CLOSE, **overrides):
    settings = settings_for(str(data.engine.url), **overrides)
    result = run_night(settings, data.engine, as_of=as_of.astimezone(UTC))
    assert result.outcome == "success", [r.error for r in result.rules if r.error]
    return result


def _complaint(data, closed_at: datetime, **values):
    customer = data.customer(f"Customer {closed_at:%d%H%M}")
    defaults = {
        "status": "closed", "verified": True, "closed_at": closed_at,
        "first_reply_at": closed_at - timedelta(days=1),
        "visited_at": closed_at - timedelta(days=1),  # 000 art.22: every complainant visited
        "responsible_staff_id": data.staff["technician"],
    }  # fmt: skip
    return data.complaint(customer, closed_at - timedelta(days=2), **{**defaults, **values})


def test_unanswered_calls_in_local_office_hours_cost_50_each_not_at_23h(service_data, settings_for):
    operator = service_data.staff["hotline_operator"]
    for hour, minute, answered in ((10, 0, False), (15, 30, False), (21, 59, False),
                                   (23, 0, False), (8, 59, False), (12, 0, True)):  # fmt: skip
        service_data.add(
            HotlineCall, branch_id=service_data.branch, received_at=sh(2026, 10, 14, hour, minute),
            answered=answered, on_duty_staff_id=operator,
        )  # fmt: skip
    # 09:30 on 1 November in Shanghai is still 31 October in UTC: it belongs to November.
    service_data.add(
        HotlineCall, branch_id=service_data.branch, received_at=sh(2026, 11, 1, 9, 30),
        answered=False, on_duty_staff_id=operator,
    )  # fmt: skip

    result = _run(service_data, settings_for)

    assert _booked(service_data.engine, "unanswered-hotline") == {operator: Decimal("-150.00")}
    (entry,) = _entries(service_data.engine, "unanswered-hotline")
    assert (entry.period, entry.kind, entry.currency) == ("2026-10", "original", "CNY")
    assert len(entry.entity_ids) == 3
    (finding,) = [f for f in result.findings if f["rule"] == "unanswered-hotline"]
    assert finding["state"] == "charged" and finding["amount"] == "-150.00"
    # Every instant in the artifact is UTC in one form, the close's included (issue 21 item 2).
    assert finding["due_at"] == "2026-11-09T16:00:00+00:00"
    assert "3 hotline_calls" in finding["reason"] and "= 150.00 CNY" in finding["reason"]


def test_repeat_complaint_costs_double(service_data, settings_for):
    first = _complaint(service_data, sh(2026, 10, 5, 11, 0))
    repeat = _complaint(service_data, sh(2026, 10, 20, 11, 0), repeat_of_id=first)
    _complaint(service_data, sh(2026, 10, 21, 11, 0), verified=False)  # not justified: no fine
    _complaint(service_data, sh(2026, 11, 2, 11, 0))  # closed in November: next month's

    _run(service_data, settings_for)

    technician = service_data.staff["technician"]
    assert _booked(service_data.engine, "verified-complaint") == {technician: Decimal("-300.00")}
    (entry,) = _entries(service_data.engine, "verified-complaint")
    assert entry.details["per_entity"] == {str(first): "-100.00", str(repeat): "-200.00"}
    assert "× 2 (repeat_of_id is not null)" in entry.reason


def test_a_complaint_traced_to_inspection_or_backup_not_done_costs_double(
    service_data, settings_for
):
    """000 part 2 §5: 经倒查,属于巡检、备份等工作未做到位……加倍乐捐."""
    product = _complaint(service_data, sh(2026, 10, 5, 11, 0), cause="product")
    skipped = _complaint(service_data, sh(2026, 10, 6, 11, 0), cause="inspection_not_done")
    no_backup = _complaint(service_data, sh(2026, 10, 7, 11, 0), cause="backup_not_done")

    _run(service_data, settings_for)

    (entry,) = _entries(service_data.engine, "verified-complaint")
    assert entry.details["per_entity"] == {
        str(product): "-100.00",
        str(skipped): "-200.00",
        str(no_backup): "-200.00",
    }


def test_complaint_without_a_responsible_person_is_charged_to_the_team_lead(
    service_data, settings_for
):
    _complaint(service_data, sh(2026, 10, 8, 16, 0), responsible_staff_id=None)

    _run(service_data, settings_for)

    lead = service_data.staff["team_lead"]
    assert _booked(service_data.engine, "verified-complaint") == {lead: Decimal("-100.00")}
    (entry,) = _entries(service_data.engine, "verified-complaint")
    assert "no responsible_staff: charged to team_lead" in entry.reason


def test_false_inspection_report_doubles_the_fine(service_data, settings_for):
    customer = service_data.customer("Inspected Ltd")
    contract = service_data.contract(customer, date(2027, 3, 31))
    technician = service_data.staff["technician"]
    for day, falsified in ((6, True), (20, False)):
        service_data.add(
            Inspection, branch_id=service_data.branch, contract_id=contract,
            technician_id=technician, inspected_on=date(2026, 10, day), falsified=falsified,
        )  # fmt: skip

    _run(service_data, settings_for)

    assert _booked(service_data.engine, "false-inspection-report") == {
        technician: Decimal("-200.00")
    }


@pytest.mark.slow
def test_nothing_is_booked_before_the_close_and_the_close_books_once(
    service_data, midnight_settings_for
):
    first = _complaint(service_data, sh(2026, 10, 5, 11, 0))
    _complaint(service_data, sh(2026, 10, 20, 11, 0), repeat_of_id=first)

    before = _run(service_data, midnight_settings_for, as_of=CLOSE - timedelta(minutes=1))
    assert _entries(service_data.engine) == []  # September and Q3 close, with nothing in them
    assert before.ledger["periods_closed"] == ["2026-09", "2026-Q3"]

    closing = _run(service_data, midnight_settings_for, as_of=CLOSE)
    assert closing.ledger["periods_closed"] == ["2026-10"]
    assert closing.ledger["entries_booked"] == 1

    again = _run(service_data, midnight_settings_for, as_of=CLOSE)
    later = _run(service_data, midnight_settings_for, as_of=CLOSE + timedelta(days=5))
    for rerun in (again, later):
        assert rerun.ledger["entries_booked"] == 0 and rerun.ledger["periods_closed"] == []
        assert not [f for f in rerun.findings if f["family"] == "tally"]
    assert len(_entries(service_data.engine)) == 1
    with service_data.engine.connect() as conn:
        closed = conn.scalars(select(LedgerClose.period).order_by(LedgerClose.id)).all()
    assert closed == ["2026-09", "2026-Q3", "2026-10"]


def test_complaint_reclassified_after_the_close_books_one_correcting_entry(
    service_data, settings_for
):
    first = _complaint(service_data, sh(2026, 10, 5, 11, 0))
    second = _complaint(service_data, sh(2026, 10, 20, 11, 0))
    other = _complaint(
        service_data, sh(2026, 10, 22, 11, 0), responsible_staff_id=service_data.staff["sales_rep"]
    )
    _run(service_data, settings_for)
    technician, rep = service_data.staff["technician"], service_data.staff["sales_rep"]
    assert _booked(service_data.engine, "verified-complaint") == {
        technician: Decimal("-200.00"),
        rep: Decimal("-100.00"),
    }

    # Found out after the close: the second complaint repeats the first, the third was unjust.
    with service_data.engine.begin() as conn:
        conn.execute(text(f"UPDATE complaints SET repeat_of_id = {first} WHERE id = {second}"))
        conn.execute(text(f"UPDATE complaints SET verified = false WHERE id = {other}"))
    result = _run(service_data, settings_for, as_of=AFTER_CLOSE + timedelta(days=1))

    corrections = [e for e in _entries(service_data.engine) if e.kind == "correction"]
    assert sorted((e.party_id, e.amount, e.entity_ids) for e in corrections) == sorted(
        [(technician, Decimal("-100.00"), [str(second)]), (rep, Decimal("100.00"), [str(other)])]
    )
    states = sorted(f["state"] for f in result.findings if f["family"] == "tally")
    assert states == ["corrected:1", "corrected:1"]
    assert _booked(service_data.engine, "verified-complaint") == {
        technician: Decimal("-300.00"),
        rep: Decimal("0.00"),
    }
    # The original entries are untouched, and another night books nothing more.
    _run(service_data, settings_for, as_of=AFTER_CLOSE + timedelta(days=2))
    assert len(_entries(service_data.engine)) == 4


@pytest.mark.parametrize(
    ("actual", "points", "amount"),
    [
        ("100.00", 100, "800.00"),
        ("95.00", 90, "768.00"),
        ("94.99", 80, "736.00"),
        ("89.99", 0, None),
    ],
)
def test_quarterly_target_bands_at_their_edges(service_data, settings_for, actual, points, amount):
    technician = service_data.staff["technician"]
    for item, target, value in (
        ("task", "100.00", actual),
        ("service_review", None, "95"),
        ("training", None, "90"),
        ("attendance", None, "97.5"),
    ):
        service_data.add(
            Target, branch_id=service_data.branch, staff_id=technician,
            period_start=date(2026, 7, 1), item=item,
            target=Decimal(target) if target else None, actual=Decimal(value),
        )  # fmt: skip

    # Q3 closes with September, on 10 October.
    result = _run(service_data, settings_for, as_of=datetime(2026, 10, 10, 9, 0, tzinfo=SHANGHAI))

    booked = _booked(service_data.engine, "quarterly-target-bonus")
    if amount is None:  # below 90% of the target: no bonus at all
        assert booked == {}
        return
    assert booked == {technician: Decimal(amount)}
    (finding,) = [f for f in result.findings if f["rule"] == "quarterly-target-bonus"]
    assert finding["occurrence"] == "2026-Q3"
    assert f"→ {points} points × 40%" in finding["reason"]


def test_the_quarterly_bonus_is_the_roles_own_and_needs_the_attendance(service_data, settings_for):
    """003-14: 完成季度任务后按岗位不同分别奖励 (服务经理 2500 …); 出勤率 (94% for everyone)."""
    manager, technician = service_data.staff["service_manager"], service_data.staff["technician"]
    absent = service_data.staff["team_lead"]
    for person, attendance in ((manager, "96"), (technician, "94"), (absent, "93.9")):
        for item, target, value in (
            ("task", "100.00", "100.00"),
            ("service_review", None, "95"),
            ("training", None, "90"),
            ("attendance", None, attendance),
        ):
            service_data.add(
                Target, branch_id=service_data.branch, staff_id=person,
                period_start=date(2026, 7, 1), item=item,
                target=Decimal(target) if target else None, actual=Decimal(value),
            )  # fmt: skip

    _run(service_data, settings_for, as_of=datetime(2026, 10, 10, 9, 0, tzinfo=SHANGHAI))

    # 100 points: the service manager's 2,500, a technician the default 800; 93.9% is short.
    assert _booked(service_data.engine, "quarterly-target-bonus") == {
        manager: Decimal("2500.00"),
        technician: Decimal("800.00"),
    }


def test_survey_average_and_effective_improvement_are_rewarded(service_data, settings_for):
    customer = service_data.customer("Surveyed")
    technician = service_data.staff["technician"]
    for day, ratings in ((3, (4, 4, 4, 4)), (12, (4, 4, 3, 4)), (25, (4, 3, 4, 4))):
        request = service_data.request(customer, sh(2026, 10, day - 1, 9, 0))
        attitude, skill, punctuality, promise = ratings
        service_data.add(
            Survey, branch_id=service_data.branch, service_request_id=request,
            technician_id=technician, surveyed_at=sh(2026, 10, day, 10, 0), attitude=attitude,
            skill=skill, punctuality=punctuality, promise_keeping=promise,
        )  # fmt: skip
    service_data.add(
        Improvement, branch_id=service_data.branch, staff_id=technician,
        title="Parts booking", proposed_on=date(2026, 10, 2), approved_at=sh(2026, 10, 9, 10),
        effective=True, reward_amount=Decimal("600.00"),
    )  # fmt: skip

    _run(service_data, settings_for)

    # (16 + 15 + 15) / 12 = 3.83: the top band.
    assert _booked(service_data.engine, "survey-excellence") == {technician: Decimal("300.00")}
    assert _booked(service_data.engine, "effective-improvement") == {technician: Decimal("600.00")}


def test_the_close_sends_each_person_a_notice_and_the_manager_a_summary(
    service_data, unapproved_settings_for, tmp_path
):
    for role in ("accounting", "payroll"):
        service_data.add(
            Staff, branch_id=None, name=role.title(), email=f"{role}@hq.example", role=role,
            locale="zh-CN",
        )  # fmt: skip
    _complaint(service_data, sh(2026, 10, 5, 11, 0))
    _complaint(service_data, sh(2026, 10, 8, 16, 0), responsible_staff_id=None)

    result = _run(service_data, unapproved_settings_for)

    with service_data.engine.connect() as conn:
        notices = list(conn.execute(select(Notice).order_by(Notice.id)))
    person = {(n.recipient_address, n.template) for n in notices}
    assert person == {
        ("technician@sh.example", "reward_penalty_notice"),
        ("team_lead@sh.example", "reward_penalty_notice"),
        ("accounting@hq.example", "reward_penalty_notice"),
        ("payroll@hq.example", "reward_penalty_notice"),
        ("service_manager@sh.example", "penalty_summary"),
        ("accounting@hq.example", "digest"),
        ("payroll@hq.example", "digest"),
    }
    # Two people, each with their own copies for accounting and payroll; accounting and payroll
    # receive their two copies in one digest each.
    assert len(notices) == 9
    for office in ("accounting@hq.example", "payroll@hq.example"):
        (digest,) = [n for n in notices if n.recipient_address == office and n.template == "digest"]
        copies = [n for n in notices if n.digest_id == digest.id]
        assert len(copies) == 2 and {n.status for n in copies} == {"bundled"}
        # A copy says what it is for, in the seed's words (002 (七)2: 会计单位查核, 罚扣奖金).
        title = {"accounting@hq.example": "会计单位查核", "payroll@hq.example": "罚扣部门罚扣奖金"}[
            office
        ]
        assert all(f"请存档（{title}）" in n.body_text for n in copies)
    letter = next(n for n in notices if n.recipient_address == "technician@sh.example")
    assert letter.subject == "奖罚通知单 2026年10月：technician sh"
    assert "-CN¥100.00" in letter.body_text or "-¥100.00" in letter.body_text
    summary = next(n for n in notices if n.template == "penalty_summary")
    assert summary.body_html and "technician sh" in summary.body_html
    # Roles by their titles, and the CSV attached, not a command to run (audit T10).
    assert "technician sh（技术员）" in summary.body_text and "技术员" in summary.body_html
    assert "CSV 已附在本邮件中" in summary.body_text and "aftersales" not in summary.body_text
    assert "team_lead sh" in summary.body_html and "<table" in summary.body_html

    reports = tmp_path / "runs" / "reports"
    # The night's overdue page comes first, then the month the close settled.
    assert result.ledger["reports"][-2:] == [
        str(reports / "penalties_2026-10.html"),
        str(reports / "penalties_2026-10.csv"),
    ]
    text = (reports / "penalties_2026-10.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2 and text.startswith("period,report,branch,")
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("-200.00")


def test_a_reward_penalty_notice_says_each_fine_and_why_in_the_readers_language(
    service_data, unapproved_settings_for
):
    """Issue 19 item 1: the rule's title, each complaint by its number with its factor and
    why, the charge to the team lead and the month in the reader's words, not the English
    reason the close records."""
    first = _complaint(service_data, sh(2026, 10, 5, 11, 0))
    _complaint(service_data, sh(2026, 10, 20, 11, 0), repeat_of_id=first)
    _complaint(service_data, sh(2026, 10, 8, 16, 0), responsible_staff_id=None)
    with service_data.engine.begin() as conn:  # the team lead reads Spanish
        conn.execute(
            text(f"UPDATE staff SET locale = 'es' WHERE id = {service_data.staff['team_lead']}")
        )
        numbers = dict(conn.execute(text("SELECT id, number FROM complaints")).all())

    _run(service_data, unapproved_settings_for)

    with service_data.engine.connect() as conn:
        notices = conn.execute(select(Notice).where(Notice.template == "reward_penalty_notice"))
        letters = {n.recipient_address: n.body_text for n in notices}
    technician, lead = letters["technician@sh.example"], letters["team_lead@sh.example"]
    assert "经核实的投诉；同一问题曾报修的加倍" in technician  # the policy's zh-CN title
    assert f"投诉2项：{numbers[first]}（¥100.00）、" in technician
    assert "（¥100.00×2，同一问题曾报修），合计¥300.00" in technician
    assert "2026年10月" in technician and "repeat_of_id" not in technician
    assert "Reclamación comprobada" in lead and "octubre de 2026" in lead
    assert "reclamaciones (1):" in lead and "= 100,00" in lead
    assert "sin responsable: se carga a Jefe de equipo" in lead and "responsible_staff" not in lead


def test_the_ledger_refuses_updates_and_deletes(service_data, settings_for):
    _complaint(service_data, sh(2026, 10, 5, 11, 0))
    _run(service_data, settings_for)
    for statement in ("UPDATE ledger_entries SET amount = 0", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), service_data.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(_entries(service_data.engine)) == 1


def test_a_dry_run_books_nothing(service_data, settings_for):
    _complaint(service_data, sh(2026, 10, 5, 11, 0))
    settings = settings_for(str(service_data.engine.url))
    result = run_night(settings, service_data.engine, as_of=AFTER_CLOSE, dry_run=True)
    assert result.ledger["entries_booked"] == 1 and "reports" not in result.ledger
    assert _entries(service_data.engine) == []
    with service_data.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LedgerClose)) == 0
