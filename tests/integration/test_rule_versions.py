"""Issue 20 §3: when a rule changes, the items closed before the change are judged by the
version they closed under, open ones by the new one, and each finding records which version
decided it (engine.rule_versions). On a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Finding, Inspection, LedgerEntry, PolicyVersion, ServiceRequest
from engine.run import load_checked_policy, run_night

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(*parts: int) -> datetime:
    """A Shanghai wall-clock instant."""
    return datetime(*parts, tzinfo=SHANGHAI)


def _rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    return rules


def _edit(path: Path, old: str, new: str, after: str = "") -> None:
    """Replace the first `old` that follows `after` in the file."""
    text = path.read_text("utf-8")
    at = text.index(after)
    path.write_text(text[:at] + text[at:].replace(old, new, 1), "utf-8")


def _night(data, settings, as_of: datetime):
    result = run_night(settings, data.engine, as_of=as_of.astimezone(UTC))
    assert result.outcome == "success", [r.error for r in result.rules if r.error]
    return result


def _recorded(engine, rule: str, entity_id: int) -> list[tuple[str, str, str | None]]:
    """(state, policy hash, rule digest) of each finding of the rule about the entity."""
    stmt = (
        select(Finding.state, Finding.policy_hash, Finding.rule_digest)
        .where(Finding.rule_id == rule, Finding.entity_id == str(entity_id))
        .order_by(Finding.id)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt)]


def _version(settings) -> tuple[str, str]:
    """(policy hash, dispatch-urban's digest) of the policy in settings.rules."""
    policy, _ = load_checked_policy(settings)
    return policy.hash, policy.digests["dispatch-urban"]


def test_a_shorter_deadline_leaves_the_calls_closed_before_it_alone(
    service_data, settings_for, tmp_path
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    ada = service_data.customer("Ada Wong")
    # On site after 4.5 working hours (09:00-12:00, 13:00-14:30): on time under 6 hours.
    closed = service_data.request(ada, sh(2026, 11, 16, 9, 0), arrived_at=sh(2026, 11, 16, 14, 30))
    _night(service_data, settings, sh(2026, 11, 16, 16, 30))
    assert _recorded(service_data.engine, "dispatch-urban", closed) == []

    _edit(rules / "sla.yaml", "within: 6 working hours", "within: 4 working hours")
    new_hash, new_digest = _version(settings)
    # The diff, at the instant of the last run too, says the closed call is left alone.
    url = service_data.engine.url.render_as_string(hide_password=False)
    at = sh(2026, 11, 16, 16, 30).isoformat()
    diff = ["diff", "--db", url, "--rules", str(rules), "--as-of", at, "--format", "json"]
    shown = CliRunner().invoke(app, diff)
    assert shown.exit_code == 1, shown.output  # the rule changed
    (urban,) = json.loads(shown.stdout)["rules"]
    assert urban["findings"] == {"appear": 0, "disappear": 0, "change": 0}
    waiting = service_data.request(ada, sh(2026, 11, 17, 9, 0))
    second = _night(service_data, settings, sh(2026, 11, 17, 14, 30))
    # The open call is judged by 4 hours: due 14:00. The call closed under 6 hours is not
    # late now (it would be, by 30 minutes, under 4).
    urban = [(f["entity_id"], f["state"]) for f in second.findings if f["rule"] == "dispatch-urban"]
    assert urban == [(str(waiting), "breach")]
    assert _recorded(service_data.engine, "dispatch-urban", waiting) == [
        ("breach", new_hash, new_digest)
    ]

    # A call that closes under the new version is judged by it: 4.5 hours is late.
    after = service_data.request(ada, sh(2026, 11, 18, 9, 0), arrived_at=sh(2026, 11, 18, 14, 30))
    third = _night(service_data, settings, sh(2026, 11, 18, 15, 0))
    late = [
        (f["entity_id"], f["state"])
        for f in third.findings
        if f["rule"] == "dispatch-urban" and f["entity_id"] != str(waiting)
    ]
    assert late == [(str(after), "late_stop")]
    assert _recorded(service_data.engine, "dispatch-urban", closed) == []


def test_a_call_closed_under_the_old_deadline_is_judged_by_it_and_says_so(
    service_data, settings_for, tmp_path
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    old_hash, old_digest = _version(settings)
    ada = service_data.customer("Ada Wong")
    call = service_data.request(ada, sh(2026, 11, 16, 9, 0))
    _night(service_data, settings, sh(2026, 11, 16, 16, 30))  # breached at 16:00
    with service_data.engine.begin() as conn:
        arrived = update(ServiceRequest).where(ServiceRequest.id == call)
        conn.execute(arrived.values(arrived_at=sh(2026, 11, 16, 17, 0)))

    _edit(rules / "sla.yaml", "within: 6 working hours", "within: 8 working hours")
    new_hash, new_digest = _version(settings)
    assert (new_hash, new_digest) != (old_hash, old_digest)
    second = _night(service_data, settings, sh(2026, 11, 17, 10, 0))
    decided = [
        (f["state"], f["decided_by"])
        for f in second.findings
        if f["rule"] == "dispatch-urban" and f["entity_id"] == str(call)
    ]
    assert decided == [("late_stop", {"policy": old_hash, "rule": old_digest})]
    # On site at 17:00, before the change: late by an hour under 6 hours, the rule then; under
    # 8 hours it would be on time. Both findings name the version that decided them.
    assert _recorded(service_data.engine, "dispatch-urban", call) == [
        ("breach", old_hash, old_digest),
        ("late_stop", old_hash, old_digest),
    ]
    # explain walks through the version that judged it, not the rule as it reads now.
    url = service_data.engine.url.render_as_string(hide_password=False)
    asked = ["explain", "dispatch-urban", str(call), "--db", url, "--rules", str(rules)]
    shown = CliRunner().invoke(app, [*asked, "--as-of", sh(2026, 11, 17, 10, 0).isoformat()])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert f"judged by the rule as in policy {old_hash}" in text
    assert "deadline 2026-11-16 16:00 Mon" in text and "state late_stop" in text
    assert (
        f"late_stop recorded 2026-11-17T02:00:00+00:00 (policy {old_hash}, rule {old_digest})"
        in text
    )


def test_a_period_booked_under_one_amount_is_corrected_under_it(
    service_data, settings_for, tmp_path
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    technician = service_data.staff["technician"]

    def complaint(closed_at: datetime) -> int:
        customer = service_data.customer(f"Customer {closed_at:%m%d%H%M}")
        return service_data.complaint(
            customer, closed_at - timedelta(days=2), status="closed", verified=True,
            closed_at=closed_at, first_reply_at=closed_at - timedelta(days=1),
            visited_at=closed_at - timedelta(days=1), responsible_staff_id=technician,
        )  # fmt: skip

    complaint(sh(2026, 10, 5, 11, 0))
    _night(service_data, settings, sh(2026, 11, 10, 2, 0))  # October closes at 00:00 on the 10th
    assert _amounts(service_data.engine) == [("original", Decimal("-100.00"))]

    _edit(
        rules / "penalties.yaml", "penalty: 100 each", "penalty: 150 each", "id: verified-complaint"
    )
    # A complaint of October recorded late, and one of November.
    complaint(sh(2026, 10, 28, 11, 0))
    complaint(sh(2026, 11, 20, 11, 0))
    _night(service_data, settings, sh(2026, 11, 11, 2, 0))
    # October closed under 100 each: corrected by the late complaint's 100, not re-priced.
    assert _amounts(service_data.engine) == [
        ("original", Decimal("-100.00")),
        ("correction", Decimal("-100.00")),
    ]
    _night(service_data, settings, sh(2026, 12, 10, 2, 0))  # November closes under 150 each
    assert _amounts(service_data.engine)[2:] == [("original", Decimal("-150.00"))]


def _amounts(engine) -> list[tuple[str, Decimal]]:
    table = LedgerEntry.__table__
    stmt = select(table.c.kind, table.c.amount).where(table.c.rule_id == "verified-complaint")
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt.order_by(table.c.id))]


def test_a_month_checked_under_one_count_is_not_checked_again_under_a_new_one(
    service_data, settings_for, tmp_path
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    ada = service_data.customer("Ada Wong")
    kept = service_data.contract(ada, date(2027, 3, 30), starts_on=date(2026, 3, 31))
    for month in (9, 10, 11):
        service_data.add(
            Inspection, branch_id=service_data.branch, contract_id=kept,
            technician_id=service_data.staff["technician"], inspected_on=date(2026, month, 12),
            report_submitted_at=datetime(2026, month, 13, tzinfo=UTC),
        )  # fmt: skip
    # October's report was due by the end of 5 November: one report, as asked then.
    _night(service_data, settings, sh(2026, 11, 6, 2, 0))
    assert service_data.findings("monthly-inspection") == []

    _edit(rules / "obligations.yaml", "every: month\n", "every: month\n    count: 2\n")
    _night(service_data, settings, sh(2026, 11, 7, 2, 0))
    assert service_data.findings("monthly-inspection") == []  # October stays judged by 1
    _night(service_data, settings, sh(2026, 12, 6, 2, 0))
    assert service_data.findings("monthly-inspection") == [(str(kept), "2026-11", "missing")]


def test_a_kept_version_that_no_longer_loads_leaves_its_items_to_the_current_one(
    service_data, settings_for, tmp_path, caplog
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    ada = service_data.customer("Ada Wong")
    closed = service_data.request(ada, sh(2026, 11, 16, 9, 0), arrived_at=sh(2026, 11, 16, 14, 30))
    _night(service_data, settings, sh(2026, 11, 16, 16, 30))
    with service_data.engine.begin() as conn:  # as if written by an engine that read it then
        conn.execute(update(PolicyVersion).values(files={"sla.yaml": "deadlines: [{id: 1}]\n"}))

    _edit(rules / "sla.yaml", "within: 6 working hours", "within: 4 working hours")
    new_hash, new_digest = _version(settings)
    _night(service_data, settings, sh(2026, 11, 17, 10, 0))
    assert "no longer loads" in caplog.text
    assert _recorded(service_data.engine, "dispatch-urban", closed) == [
        ("late_stop", new_hash, new_digest)
    ]


def test_items_closed_under_two_earlier_versions_each_name_their_own(
    service_data, settings_for, tmp_path
):
    rules = _rules(tmp_path)
    settings = settings_for(str(service_data.engine.url), rules=rules)
    six = _version(settings)
    ada = service_data.customer("Ada Wong")
    first = service_data.request(ada, sh(2026, 11, 16, 9, 0))
    _night(service_data, settings, sh(2026, 11, 16, 16, 30))  # breached at 16:00 under 6 hours

    _edit(rules / "sla.yaml", "within: 6 working hours", "within: 8 working hours")
    eight = _version(settings)
    _night(service_data, settings, sh(2026, 11, 17, 10, 0))
    # Recorded late: the first call was on site at 17:00 the first day, under 6 hours; the
    # second, received under 8 hours, on site after 9 working hours.
    second = service_data.request(ada, sh(2026, 11, 17, 9, 0), arrived_at=sh(2026, 11, 18, 10, 0))
    with service_data.engine.begin() as conn:
        arrived = update(ServiceRequest).where(ServiceRequest.id == first)
        conn.execute(arrived.values(arrived_at=sh(2026, 11, 16, 17, 0)))

    _edit(rules / "sla.yaml", "within: 8 working hours", "within: 10 working hours")
    _night(service_data, settings, sh(2026, 11, 18, 11, 0))
    assert _recorded(service_data.engine, "dispatch-urban", first) == [
        ("breach", *six),
        ("late_stop", *six),
    ]
    assert _recorded(service_data.engine, "dispatch-urban", second) == [("late_stop", *eight)]
