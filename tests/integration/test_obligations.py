"""Seed rows 19 and 000 part 2 §1-§2: work that must recur, or be done by a day, reported once.

The shipped policy (rules/obligations.yaml) asks for one inspection report a month per
system in its maintenance period (free maintenance included), handed in by the 5th day after
the month, part months included; the customer visits of the team's quarterly plan split into
months, and one optimisation report a month per team; and a project's handover in writing
within two weeks after final acceptance. The branch is in Shanghai (UTC+8).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from engine.db.models import Inspection, Notice, Target, WorkRecord
from engine.run import run_night

# 02:00 in Shanghai on 2026-11-06: October's reports were due by the end of 5 November.
AFTER_DUE = datetime(2026, 11, 5, 18, 0, tzinfo=UTC)


def _nights(data, settings_for, *nights: datetime) -> None:
    settings = settings_for(str(data.engine.url))
    for night in nights:
        assert run_night(settings, data.engine, as_of=night).outcome == "success"


def _inspection(data, contract: int, day: date, submitted: datetime | None) -> None:
    data.add(
        Inspection, branch_id=data.branch, contract_id=contract,
        technician_id=data.staff["technician"], inspected_on=day, report_submitted_at=submitted,
    )  # fmt: skip


def test_a_missing_inspection_is_found_once_on_the_day_after_it_was_due(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    silent = service_data.contract(ada, date(2027, 3, 31), starts_on=date(2026, 4, 1))
    kept = service_data.contract(ada, date(2027, 3, 30), starts_on=date(2026, 3, 31))
    for month in (9, 10):
        _inspection(
            service_data, kept, date(2026, month, 12), datetime(2026, month, 13, tzinfo=UTC)
        )
    _inspection(service_data, silent, date(2026, 9, 8), datetime(2026, 9, 9, tzinfo=UTC))

    # 10:00 on 5 November in Shanghai: the report may still come today.
    _nights(service_data, settings_for, AFTER_DUE - timedelta(hours=16))
    assert [f for f in service_data.findings("monthly-inspection") if f[1] == "2026-10"] == []

    _nights(service_data, settings_for, AFTER_DUE, AFTER_DUE, AFTER_DUE + timedelta(days=1))
    assert service_data.findings("monthly-inspection") == [(str(silent), "2026-10", "missing")]
    with service_data.engine.connect() as conn:
        letters = conn.execute(
            select(Notice.recipient_address, Notice.subject).where(
                Notice.dedup_key.startswith("monthly-inspection|")
            )
        ).all()
    assert [(a, s.split("：")[0]) for a, s in letters] == [("team_lead@sh.example", "缺失")]


def test_every_system_in_its_maintenance_period_is_due_every_month_it_is_in(
    service_data, settings_for
):
    """000 part 2 §2(3): 每月对所有维护期内的系统巡检一次: free maintenance and part months too."""
    ada = service_data.customer("Ada Wong")
    started = service_data.contract(ada, date(2027, 10, 19), starts_on=date(2026, 10, 20))
    free = service_data.contract(ada, date(2027, 9, 30), starts_on=date(2026, 10, 1),
                                 kind="free_maintenance", number="FM-1")  # fmt: skip

    _nights(service_data, settings_for, AFTER_DUE, datetime(2026, 12, 5, 18, 0, tzinfo=UTC))

    # The contract that started on 20 October owes October's report as well as November's.
    assert sorted(f[:2] for f in service_data.findings("monthly-inspection")) == [
        (str(started), "2026-10"),
        (str(started), "2026-11"),
        (str(free), "2026-10"),
        (str(free), "2026-11"),
    ]


def test_a_report_handed_in_after_the_due_day_is_missing_first_then_late(
    service_data, settings_for
):
    ada = service_data.customer("Ada Wong")
    contract = service_data.contract(ada, date(2027, 3, 31), starts_on=date(2026, 4, 1))
    _inspection(service_data, contract, date(2026, 9, 10), datetime(2026, 9, 10, 9, tzinfo=UTC))
    _nights(service_data, settings_for, AFTER_DUE)
    # Inspected on 30 October, report uploaded at 09:00 on 8 November (Shanghai).
    _inspection(service_data, contract, date(2026, 10, 30), datetime(2026, 11, 8, 1, tzinfo=UTC))
    _nights(
        service_data, settings_for, AFTER_DUE + timedelta(days=3), AFTER_DUE + timedelta(days=4)
    )

    assert service_data.findings("monthly-inspection") == [
        (str(contract), "2026-10", "missing"),
        (str(contract), "2026-10", "late"),
    ]


def test_team_quota_and_project_handover(service_data, midnight_settings_for):
    lead = service_data.staff["team_lead"]
    ada = service_data.customer("Ada Wong")
    project = service_data.contract(
        ada,
        date(2028, 6, 30),
        kind="project",
        number="PJ-1",
        final_acceptance_on=date(2026, 10, 20),
    )
    # The plan: 12 visits in the third quarter (4 a month), 10 in the fourth (4, 3, 3).
    for start, planned in ((date(2026, 7, 1), 12), (date(2026, 10, 1), 10)):
        service_data.add(
            Target, branch_id=service_data.branch, staff_id=lead, period_start=start,
            item="customer_visits", target=Decimal(planned),
        )  # fmt: skip
    for day in (3, 9, 17):  # three visits in October; the plan's share is four
        service_data.add(
            WorkRecord, branch_id=service_data.branch, kind="visit", staff_id=lead,
            customer_id=ada, done_on=date(2026, 10, day),
        )  # fmt: skip
    for day in (2, 12, 22, 29):  # four in September
        service_data.add(
            WorkRecord, branch_id=service_data.branch, kind="visit", staff_id=lead,
            customer_id=ada, done_on=date(2026, 9, day),
        )  # fmt: skip
    service_data.add(
        WorkRecord, branch_id=service_data.branch, kind="project_join", staff_id=lead,
        contract_id=project, done_on=date(2026, 9, 15),
    )  # fmt: skip

    # Handover due by 3 November (two weeks after acceptance): nothing recorded by then.
    _nights(service_data, midnight_settings_for, datetime(2026, 11, 3, 15, 0, tzinfo=UTC))
    assert service_data.findings("project-handover") == []
    midnight = datetime(2026, 11, 3, 16, 0, tzinfo=UTC)  # 00:00 local
    _nights(service_data, midnight_settings_for, midnight)

    assert service_data.findings("project-handover") == [(str(project), "2026-10-20", "missing")]
    assert service_data.findings("project-join") == []  # joined 15 Sep, by 20 Sep
    assert [f[1:] for f in service_data.findings("monthly-customer-visits")] == [
        ("2026-10", "missing")
    ]


def test_explain_shows_each_period_checked(service_data, settings_for):
    from engine.explain import explain_rule

    ada = service_data.customer("Ada Wong")
    contract = service_data.contract(ada, date(2027, 3, 31), starts_on=date(2026, 4, 1))
    _inspection(service_data, contract, date(2026, 9, 8), datetime(2026, 9, 9, tzinfo=UTC))
    settings = settings_for(str(service_data.engine.url))
    _nights(service_data, settings_for, AFTER_DUE)

    lines = dict(
        explain_rule(settings, service_data.engine, "monthly-inspection", str(contract), AFTER_DUE)
    )

    assert lines["2026-10"] == "by 2026-11-05: 1 needed, 0 on time, 0 recorded; missing"
    assert (
        lines["2026-09"]
        == "by 2026-10-05: 1 needed, 1 on time, 1 recorded; fulfilled or no longer checked"
    )
    assert lines["finding"].startswith("missing recorded 2026-11-05T18:00:00")
