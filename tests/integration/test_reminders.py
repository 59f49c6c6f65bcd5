"""Seed rows 7 and 8: contract reminders, evaluated night after night, each sent exactly once.

The contract that ended yesterday also gets the lapse notice of the renewal flow
(tests/integration/test_contract_lifecycle.py follows that flow in detail).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import Finding, Notice, Run
from engine.run import run_night

ROOT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "notices"
# 10:00 in Shanghai on Monday 2026-11-23.
AS_OF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
def settings_for(focused_settings_for):
    """These tests follow contract reminders alone: without obligations and KPIs."""
    return focused_settings_for


def _findings(engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(Finding.rule_id, Finding.occurrence))}


def _notices(engine) -> list[Notice]:
    with Session(engine) as session:
        return list(session.scalars(select(Notice).order_by(Notice.id)))


def _contracts(data):
    ada = data.customer("Ada Wong")
    li = data.customer("Li Wei", locale="zh-CN")
    return {
        "due_in_27_days": data.contract(ada, date(2026, 12, 20)),
        "due_tonight": data.contract(li, date(2026, 12, 23)),
        "due_tomorrow": data.contract(ada, date(2026, 12, 24)),
        "renewed": data.contract(ada, date(2026, 12, 10), status="renewed"),
        "ended_yesterday": data.contract(ada, date(2026, 11, 22)),
        "free_period": data.contract(
            li, date(2027, 2, 10), kind="free_maintenance", number="FM-1", sales_rep_id=None
        ),
    }


def test_renewal_notices_one_month_before_and_free_maintenance_three_months(
    service_data, settings_for
):
    _contracts(service_data)
    settings = settings_for(str(service_data.engine.url))
    result = run_night(settings, service_data.engine, as_of=AS_OF)

    assert result.outcome == "success"
    assert _findings(service_data.engine) == {
        ("maintenance-renewal", "2026-12-20"),
        ("maintenance-renewal", "2026-12-23"),
        ("free-maintenance-ending", "2027-02-10"),
        ("maintenance-lapsed", "2026-11-22"),
    }
    notices = _notices(service_data.engine)
    by_address = {(n.recipient_address, n.template) for n in notices}
    assert by_address == {
        ("ada.wong@example.com", "maintenance_expiry"),
        ("li.wei@example.com", "maintenance_expiry"),
        ("sales_rep@sh.example", "renewal_task"),  # one task per contract
        ("team_lead@sh.example", "free_maintenance_report"),
        ("sales_director@hq.example", "free_maintenance_report"),
        ("ada.wong@example.com", "contract_lapsed"),
        ("sales_rep@sh.example", "lapse_task"),
        ("sales_rep@sh.example", "digest"),
    }
    assert len(notices) == 9
    # The sales rep's three tasks go out as one digest, not three messages.
    (digest,) = [n for n in notices if n.template == "digest"]
    rep_items = [n for n in notices if n.digest_id == digest.id]
    assert len(rep_items) == 3 and {n.status for n in rep_items} == {"bundled"}
    assert digest.status == "pending" and "共 3 项" in digest.body_text  # the rep reads zh-CN
    li_letter = next(n for n in notices if n.recipient_address == "li.wei@example.com")
    assert li_letter.locale == "zh-CN"
    assert li_letter.subject.startswith("您的维修保养合同 MC-20261223-")
    assert li_letter.subject.endswith("将于2026年12月23日到期")
    assert "尊敬的Li Wei" in li_letter.body_text and li_letter.body_html
    director = next(n for n in notices if n.recipient_address == "sales_director@hq.example")
    assert director.locale == "en" and "Free maintenance for Li Wei" in director.subject


def test_same_night_twice_and_next_night_add_nothing_twice(service_data, settings_for):
    _contracts(service_data)
    settings = settings_for(str(service_data.engine.url))
    first = run_night(settings, service_data.engine, as_of=AS_OF)
    again = run_night(settings, service_data.engine, as_of=AS_OF)
    # Eight letters and tasks, plus the digest carrying the sales rep's three tasks.
    assert first.counts["findings_new"] == 4 and first.counts["notices_queued"] == 9
    assert again.counts == {**first.counts, "findings_new": 0, "notices_queued": 0}
    assert all(not f["new"] for f in again.findings)

    tomorrow = run_night(settings, service_data.engine, as_of=AS_OF + timedelta(days=1))
    assert [f["occurrence"] for f in tomorrow.findings if f["new"]] == ["2026-12-24"]
    assert tomorrow.counts["notices_queued"] == 2  # customer letter and sales rep task
    assert len(_notices(service_data.engine)) == 11
    with service_data.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Run)) == 3


def test_missed_nights_are_caught_up_once(service_data, settings_for):
    _contracts(service_data)
    settings = settings_for(str(service_data.engine.url))
    early = run_night(settings, service_data.engine, as_of=AS_OF - timedelta(days=10))
    # On 2026-11-13 the contract ending 2026-11-22 (both renewal reminders) and the free
    # period were due.
    assert sorted((f["occurrence"], f["rule"]) for f in early.findings) == [
        ("2026-11-22", "maintenance-renewal"),
        ("2026-11-22", "maintenance-renewal-second"),
        ("2027-02-10", "free-maintenance-ending"),
    ]
    # The host was down for ten days: the next run sends what fell due in the gap, once.
    late = run_night(settings, service_data.engine, as_of=AS_OF + timedelta(days=1))
    assert sorted(f["occurrence"] for f in late.findings if f["new"]) == [
        "2026-11-22",  # now lapsed
        "2026-12-20",
        "2026-12-23",
        "2026-12-24",
    ]
    assert len(_findings(service_data.engine)) == 7


def test_reminder_after_the_contract_ended_is_stale(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    service_data.contract(ada, date(2026, 11, 22))
    result = run_night(settings_for(str(service_data.engine.url)), service_data.engine, as_of=AS_OF)
    # Too late for the renewal notices; what goes out is the lapse notice.
    assert [f["rule"] for f in result.findings] == ["maintenance-lapsed"]


def test_customer_without_email_is_set_aside_with_reason(service_data, settings_for):
    nomail = service_data.customer("No Mail", email=None)
    service_data.contract(nomail, date(2026, 12, 20))
    result = run_night(settings_for(str(service_data.engine.url)), service_data.engine, as_of=AS_OF)
    # The sales rep's task still goes out, and the hotline is asked to phone or post the letter.
    assert result.counts["notices_queued"] == 2
    assert result.counts["notices_set_aside"] == 1
    (dead,) = [n for n in _notices(service_data.engine) if n.status == "dead"]
    assert dead.recipient_name == "No Mail" and dead.last_error.startswith("no email address")
    (task,) = [n for n in _notices(service_data.engine) if n.template == "undeliverable"]
    assert task.recipient_role == "hotline_operator"


def test_dry_run_writes_nothing_but_reports_what_would_happen(service_data, settings_for, tmp_path):
    _contracts(service_data)
    out = tmp_path / "dry.json"
    settings = settings_for(str(service_data.engine.url))
    result = run_night(settings, service_data.engine, as_of=AS_OF, dry_run=True, out=out)
    assert result.counts["findings_new"] == 4 and result.counts["notices_queued"] == 9
    assert _findings(service_data.engine) == set() and _notices(service_data.engine) == []
    document = json.loads(out.read_text())
    assert document["dry_run"] is True and len(document["findings"]) == 4


def test_run_artifact_has_the_documented_keys(service_data, settings_for):
    _contracts(service_data)
    result = run_night(settings_for(str(service_data.engine.url)), service_data.engine, as_of=AS_OF)
    document = json.loads(result.artifact.read_text())
    assert document["schema_version"] == 2
    assert {
        "run_id", "as_of", "policy_hash", "outcome", "counts", "timings", "findings", "mode",
        "parts_due", "open_findings", "closed_findings",
    } <= set(document)  # fmt: skip
    assert document["mode"]["mode"] == "full" and document["mode"]["why"] == "first run"
    assert document["as_of"] == "2026-11-23T02:00:00+00:00"
    finding = next(f for f in document["findings"] if f["occurrence"] == "2026-12-20")
    assert finding == {
        "rule": "maintenance-renewal",
        "family": "reminder",
        "entity": "contracts",
        "entity_id": finding["entity_id"],
        "occurrence": "2026-12-20",
        "state": "due",
        "new": True,
        "history": False,  # the shipped policy names no go-live day
        "due_at": "2026-11-19T16:00:00+00:00",  # 2026-11-20 00:00 in Shanghai
        "amount": None,
        "currency": None,
        "recipients": ["customer", "sales_rep"],
        "reason": finding["reason"],
        "decided_by": None,  # the run's own policy decided it
    }
    assert "ends_on 2026-12-20; notice 1 month before, due 2026-11-20" in finding["reason"]


def test_explain_walks_through_one_contract(service_data, settings_for):
    from typer.testing import CliRunner

    from engine.cli import app

    ada = service_data.customer("Ada Wong")
    contract = service_data.contract(ada, date(2026, 12, 20), number="MC-42")
    url = service_data.engine.url.render_as_string(hide_password=False)
    run_night(settings_for(url), service_data.engine, as_of=AS_OF)
    result = CliRunner().invoke(
        app,
        [
            "explain",
            "maintenance-renewal",
            str(contract),
            "--db",
            url,
            "--as-of",
            AS_OF.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "contracts MC-42 (time zone Asia/Shanghai)" in text
    assert "yes kind == 'maintenance'" in text and "yes status == 'active'" in text
    assert "due at 2026-11-20T00:00:00+08:00 (local)" in text
    assert "state due" in text
    assert "customer <ada.wong@example.com>: pending" in text


def test_a_broken_template_sets_its_letters_aside_and_the_night_goes_on(
    service_data, settings_for, tmp_path
):

    templates = tmp_path / "templates"
    shutil.copytree(ROOT_TEMPLATES, templates)
    task = templates / "renewal_task" / "zh-CN.txt.j2"  # the sales rep reads Chinese
    task.write_text(task.read_text() + "{{ entity.id // (entity.id - entity.id) }}\n")
    _contracts(service_data)
    settings = settings_for(str(service_data.engine.url), templates=templates)
    result = run_night(settings, service_data.engine, as_of=AS_OF)
    assert result.outcome == "success"
    notices = _notices(service_data.engine)
    failed = [n for n in notices if n.status == "render_failed"]
    assert [n.template for n in failed] == ["renewal_task", "renewal_task"]
    assert all(n.last_error.startswith("cannot render") for n in failed)
    # The customers' letters still go out.
    assert (
        sum(1 for n in notices if n.template == "maintenance_expiry" and n.status == "pending") == 2
    )


def test_nobody_in_a_role_leaves_a_visible_dead_notice(service_data, settings_for):
    ada = service_data.customer("Ada Wong")
    service_data.contract(ada, date(2026, 12, 20), sales_rep_id=None)
    run_night(settings_for(str(service_data.engine.url)), service_data.engine, as_of=AS_OF)
    (dead,) = [n for n in _notices(service_data.engine) if n.status == "dead"]
    assert dead.recipient_role == "sales_rep" and dead.last_error == "nobody in role sales_rep"
