"""Seed rows 2-6 and 10-11: timers on repair calls and complaints, in working time."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from engine.cli import app
from engine.db.demo import load_demo
from engine.db.models import Complaint, Finding, Notice
from engine.rules import deadline as family
from engine.run import load_checked_policy, run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")
MADRID = ZoneInfo("Europe/Madrid")


def sh(*args: int) -> datetime:
    """An instant given in Shanghai wall-clock time."""
    return datetime(*args, tzinfo=SHANGHAI)


def _states(result, rule: str) -> list[tuple[str, str]]:
    """The states a night recorded for the first time, with when each was reached."""
    return [(f["state"], f["due_at"]) for f in result.findings if f["rule"] == rule and f["new"]]


def _night(data, settings_for, as_of: datetime):
    return run_night(settings_for(str(data.engine.url)), data.engine, as_of=as_of)


def utc(at: datetime) -> str:
    return at.astimezone(ZoneInfo("UTC")).isoformat()


def test_urban_call_due_after_national_day(service_data, settings_for):
    # Wednesday 2026-09-30 16:00: 2 working hours that day, 1-7 October closed, 4 hours on the 8th.
    ada = service_data.customer("Ada Wong")
    service_data.request(ada, sh(2026, 9, 30, 16, 0))
    deadline = sh(2026, 10, 8, 14, 0)

    warned = _night(service_data, settings_for, sh(2026, 10, 8, 12, 30))
    # 80% of 6 hours is 4h48: 2 hours on the 30th, then 09:00 + 2h48 on the 8th.
    assert _states(warned, "dispatch-urban") == [("warning", utc(sh(2026, 10, 8, 11, 48)))]
    breached = _night(service_data, settings_for, sh(2026, 10, 8, 14, 30))
    assert _states(breached, "dispatch-urban") == [("breach", utc(deadline))]
    finding = next(f for f in breached.findings if f["rule"] == "dispatch-urban")
    assert "deadline 2026-10-08 14:00" in finding["reason"]
    escalated = _night(service_data, settings_for, sh(2026, 10, 8, 16, 30))
    assert _states(escalated, "dispatch-urban") == [("escalation:1", utc(sh(2026, 10, 8, 16, 0)))]


def test_make_up_saturday_starts_the_clock_at_once(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    service_data.request(ada, sh(2026, 10, 10, 10, 0))  # Saturday, a make-up working day
    result = _night(service_data, settings_for, sh(2026, 10, 10, 17, 0))
    assert _states(result, "dispatch-urban") == [("breach", utc(sh(2026, 10, 10, 17, 0)))]


def test_suburban_call_gets_seven_hours(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    service_data.request(ada, sh(2026, 11, 16, 9, 0), region="suburban")
    result = _night(service_data, settings_for, sh(2026, 11, 16, 17, 30))
    assert _states(result, "dispatch-suburban") == [("breach", utc(sh(2026, 11, 16, 17, 0)))]
    assert _states(result, "dispatch-urban") == []


def test_paused_call_deadline_moves_by_the_paused_working_time(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    call = service_data.request(ada, sh(2026, 11, 16, 9, 0))
    service_data.status(call, "received", sh(2026, 11, 16, 9, 0))
    service_data.status(call, "waiting_customer", sh(2026, 11, 16, 10, 0))
    service_data.status(call, "received", sh(2026, 11, 16, 14, 0))
    # 1 hour before the pause, 3 working hours paused (10-12, 13-14), 4 hours after it to
    # 18:00, the last hour on Tuesday: the deadline moves from 16:00 Monday to 10:00 Tuesday.
    result = _night(service_data, settings_for, sh(2026, 11, 17, 10, 30))
    assert _states(result, "dispatch-urban") == [("breach", utc(sh(2026, 11, 17, 10, 0)))]
    reason = next(f["reason"] for f in result.findings if f["rule"] == "dispatch-urban")
    assert "paused 3h" in reason


def test_madrid_branch_across_the_end_of_summer_time(service_data, settings_for):
    madrid = service_data.add_branch("ES-MAD", "Madrid", "Europe/Madrid", "es-madrid", "mad")
    ana = service_data.customer("Ana García", locale="es")
    # Friday 2026-10-23 17:00 CEST: 2 hours that day (to 19:00); clocks go back on Sunday the
    # 25th; 4 hours on Monday from 09:00 CET: due 13:00 CET, which is 12:00 UTC.
    service_data.request(ana, datetime(2026, 10, 23, 17, 0, tzinfo=MADRID), branch_id=madrid)
    result = _night(service_data, settings_for, datetime(2026, 10, 26, 13, 30, tzinfo=MADRID))
    assert _states(result, "dispatch-urban") == [("breach", "2026-10-26T12:00:00+00:00")]


def test_each_state_fires_once_however_many_nights(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    service_data.request(ada, sh(2026, 11, 16, 9, 0))
    # Warning at 14:48, breach at 16:00, escalation two working hours later at 18:00.
    nights = [sh(2026, 11, 16, 14, 0), sh(2026, 11, 16, 15, 30), sh(2026, 11, 16, 15, 30)]
    nights += [sh(2026, 11, 16, 16, 30), sh(2026, 11, 16, 18, 30), sh(2026, 11, 17, 9, 30)]
    for as_of in nights:
        _night(service_data, settings_for, as_of)
    with service_data.engine.connect() as conn:
        states = conn.execute(
            select(Finding.state).where(Finding.rule_id == "dispatch-urban").order_by(Finding.id)
        ).scalars()
        assert list(states) == ["warning", "breach", "escalation:1"]
    with Session(service_data.engine) as session:
        notices = session.scalars(select(Notice).where(Notice.finding_key.like("dispatch-urban|%")))
        assert sorted(n.recipient_address for n in notices) == [
            "service_manager@sh.example",
            "service_supervisor@sh.example",
            "team_lead@sh.example",
        ]


def test_complaint_without_a_reply_in_24_hours_goes_to_the_department_and_its_manager(
    service_data, settings_for
):
    li = service_data.customer("Li Wei", locale="zh-CN")
    complaint = service_data.complaint(li, sh(2026, 11, 20, 10, 0))
    late = _night(service_data, settings_for, sh(2026, 11, 21, 11, 0))
    assert _states(late, "complaint-first-reply") == [("breach", utc(sh(2026, 11, 21, 10, 0)))]

    with service_data.engine.begin() as conn:
        conn.execute(
            update(Complaint)
            .where(Complaint.id == complaint)
            .values(first_reply_at=sh(2026, 11, 21, 12, 0), status="replied")
        )
    replied = _night(service_data, settings_for, sh(2026, 11, 22, 9, 0))
    assert _states(replied, "complaint-first-reply") == [
        ("late_stop", utc(sh(2026, 11, 21, 12, 0)))
    ]
    again = _night(service_data, settings_for, sh(2026, 11, 23, 9, 0))
    assert [f for f in again.findings if f["rule"] == "complaint-first-reply" and f["new"]] == []

    with Session(service_data.engine) as session:
        notices = list(
            session.scalars(
                select(Notice)
                .where(Notice.finding_key.like("complaint-first-reply|%"))
                .order_by(Notice.id)
            )
        )
    # The 催办单 and 洽办单 belong to the handling deadline (test_complaint_handling.py): a
    # late first reply is escalated at once, and the late reply itself is only recorded.
    assert [(n.template, n.recipient_address) for n in notices] == [
        ("escalation", "responsible_department@sh.example"),
        ("escalation", "service_manager@sh.example"),
    ]
    assert notices[0].subject.startswith("【超时】")


def test_complaint_answered_late_before_any_night_is_recorded_late(service_data, settings_for):
    li = service_data.customer("Li Wei", locale="zh-CN")
    service_data.complaint(
        li, sh(2026, 11, 20, 10, 0), first_reply_at=sh(2026, 11, 21, 16, 0), status="replied"
    )
    result = _night(service_data, settings_for, sh(2026, 11, 22, 9, 0))
    assert [s for s, _ in _states(result, "complaint-first-reply")] == ["late_stop"]


@pytest.mark.parametrize(
    ("received", "as_of", "expected"),
    [
        # Received Monday 10:00 with parts needed: 7 working days is Wednesday 10:00 next week;
        # the customer is told at 5 working days (Monday 10:00).
        (sh(2026, 11, 16, 10, 0), sh(2026, 11, 23, 11, 0), ("warning", sh(2026, 11, 23, 10, 0))),
        (sh(2026, 11, 16, 10, 0), sh(2026, 11, 25, 11, 0), ("breach", sh(2026, 11, 25, 10, 0))),
    ],
)
def test_repair_waiting_for_parts_has_seven_working_days(
    service_data, settings_for, received, as_of, expected
):
    ada = service_data.customer("Ada Wong")
    service_data.request(
        ada,
        received,
        needs_parts=True,
        status="waiting_parts",
        arrived_at=received + timedelta(hours=2),
    )
    result = _night(service_data, settings_for, as_of)
    state, at = expected
    assert _states(result, "repair-with-parts") == [(state, utc(at))]
    (finding,) = [f for f in result.findings if f["rule"] == "repair-with-parts"]
    # The service department is told ahead of the limit and after it, the customer both times.
    assert finding["recipients"] == ["service_manager", "customer"]


def test_explain_shows_the_timeline_of_a_breached_call(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    call = service_data.request(ada, sh(2026, 9, 30, 16, 0), number="SR-0930")
    url = service_data.engine.url.render_as_string(hide_password=False)
    as_of = sh(2026, 10, 8, 14, 30)
    run_night(settings_for(url), service_data.engine, as_of=as_of)
    result = CliRunner().invoke(
        app, ["explain", "dispatch-urban", str(call), "--db", url, "--as-of", as_of.isoformat()]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "calendar cn-office (Asia/Shanghai)" in text
    assert "start (received_at) 2026-09-30 16:00 Wed" in text
    assert "warning at 2026-10-08 11:48 Thu (80%)" in text
    assert "deadline 2026-10-08 14:00 Thu" in text
    assert "escalation 1 2026-10-08 16:00 Thu" in text
    assert "working time 6h30 used, none left" in text
    assert "skipped 2026-10-01 Thu: public holiday: National Day" in text
    assert "skipped 2026-10-04 Sun: weekend" in text
    assert "yes region == 'urban'" in text
    assert "state breach" in text
    assert "notice service_supervisor <service_supervisor@sh.example>: pending" in text


def test_policy_change_rederives_running_clocks_and_keeps_recorded_verdicts(
    service_data, settings_for, tmp_path
):
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules)
    ada = service_data.customer("Ada Wong")
    early = service_data.request(ada, sh(2026, 11, 16, 9, 0))
    later = service_data.request(ada, sh(2026, 11, 16, 10, 0))
    url = str(service_data.engine.url)

    six_hours = run_night(
        settings_for(url, rules=rules), service_data.engine, as_of=sh(2026, 11, 16, 16, 30)
    )
    assert _states(six_hours, "dispatch-urban") == [
        ("breach", utc(sh(2026, 11, 16, 16, 0))),  # the early call
        ("warning", utc(sh(2026, 11, 16, 15, 48))),  # the later call
    ]
    sla = rules / "sla.yaml"
    sla.write_text(sla.read_text().replace("within: 6 working hours", "within: 8 working hours", 1))

    eight_hours = run_night(
        settings_for(url, rules=rules), service_data.engine, as_of=sh(2026, 11, 16, 17, 30)
    )
    # Re-derived: under 8 hours the early call runs out at 18:00, so it is only warned now.
    new = [
        (f["entity_id"], f["state"]) for f in eight_hours.findings if f["rule"] == "dispatch-urban"
    ]
    assert new == [(str(early), "warning")]
    with service_data.engine.connect() as conn:
        recorded = conn.execute(
            select(Finding.entity_id, Finding.state, Finding.policy_hash, Finding.closed_at)
            .where(Finding.rule_id == "dispatch-urban")
            .order_by(Finding.id)
        ).all()
    # The breach recorded under the first version stays, with that version's hash, closed
    # since it no longer holds. Under 6 hours the later call would have breached at 17:00;
    # under 8 it is due Tuesday 10:00, still warned.
    assert [(e, s, closed is None) for e, s, _, closed in recorded] == [
        (str(early), "breach", False),
        (str(later), "warning", True),
        (str(early), "warning", True),
    ]
    assert recorded[0].policy_hash != recorded[2].policy_hash


def test_wall_clock_deadline_stays_wall_clock_with_a_working_time_escalation(
    service_data, settings_for, tmp_path
):
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules)
    sla = rules / "sla.yaml"
    sla.write_text(
        sla.read_text().replace(
            "service_manager]\n      urgent: true\n",
            "service_manager]\n      urgent: true\n"
            "    escalate:\n"
            "      - {after: 2 working hours, notice: escalation, notify: [service_manager]}\n",
        )
    )
    li = service_data.customer("Li Wei", locale="zh-CN")
    service_data.complaint(li, sh(2026, 11, 20, 16, 0))  # Friday afternoon
    url = str(service_data.engine.url)
    result = run_night(
        settings_for(url, rules=rules), service_data.engine, as_of=sh(2026, 11, 23, 12, 0)
    )
    # 24 hours is Saturday 16:00 whatever the calendar; two working hours after that, counted
    # on the office calendar, is Monday 11:00.
    assert _states(result, "complaint-first-reply") == [
        ("breach", utc(sh(2026, 11, 21, 16, 0))),
        ("escalation:1", utc(sh(2026, 11, 23, 11, 0))),
    ]


@pytest.mark.parametrize("hours", [-72, 0, 5, 30])
def test_sifting_candidates_in_sql_leaves_out_no_finding(db, settings_for, monkeypatch, hours):
    """Candidates whose start, stop and deadline field alone show they cannot have reached a
    state are left out in SQL; judging every candidate instead finds exactly the same states,
    at as_of before and after the demo's instant (then some calls stop after as_of and must
    count as running)."""
    demo_at = datetime(2026, 11, 23, 18, 0, tzinfo=ZoneInfo("UTC"))
    load_demo(db, demo_at)
    as_of = demo_at + timedelta(hours=hours)
    policy, _ = load_checked_policy(settings_for(str(db.url)))
    rules = policy.by_family()["deadline"]

    def judged(conn) -> tuple[set[str], int]:
        keys, rows = set(), 0
        for rule in rules:
            keys |= {f.key for f in family.judge(conn, rule, policy.calendars, as_of)[0]}
            rows += len(conn.execute(family.candidates(rule, as_of)).all())
        return keys, rows

    with db.connect() as conn:
        sifted, fewer = judged(conn)
        monkeypatch.setattr(family, "candidates", partial(family.candidates, sift=False))
        every, more = judged(conn)
    assert sifted == every
    assert len(every) > 20, "the demo should give this test states to compare"
    assert fewer < more * 0.8, f"sifting left {fewer} of {more} candidates"
