"""002 (七)2 and 000 part 2 §5 as the shipped policy reads them: the 奖罚通知单 goes out only
after the general manager approves it, payroll is copied only then, the fines (乐捐) apply to
the Chinese branches only, and every amount is in its branch's currency.

Every test runs on a real SQLite file and on PostgreSQL. October closes at 00:00 Shanghai time
on 10 November.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import (
    Finding,
    HotlineCall,
    Improvement,
    LedgerApproval,
    LedgerEntry,
    Notice,
    Staff,
)
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")
MADRID = ZoneInfo("Europe/Madrid")
AFTER_CLOSE = datetime(2026, 11, 10, 2, 0, tzinfo=SHANGHAI)
runner = CliRunner()


def _run(data, settings_for, as_of: datetime):
    result = run_night(settings_for(str(data.engine.url)), data.engine, as_of=as_of.astimezone(UTC))
    assert result.outcome == "success", [r.error for r in result.rules if r.error]
    return result


def _approve(data, *args: str):
    return runner.invoke(app, ["approve", *args, "--db", str(data.engine.url)])


def _letters(data, template: str) -> list[Notice]:
    with data.engine.connect() as conn:
        return list(conn.execute(select(Notice).where(Notice.template == template)))


def _offices(data) -> None:
    for role in ("accounting", "payroll", "general_manager"):
        data.add(
            Staff, branch_id=None, name=role.title(), email=f"{role}@hq.example", role=role,
            locale="zh-CN",
        )  # fmt: skip


def _complaint(data, closed_at: datetime, **values):
    customer = data.customer(f"Customer {closed_at:%d%H%M}")
    values = {"responsible_staff_id": data.staff["technician"], **values}
    return data.complaint(
        customer, closed_at - timedelta(days=2), status="closed", verified=True,
        closed_at=closed_at, first_reply_at=closed_at - timedelta(days=1), **values,
    )  # fmt: skip


def test_the_notice_and_its_copies_wait_for_the_general_managers_approval(
    service_data, focused_settings_for, tmp_path
):
    _offices(service_data)
    complaint = _complaint(service_data, datetime(2026, 10, 5, 11, 0, tzinfo=SHANGHAI))

    closing = _run(service_data, focused_settings_for, AFTER_CLOSE)

    # Booked at the close, but nobody is told yet: not the technician, not payroll.
    assert closing.ledger["entries_booked"] == 1
    assert _letters(service_data, "reward_penalty_notice") == []
    (ask,) = _letters(service_data, "approval_request")
    assert ask.recipient_address == "general_manager@hq.example"
    assert "aftersales approve 2026-10 --branch SH-01" in ask.body_text
    (waits,) = closing.ledger["awaiting_approval"]
    assert (waits["period"], waits["branch"], waits["entries"]) == ("2026-10", "SH-01", 1)
    meanwhile = _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(minutes=30))
    assert meanwhile.ledger["awaiting_approval"] == closing.ledger["awaiting_approval"]
    assert _letters(service_data, "reward_penalty_notice") == []
    status = runner.invoke(app, ["status", "--db", str(service_data.engine.url)])
    assert "awaiting approval: 2026-10 SH-01, 1 entries" in status.stdout
    rules = str(focused_settings_for("sqlite://").rules)
    explained = runner.invoke(
        app,
        ["explain", "verified-complaint", str(complaint), "--db", str(service_data.engine.url),
         "--rules", rules, "--as-of", "2026-11-10T03:00:00+08:00"],
    )  # fmt: skip
    assert "notices wait for general_manager (aftersales approve 2026-10" in explained.stdout
    report = runner.invoke(
        app,
        ["report", "penalties", "--period", "2026-10", "--db", str(service_data.engine.url),
         "--rules", rules, "--out", str(tmp_path / "reports")],
    )  # fmt: skip
    assert "awaiting approval: 2026-10 SH-01" in report.stdout

    # Not closed, malformed, approved: clear errors with design.md's exit codes.
    assert _approve(service_data, "2026-11", "--by", "王总").exit_code == 1
    assert _approve(service_data, "2026-13", "--by", "王总").exit_code == 2
    approved = _approve(service_data, "2026-10", "--by", "王总")
    assert approved.exit_code == 0, approved.output
    again = _approve(service_data, "2026-10", "--by", "王总")
    assert again.exit_code == 1 and "already approved (by 王总" in again.output
    with service_data.engine.connect() as conn:
        (record,) = conn.execute(select(LedgerApproval))
    assert record.approved_by == "王总" and record.run_id == closing.run_id

    released = _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(hours=1))
    _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(hours=2))

    assert released.ledger["entries_released"] == 1
    assert released.ledger["awaiting_approval"] == []
    letters = _letters(service_data, "reward_penalty_notice")
    assert sorted(n.recipient_address for n in letters) == [
        "accounting@hq.example",
        "payroll@hq.example",
        "technician@sh.example",
    ]
    assert {n.run_id for n in letters} == {released.run_id}
    mine = next(n for n in letters if n.recipient_address == "technician@sh.example")
    assert "乐捐" in mine.body_text and "绩效奖金" in mine.body_text and "王总" in mine.body_text
    assert "工资中扣除，" not in mine.body_text and "7 日" not in mine.body_text
    payroll = next(n for n in letters if n.recipient_address == "payroll@hq.example")
    assert "罚扣部门罚扣奖金" in payroll.body_text


def test_a_correction_after_the_approval_waits_for_its_own(service_data, focused_settings_for):
    _complaint(service_data, datetime(2026, 10, 5, 11, 0, tzinfo=SHANGHAI))
    _run(service_data, focused_settings_for, AFTER_CLOSE)
    assert _approve(service_data, "2026-10", "--by", "王总").exit_code == 0
    _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(hours=1))
    _complaint(service_data, datetime(2026, 10, 20, 11, 0, tzinfo=SHANGHAI))

    later = _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(days=1))

    (waits,) = later.ledger["awaiting_approval"]
    assert (waits["period"], waits["entries"]) == ("2026-10", 1)
    technician = [
        n
        for n in _letters(service_data, "reward_penalty_notice")
        if n.recipient_address == "technician@sh.example"
    ]
    assert len(technician) == 1  # the first notice only; the correction waits
    assert _approve(service_data, "2026-10", "--by", "王总").exit_code == 0
    _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(days=1, hours=1))
    assert len(_letters(service_data, "reward_penalty_notice")) == 2


def test_head_office_is_approved_on_its_own(service_data, focused_settings_for):
    """A head-office person's entries wait apart; approving them leaves the branches waiting."""
    _offices(service_data)
    chief = service_data.add(
        Staff, branch_id=None, name="Chief engineer", email="chief@hq.example",
        role="technician", locale="zh-CN",
    )  # fmt: skip
    _complaint(service_data, datetime(2026, 10, 5, 11, 0, tzinfo=SHANGHAI))
    _complaint(service_data, datetime(2026, 10, 6, 11, 0, tzinfo=SHANGHAI),
               responsible_staff_id=chief)  # fmt: skip
    _run(service_data, focused_settings_for, AFTER_CLOSE)
    asks = {n.body_text for n in _letters(service_data, "approval_request")}
    assert any("aftersales approve 2026-10 --branch HQ" in text for text in asks)

    approved = _approve(service_data, "2026-10", "--branch", "HQ", "--by", "王总")

    assert approved.exit_code == 0 and "approved 2026-10 HQ" in approved.output
    later = _run(service_data, focused_settings_for, AFTER_CLOSE + timedelta(hours=1))
    assert [w["branch"] for w in later.ledger["awaiting_approval"]] == ["SH-01"]


def test_madrid_is_not_fined_and_its_reward_is_in_euros(service_data, focused_settings_for):
    madrid = service_data.add_branch("MAD-01", "Madrid", "Europe/Madrid", "es-madrid", "mad")
    for branch, mail, zone in ((service_data.branch, "sh", SHANGHAI), (madrid, "mad", MADRID)):
        service_data.add(
            HotlineCall, branch_id=branch, received_at=datetime(2026, 10, 14, 10, 0, tzinfo=zone),
            answered=False, on_duty_staff_id=service_data.staff[f"hotline_operator@{mail}"],
        )  # fmt: skip
        service_data.add(
            Improvement, branch_id=branch, staff_id=service_data.staff[f"technician@{mail}"],
            title="Spare-part booking", proposed_on=date(2026, 10, 1), effective=True,
            approved_at=datetime(2026, 10, 20, 10, 0, tzinfo=zone), reward_amount=200,
        )  # fmt: skip

    _run(service_data, focused_settings_for, AFTER_CLOSE)

    with service_data.engine.connect() as conn:
        entries = conn.execute(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    booked = {(e.branch_id, e.rule_id): (e.amount, e.currency) for e in entries}
    assert booked == {
        (service_data.branch, "unanswered-hotline"): (-50, "CNY"),
        (service_data.branch, "effective-improvement"): (200, "CNY"),
        (madrid, "effective-improvement"): (200, "EUR"),
    }


def test_a_rule_limited_to_china_does_not_judge_a_madrid_call(
    service_data, focused_settings_for, tmp_path
):
    rules = tmp_path / "cn-rules"
    shutil.copytree(focused_settings_for("sqlite://").rules, rules)
    sla = rules / "sla.yaml"
    text = sla.read_text("utf-8")
    scoped = re.sub(
        r"(  - id: dispatch-urban\n)", r"\1    branches: {country: [CN]}\n", text, count=1
    )
    assert scoped != text
    sla.write_text(scoped, "utf-8")
    madrid = service_data.add_branch("MAD-01", "Madrid", "Europe/Madrid", "es-madrid", "mad")
    ana = service_data.customer("Ana García", locale="es")
    ada = service_data.customer("Ada Wong")
    in_madrid = service_data.request(
        ana, datetime(2026, 11, 16, 9, 0, tzinfo=MADRID), branch_id=madrid
    )
    in_shanghai = service_data.request(ada, datetime(2026, 11, 16, 9, 0, tzinfo=SHANGHAI))

    def settings(url: str, **overrides):
        return focused_settings_for(url, rules=rules, **overrides)

    _run(service_data, settings, datetime(2026, 11, 18, 12, 0, tzinfo=MADRID))

    with service_data.engine.connect() as conn:
        judged = set(
            conn.scalars(select(Finding.entity_id).where(Finding.rule_id == "dispatch-urban"))
        )
    assert judged == {str(in_shanghai)} and str(in_madrid) not in judged
    explained = runner.invoke(
        app,
        ["explain", "dispatch-urban", str(in_madrid), "--db", str(service_data.engine.url),
         "--rules", str(rules), "--as-of", "2026-11-18T12:00:00+01:00"],
    )  # fmt: skip
    assert "MAD-01 (ES) is NOT in scope" in explained.stdout
