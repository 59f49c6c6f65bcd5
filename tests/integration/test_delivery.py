"""The outbox against a real aiosmtpd server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from mailserver import Recorder, free_port
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from engine.db.models import Notice
from engine.notices.delivery import (
    EmlDirectorySender,
    MessageSender,
    SmtpSender,
    deliver,
    letter_name,
)
from engine.notices.window import SendWindow
from engine.settings import SmtpSettings

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
MAIL_FROM = "售后服务 After-sales <service@aftersales.example>"


def plain(port: int, **kw: Any) -> SmtpSender:
    settings: dict[str, Any] = {"timeout_s": 5, **kw}
    return SmtpSender(
        SmtpSettings(host="127.0.0.1", port=port, security="none", **settings),
        local_hostname="client.test",
    )


# ---------------------------------------------------------------- outbox rows


def add_notices(db: Engine, count: int = 1, **overrides: Any) -> list[int]:
    """Insert rendered notices with every NOT NULL column filled; returns their ids."""
    with Session(db) as session, session.begin():
        start = session.scalar(select(Notice.id).order_by(Notice.id.desc()).limit(1)) or 0
        rows = []
        for i in range(start + 1, start + 1 + count):
            values: dict[str, Any] = {
                "dedup_key": f"maintenance-renewal|contracts|{i}|customer|{i}",
                "message_id": f"<n{i}.renewal@aftersales.example>",
                "finding_key": f"maintenance-renewal|contracts|{i}",
                "template": "renewal",
                "recipient_role": "customer",
                "recipient_name": f"Customer {i}",
                "recipient_address": f"customer{i}@example.com",
                "locale": "en",
                "subject": f"Your maintenance contract {i} ends soon",
                "body_text": f"Dear customer {i},\n\nyour contract ends on 2026-12-23.\n",
                "body_html": None,
                "status": "pending",
                "attempts": 0,
                "created_at": NOW - timedelta(hours=1),
                "run_id": "run-1",
            }
            values.update(overrides)
            rows.append(Notice(**values))
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def rows(db: Engine) -> dict[int, Notice]:
    with Session(db, expire_on_commit=False) as session:
        return {n.id: n for n in session.scalars(select(Notice).order_by(Notice.id))}


def run(db: Engine, sender: MessageSender, now: datetime = NOW, **kw: Any):
    return deliver(db, sender, now=now, mail_from=MAIL_FROM, **kw)


# ---------------------------------------------------------------- the regulations' letters


def test_chinese_renewal_notice_arrives_with_both_parts_and_headers(db, smtp_server):
    handler, port = smtp_server
    [nid] = add_notices(
        db,
        recipient_name="张伟",
        recipient_address="zhang.wei@example.cn",
        locale="zh-CN",
        subject="维修保养合同到期通知：请于2026年12月23日前续约",
        body_text="尊敬的张伟先生：\n\n您的维修保养合同将于2026年12月23日到期。\n",
        body_html="<p>尊敬的张伟先生：</p><p>您的维修保养合同将于2026年12月23日到期。</p>",
    )
    report = run(db, plain(port))

    assert (report.sent, report.failed, report.dead, report.unknown) == (1, 0, 0, 0)
    [(mail_from, rcpt_tos, raw)] = handler.accepted
    assert mail_from == "service@aftersales.example"
    assert rcpt_tos == ["zhang.wei@example.cn"]
    assert raw.isascii()  # RFC 2047 headers and 7-bit bodies: no 8BITMIME needed
    [msg] = handler.messages()
    assert msg["From"].addresses[0].display_name == "售后服务 After-sales"
    assert str(msg["To"]) == "张伟 <zhang.wei@example.cn>"
    assert msg["Subject"] == "维修保养合同到期通知：请于2026年12月23日前续约"
    assert msg["Message-ID"] == f"<n{nid}.renewal@aftersales.example>"
    assert msg["Content-Language"] == "zh-CN"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Aftersales-Template"] == "renewal"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text.get_content_charset() == "utf-8"
    assert "您的维修保养合同将于2026年12月23日到期。" in text.get_content()
    assert "<p>尊敬的张伟先生：</p>" in html.get_content()
    row = rows(db)[nid]
    assert (row.status, row.sent_at, row.attempts, row.last_error) == ("sent", NOW, 1, None)


def test_greylisted_letters_are_retried_after_five_minutes_and_arrive_once(db, smtp_server):
    handler, port = smtp_server
    ids = add_notices(db, 10)
    deferred = {f"<n{i}.renewal@aftersales.example>" for i in ids[2:5]}
    seen: set[str] = set()

    def greylist(_server: Any, msg: EmailMessage) -> str | None:
        mid = msg["Message-ID"]
        if mid in deferred and mid not in seen:
            seen.add(mid)
            return "451 4.7.1 Greylisted, please try again later"
        return None

    handler.on_data = greylist
    first = run(db, plain(port))

    assert (first.sent, first.failed, first.dead, first.unknown) == (7, 3, 0, 0)
    failed = [n for n in rows(db).values() if n.status == "failed"]
    assert {n.message_id for n in failed} == deferred
    assert all(n.next_attempt_at == NOW + timedelta(minutes=5) for n in failed)
    assert all(n.attempts == 1 and "451" in (n.last_error or "") for n in failed)
    assert run(db, plain(port), now=NOW + timedelta(minutes=4)).sent == 0  # not due yet

    second = run(db, plain(port), now=NOW + timedelta(minutes=6))

    assert (second.sent, second.failed) == (3, 0)
    assert {n.status for n in rows(db).values()} == {"sent"}
    assert handler.ids() == Counter({f"<n{i}.renewal@aftersales.example>": 1 for i in ids})


def test_unknown_mailbox_550_is_dead_and_not_retried(db, smtp_server):
    handler, port = smtp_server
    [bad, good] = add_notices(db, 2)
    unknown = f"customer{bad}@example.com"
    handler.on_rcpt = lambda a: "550 5.1.1 No such user" if a == unknown else None

    report = run(db, plain(port))

    assert (report.sent, report.dead) == (1, 1)
    [aside] = report.needs_attention
    assert (aside.notice_id, aside.status) == (bad, "dead")
    assert "550" in aside.reason
    row = rows(db)[bad]
    assert (row.status, row.next_attempt_at) == ("dead", None)
    later = run(db, plain(port), now=NOW + timedelta(days=3))
    assert (later.sent, later.dead, later.failed) == (0, 0, 0)
    assert handler.ids() == Counter({f"<n{good}.renewal@aftersales.example>": 1})


def test_refused_sender_stops_the_delivery_and_charges_no_letter(db, smtp_server):
    # A 5xx to MAIL FROM is about our configuration, not the customer: the same for every
    # letter, so it is the server's failure, like a refused login; nothing may die of it.
    handler, port = smtp_server
    ids = add_notices(db, 3)
    handler.on_mail = lambda _address: "553 5.7.1 Sender address rejected: not logged in"

    report = run(db, plain(port))

    assert (report.sent, report.failed, report.dead, report.unknown) == (0, 0, 0, 0)
    assert "refused the sender" in (report.transport_failure or "")
    for row in rows(db).values():
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, None)
    assert sorted(rows(db)) == ids
    assert handler.accepted == []


def test_mail_server_down_leaves_every_letter_as_it_was(db):
    ids = add_notices(db, 5)
    report = run(db, plain(free_port()))  # nothing listens there

    assert (report.sent, report.failed, report.dead, report.unknown) == (0, 0, 0, 0)
    assert "cannot open a session" in (report.transport_failure or "")
    assert report.skipped == 5
    for row in rows(db).values():
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, None)
    assert sorted(rows(db)) == ids


@pytest.mark.parametrize("server_fault", ["hangs up", "answers too late"])
def test_connection_lost_after_data_is_unknown_and_never_resent(db, smtp_server, server_fault):
    handler, port = smtp_server
    [nid] = add_notices(db)

    async def keep_it_but_never_confirm(server: Any, session, envelope) -> str:
        # The server keeps the letter, but the client never hears its "250".
        with handler.lock:
            handler.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        if server_fault == "hangs up":
            server.transport.close()
        else:
            await asyncio.sleep(2)
        return "250 OK"

    original = handler.handle_DATA
    handler.handle_DATA = keep_it_but_never_confirm  # type: ignore[method-assign]
    report = run(db, plain(port, timeout_s=0.5, data_timeout_s=0.5))

    assert (report.sent, report.unknown) == (0, 1)
    row = rows(db)[nid]
    assert row.status == "unknown"
    assert "may have accepted" in (row.last_error or "")
    handler.handle_DATA = original  # type: ignore[method-assign]
    again = run(db, plain(port), now=NOW + timedelta(days=1))
    assert (again.sent, again.unknown, again.recovered) == (0, 0, 0)
    assert len(handler.accepted) == 1


def test_crash_leftover_in_sending_is_set_aside_not_resent_over_smtp(db, smtp_server):
    handler, port = smtp_server
    [crashed] = add_notices(db, status="sending", attempts=0)
    [fresh] = add_notices(db)

    report = run(db, plain(port))

    assert (report.recovered, report.unknown, report.sent) == (1, 1, 1)
    assert rows(db)[crashed].status == "unknown"
    assert "may or may not have been sent" in (rows(db)[crashed].last_error or "")
    assert handler.ids() == Counter({f"<n{fresh}.renewal@aftersales.example>": 1})
    assert run(db, plain(port), now=NOW + timedelta(days=1)).sent == 0


def test_crash_leftover_in_sending_is_written_once_more_as_eml(db, tmp_path):
    outbox = tmp_path / "outbox"
    [nid] = add_notices(db, status="sending")
    target = outbox / f"{NOW:%Y-%m-%d}_renewal_Customer-{nid}_{nid}.eml"
    outbox.mkdir()
    target.write_bytes(b"half of what the crashed run wrote")

    report = run(db, EmlDirectorySender(outbox))

    assert (report.recovered, report.sent, report.unknown) == (1, 1, 0)
    assert [p.name for p in outbox.iterdir()] == [target.name]
    msg = email.message_from_bytes(target.read_bytes(), policy=email.policy.default)
    assert msg["Message-ID"] == f"<n{nid}.renewal@aftersales.example>"
    assert rows(db)[nid].status == "sent"
    assert run(db, EmlDirectorySender(outbox)).sent == 0


def test_customer_name_cannot_inject_a_bcc(db, smtp_server):
    handler, port = smtp_server
    add_notices(db, recipient_name="Zhang\r\nBcc: x@evil", recipient_address="zhang@example.cn")

    report = run(db, plain(port))

    assert report.sent == 1
    [(_, rcpt_tos, raw)] = handler.accepted
    assert rcpt_tos == ["zhang@example.cn"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_all("Bcc") is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["zhang@example.cn"]
    assert b"\r\nBcc:" not in raw


def test_starttls_required_but_not_offered_sends_nothing(db, smtp_server):
    handler, port = smtp_server
    [nid] = add_notices(db)
    sender = SmtpSender(
        SmtpSettings(host="127.0.0.1", port=port, security="starttls", timeout_s=5),
        local_hostname="client.test",
    )

    report = run(db, sender)

    assert (report.sent, report.failed) == (0, 0)
    assert "TLS was not available" in (report.transport_failure or "")
    row = rows(db)[nid]
    assert (row.status, row.attempts) == ("pending", 0)
    assert handler.accepted == []


def test_missing_and_invalid_addresses_are_dead_and_the_batch_goes_on(db, smtp_server):
    handler, port = smtp_server
    [missing] = add_notices(db, recipient_address=None)
    [two] = add_notices(db, recipient_address="a@example.com, b@example.com")
    good = add_notices(db, 3)

    report = run(db, plain(port))

    assert (report.sent, report.dead) == (3, 2)
    by_id = rows(db)
    assert by_id[missing].last_error == "no email address"
    assert "more than one address" in (by_id[two].last_error or "")
    assert by_id[missing].attempts == 0  # nothing was tried
    assert len(handler.accepted) == len(good)


def test_seventh_deferral_makes_the_letter_dead(db, smtp_server):
    handler, port = smtp_server
    handler.on_data = lambda _server, _msg: "451 4.3.0 Try again later"
    [nid] = add_notices(db, status="failed", attempts=6, next_attempt_at=NOW)
    report = run(db, plain(port))

    assert (report.failed, report.dead) == (0, 1)
    row = rows(db)[nid]
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", 7, None)
    assert (row.last_error or "").startswith("gave up after 7 attempts")


def test_backoff_follows_the_schedule(db, smtp_server):
    handler, port = smtp_server
    handler.on_data = lambda _server, _msg: "451 4.3.0 Try again later"
    steps = [5, 30, 120, 360, 720, 1440]
    ids = [add_notices(db, status="failed", attempts=k, next_attempt_at=NOW)[0] for k in range(6)]
    run(db, plain(port))
    by_id = rows(db)
    waits = [(by_id[i].next_attempt_at - NOW) for i in ids]
    assert waits == [timedelta(minutes=m) for m in steps]


def test_limit_leaves_the_rest_for_the_next_delivery(db, smtp_server):
    handler, port = smtp_server
    add_notices(db, 7)

    report = run(db, plain(port), limit=5, batch_size=2)

    assert (report.sent, report.skipped) == (5, 2)
    assert run(db, plain(port)).sent == 2
    assert len(handler.ids()) == 7


def test_eml_files_are_the_default_and_rewriting_is_harmless(db, tmp_path):
    ids = add_notices(db, 3)
    report = run(db, EmlDirectorySender(tmp_path / "outbox"))
    assert report.sent == 3
    names = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert names == sorted(f"{NOW:%Y-%m-%d}_renewal_Customer-{i}_{i}.eml" for i in ids)


def test_many_letters_share_few_connections(db, smtp_server):
    handler, port = smtp_server
    sessions: set[int] = set()
    handler.on_data = lambda server, _msg: sessions.add(id(server)) and None
    add_notices(db, 200)

    report = run(db, plain(port, concurrency=2))

    assert report.sent == 200
    assert len(sessions) == 2


def test_eml_file_is_named_by_the_readers_date_template_and_recipient(db, tmp_path):
    outbox = tmp_path / "outbox"
    # Queued at 20:00 UTC: the 24th already for a reader in Shanghai.
    evening = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    [zhang] = add_notices(db, recipient_name="张伟", template="maintenance_expiry",
                          created_at=evening, timezone="Asia/Shanghai")  # fmt: skip
    [odd] = add_notices(db, recipient_name="../Ana /María\r\n<x>", template="complaint_received",
                        created_at=evening)  # fmt: skip

    assert run(db, EmlDirectorySender(outbox)).sent == 2

    assert sorted(p.name for p in outbox.iterdir()) == [
        f"2026-11-23_complaint_received_Ana-María-x_{odd}.eml",
        f"2026-11-24_maintenance_expiry_张伟_{zhang}.eml",
    ]


def test_letter_name_is_safe_on_any_file_system():
    name = letter_name(7, NOW, "quote", '.. / \\ : * ? " < > | \x00 CON')
    assert name == "2026-11-23_quote_CON_7"
    assert letter_name(8, NOW, "quote", "") == "2026-11-23_quote_nobody_8"


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"svc", b"s3cret")
    return AuthResult(success=ok)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_encrypted_and_authenticated_session(db, certificate, security):
    handler = Recorder()
    context = _server_context(certificate)
    options: dict[str, Any] = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the socket is encrypted anyway.
        else {"ssl_context": context, "auth_require_tls": False}
    )
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        authenticator=_authenticate,
        auth_required=True,
        **options,
    )
    controller.start()
    try:
        add_notices(db, 3)
        settings = SmtpSettings(
            host="127.0.0.1",
            port=controller.port,
            security=security,
            username="svc",
            password=SecretStr("s3cret"),
            timeout_s=5,
        )
        client = ssl.create_default_context(cafile=str(certificate[0]))
        report = run(db, SmtpSender(settings, tls_context=client, local_hostname="client.test"))
    finally:
        controller.stop()
    assert report.sent == 3
    assert len(handler.accepted) == 3


def test_customer_letters_wait_for_the_send_window_where_the_customer_lives(db, smtp_server):
    handler, port = smtp_server
    window = SendWindow.parse("09:00-20:00")
    # NOW is 02:00 on Tuesday in Shanghai, 19:00 on Monday in Madrid.
    [shanghai] = add_notices(db, timezone="Asia/Shanghai")
    [madrid] = add_notices(db, timezone="Europe/Madrid")
    [staff] = add_notices(
        db, timezone="Asia/Shanghai", recipient_role="service_manager", recipient_ref="staff:9"
    )

    first = run(db, plain(port), window=window)

    assert (first.sent, first.held) == (2, 1)
    assert rows(db)[shanghai].status == "pending"
    opens = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert rows(db)[shanghai].next_attempt_at == opens
    assert {rows(db)[madrid].status, rows(db)[staff].status} == {"sent"}
    assert run(db, plain(port), now=opens - timedelta(minutes=1), window=window).sent == 0

    at_nine = run(db, plain(port), now=opens, window=window)

    assert (at_nine.sent, at_nine.held) == (1, 0)
    assert sorted(handler.ids().values()) == [1, 1, 1]


def test_send_window_days_skip_to_the_next_open_day():
    window = SendWindow.parse("09:00-20:00", ("mon", "tue", "wed", "thu", "fri"))
    saturday_noon = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert window.next_opening(saturday_noon, "Asia/Shanghai") == datetime(
        2026, 11, 30, 1, 0, tzinfo=UTC
    )
    assert window.next_opening(saturday_noon, "Not/AZone") == datetime(
        2026, 11, 30, 9, 0, tzinfo=UTC
    )  # an unknown zone is read as UTC rather than holding the letter for ever
