"""Text from the database never makes a header line, even through RFC 2047 encoded words.

Python 3.11 before the CVE-2024-6923 fix decodes an encoded word in a display name or subject
and writes the CR/LF inside it verbatim when the header is folded; these tests parse the bytes
a server would receive, whatever the Python version.
"""

from __future__ import annotations

import email
import email.policy

import pytest
from test_message import MAIL_FROM, notice

from engine.notices.message import build_message, clean_header_text

BCC = "Bcc:_evil@attacker.test"

INJECTIONS = [
    pytest.param("Olivia\r\nBcc: evil@attacker.test\r\n Wright", id="raw-crlf"),
    pytest.param("Olivia\nBcc: evil@attacker.test", id="raw-lf"),
    pytest.param("Olivia\u2028Bcc: evil@attacker.test", id="u2028"),
    pytest.param(f"Olivia =?UTF-8?Q?=0D=0A{BCC}?= Wright", id="q-word"),
    pytest.param(f"Olivia =?utf-8?q?=0A{BCC}?= Wright", id="q-word-lf"),
    pytest.param("Olivia =?UTF-8?B?DQpCY2M6IGV2aWxAYXR0YWNrZXIudGVzdA==?= Wright", id="b-word"),
    pytest.param("Olivia =?UTF-8?B?DQpCY2M6IGV2aWxAYXR0YWNrZXIudGVzdA?= Wright", id="b-unpadded"),
    pytest.param(f"Olivia =?UTF-8?Q?=E2=80=A8{BCC}?= Wright", id="q-word-u2028"),
    pytest.param(f"Olivia =?UTF-8?Q?=00=0D=0A{BCC}?= Wright", id="q-word-nul"),
    pytest.param(f"Olivia =?x-unknown?Q?=0D=0A{BCC}?= Wright", id="unknown-charset"),
    pytest.param(f"Olivia =?UTF-8*en?Q?=0D=0A{BCC}?= Wright", id="rfc2231-language"),
    pytest.param(f"Olivia=?UTF-8?Q?=0D=0A{BCC}?=Wright", id="mid-word"),
    # Encoded twice: one decoding leaves an encoded word the email package would decode again.
    pytest.param(
        "Olivia =?UTF-8?B?PT9VVEYtOD9RPz0wRD0wQUJjYzpfZXZpbEBhdHRhY2tlci50ZXN0Pz0=?= Wright",
        id="double-encoded",
    ),
]


def _header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n")[0].split(b"\r\n")


def _assert_one_recipient_no_bcc(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_all("Bcc") is None
    assert len(parsed.get_all("To")) == 1
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ana@example.es"]
    assert not any(line.lower().startswith(b"bcc:") for line in _header_lines(raw))
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw
    return parsed


@pytest.mark.parametrize("name", INJECTIONS)
def test_customer_name_with_encoded_line_break_makes_no_bcc_header(name):
    raw = build_message(notice(recipient_name=name), mail_from=MAIL_FROM).as_bytes()
    parsed = _assert_one_recipient_no_bcc(raw)
    shown = parsed["To"].addresses[0].display_name
    assert shown.startswith("Olivia") and "evil@attacker.test" in shown
    assert not any(c in shown for c in "\r\n\x00\u2028")


@pytest.mark.parametrize("subject", INJECTIONS)
def test_subject_with_encoded_line_break_makes_no_bcc_header(subject):
    raw = build_message(notice(subject=subject), mail_from=MAIL_FROM).as_bytes()
    parsed = _assert_one_recipient_no_bcc(raw)
    assert parsed["Subject"].startswith("Olivia")
    assert not any(c in parsed["Subject"] for c in "\r\n\x00\u2028")


def test_an_encoded_name_reads_as_its_decoded_text():
    assert clean_header_text("=?UTF-8?Q?Ana_Garc=C3=ADa?=") == "Ana García"
    assert clean_header_text("=?UTF-8?B?5byg5Lyf?= =?UTF-8?B?5YWI55Sf?=") == "张伟先生"
    injected = clean_header_text("Olivia =?UTF-8?Q?=0D=0ABcc:_x@y?= Wright")
    assert injected.split() == ["Olivia", "Bcc:", "x@y", "Wright"]
    assert "\n" not in injected and "\r" not in injected


def test_plain_names_are_left_alone():
    for name in ["Ana García", "张伟", "O'Brien & Sons", "Zoë = 1?", "a =? b"]:
        raw = build_message(notice(recipient_name=name), mail_from=MAIL_FROM).as_bytes()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["To"].addresses[0].display_name == name.replace("=?", "= ?")
