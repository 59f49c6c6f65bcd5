"""The overdue summary from one night's deadline findings: what is late now, per branch."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from engine.findings import Finding
from engine.reports.overdue import build_overdue, render_csv

AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
BRANCHES = {
    1: {"code": "SH-01", "name": "上海服务中心", "timezone": "Asia/Shanghai"},
    2: {"code": "MAD-01", "name": "Servicio Técnico Madrid", "timezone": "Europe/Madrid"},
}


def finding(rule: str, number: str, state: str, due_at: datetime, branch: int, family="deadline"):
    return Finding(
        rule_id=rule,
        family=family,
        entity="service_requests",
        entity_id=number[-1],
        occurrence="2026-11-19T01:30:00+00:00",
        state=state,
        reason=f"{number} {state}",
        due_at=due_at,
        record={"number": number, "branch_id": branch},
    )


def test_each_running_clock_past_its_deadline_once_with_its_highest_escalation():
    deadline = AS_OF - timedelta(hours=10)
    found = [
        finding("dispatch-urban", "SR-1", "breach", deadline, 1),
        finding("dispatch-urban", "SR-1", "escalation:1", deadline + timedelta(hours=2), 1),
        finding("dispatch-urban", "SR-1", "escalation:2", deadline + timedelta(hours=4), 1),
        finding("repair-promised-time", "SR-2", "breach", AS_OF - timedelta(hours=30), 1),
        finding("dispatch-urban", "SR-3", "breach", AS_OF - timedelta(minutes=30), 2),
        # Finished late: no longer overdue. A warning: not yet overdue. A reminder: no clock.
        finding("dispatch-urban", "SR-4", "late_stop", deadline, 1),
        finding("dispatch-urban", "SR-5", "warning", AS_OF + timedelta(hours=1), 1),
        finding("survey-next-day", "SR-6", "due", deadline, 1, family="reminder"),
    ]

    summary = build_overdue(found, BRANCHES, {"dispatch-urban": "Dispatch"}, AS_OF)

    assert summary.total == 3
    madrid, shanghai = summary.branches  # ordered by branch code
    assert (madrid.code, shanghai.code) == ("MAD-01", "SH-01")
    # Most overdue first: SR-2 (30 h) before SR-1 (10 h).
    assert [(i.number, i.level, i.overdue_hours) for i in shanghai.items] == [
        ("SR-2", 0, 30.0),
        ("SR-1", 2, 10.0),
    ]
    assert shanghai.items[1].rule_title == "Dispatch"
    assert shanghai.items[0].rule_title == "repair-promised-time"  # no title known: the id
    assert shanghai.by_rule() == [("dispatch-urban", 1), ("repair-promised-time", 1)]
    assert [(i.number, i.overdue_hours) for i in madrid.items] == [("SR-3", 0.5)]


def test_csv_has_one_row_per_overdue_item_with_the_branch():
    found = [finding("dispatch-urban", "SR-1", "breach", AS_OF - timedelta(hours=2), 1)]
    summary = build_overdue(found, BRANCHES, {}, AS_OF)

    [row] = list(csv.DictReader(io.StringIO(render_csv(summary.branches))))

    assert row["branch"] == "SH-01" and row["branch_name"] == "上海服务中心"
    assert (row["number"], row["overdue_hours"], row["escalation_level"]) == ("SR-1", "2.0", "0")
    assert row["deadline"] == "2026-11-23T16:00:00+00:00"


def test_nothing_overdue_is_an_empty_summary():
    assert build_overdue([], BRANCHES, {}, AS_OF).branches == []
