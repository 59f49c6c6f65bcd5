"""Work that recurs by the day, the month per plan and the year; fines added up by the week.

000 art.10-12: each technician hands in a daily work report (技术员工作日报表) each day,
reviewed by the service supervisor. 000 part 2 §2(5): customer visits are planned per
quarter and split into months (客户回访以季度为单位,分解到月). 003-15 (五): a year-end review
of the after-sales work. The branch is in Shanghai (UTC+8) on the cn-office calendar; each
night runs at 00:00 local, so a day's report is late from the first minute of the next day.
Every test runs on a real SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import HotlineCall, LedgerEntry, Notice, Target, WorkRecord
from engine.explain import explain_rule
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(*parts: int) -> datetime:
    """A Shanghai wall-clock instant, in UTC."""
    return datetime(*parts, tzinfo=SHANGHAI).astimezone(UTC)


def _nights(data, settings, *nights: datetime) -> None:
    for night in nights:
        assert run_night(settings, data.engine, as_of=night).outcome == "success"


def _work(data, kind: str, who: int, day: date, handed_in: datetime | None = None) -> None:
    data.add(
        WorkRecord, branch_id=data.branch, kind=kind, staff_id=who, done_on=day,
        submitted_at=handed_in or sh(day.year, day.month, day.day, 17, 30),
    )  # fmt: skip


def _letters(data, rule: str) -> list[str]:
    with data.engine.connect() as conn:
        return list(
            conn.scalars(
                select(Notice.recipient_address).where(Notice.dedup_key.startswith(f"{rule}|"))
            )
        )


def test_a_technician_without_a_daily_report_on_a_working_day_is_reported_the_next_day(
    service_data, midnight_settings_for
):
    technician = service_data.staff["technician"]
    settings = midnight_settings_for(str(service_data.engine.url))
    # Reports every working day of the week of 23 November and on Monday 30 November; none
    # on the weekend of 28-29 November, when the branch does not work.
    for day in (23, 24, 25, 26, 27, 30):
        _work(service_data, "daily_report", technician, date(2026, 11, day))

    # 23:59 on Tuesday 1 December: today's report may still come.
    _nights(service_data, settings, sh(2026, 12, 1, 23, 59))
    assert service_data.findings("technician-daily-report") == []

    _nights(service_data, settings, sh(2026, 12, 2, 0, 0), sh(2026, 12, 2, 0, 0))
    assert service_data.findings("technician-daily-report") == [
        (str(technician), "2026-12-01", "missing")
    ]
    assert _letters(service_data, "technician-daily-report") == ["service_supervisor@sh.example"]

    # Handed in at 09:00 the next morning: late, reported once more.
    _work(service_data, "daily_report", technician, date(2026, 12, 1), sh(2026, 12, 2, 9, 0))
    _work(service_data, "daily_report", technician, date(2026, 12, 2))
    _nights(service_data, settings, sh(2026, 12, 3, 0, 0), sh(2026, 12, 3, 0, 0))
    assert service_data.findings("technician-daily-report") == [
        (str(technician), "2026-12-01", "missing"),
        (str(technician), "2026-12-01", "late"),
    ]

    lines = dict(
        explain_rule(
            settings, service_data.engine, "technician-daily-report", str(technician),
            sh(2026, 12, 3, 0, 0),
        )
    )  # fmt: skip
    assert lines["2026-11-29"].endswith("a day off in the branch's calendar: not due")
    assert lines["2026-12-01"] == "by 2026-12-01: 1 needed, 0 on time, 1 recorded; late"


def test_customer_visits_follow_the_quarterly_plan_split_into_months(
    service_data, midnight_settings_for
):
    lead = service_data.staff["team_lead"]
    service_data.add_branch("BJ-01", "北京服务中心", "Asia/Shanghai", "cn-office", "bj")
    settings = midnight_settings_for(str(service_data.engine.url))
    # Shanghai plans 10 visits for the fourth quarter: 4 in October, 3 in November and
    # December. Beijing has no plan this quarter: it owes no visits.
    service_data.add(
        Target, branch_id=service_data.branch, staff_id=lead, period_start=date(2026, 10, 1),
        item="customer_visits", target=Decimal(10),
    )  # fmt: skip
    for day in (
        date(2026, 10, 5),
        date(2026, 10, 19),
        date(2026, 10, 26),  # 3 of 4
        date(2026, 11, 2),
        date(2026, 11, 16),
        date(2026, 11, 30),  # 3 of 3
        date(2026, 12, 7),
        date(2026, 12, 21),
    ):  # 2 of 3
        _work(service_data, "visit", lead, day)  # fmt: skip

    _nights(service_data, settings, sh(2026, 11, 1, 0, 0), sh(2026, 12, 1, 0, 0))
    _nights(service_data, settings, sh(2027, 1, 1, 0, 0))

    assert service_data.findings("monthly-customer-visits") == [
        (str(lead), "2026-10", "missing"),
        (str(lead), "2026-12", "missing"),
    ]
    with service_data.engine.connect() as conn:
        reasons = conn.scalars(
            select(Notice.subject).where(Notice.dedup_key.startswith("monthly-customer-visits|"))
        ).all()
    assert reasons  # the team lead is told
    lines = dict(
        explain_rule(settings, service_data.engine, "monthly-customer-visits", str(lead),
                     sh(2027, 1, 1, 0, 0))
    )  # fmt: skip
    assert lines["2026-11"] == "by 2026-11-30: 3 needed, 3 on time, 3 recorded; " + (
        "fulfilled or no longer checked"
    )
    assert lines["2026-12"] == "by 2026-12-31: 3 needed, 2 on time, 2 recorded; missing"
    beijing = service_data.staff["team_lead@bj"]
    lines = dict(
        explain_rule(settings, service_data.engine, "monthly-customer-visits", str(beijing),
                     sh(2027, 1, 1, 0, 0))
    )  # fmt: skip
    assert lines["2026-12"].endswith("0 needed, 0 on time, 0 recorded; none needed: not due")


def test_the_year_end_review_is_due_by_the_last_day_of_the_year(
    service_data, midnight_settings_for
):
    supervisor = service_data.staff["service_supervisor"]
    settings = midnight_settings_for(str(service_data.engine.url))
    _work(service_data, "annual_review", supervisor, date(2025, 12, 29))  # last year's, on time

    _nights(service_data, settings, sh(2026, 12, 31, 23, 0))
    assert service_data.findings("yearly-service-review") == []
    _nights(service_data, settings, sh(2027, 1, 1, 0, 0), sh(2027, 1, 2, 0, 0))

    assert service_data.findings("yearly-service-review") == [(str(supervisor), "2026", "missing")]
    assert _letters(service_data, "yearly-service-review") == ["service_manager@sh.example"]


def test_a_weekly_fine_is_booked_at_the_close_of_the_month_its_sunday_falls_in(
    service_data, settings_for, tmp_path, monkeypatch
):
    rules = tmp_path / "weekly-rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules)
    penalties = rules / "penalties.yaml"
    text = penalties.read_text("utf-8")
    weekly = text.replace("    period: month\n    charge: on_duty_staff", "    period: week\n"
                          "    charge: on_duty_staff", 1)  # fmt: skip
    assert weekly != text
    penalties.write_text(weekly, "utf-8")
    settings = settings_for(str(service_data.engine.url), rules=rules)
    operator = service_data.staff["hotline_operator"]
    # Wednesday 14 October (week 42) twice; Saturday 31 October, in the week that ends on
    # Sunday 1 November (week 44), once.
    for at in (sh(2026, 10, 14, 10, 0), sh(2026, 10, 14, 15, 0), sh(2026, 10, 31, 11, 0)):
        service_data.add(
            HotlineCall, branch_id=service_data.branch, received_at=at, answered=False,
            on_duty_staff_id=operator,
        )  # fmt: skip

    october_close = datetime(2026, 11, 10, 2, 0, tzinfo=SHANGHAI).astimezone(UTC)
    closing = run_night(settings, service_data.engine, as_of=october_close)
    assert "2026-W42" in closing.ledger["periods_closed"]
    assert "2026-W44" not in closing.ledger["periods_closed"]
    november_close = datetime(2026, 12, 10, 2, 0, tzinfo=SHANGHAI).astimezone(UTC)
    run_night(settings, service_data.engine, as_of=november_close)
    run_night(settings, service_data.engine, as_of=november_close)

    with service_data.engine.connect() as conn:
        entries = conn.execute(
            select(LedgerEntry.period, LedgerEntry.amount, LedgerEntry.party_id)
            .where(LedgerEntry.rule_id == "unanswered-hotline")
            .order_by(LedgerEntry.id)
        ).all()
    assert entries == [("2026-W42", Decimal("-100.00"), operator),
                       ("2026-W44", Decimal("-50.00"), operator)]  # fmt: skip

    monkeypatch.setenv("AFTERSALES_ARTIFACTS_DIR", str(tmp_path / "runs"))
    report = CliRunner().invoke(
        app,
        ["report", "penalties", "--db", str(service_data.engine.url), "--rules", str(rules),
         "--period", "2026-W44", "--out", str(tmp_path / "reports")],
        catch_exceptions=False,
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    assert (tmp_path / "reports" / "penalties_2026-W44.csv").exists()
    assert "50.00" in (tmp_path / "reports" / "penalties_2026-W44.csv").read_text("utf-8-sig")


def test_a_count_from_a_field_of_the_entity_is_read_per_row(
    service_data, midnight_settings_for, tmp_path
):
    # Each person's plan row (targets) of visits for its quarter: as many visits as its
    # `target` says; a row planning 0 owes nothing.
    rules = tmp_path / "field-count-rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules)
    (rules / "obligations.yaml").write_text(
        """\
obligations:
  - id: planned-visits
    title: Each person makes the visits their plan row sets for its quarter
    entity: targets
    when: item == 'visit_quota'
    active: [period_start, period_start]
    partial_periods: due                 # the plan's quarter is the one it starts in
    every: quarter
    record:
      entity: work_records
      link: staff_id = staff_id
      when: kind == 'visit'
      at: done_on
    count: target
    due: 0 days after
    notice: obligation_notice
    notify: [team_lead]
""",
        "utf-8",
    )
    settings = midnight_settings_for(str(service_data.engine.url), rules=rules)
    lead, technician = service_data.staff["team_lead"], service_data.staff["technician"]
    plans = {
        who: service_data.add(
            Target,
            branch_id=service_data.branch,
            staff_id=who,
            period_start=date(2026, 10, 1),
            item="visit_quota",
            target=Decimal(planned),
        )
        for who, planned in ((lead, 2), (technician, 0))
    }
    _work(service_data, "visit", lead, date(2026, 11, 3))

    _nights(service_data, settings, sh(2027, 1, 1, 0, 0))

    assert service_data.findings("planned-visits") == [(str(plans[lead]), "2026-Q4", "missing")]
