"""Urgent staff notices go out at once and are listed in the next digest; other staff items
wait as data across cycles and are rendered only when a digest shows them."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from test_digests import AS_OF, MAIL_FROM, outbox, smtp

from engine.db.catalogue import entity_table
from engine.db.models import ServiceRequest, Staff
from engine.findings import Finding
from engine.notices.delivery import deliver
from engine.notices.digest import bundle_digests
from engine.notices.outbox import finding_context, queue_notices
from engine.notices.recipients import Directory
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy, load_policy
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates" / "notices"
RECEIVED = datetime(2026, 11, 19, 1, 30, tzinfo=UTC)  # Thursday 09:30 in Shanghai


class CountingTemplates(NoticeTemplates):
    """The shipped templates, counting how many letters of each notice are rendered."""

    def __init__(self, folder: Path = TEMPLATES):
        super().__init__(folder)
        self.renders: Counter[str] = Counter()

    def render(self, name: str, wanted_locale: str | None, context: dict[str, Any]):
        self.renders[name] += 1
        return super().render(name, wanted_locale, context)


def policy() -> Policy:
    return load_policy(ROOT / "rules", NoticeTemplates(TEMPLATES))


def calls(data, count: int, start: int = 1) -> list[int]:
    customer = data.customer("Li Lei", locale="zh-CN")
    return [
        data.request(customer, RECEIVED + timedelta(minutes=i), number=f"SR-SH-{i:03d}")
        for i in range(start, start + count)
    ]


def findings(db, ids: list[int], rule_id: str, state: str, rules: Policy) -> list[Finding]:
    """The findings `rule_id` makes in `state` for the calls `ids`, with their notices."""
    rule = next(c.rule for c in rules.rules() if c.rule.id == rule_id)
    action = rule.actions()[state]
    with db.connect() as conn:
        table = ServiceRequest.__table__
        rows = conn.execute(select(table).where(table.c.id.in_(ids)).order_by(table.c.id))
        records = [dict(row._mapping) for row in rows]
    return [
        Finding(
            rule_id=rule_id,
            family="deadline",
            entity="service_requests",
            entity_id=str(record["id"]),
            occurrence=record["received_at"].isoformat(),
            state=state,
            reason=f"{record['number']} is late",
            due_at=RECEIVED,
            notices=action.notices(),
            record=record,
            details={"deadline": RECEIVED, "used": timedelta(hours=7)},
        )
        for record in records
    ]


def queue(db, found: list[Finding], run_id: str, templates: NoticeTemplates, rules: Policy):
    with db.begin() as conn:
        return queue_notices(
            conn, found, policy=rules, templates=templates, mail_from=MAIL_FROM,
            run_id=run_id, as_of=AS_OF,
        )  # fmt: skip


def bundle(db, run_id: str, templates: NoticeTemplates, **kw: Any):
    with db.begin() as conn:
        return bundle_digests(
            conn, templates=templates, mail_from=MAIL_FROM, run_id=run_id, as_of=AS_OF, **kw
        )


def to(handler, address: str) -> list[Any]:
    return [m for m in handler.messages() if m["To"].addresses[0].addr_spec == address]


SUPERVISOR = "service_supervisor@sh.example"


def test_an_urgent_breach_goes_out_in_the_same_run_on_its_own(
    db, db_url, settings_for, service_data, smtp_server
):
    handler, port = smtp_server
    calls(service_data, 1)
    run_night(settings_for(db_url), db, as_of=AS_OF)

    supervisor = f"staff:{service_data.staff['service_supervisor']}"
    mine = [n for n in outbox(db) if n.recipient_ref == supervisor]
    [breach] = [n for n in mine if n.template == "escalation"]
    assert (breach.status, breach.urgent, breach.digest_id) == ("pending", True, None)
    assert breach.body_text and breach.context is None  # rendered when queued

    report = deliver(db, smtp(port), now=AS_OF, mail_from=MAIL_FROM)
    assert report.failed == report.dead == report.unknown == 0
    messages = to(handler, SUPERVISOR)
    assert breach.message_id in [m["Message-ID"] for m in messages]
    [alone] = [m for m in messages if m["Message-ID"] == breach.message_id]
    assert alone["Subject"] == breach.subject  # on its own, not inside a digest


def test_the_next_digest_lists_an_urgent_item_as_sent_and_does_not_send_it_again(
    db, service_data, smtp_server
):
    handler, port = smtp_server
    rules, templates = policy(), NoticeTemplates(TEMPLATES)
    urgent_call, *others = calls(service_data, 3)
    queue(
        db, findings(db, [urgent_call], "dispatch-urban", "breach", rules), "c1", templates, rules
    )
    deliver(db, smtp(port), now=AS_OF, mail_from=MAIL_FROM)
    assert len(to(handler, SUPERVISOR)) == 1

    queue(db, findings(db, others, "dispatch-same-day", "breach", rules), "c2", templates, rules)
    bundle(db, "c2", templates)
    sent_at = AS_OF + timedelta(minutes=15)
    deliver(db, smtp(port), now=sent_at, mail_from=MAIL_FROM)

    rows = outbox(db)
    [urgent] = [n for n in rows if n.urgent]
    [digest] = [n for n in rows if n.template == "digest"]
    assert urgent.listed_in == digest.id and urgent.digest_id is None
    messages = to(handler, SUPERVISOR)
    assert [m["Message-ID"] for m in messages] == [urgent.message_id, digest.message_id]
    text = messages[1].get_body(("plain",)).get_content()
    assert "已单独发送的紧急事项 (1)" in text
    assert f"{urgent.subject} (发送于 " in text
    assert "SR-SH-001" not in text.split("已单独发送")[0]  # listed, not shown again in full

    # A later digest has new items only: the urgent one was listed once.
    more = calls(service_data, 2, start=10)
    queue(db, findings(db, more, "dispatch-same-day", "breach", rules), "c3", templates, rules)
    bundle(db, "c3", templates)
    deliver(db, smtp(port), now=sent_at + timedelta(days=1), mail_from=MAIL_FROM)
    later = to(handler, SUPERVISOR)[2].get_body(("plain",)).get_content()
    assert "已单独发送" not in later
    assert len(to(handler, SUPERVISOR)) == 3


def test_held_items_of_two_cycles_go_out_in_one_digest_when_bundled(db, service_data):
    rules, templates = policy(), NoticeTemplates(TEMPLATES)
    first, second = calls(service_data, 2), calls(service_data, 1, start=20)
    queue(db, findings(db, first, "dispatch-same-day", "breach", rules), "c1", templates, rules)
    queue(db, findings(db, second, "dispatch-same-day", "breach", rules), "c2", templates, rules)
    assert {n.status for n in outbox(db)} == {"held"}

    # The branch's digest is not due: another branch's bundling leaves the items waiting.
    other = service_data.add_branch("BJ-01", "北京服务中心", "Asia/Shanghai", "cn-office", "bj")
    bundle(db, "c2", templates, branches={other, None})
    assert {n.status for n in outbox(db)} == {"held"}

    bundle(db, "c3", templates, branches={service_data.branch})
    rows = outbox(db)
    [digest] = [n for n in rows if n.template == "digest"]
    items = [n for n in rows if n.digest_id == digest.id]
    assert sorted(n.run_id for n in items) == ["c1", "c1", "c2"]
    assert {n.status for n in items} == {"bundled"}
    for number in ("SR-SH-001", "SR-SH-002", "SR-SH-020"):
        assert number in digest.body_text


def test_sixty_items_of_a_kind_render_fifty_and_count_ten(db, service_data):
    rules, templates = policy(), CountingTemplates()
    ids = calls(service_data, 60)
    queue(db, findings(db, ids, "dispatch-same-day", "breach", rules), "c1", templates, rules)
    assert templates.renders == Counter()  # held as data: nothing rendered when queued

    bundle(db, "c1", templates)
    assert templates.renders == Counter({"dispatch_priority": 50, "digest": 1})
    rows = outbox(db)
    [digest] = [n for n in rows if n.template == "digest"]
    items = [n for n in rows if n.digest_id == digest.id]
    assert len(items) == 60
    assert digest.body_text.count("\n--- ") == 50
    assert "另有 10 项同类事项未列出" in digest.body_text
    assert "明日优先派工 (60)" in digest.subject
    waiting = [n for n in items if not n.body_text]
    assert len(waiting) == 10 and all(n.context for n in waiting)  # counted, kept as data


def test_a_held_item_renders_as_it_would_have_when_queued(db, service_data):
    rules, stored = policy(), CountingTemplates()
    stored.samples = {}  # the context each notice is rendered with
    found = findings(db, calls(service_data, 1), "dispatch-same-day", "breach", rules)
    queue(db, found, "c1", stored, rules)
    bundle(db, "c1", stored)  # one item: rendered from its stored context, sent alone
    [item] = outbox(db)
    assert item.status == "pending" and item.context is None

    rule = next(c.rule for c in rules.rules() if c.rule.id == "dispatch-same-day")
    with db.connect() as conn:
        directory = Directory(conn, [found[0].record["customer_id"]], rules.roles)
        table = entity_table("service_requests")
        [person] = directory.resolve(table, "service_supervisor", found[0].record)
        original = finding_context(found[0], person, directory, rule, AS_OF)
    assert stored.samples["dispatch_priority"] == original  # datetimes, Decimals and all
    direct = NoticeTemplates(TEMPLATES).render("dispatch_priority", person.locale, original)
    assert (item.subject, item.body_text, item.body_html) == (
        direct.subject,
        direct.text,
        direct.html,
    )


def test_a_template_failing_at_digest_time_is_set_aside_with_an_alert(db, service_data, tmp_path):
    folder = tmp_path / "notices"
    shutil.copytree(TEMPLATES, folder)
    broken = folder / "dispatch_priority" / "zh-CN.txt.j2"
    broken.write_text(
        "{{ entity.number }}\n{% if entity.number == 'SR-SH-002' %}{{ entity.nothing.here }}"
        "{% endif %}\n",
        encoding="utf-8",
    )
    service_data.add(
        Staff, branch_id=None, name="Ops", email="ops@hq.example", role="operations", locale="en"
    )
    rules, templates = policy(), NoticeTemplates(folder)
    ids = calls(service_data, 3)
    queue(db, findings(db, ids, "dispatch-same-day", "breach", rules), "c1", templates, rules)

    report = bundle(db, "c1", templates)
    rows = outbox(db)
    [failed] = [n for n in rows if n.status == "render_failed"]
    assert failed.finding_key.startswith(f"dispatch-same-day|service_requests|{ids[1]}|")
    assert "cannot render: UndefinedError" in failed.last_error
    assert "dispatch_priority/zh-CN.txt.j2:2" in failed.last_error
    assert report.set_aside == 1
    [digest] = [n for n in rows if n.template == "digest"]
    items = [n for n in rows if n.digest_id == digest.id]
    assert sorted(n.body_text.split()[0] for n in items) == ["SR-SH-001", "SR-SH-003"]
    assert "(2)" in digest.subject
    [alert] = [n for n in rows if n.template == "render_failed"]
    assert (alert.status, alert.recipient_address) == ("pending", "ops@hq.example")
    assert "dispatch_priority/zh-CN.txt.j2:2" in alert.body_text
