"""When each daily part comes, per branch, on the branch's own clocks (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.due_parts import COMPANY, DuePart, DueParts, occurrences
from engine.policy.schedule_spec import ScheduleSpec

SHANGHAI, MADRID = 1, 2
BRANCHES = {SHANGHAI: "Asia/Shanghai", MADRID: "Europe/Madrid"}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def latest(as_of: datetime, schedule: ScheduleSpec | None = None) -> dict[tuple[str, str], str]:
    """(part, scope) -> the period of its latest local time at or before `as_of`."""
    found = occurrences(
        schedule or ScheduleSpec(), BRANCHES, "Asia/Shanghai", as_of, close_on_day=10
    )
    return {(item.part, item.scope): item.period for item in found}


def came(as_of: datetime, part: str, scope: str, schedule: ScheduleSpec) -> datetime:
    found = occurrences(schedule, BRANCHES, "Asia/Shanghai", as_of, close_on_day=10)
    return next(i.at for i in found if (i.part, i.scope) == (part, scope))


def test_each_branch_reads_the_time_on_its_own_clocks():
    # 08:30 in Shanghai is 01:30 in Madrid: Shanghai's 08:00 has come today, Madrid's yesterday.
    periods = latest(utc(2026, 12, 6, 0, 30))
    assert periods[("digests", str(SHANGHAI))] == "2026-12-06"
    assert periods[("digests", str(MADRID))] == "2026-12-05"
    assert periods[("overdue_summary", str(MADRID))] == "2026-12-05"
    # Seven hours later it is 08:00 in Madrid too.
    assert latest(utc(2026, 12, 6, 7, 0))[("digests", str(MADRID))] == "2026-12-06"


def test_every_part_has_a_scope_and_company_parts_read_the_ledger_zone():
    periods = latest(utc(2026, 12, 6, 0, 30))  # 08:30 in Shanghai, the ledger's zone
    assert set(periods) == {
        ("digests", "1"), ("digests", "2"), ("digests", COMPANY),
        ("overdue_summary", "1"), ("overdue_summary", "2"),
        ("obligations", COMPANY), ("tallies", COMPANY), ("month_close", COMPANY),
        ("kpi_report", COMPANY),
    }  # fmt: skip
    assert periods[("kpi_report", COMPANY)] == "2026-12-06"  # 07:00 Shanghai has come
    assert latest(utc(2026, 12, 5, 22, 59))[("kpi_report", COMPANY)] == "2026-12-05"


def test_madrid_spring_forward_runs_a_skipped_time_at_the_end_of_the_gap():
    schedule = ScheduleSpec(digests="02:30")  # 28 March 2027: 02:00 CET becomes 03:00 CEST
    assert latest(utc(2027, 3, 28, 0, 59), schedule)[("digests", "2")] == "2027-03-27"
    assert latest(utc(2027, 3, 28, 1, 0), schedule)[("digests", "2")] == "2027-03-28"
    assert came(utc(2027, 3, 28, 1, 0), "digests", "2", schedule) == utc(2027, 3, 28, 1, 0)
    assert came(utc(2027, 3, 29, 1, 0), "digests", "2", schedule) == utc(2027, 3, 29, 0, 30)


def test_madrid_fall_back_gives_a_repeated_time_one_day_at_its_first_reading():
    schedule = ScheduleSpec(digests="02:30")  # 25 October 2026: 02:30 comes twice
    first, second = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
    assert latest(first, schedule)[("digests", "2")] == "2026-10-25"
    assert came(first, "digests", "2", schedule) == first
    # At the second 02:30 the latest occurrence is still the first, of the same local day.
    assert latest(second, schedule)[("digests", "2")] == "2026-10-25"
    assert came(second, "digests", "2", schedule) == first


def test_the_close_comes_once_a_month_on_the_close_day_for_the_month_before():
    before = utc(2026, 12, 9, 21, 59)  # 05:59 on 10 December in Shanghai
    assert latest(before)[("month_close", COMPANY)] == "2026-10"  # closed on 10 November
    assert latest(utc(2026, 12, 9, 22, 0))[("month_close", COMPANY)] == "2026-11"
    assert latest(utc(2027, 1, 5, 0, 0))[("month_close", COMPANY)] == "2026-11"
    assert latest(utc(2027, 1, 9, 22, 0))[("month_close", COMPANY)] == "2026-12"


def test_after_two_days_down_the_latest_day_is_the_one_due():
    periods = latest(utc(2026, 12, 8, 2, 0))  # 03:00 in Madrid; the host was down since the 6th
    assert periods[("digests", str(MADRID))] == "2026-12-07"


def test_due_parts_answer_per_part_with_branches_and_company():
    at = utc(2026, 12, 6, 0, 0)
    due = DueParts(
        at,
        (
            DuePart("digests", "1", "2026-12-06", at),
            DuePart("digests", COMPANY, "2026-12-06", at),
            DuePart("overdue_summary", "2", "2026-12-05", at),
        ),
    )
    assert due.is_due("digests") and not due.is_due("tallies")
    assert due.scopes("digests").branches == {1} and due.scopes("digests").company
    assert due.scopes("overdue_summary").branches == {2}
    assert not due.scopes("overdue_summary").company and not due.scopes("kpi_report")
    assert due.artifact()[2] == {
        "part": "overdue_summary", "scope": "2", "period": "2026-12-05",
        "at": "2026-12-06T00:00:00+00:00",
    }  # fmt: skip
