"""A customer letter that cannot be emailed is not left to rot in the outbox: the role set in
`defaults.undeliverable` is asked, once per letter, to phone the customer or post it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.db.models import Notice, Staff
from engine.night import one_night
from engine.settings import SmtpSettings

FIRST = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a month before the end
BOUNCE = "550 5.1.1 <ada.wong@example.com>: mailbox unavailable"


def _ask_the_supervisor(rules: Path) -> None:
    """The policy asks the service supervisor (not the default, the hotline)."""
    contracts = rules / "contracts.yaml"
    text = contracts.read_text("utf-8")
    old = "    notify: [hotline_operator]\n"
    assert old in text
    contracts.write_text(text.replace(old, "    notify: [service_supervisor]\n", 1), "utf-8")


def _tasks(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Notice.recipient_role, Notice.recipient_address, Notice.body_text)
            .where(Notice.template == "undeliverable")
            .order_by(Notice.id)
        )
        return [tuple(row) for row in rows]


def test_bounced_and_addressless_letters_each_make_one_task_for_the_configured_role(
    service_data, focused_settings_for, smtp_server
):
    data = service_data
    handler, port = smtp_server
    handler.on_rcpt = lambda address: BOUNCE if "ada.wong" in address else None
    ada = data.customer("Ada Wong")
    bo = data.customer("Bo Chen", email=None)
    for customer in (ada, bo):
        data.contract(customer, date(2026, 12, 23), number=f"MC-{customer}")
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=5)
    settings = focused_settings_for(str(data.engine.url), smtp=smtp)
    _ask_the_supervisor(settings.rules)

    for cycle in range(3):  # the letters die in the first; the tasks come once, not per cycle
        one_night(settings, data.engine, as_of=FIRST + timedelta(minutes=15 * cycle))

    tasks = _tasks(data.engine)
    assert [(role, address) for role, address, _ in tasks] == [
        ("service_supervisor", "service_supervisor@sh.example"),
        ("service_supervisor", "service_supervisor@sh.example"),
    ]
    bounced, addressless = sorted(tasks, key=lambda task: "Ada Wong" not in task[2])
    # The supervisor reads Chinese: why it failed is said in Chinese; the server's answer is
    # quoted as the server gave it.
    assert "客户的邮件服务器拒收" in bounced[2] and "550 5.1.1" in bounced[2]
    assert "客户没有登记电子邮箱" in addressless[2] and "Bo Chen" in addressless[2]
    for _, _, text in tasks:
        assert "+86 21 5555 0000" in text  # the phone to call
        assert "MC-" in text  # the letter itself, to read out or post
    assert not [to for _, to, _ in handler.accepted if "ada.wong" in to[0]]


def test_a_letter_nobody_can_be_asked_about_waits_until_someone_holds_the_role(
    service_data, focused_settings_for
):
    data = service_data
    bo = data.customer("Bo Chen", email=None)
    data.contract(bo, date(2026, 12, 23), number="MC-BO")
    settings = focused_settings_for(str(data.engine.url))
    contracts = settings.rules / "contracts.yaml"
    text = contracts.read_text("utf-8")
    contracts.write_text(
        text.replace("    notify: [hotline_operator]\n", "    notify: [warehouse]\n", 1), "utf-8"
    )

    night = one_night(settings, data.engine, as_of=FIRST)
    assert _tasks(data.engine) == []
    assert night.run.set_aside["nobody in role warehouse to phone or post a letter"] == 1

    data.add(Staff, branch_id=data.branch, name="Wu Cang", email="wu@sh.example",
             role="warehouse", locale="zh-CN")  # fmt: skip
    one_night(settings, data.engine, as_of=FIRST + timedelta(minutes=15))
    assert [role for role, _, _ in _tasks(data.engine)] == ["warehouse"]
