"""The overdue summary from one night's deadline findings: what is late now, per branch, whose
it is and whom to chase, in working hours on the branch's business calendar."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.calendar import build_calendar
from engine.findings import Finding
from engine.policy.calendar_spec import CalendarSpec
from engine.reports.overdue import SummaryTerms, build_overdue, render_csv

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 23 November 2026, 18:00 UTC: 02:00 on Tuesday in Shanghai.
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
BRANCHES = {
    1: {
        "code": "SH-01",
        "name": "上海服务中心",
        "timezone": "Asia/Shanghai",
        "calendar": "cn-office",
    },
    2: {"code": "MAD-01", "name": "Servicio Técnico Madrid", "timezone": "Europe/Madrid"},
}
OFFICE = build_calendar(
    "cn-office",
    CalendarSpec.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "holidays": {"country": "CN"},
            "hours": {"mon-fri": ["09:00-12:00", "13:00-18:00"]},
        }
    ),
)
TERMS = SummaryTerms(
    titles={"dispatch-urban": "Dispatch", "same-day-resolution": "Same day"},
    localized={
        "dispatch-urban": {"zh-CN": "市区派工"},
        "same-day-resolution": {"zh-CN": "当天解决"},
    },
    calendars={"cn-office": OFFICE},
    departments={"quality": {"zh-CN": "质量部", "es": "Calidad"}},
)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def finding(rule, number, state, due_at, branch, entity="service_requests", family="deadline",
            **record):  # fmt: skip
    return Finding(
        rule_id=rule,
        family=family,
        entity=entity,
        entity_id=number[-1],
        occurrence="2026-11-19T01:30:00+00:00",
        state=state,
        reason=f"{number} {state}",
        due_at=due_at,
        record={"number": number, "branch_id": branch, **record},
    )


def test_a_call_late_for_two_rules_is_one_row_naming_customer_technician_and_working_hours():
    names = {"customer_name": "Li Lei", "responsible_name": "Wang Qiang"}
    unassigned = {"customer_name": "Han Meimei", "responsible_name": None}
    found = [
        # SR-1: on site due Friday 15:30, resolution due by Thursday's closing: both missed.
        finding("dispatch-urban", "SR-1", "breach", sh(2026, 11, 20, 15, 30), 1, **names),
        finding("dispatch-urban", "SR-1", "escalation:1", sh(2026, 11, 20, 17, 30), 1, **names),
        finding("same-day-resolution", "SR-1", "breach", sh(2026, 11, 19, 18, 0), 1, **names),
        # SR-2: due Friday 17:00, later than either of SR-1's deadlines.
        finding("dispatch-urban", "SR-2", "breach", sh(2026, 11, 20, 17, 0), 1, **unassigned),
    ]

    summary = build_overdue(found, BRANCHES, TERMS, AS_OF)

    [shanghai] = summary.branches
    first, second = shanghai.items  # one row per call, most late first
    assert (first.number, first.customer, first.person) == ("SR-1", "Li Lei", "Wang Qiang")
    # Working hours on the branch's calendar, up to 02:00 on Tuesday: Thursday's closing to
    # now is Friday and Monday, 8 + 8; Friday 15:30 to now is 2.5 + 8.
    assert [(r.rule_id, r.working_hours, r.level) for r in first.rules] == [
        ("same-day-resolution", 16.0, 0),
        ("dispatch-urban", 10.5, 1),
    ]
    assert (first.working_hours, first.overdue_hours, first.level) == (16.0, 104.0, 1)
    assert (second.number, second.customer, second.person, second.working_hours) == (
        "SR-2", "Han Meimei", None, 9.0,
    )  # fmt: skip
    assert shanghai.count == 2 and summary.total == 2
    # The chart still counts the clocks per rule.
    assert shanghai.by_rule() == [("dispatch-urban", 2), ("same-day-resolution", 1)]
    # Its bars are numbered; the caption names the rules in the reader's language.
    assert [(r.title_in("zh-CN"), n) for r, n in shanghai.charted()] == [
        (TERMS.localized["dispatch-urban"]["zh-CN"], 2),
        (TERMS.localized["same-day-resolution"]["zh-CN"], 1),
    ]

    [row, _] = list(csv.DictReader(io.StringIO(render_csv(summary.branches, "zh-CN"))))
    assert (row["number"], row["customer"], row["responsible"]) == ("SR-1", "Li Lei", "Wang Qiang")
    assert (row["working_hours_late"], row["overdue_hours"], row["escalation_level"]) == (
        "16.0", "104.0", "1",
    )  # fmt: skip
    assert row["rule_ids"] == "same-day-resolution | dispatch-urban"
    assert row["rule_titles"] == "当天解决 | 市区派工"  # the CSV's language
    assert row["deadline"] == "2026-11-19T10:00:00+00:00"  # the earliest, UTC as every file
    assert (row["deadline_local"], row["timezone"]) == ("2026-11-19 18:00", "Asia/Shanghai")


def test_each_running_clock_past_its_deadline_once_with_its_highest_escalation():
    deadline = AS_OF - timedelta(hours=10)
    found = [
        finding("dispatch-urban", "SR-1", "breach", deadline, 2),
        finding("dispatch-urban", "SR-1", "escalation:1", deadline + timedelta(hours=2), 2),
        finding("dispatch-urban", "SR-1", "escalation:2", deadline + timedelta(hours=4), 2),
        finding("repair-promised-time", "SR-2", "breach", AS_OF - timedelta(hours=30), 2),
        finding("dispatch-urban", "SR-3", "breach", AS_OF - timedelta(minutes=30), 1),
        # Finished late: no longer overdue. A warning: not yet overdue. A reminder: no clock.
        finding("dispatch-urban", "SR-4", "late_stop", deadline, 2),
        finding("dispatch-urban", "SR-5", "warning", AS_OF + timedelta(hours=1), 2),
        finding("survey-next-day", "SR-6", "due", deadline, 2, family="reminder"),
    ]

    summary = build_overdue(found, BRANCHES, TERMS, AS_OF)

    madrid, shanghai = summary.branches  # ordered by branch code
    assert (madrid.code, shanghai.code) == ("MAD-01", "SH-01")
    # Madrid names no calendar: its working hours are the wall clock's.
    assert [(i.number, i.level, i.working_hours) for i in madrid.items] == [
        ("SR-2", 0, 30.0),
        ("SR-1", 2, 10.0),
    ]
    assert madrid.items[1].rules[0].rule_title == "Dispatch"
    assert madrid.items[0].rules[0].rule_title == "repair-promised-time"  # no title: the id
    # 01:30 on Tuesday in Shanghai is after hours: late, by no working time yet.
    assert [(i.number, i.working_hours, i.overdue_hours) for i in shanghai.items] == [
        ("SR-3", 0.0, 0.5)
    ]


def test_a_complaint_nobody_answers_for_names_the_department_in_the_readers_language():
    names = {"customer_name": "Ana", "responsible_name": None, "responsible_department": "quality"}
    late = AS_OF - timedelta(hours=2)
    found = [finding("complaint-first-reply", "CP-7", "breach", late, 2, "complaints", **names)]

    [madrid] = build_overdue(found, BRANCHES, TERMS, AS_OF).branches
    [item] = madrid.items

    assert (item.person, item.responsible("zh-CN"), item.responsible("es")) == (
        None, "质量部", "Calidad",
    )  # fmt: skip
    [row] = list(csv.DictReader(io.StringIO(render_csv([madrid], "es"))))
    assert (row["entity"], row["customer"], row["responsible"]) == ("complaints", "Ana", "Calidad")


def test_nothing_overdue_is_an_empty_summary():
    assert build_overdue([], BRANCHES, TERMS, AS_OF).branches == []
