"""002 (六), (八): each complaint's handling deadline, the 催办单 repeated while the case stays
open past it, the 洽办单 for a case closed late; 003-6 1.3.3: repairs waiting for parts or the
factory, with the new expected date told to the customer and regular follow-ups."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Complaint, Notice, ServiceRequest, Staff
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(*args: int) -> datetime:
    """An instant given in Shanghai wall-clock time."""
    return datetime(*args, tzinfo=SHANGHAI)


def _letters(engine, rule: str) -> list[Notice]:
    with Session(engine) as session:
        query = select(Notice).where(Notice.finding_key.like(f"{rule}|%")).order_by(Notice.id)
        return list(session.scalars(query))


def _nights(data, settings_for, first: datetime, last: datetime) -> None:
    """A run every morning at 11:00 from `first` to `last`, weekends included."""
    settings = settings_for(str(data.engine.url))
    at = first
    while at <= last:
        assert run_night(settings, data.engine, as_of=at).outcome == "success"
        at += timedelta(days=1)


@pytest.mark.slow
def test_a_complaint_overdue_five_working_days_is_urged_every_two_and_no_more_once_closed(
    service_data, settings_for
):
    li = service_data.customer("Li Wei", locale="zh-CN")
    complaint = service_data.complaint(
        li,
        sh(2026, 11, 16, 10, 0),
        number="CP-URGE",
        first_reply_at=sh(2026, 11, 16, 15, 0),  # replied in time: the reply clock is quiet
        status="replied",
        handling_due_at=sh(2026, 11, 18, 10, 0),  # set case by case on acceptance
    )
    # Past the deadline on Wednesday 18th; five working days later is Wednesday 25th. The 催办单
    # goes at the breach and every 2 working days: Friday 20th, Tuesday 24th.
    _nights(service_data, settings_for, sh(2026, 11, 17, 11, 0), sh(2026, 11, 25, 11, 0))
    urges = [n for n in _letters(service_data.engine, "complaint-handling")
             if n.template == "urge_notice"]  # fmt: skip
    assert [n.finding_key.rsplit("|", 1)[1] for n in urges] == [
        "breach",
        "breach:repeat-1",
        "breach:repeat-2",
    ]
    assert {n.recipient_address for n in urges} == {"responsible_department@sh.example"}
    assert urges[0].subject == "催办单：投诉 CP-URGE 已超过处理期限"
    assert urges[2].subject == "催办单（第3次）：投诉 CP-URGE 已超过处理期限"
    assert "处理期限：2026" in urges[2].body_text and "第3次催办" in urges[2].body_text
    assert "客户部" in urges[2].body_text

    # Closed Wednesday afternoon, past the deadline: no urge after it, one 洽办单.
    with service_data.engine.begin() as conn:
        conn.execute(
            update(Complaint)
            .where(Complaint.id == complaint)
            .values(closed_at=sh(2026, 11, 25, 15, 0), status="closed")
        )
    _nights(service_data, settings_for, sh(2026, 11, 26, 11, 0), sh(2026, 12, 2, 11, 0))
    letters = _letters(service_data.engine, "complaint-handling")
    assert [n.template for n in letters].count("urge_notice") == 3
    (inquiry,) = [n for n in letters if n.template == "inquiry_notice"]
    assert inquiry.recipient_address == "responsible_department@sh.example"
    assert inquiry.subject == "洽办单：投诉 CP-URGE 结案超过处理期限，请说明原因"
    assert "结案，超过了处理期限" in inquiry.body_text


def test_a_complaint_closed_late_between_two_nights_gets_one_inquiry_and_no_urge(
    service_data, settings_for
):
    ana = service_data.customer("Ana Ruiz", locale="es")
    service_data.complaint(
        ana,
        sh(2026, 11, 16, 10, 0),
        kind="claim",
        first_reply_at=sh(2026, 11, 16, 12, 0),
        closed_at=sh(2026, 11, 19, 16, 0),
        status="closed",
        handling_due_at=sh(2026, 11, 18, 18, 0),
    )
    _nights(service_data, settings_for, sh(2026, 11, 20, 11, 0), sh(2026, 11, 23, 11, 0))
    letters = _letters(service_data.engine, "complaint-handling")
    assert [(n.template, n.finding_key.rsplit("|", 1)[1]) for n in letters] == [
        ("inquiry_notice", "late_stop")
    ]


def test_the_urge_notice_in_spanish_speaks_of_the_handling_deadline_without_codes(
    service_data, settings_for
):
    madrid = service_data.add_branch("ES-MAD", "Madrid", "Europe/Madrid", "es-madrid", "mad")
    ana = service_data.customer("Ana García", locale="es")
    madrid_time = ZoneInfo("Europe/Madrid")
    service_data.complaint(
        ana,
        datetime(2026, 11, 16, 10, 0, tzinfo=madrid_time),
        branch_id=madrid,
        kind="claim",
        number="CP-MAD",
        first_reply_at=datetime(2026, 11, 16, 12, 0, tzinfo=madrid_time),
        status="replied",
        handling_due_at=datetime(2026, 11, 18, 10, 0, tzinfo=madrid_time),
    )
    with service_data.engine.begin() as conn:
        conn.execute(update(Staff).where(Staff.branch_id == madrid).values(locale="es"))
    _nights(service_data, settings_for, sh(2026, 11, 19, 18, 0), sh(2026, 11, 19, 18, 0))
    (urge,) = [n for n in _letters(service_data.engine, "complaint-handling")
               if n.template == "urge_notice"]  # fmt: skip
    assert urge.subject.startswith("Requerimiento de tramitación urgente: la reclamación CP-MAD")
    assert "(solicitud de indemnización)" in urge.body_text
    assert "plazo de tramitación" in urge.body_text
    assert "(claim)" not in urge.body_text


def test_a_complaint_accepted_without_a_handling_deadline_runs_on_ten_working_days(
    service_data, settings_for
):
    li = service_data.customer("Li Wei", locale="zh-CN")
    service_data.complaint(
        li, sh(2026, 11, 2, 10, 0), first_reply_at=sh(2026, 11, 2, 12, 0), status="replied"
    )
    _nights(service_data, settings_for, sh(2026, 11, 16, 11, 0), sh(2026, 11, 16, 11, 0))
    letters = _letters(service_data.engine, "complaint-handling-default")
    # Ten working days from Monday 2nd is Monday 16th 10:00.
    assert [(n.template, n.finding_key.rsplit("|", 1)[1]) for n in letters] == [
        ("urge_notice", "breach")
    ]
    assert "受理时未确定处理期限" in letters[0].body_text
    assert _letters(service_data.engine, "complaint-handling") == []


def test_explain_shows_the_urges_sent_and_the_next_one(service_data, settings_for):
    li = service_data.customer("Li Wei", locale="zh-CN")
    complaint = service_data.complaint(
        li,
        sh(2026, 11, 16, 10, 0),
        first_reply_at=sh(2026, 11, 16, 15, 0),
        status="replied",
        handling_due_at=sh(2026, 11, 18, 10, 0),
    )
    url = service_data.engine.url.render_as_string(hide_password=False)
    as_of = sh(2026, 11, 24, 11, 0)
    run_night(settings_for(url), service_data.engine, as_of=as_of)
    result = CliRunner().invoke(
        app,
        [
            "explain",
            "complaint-handling",
            str(complaint),
            "--db",
            url,
            "--as-of",
            as_of.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "target by handling_due_at" in text
    assert "deadline 2026-11-18 10:00 Wed" in text
    assert (
        "breach repeats every 2 working days: 2 done, the last 2026-11-24 10:00 Tue; "
        "next 2026-11-26 10:00 Thu"
    ) in text
    assert "state breach, breach:repeat-2" in text


def test_a_parts_repair_letter_gives_the_customer_the_new_date_not_the_old_deadline(
    service_data, settings_for
):
    ada = service_data.customer("Ada Wong")
    received = sh(2026, 11, 16, 10, 0)  # 7 working days: Wednesday 25th; warned Monday 23rd
    call = service_data.request(
        ada, received, number="SR-PARTS", needs_parts=True, status="waiting_parts",
        arrived_at=received,
    )  # fmt: skip
    with service_data.engine.begin() as conn:
        conn.execute(
            update(ServiceRequest)
            .where(ServiceRequest.id == call)
            .values(expected_at=sh(2026, 12, 4, 18, 0))
        )
    _nights(service_data, settings_for, sh(2026, 11, 23, 11, 0), sh(2026, 11, 23, 11, 0))
    letters = _letters(service_data.engine, "repair-with-parts")
    assert sorted(n.recipient_address for n in letters) == [
        "ada.wong@example.com",
        "service_manager@sh.example",  # the department, told before the limit
    ]
    (letter,) = [n for n in letters if n.recipient_address == "ada.wong@example.com"]
    assert letter.subject == "Your repair SR-PARTS: now expected by December 4, 2026"
    assert "we now expect to finish it by December 4, 2026" in letter.body_text
    assert "November 25" not in letter.body_text  # the original deadline, now past


@pytest.mark.slow
def test_after_the_parts_limit_the_customer_keeps_hearing_every_three_working_days(
    service_data, settings_for
):
    ada = service_data.customer("Ada Wong")
    received = sh(2026, 11, 16, 10, 0)
    service_data.request(
        ada, received, needs_parts=True, status="waiting_parts", arrived_at=received
    )
    # Warned Monday 23rd, breach Wednesday 25th, repeats Monday 30th and Thursday 3rd.
    _nights(service_data, settings_for, sh(2026, 11, 24, 11, 0), sh(2026, 12, 3, 11, 0))
    to_customer = [n for n in _letters(service_data.engine, "repair-with-parts")
                   if n.recipient_address == "ada.wong@example.com"]  # fmt: skip
    assert [n.finding_key.rsplit("|", 1)[1] for n in to_customer] == [
        "warning",
        "breach",
        "breach:repeat-1",
        "breach:repeat-2",
    ]
    assert all(n.template == "repair_delay" for n in to_customer)
    assert "will write to you again with the completion date" in to_customer[-1].body_text


@pytest.mark.slow
def test_a_factory_return_is_followed_up_every_three_working_days(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    received = sh(2026, 11, 2, 10, 0)  # day 5 is Monday 9th, the deadline (day 15) the 23rd
    service_data.request(
        ada, received, needs_parts=True, factory_return=True, status="factory_return"
    )
    _nights(service_data, settings_for, sh(2026, 11, 6, 11, 0), sh(2026, 11, 24, 11, 0))
    letters = _letters(service_data.engine, "factory-return")
    lead = [n.finding_key.rsplit("|", 1)[1] for n in letters
            if n.recipient_address == "team_lead@sh.example"]  # fmt: skip
    # Days 5, 8, 11 and 14, then the breach on day 15.
    assert lead == [
        "warning",
        "warning:repeat-1",
        "warning:repeat-2",
        "warning:repeat-3",
        "breach",
    ]
    customer = [n for n in letters if n.recipient_address == "ada.wong@example.com"]
    assert len(customer) == 5 and all(n.template == "repair_delay" for n in customer)
    assert [n.template for n in letters if n.recipient_address == "service_manager@sh.example"] == [
        "escalation"
    ]
