"""A customer name that tries to add a recipient, from the database to a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime

import pytest

from engine.notices.delivery import deliver, sender_from_settings
from engine.run import run_night

AS_OF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        "Olivia =?UTF-8?Q?=0D=0ABcc:_evil@attacker.test?= Wright",
        "Olivia =?UTF-8?B?DQpCY2M6IGV2aWxAYXR0YWNrZXIudGVzdA==?= Wright",
        "Olivia\r\nBcc: evil@attacker.test",
        "Olivia\u2028Bcc: evil@attacker.test",
    ],
    ids=["q-word", "b-word", "raw-crlf", "u2028"],
)
def test_forged_bcc_in_a_customer_name_reaches_nobody(
    name, service_data, focused_settings_for, smtp_server
):
    handler, port = smtp_server
    olivia = service_data.customer(name, locale="en", email="olivia.wright@example.com")
    service_data.contract(olivia, date(2026, 12, 23), number="MC-0042")
    settings = focused_settings_for(
        str(service_data.engine.url),
        smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 5},
    )
    run_night(settings, service_data.engine, as_of=AS_OF)
    report = deliver(
        service_data.engine, sender_from_settings(settings), now=AS_OF, mail_from=settings.mail_from
    )
    assert report.sent >= 1

    recipients = [rcpt for _, rcpts, _ in handler.accepted for rcpt in rcpts]
    assert "evil@attacker.test" not in recipients
    assert recipients.count("olivia.wright@example.com") == 1
    (raw,) = [raw for _, rcpts, raw in handler.accepted if "olivia.wright@example.com" in rcpts]
    letter = email.message_from_bytes(raw, policy=email.policy.default)
    assert letter.get_all("Bcc") is None and len(letter.get_all("To")) == 1
    assert [a.addr_spec for a in letter["To"].addresses] == ["olivia.wright@example.com"]
    headers = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert not any(line.lower().startswith(b"bcc:") for line in headers)
    assert "MC-0042" in letter["Subject"]
