"""Building one letter: headers nobody can inject into, encodings every server accepts."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from engine.db.models import Notice
from engine.errors import PermanentDeliveryError, UsageError
from engine.notices.message import (
    build_message,
    clean_header_text,
    parse_mailbox,
    validate_address,
)
from engine.notices.outbox import Attachment

QUEUED = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
MAIL_FROM = "After-sales Service <service@aftersales.example>"


def notice(**overrides: Any) -> Notice:
    values: dict[str, Any] = {
        "dedup_key": "maintenance-renewal|contracts|1042|customer|7",
        "message_id": "<3f2a@aftersales.example>",
        "finding_key": "maintenance-renewal|contracts|1042",
        "template": "renewal",
        "recipient_role": "customer",
        "recipient_name": "Ana García",
        "recipient_address": "ana@example.es",
        "locale": "es",
        "subject": "Su contrato de mantenimiento vence el 23/12/2026",
        "body_text": "Estimada Ana:\n\nsu contrato vence pronto.\n",
        "body_html": "<p>Estimada Ana:</p><p>su contrato vence pronto.</p>",
        "status": "pending",
        "attempts": 0,
        "created_at": QUEUED,
        "run_id": "run-1",
    }
    values.update(overrides)
    return Notice(**values)


def wire(msg: EmailMessage) -> tuple[bytes, EmailMessage]:
    """The bytes a server would receive, and what a mail client reads from them."""
    raw = msg.as_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def text_of(part: EmailMessage) -> str:
    """A part's text with the wire's CRLF line ends read back as newlines, as clients do."""
    return part.get_content().replace("\r\n", "\n")


def test_letter_is_multipart_alternative_with_the_outbox_headers():
    letter = build_message(notice(), mail_from=MAIL_FROM, reply_to="help@aftersales.example")
    raw, msg = wire(letter)

    assert raw.isascii() and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert str(msg["From"]) == MAIL_FROM
    assert str(msg["To"]) == "Ana García <ana@example.es>"
    assert str(msg["Reply-To"]) == "help@aftersales.example"
    assert msg["Subject"] == "Su contrato de mantenimiento vence el 23/12/2026"
    assert msg["Message-ID"] == "<3f2a@aftersales.example>"
    assert msg["Date"].datetime == QUEUED
    assert msg["Content-Language"] == "es"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Aftersales-Template"] == "renewal"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert text_of(msg.get_body(("plain",))) == "Estimada Ana:\n\nsu contrato vence pronto.\n"
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())


def test_text_only_letter_is_a_single_part():
    _, msg = wire(build_message(notice(body_html=None), mail_from=MAIL_FROM))
    assert msg.get_content_type() == "text/plain"
    assert text_of(msg) == "Estimada Ana:\n\nsu contrato vence pronto.\n"
    assert msg["Content-Language"] == "es"


def test_chinese_name_and_subject_are_rfc2047_encoded_and_decode_back():
    subject = "维修保养合同到期通知：请于2026年12月23日前续约，以免影响您的设备保修服务"
    raw, msg = wire(
        build_message(
            notice(
                recipient_name="张伟",
                subject=subject,
                body_text="尊敬的张伟先生：\n您的合同即将到期。\n",
                locale="zh-CN",
            ),
            mail_from=MAIL_FROM,
        )
    )
    assert b"=?utf-8?" in raw
    assert msg["To"].addresses[0].display_name == "张伟"
    assert msg["Subject"] == subject
    assert text_of(msg.get_body(("plain",))) == "尊敬的张伟先生：\n您的合同即将到期。\n"
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"))


@pytest.mark.parametrize(
    "name",
    [
        "Zhang\r\nBcc: x@evil",
        "Zhang\nBcc: x@evil",
        "Zhang\rBcc: x@evil",
        "Zhang\u2028Bcc: x@evil",
        "Zhang\x85Bcc: x@evil",
        "Zhang\x0bBcc: x@evil\x00",
        "Zhang, x@evil <x@evil>",
        '"Zhang" <x@evil>, y@evil',
    ],
)
def test_customer_name_cannot_add_a_header_or_a_recipient(name):
    raw, msg = wire(build_message(notice(recipient_name=name), mail_from=MAIL_FROM))
    assert msg.get_all("Bcc") is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["ana@example.es"]
    assert not msg["To"].defects
    headers = raw.split(b"\r\n\r\n")[0]
    assert not any(line.lower().startswith(b"bcc:") for line in headers.split(b"\r\n"))


@pytest.mark.parametrize("subject", ["Renewal\r\nBcc: x@evil", "Renewal\u2029Bcc: x@evil"])
def test_subject_cannot_add_a_header(subject):
    _, msg = wire(build_message(notice(subject=subject), mail_from=MAIL_FROM))
    assert msg.get_all("Bcc") is None
    assert msg["Subject"] == "Renewal Bcc: x@evil"


def test_clean_header_text_replaces_every_line_break_by_one_space():
    assert clean_header_text(" a\r\n\tb\u2028c\x85d\x00 ") == "a b c d"


@pytest.mark.parametrize(
    "addr",
    [
        None,
        "",
        "   ",
        "ana@example.es\r\nBcc: x@evil",
        "ana@example.es, x@evil",
        "ana@example.es; x@evil",
        "ana.example.es",
        "ana@@example.es",
        "ana@x@example.es",
        "Ana <ana@example.es>",
        '"ana garcía"@example.es',
        "ana garcia@example.es",
        "ana@-example.es",
        "ana@example..es",
        ".ana@example.es",
        "ana@[127.0.0.1]",
        "ána@example.es",
    ],
)
def test_anything_but_one_plain_address_is_refused(addr):
    with pytest.raises(PermanentDeliveryError):
        validate_address(addr)


@pytest.mark.parametrize(
    ("addr", "plain"),
    [
        ("ana@example.es", "ana@example.es"),
        ("  ana.garcia+renewal@mail.example.es ", "ana.garcia+renewal@mail.example.es"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("zhang@例子.中国", "zhang@xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_plain_addresses_are_accepted(addr, plain):
    assert validate_address(addr) == plain


def test_missing_address_is_a_permanent_problem_of_that_letter():
    with pytest.raises(PermanentDeliveryError, match="no email address"):
        build_message(notice(recipient_address=None), mail_from=MAIL_FROM)


def test_sender_must_be_one_mailbox():
    assert parse_mailbox(MAIL_FROM).addr_spec == "service@aftersales.example"
    for bad in ["a@example.com, b@example.com", "not an address", "x <a@b@c>"]:
        with pytest.raises(UsageError):
            parse_mailbox(bad)


def test_message_id_is_kept_and_a_bare_one_gets_angle_brackets():
    _, msg = wire(build_message(notice(message_id="abc.1@aftersales.example"), mail_from=MAIL_FROM))
    assert msg["Message-ID"] == "<abc.1@aftersales.example>"
    with pytest.raises(PermanentDeliveryError, match="Message-ID"):
        build_message(notice(message_id="<no at sign>"), mail_from=MAIL_FROM)


def test_same_notice_gives_the_same_bytes():
    first = build_message(notice(), mail_from=MAIL_FROM).as_bytes()
    assert build_message(notice(), mail_from=MAIL_FROM).as_bytes() == first


def test_body_containing_the_boundary_gets_another_one():
    body = "--=_aftersales_alternative\nnot a part\n"
    _, msg = wire(build_message(notice(body_text=body, body_html="<p>x</p>"), mail_from=MAIL_FROM))
    assert msg.get_boundary() != "=_aftersales_alternative"
    assert text_of(msg.get_body(("plain",))) == body


def test_long_ascii_lines_and_control_characters_go_base64():
    long_line = "x" * 1200 + "\n"
    raw, msg = wire(build_message(notice(body_text=long_line, body_html=None), mail_from=MAIL_FROM))
    assert msg["Content-Transfer-Encoding"] == "base64"
    assert text_of(msg) == long_line
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_report_letter_carries_its_chart_inline_and_its_csv_as_a_file():
    chart = Attachment("overdue_SH-01.png", "image/png", b"\x89PNG fake", "overdue_SH-01.png@x")
    table = Attachment("overdue_SH-01.csv", "text/csv", "规则,单号\n".encode("utf-8-sig"))
    letter = notice(body_html='<p>见附件</p><img src="cid:overdue_SH-01.png@x">')

    raw, msg = wire(build_message(letter, mail_from=MAIL_FROM, attachments=[chart, table]))

    assert raw.isascii()
    assert msg.get_content_type() == "multipart/mixed"
    related = msg.get_payload()[0]
    assert related.get_content_type() == "multipart/related"
    assert [p.get_content_type() for p in related.walk()] == [
        "multipart/related", "multipart/alternative", "text/plain", "text/html", "image/png",
    ]  # fmt: skip
    image = related.get_payload()[1]
    assert image["Content-ID"] == "<overdue_SH-01.png@x>"
    assert image.get_content() == b"\x89PNG fake"
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == "overdue_SH-01.csv"
    assert attached.get_content().lstrip("\ufeff") == "规则,单号\n"


def test_attachment_names_cannot_bend_headers():
    evil = Attachment('a"\r\nBcc: x@evil.example\r\n.csv', "text/csv\r\nX: y", b"1,2\n")

    raw, msg = wire(build_message(notice(body_html=None), mail_from=MAIL_FROM, attachments=[evil]))

    assert b"\r\nBcc:" not in raw and b"\r\nX: y" not in raw
    [attached] = list(msg.iter_attachments())
    assert attached.get_content_type() == "application/octet-stream"
    assert "\n" not in attached.get_filename() and '"' not in attached.get_filename()
