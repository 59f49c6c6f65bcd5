"""A night from the operator's side: demo data, one run, letters out, and nothing twice."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import judging
from engine.db.demo import load_demo
from engine.db.models import Finding, Notice
from engine.db.session import connect
from engine.notices.delivery import deliver, sender_from_settings
from engine.rules import classification
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-23T18:00:00+00:00"


def aftersales(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator would call it."""
    exe = Path(sys.executable).with_name("aftersales")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_readme_night_leaves_letters_for_contracts_ending_within_a_month(tmp_path):
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")

    init = aftersales(tmp_path, "init", "--demo", "--as-of", AS_OF)
    assert init.returncode == 0, init.stderr
    first = aftersales(tmp_path, "run", "--as-of", AS_OF)
    assert first.returncode == 0, first.stderr
    letters = sorted((tmp_path / "outbox").glob("*.eml"))
    assert letters, first.stdout

    engine = connect(f"sqlite:///{tmp_path / 'aftersales.db'}")
    with engine.connect() as conn:
        ending = set(
            conn.exec_driver_sql(
                "select c.email from contracts k join customers c on c.id = k.customer_id "
                "where k.kind = 'maintenance' and k.status = 'active' and c.email is not null "
                "and k.ends_on > ? and k.ends_on <= ?",
                (date(2026, 11, 24).isoformat(), date(2026, 12, 23).isoformat()),
            ).scalars()
        )
    assert len(ending) >= 3
    customer_letters = {}
    for path in letters:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg["X-Aftersales-Template"] == "maintenance_expiry":
            customer_letters[msg["To"].addresses[0].addr_spec] = msg
    assert set(customer_letters) == ending
    languages = {m["Content-Language"] for m in customer_letters.values()}
    assert {"zh-CN", "en"} <= languages

    again = aftersales(tmp_path, "init", "--demo", "--as-of", AS_OF)
    assert again.returncode == 0 and "already" in again.stdout
    second = aftersales(tmp_path, "run", "--as-of", AS_OF)
    assert second.returncode == 0, second.stderr
    assert "0 new of" in second.stdout and "0 notices queued" in second.stdout
    assert sorted((tmp_path / "outbox").glob("*.eml")) == letters

    # The cron entry point is the same night.
    job = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "nightly.py"), "--as-of", AS_OF],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert job.returncode == 0 and "0 notices queued" in job.stdout, job.stderr


def test_letter_through_a_real_smtp_server_in_the_customers_language(
    service_data, focused_settings_for, smtp_server
):
    handler, port = smtp_server
    li = service_data.customer("Li Wei", locale="zh-CN")
    service_data.contract(li, date(2026, 12, 23), number="MC-8808")
    settings = focused_settings_for(
        str(service_data.engine.url),
        smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 5},
    )
    as_of = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    run_night(settings, service_data.engine, as_of=as_of)
    report = deliver(
        service_data.engine, sender_from_settings(settings), now=as_of, mail_from=settings.mail_from
    )
    assert report.sent == 2

    (letter,) = [
        m for m in handler.messages() if m["To"].addresses[0].addr_spec == "li.wei@example.com"
    ]
    assert letter["Subject"] == "您的维修保养合同 MC-8808 将于2026年12月23日到期"
    assert letter["Content-Language"] == "zh-CN"
    assert letter["From"].addresses[0].addr_spec == "service@aftersales.example"
    assert letter["Message-ID"].endswith("@aftersales.example>")
    plain = letter.get_body(("plain",)).get_content()
    html = letter.get_body(("html",)).get_content()
    assert "尊敬的Li Wei" in plain and "2026年12月23日" in plain
    assert "<strong>MC-8808</strong>" in html and 'lang="zh-CN"' in html

    # Delivering again sends nothing: each letter exists once and was marked sent.
    again = deliver(
        service_data.engine, sender_from_settings(settings), now=as_of, mail_from=settings.mail_from
    )
    assert again.sent == 0 and len(handler.messages()) == 2


@pytest.mark.slow
def test_a_rule_that_breaks_part_way_leaves_nothing_and_the_night_goes_on(
    db, settings_for, monkeypatch
):
    """Findings pass on a chunk at a time; a rule whose judging fails after some of its chunks
    were recorded and queued leaves none of them behind, and the other rules' stand."""
    load_demo(db, datetime.fromisoformat(AS_OF))
    whole = classification.evaluate

    def breaks_after_three(item, rows, as_of):
        for number, finding in enumerate(whole(item, rows, as_of)):
            if number == 3:
                raise RuntimeError("lost the connection to the warranty table")
            yield finding

    monkeypatch.setattr(judging, "_CHUNK", 2)
    monkeypatch.setattr(classification, "evaluate", breaks_after_three)
    result = run_night(settings_for(str(db.url)), db, as_of=datetime.fromisoformat(AS_OF))

    (broken,) = [r for r in result.rules if r.rule_id == "service-category"]
    assert broken.error == "RuntimeError: lost the connection to the warranty table"
    assert (broken.findings, broken.new) == (0, 0)
    assert result.outcome == "error" and result.counts["rule_errors"] == 1
    listed = result.findings
    assert listed and not [f for f in listed if f["rule"] == "service-category"]
    assert result.counts["findings_total"] == len(listed)
    with db.connect() as conn:
        kept = conn.scalar(
            select(func.count()).select_from(Finding).where(Finding.rule_id == "service-category")
        )
        letters = conn.scalar(
            select(func.count())
            .select_from(Notice)
            .where(Notice.finding_key.like("service-category|%"))
        )
        recorded = conn.scalar(select(func.count()).select_from(Finding))
    assert (kept, letters) == (0, 0)
    assert recorded == len(listed)
