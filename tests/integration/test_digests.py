"""Manager digests and the overdue summary, end to end against a loopback SMTP server."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Notice, NoticeAttachment
from engine.notices.delivery import SmtpSender, deliver
from engine.run import run_night
from engine.settings import SmtpSettings

# Monday 2026-11-23 18:00 UTC is 02:00 on Tuesday in Shanghai.
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
MAIL_FROM = "After-sales <service@aftersales.example>"


@pytest.fixture
def settings_for(focused_settings_for):
    """Digests of the clocks' notices alone: the daily and monthly reports nobody in these
    tests wrote (obligations) would be items of every digest too."""
    return focused_settings_for


def overdue_calls(data, count: int = 3) -> list[str]:
    """`count` repair calls received last Thursday morning, nobody on site yet."""
    customer = data.customer("Li Lei", locale="zh-CN")
    received = datetime(2026, 11, 19, 1, 30, tzinfo=UTC)  # Thu 09:30 in Shanghai
    numbers = []
    for i in range(count):
        number = f"SR-SH-{i + 1:03d}"
        data.request(customer, received + timedelta(minutes=i), number=number)
        numbers.append(number)
    return numbers


def night(db, settings_for, db_url, as_of=AS_OF):
    return run_night(settings_for(db_url), db, as_of=as_of)


def outbox(db) -> list[Notice]:
    with Session(db, expire_on_commit=False) as session:
        return list(session.scalars(select(Notice).order_by(Notice.id)))


def smtp(port: int) -> SmtpSender:
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=5)
    return SmtpSender(settings, local_hostname="client.test")


def test_each_person_gets_one_message_per_night_with_every_item_grouped(
    db, db_url, settings_for, service_data, smtp_server
):
    handler, port = smtp_server
    numbers = overdue_calls(service_data)
    night(db, settings_for, db_url)

    rows = outbox(db)
    outgoing = [n for n in rows if n.status == "pending" and not n.urgent]
    per_person = [n.recipient_ref for n in outgoing if n.recipient_ref.startswith("staff:")]
    assert len(per_person) == len(set(per_person)), "a staff member has two digests tonight"
    supervisor = f"staff:{service_data.staff['service_supervisor']}"
    [digest] = [n for n in outgoing if n.recipient_ref == supervisor]
    assert digest.template == "digest"
    items = [n for n in rows if n.digest_id == digest.id]
    # Three calls not dispatched by the end of the day; their breaches were urgent, sent on
    # their own (the hour-level dispatch clock) and are listed as such.
    assert sorted(n.template for n in items) == ["dispatch_priority"] * 3
    assert {n.status for n in items} == {"bundled"}
    assert all(n.recipient_ref == supervisor for n in items)
    urgent = [n for n in rows if n.listed_in == digest.id]
    assert sorted(n.template for n in urgent) == ["escalation"] * 3
    assert {n.status for n in urgent} == {"pending"} and {n.digest_id for n in urgent} == {None}
    for number in numbers:
        assert number in digest.body_text
    manager = f"staff:{service_data.staff['service_manager']}"
    [summary] = [n for n in rows if n.recipient_ref == manager and n.template == "digest"]
    assert [n.template for n in rows if n.digest_id == summary.id] == ["overdue_summary"]

    report = deliver(db, smtp(port), now=AS_OF, mail_from=MAIL_FROM)
    assert report.dead == report.unknown == report.failed == 0
    address = "service_manager@sh.example"
    to_manager = [m for m in handler.messages() if m["To"].addresses[0].addr_spec == address]
    assert len(to_manager) == 1 + 3  # the digest, and the three urgent escalations
    [msg] = [m for m in to_manager if m["Message-ID"] == summary.message_id]
    [table] = [p for p in msg.iter_attachments() if p.get_content_type() == "text/csv"]
    assert table.get_filename() == "overdue_SH-01_2026-11-24.csv"  # the branch's local date
    lines = list(csv.DictReader(io.StringIO(table.get_content().lstrip("\ufeff"))))
    # One row per call, naming whom to chase, with the rules it is late for.
    assert sorted(line["number"] for line in lines) == numbers
    assert all("dispatch-urban" in line["rule_ids"].split(" | ") for line in lines)
    assert {line["responsible"] for line in lines} == {"technician sh"}
    html = msg.get_body(("html",)).get_content()
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert images and all(f"cid:{p['Content-ID'].strip('<>')}" in html for p in images)


def test_a_rerun_of_the_night_sends_no_second_digest(db, db_url, settings_for, service_data):
    overdue_calls(service_data)
    night(db, settings_for, db_url)
    before = len(outbox(db))

    again = night(db, settings_for, db_url)
    later = night(db, settings_for, db_url, AS_OF + timedelta(hours=1))  # same local day

    assert len(outbox(db)) == before
    assert again.counts["notices_queued"] == later.counts["notices_queued"] == 0


def test_one_item_goes_out_on_its_own_not_as_a_digest(db, db_url, settings_for, service_data):
    customer = service_data.customer("Han Meimei", locale="zh-CN")
    accepted = AS_OF - timedelta(hours=30)
    service_data.complaint(customer, accepted, number="CP-SH-001")
    night(db, settings_for, db_url)

    department = f"staff:{service_data.staff['responsible_department']}"
    [letter] = [n for n in outbox(db) if n.recipient_ref == department]
    assert (letter.template, letter.status, letter.digest_id) == ("escalation", "pending", None)


def test_a_long_night_shows_fifty_items_of_a_kind_and_counts_the_rest(
    db, db_url, settings_for, service_data
):
    overdue_calls(service_data, count=53)
    night(db, settings_for, db_url)

    rows = outbox(db)
    supervisor = f"staff:{service_data.staff['service_supervisor']}"
    [digest] = [n for n in rows if n.recipient_ref == supervisor and n.template == "digest"]
    bundled = [n for n in rows if n.digest_id == digest.id]
    priorities = [n for n in bundled if n.template == "dispatch_priority"]
    # Every item is kept and bundled; the message shows fifty of each kind and counts the rest.
    assert len(priorities) == 53
    assert digest.body_text.count("\n--- ") == sum(min(50, n) for n in _per_kind(bundled))
    assert digest.body_text.count("另有 3 项同类事项未列出") == _per_kind(bundled).count(53)
    assert "明日优先派工 (53)" in digest.subject
    assert "已单独发送的紧急事项 (53)" in digest.body_text  # the urgent breaches, listed


def _per_kind(items: list[Notice]) -> list[int]:
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item.template] = kinds.get(item.template, 0) + 1
    return list(kinds.values())


def test_the_overdue_letter_lists_the_most_overdue_and_attaches_them_all(
    db, db_url, settings_for, service_data
):
    overdue_calls(service_data, count=105)  # a row each, late for three rules
    night(db, settings_for, db_url)

    [letter] = [n for n in outbox(db) if n.template == "overdue_summary"]
    listed = [line for line in letter.body_text.splitlines() if line.startswith("- SR-SH-")]
    assert len(listed) == 100 and "另有 5 项，见附件 CSV 文件" in letter.body_text
    assert listed[0].startswith("- SR-SH-001") and listed[-1].startswith("- SR-SH-100")
    assert letter.body_html.count("<tr>") == 100 and "105" in letter.subject
    with db.connect() as conn:
        data = conn.scalar(
            select(NoticeAttachment.data).where(
                NoticeAttachment.notice_id == letter.id, NoticeAttachment.content_type == "text/csv"
            )
        )
    assert len(data.decode("utf-8-sig").splitlines()) == 1 + 105
