"""Going live on a day: what fell due before it is recorded as history, without letters.

A department that starts the engine over years of history must not send its customers the
renewal letter and the two-week reminder together, nor escalate last week's late calls.
`defaults: effective_from:` gives every rule a go-live day; the findings due before its start
(00:00 in the ledger's time zone) are recorded, marked history in the artifact, and send
nothing. What falls due from then on is sent as usual.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT
from sqlalchemy import select

from engine.db.models import Finding, LedgerEntry, Notice
from engine.policy import load_policy
from engine.run import run_night

GO_LIVE = date(2026, 12, 1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
RENEWAL_LETTERS = {"maintenance_expiry", "renewal_task", "renewal_reminder"}
"""The renewal flow's letters: the one-month notice and task, the two-week reminder and task."""


@pytest.fixture
def go_live_settings_for(settings_for, tmp_path):
    """settings_for with the shipped policy and `defaults: effective_from: GO_LIVE` (or `day`)."""

    def make(url: str, day: date = GO_LIVE):
        rules = tmp_path / f"go-live-rules-{day}"
        if not rules.exists():
            shutil.copytree(ROOT / "rules", rules)
            contracts = rules / "contracts.yaml"
            text = contracts.read_text("utf-8")
            assert text.count("\ndefaults:\n") == 1
            live = f"\ndefaults:\n  effective_from: {day}\n"
            contracts.write_text(text.replace("\ndefaults:\n", live), "utf-8")
        return settings_for(url, rules=rules)

    return make


def _letters(engine, entity: str, entity_id: int) -> list[str]:
    """The templates of the notices queued for one entity's findings."""
    with engine.connect() as conn:
        keys = select(Finding.key).where(
            Finding.entity == entity, Finding.entity_id == str(entity_id)
        )
        return sorted(conn.scalars(select(Notice.template).where(Notice.finding_key.in_(keys))))


def _shanghai(day: int, hour: int) -> datetime:
    """`hour` o'clock in Shanghai on December `day`, 2026."""
    return datetime(2026, 12, day, hour - 8, 0, tzinfo=UTC)


def test_every_rule_takes_the_go_live_day_but_the_kpis(go_live_settings_for, tmp_path):
    policy = load_policy(go_live_settings_for("sqlite://").rules)
    days = {c.rule.id: c.rule.effective_from for c in policy.rules()}
    assert set(days.values()) == {GO_LIVE}
    assert {m.rule.effective_from for m in policy.metrics} == {None}
    (rule,) = [c.rule for c in policy.rules() if c.rule.id == "maintenance-renewal"]
    assert policy.live_from(rule) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


def test_a_contract_ending_after_go_live_gets_only_the_reminder_still_due(
    service_data, settings_for, go_live_settings_for
):
    data = service_data
    ada = data.customer("Ada Wong")
    contract = data.contract(ada, date(2026, 12, 23), number="MC-GO-LIVE")
    first_run = _shanghai(10, 10)  # after both the one-month (11-23) and two-week (12-09) dates

    result = run_night(go_live_settings_for(str(data.engine.url)), data.engine, as_of=first_run)

    letters = _letters(data.engine, "contracts", contract)
    assert [t for t in letters if t in RENEWAL_LETTERS] == ["renewal_reminder", "renewal_task"]
    flow = {f["rule"]: f["history"] for f in result.findings if f["rule"].startswith("maint")}
    assert flow == {"maintenance-renewal": True, "maintenance-renewal-second": False}
    assert result.counts["findings_history"] >= 1
    by_rule = {r.rule_id: r.history for r in result.rules}
    assert by_rule["maintenance-renewal"] == 1 and by_rule["maintenance-renewal-second"] == 0


def test_without_a_go_live_day_the_first_run_letters_the_past(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    contract = data.contract(ada, date(2026, 12, 23), number="MC-NO-GO-LIVE")

    result = run_night(settings_for(str(data.engine.url)), data.engine, as_of=_shanghai(10, 10))

    letters = _letters(data.engine, "contracts", contract)
    assert [t for t in letters if t in RENEWAL_LETTERS] == [
        "maintenance_expiry", "renewal_reminder", "renewal_task", "renewal_task"
    ]  # fmt: skip
    assert result.counts["findings_history"] == 0


def test_a_call_late_before_go_live_stays_open_without_escalation_one_after_is_escalated(
    service_data, go_live_settings_for
):
    data = service_data
    ada = data.customer("Ada Wong")
    before = data.request(ada, _shanghai(1, 9).replace(day=27, month=11))  # Friday before
    after = data.request(ada, _shanghai(1, 9))  # on the go-live day, 09:00
    settings = go_live_settings_for(str(data.engine.url))

    run_night(settings, data.engine, as_of=_shanghai(2, 12))

    # (a quote for the undispatched call is the present state of the call, not a past event)
    assert "escalation" not in _letters(data.engine, "service_requests", before)
    assert "escalation" in _letters(data.engine, "service_requests", after)
    with data.engine.connect() as conn:
        late = conn.execute(
            select(Finding.state, Finding.closed_at).where(
                Finding.rule_id == "dispatch-urban", Finding.entity_id == str(before)
            )
        ).all()
    states = {state for state, closed in late if closed is None}
    assert {"breach", "escalation:1"} <= states  # still open, still on the overdue summary


@pytest.mark.parametrize(
    ("go_live", "sent"), [(date(2026, 11, 1), True), (date(2026, 11, 2), False)]
)
def test_the_kpi_report_due_before_go_live_is_not_sent(
    service_data, go_live_settings_for, go_live, sent
):
    # October's report falls due on November 1st (07:00 in Shanghai): sent when the policy
    # went live that day, history when it went live the day after.
    data = service_data
    data.request(data.customer("Ada Wong"), datetime(2026, 10, 12, 2, 0, tzinfo=UTC))
    settings = go_live_settings_for(str(data.engine.url), go_live)

    result = run_night(settings, data.engine, as_of=datetime(2026, 11, 2, 2, 0, tzinfo=UTC))

    with data.engine.connect() as conn:
        reports = conn.scalars(
            select(Notice.recipient_address).where(Notice.dedup_key.startswith("kpi-report|"))
        ).all()
    assert reports == (["service_manager@sh.example"] if sent else [])
    page = settings.artifacts_dir / "reports" / "kpi_2026-10.html"
    assert page.exists() == sent
    assert result.counts["kpi_values"] > 0  # October and November are measured either way


def test_a_tally_counts_from_the_local_go_live_day(service_data, go_live_settings_for):
    # Going live on 14 October: a complaint closed at 23:30 on the 13th in Shanghai is before
    # it; one closed at 00:30 on the 14th counts, though it is still the 13th in UTC.
    data = service_data
    technician = data.staff["technician"]
    closed = {}
    for name, day, hour, minute in (("before", 13, 23, 30), ("after", 14, 0, 30)):
        at = datetime(2026, 10, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)
        closed[name] = data.complaint(
            data.customer(f"Customer {name}"), at - timedelta(days=2), status="closed",
            verified=True, closed_at=at, first_reply_at=at - timedelta(days=1),
            responsible_staff_id=technician,
        )  # fmt: skip
    settings = go_live_settings_for(str(data.engine.url), date(2026, 10, 14))

    run_night(settings, data.engine, as_of=datetime(2026, 11, 9, 18, 0, tzinfo=UTC))

    with data.engine.connect() as conn:
        (entry,) = conn.execute(
            select(LedgerEntry).where(LedgerEntry.rule_id == "verified-complaint")
        ).all()
    assert (entry.party_id, entry.amount) == (technician, Decimal("-100.00"))
    assert entry.entity_ids == [str(closed["after"])]
