"""Delivery under faults, against real parts: `aftersales deliver` killed with SIGKILL, a second
SQLite connection holding the write lock, a closed port, a server refusing the login, a
certificate the client does not trust, a server slow to answer after DATA."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from mailserver import Recorder, free_port
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session
from test_delivery import MAIL_FROM, NOW, add_notices, plain, rows
from test_delivery import certificate as certificate

from engine.db.models import Notice, Staff
from engine.errors import DatabaseBusy
from engine.night import deliver_outbox
from engine.notices.delivery import OutcomeJournal, SmtpSender, deliver
from engine.settings import SmtpSettings

ROOT = Path(__file__).resolve().parents[2]
AFTERSALES = Path(sys.executable).with_name("aftersales")
CONCURRENCY = 4


def mid(notice_id: int) -> str:
    return f"<n{notice_id}.renewal@aftersales.example>"


def cli_env(url: str, tmp_path: Path, port: int | None = None, **extra: str) -> dict[str, str]:
    """The environment of an installed `aftersales` pointed at this test's database and server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
    env.update(
        AFTERSALES_DB=url,
        AFTERSALES_RULES=str(ROOT / "rules"),
        AFTERSALES_TEMPLATES=str(ROOT / "templates" / "notices"),
        AFTERSALES_ARTIFACTS_DIR=str(tmp_path / "runs"),
        AFTERSALES_OUTBOX_DIR=str(tmp_path / "outbox"),
    )
    if port is not None:
        env.update(
            AFTERSALES_SMTP__HOST="127.0.0.1",
            AFTERSALES_SMTP__PORT=str(port),
            AFTERSALES_SMTP__SECURITY="none",
            AFTERSALES_SMTP__TIMEOUT_S="5",
            AFTERSALES_SMTP__CONCURRENCY=str(CONCURRENCY),
        )
    env.update(extra)
    return env


def aftersales(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed command to its end."""
    return subprocess.run(
        [str(AFTERSALES), "--log-text", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def add_operations(db: Engine) -> None:
    """The operations desk, which engine alerts go to."""
    with db.begin() as conn:
        conn.execute(
            insert(Staff),
            {"id": 900, "branch_id": None, "name": "Ops Desk", "email": "ops@aftersales.example",
             "role": "operations", "locale": "en", "active": True},
        )  # fmt: skip


def alerts(db: Engine, template: str) -> list[Notice]:
    with Session(db) as session:
        stmt = select(Notice).where(Notice.template == template).order_by(Notice.id)
        return list(session.scalars(stmt))


@contextmanager
def serving(handler: Any, port: int | None = None, **options: Any) -> Iterator[int]:
    """aiosmtpd on loopback with `handler` (and Controller `options`); yields its port."""
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


# A server that wants a login, and lets it happen in clear text on loopback.
LOGIN_WANTED = {"auth_required": True, "auth_require_tls": False}


@pytest.fixture
def server() -> Iterator[tuple[Recorder, int]]:
    """A plain loopback SMTP server (the conftest one, but on a port we can also close)."""
    handler = Recorder()
    with serving(handler) as port:
        yield handler, port


# ---------------------------------------------------------------- 4. SIGKILL mid-batch


class Stalling(Recorder):
    """Accepts every message, but from the `at`-th on holds the reply until released: the
    server has the letter, the client has not heard so (the worst moment for a kill)."""

    def __init__(self, at: int, stall_when_held: int) -> None:
        super().__init__()
        self.at = at
        self.stall_when_held = stall_when_held
        self.seen = 0
        self.held = 0
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.settled = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self.settled:
            self.seen += 1
            if self.seen < self.at or self.release.is_set():
                return reply
            self.held += 1
            if self.held == self.stall_when_held:
                self.stalled.set()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        finally:  # also when the client's death cancels this session
            with self.settled:
                self.held -= 1
                self.settled.notify_all()
        return reply


def test_sigkill_mid_batch_leaves_at_most_the_letters_in_flight_unknown(db, db_url, tmp_path):
    ids = add_notices(db, 40)
    # Killed once every connection waits for its reply: the rows in flight are exactly those.
    handler = Stalling(at=15, stall_when_held=CONCURRENCY)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        env = cli_env(db_url, tmp_path, controller.port)
        killed = subprocess.Popen(
            [str(AFTERSALES), "--log-text", "deliver"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert handler.stalled.wait(60), "the delivery never had 4 letters in flight"
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(30)
        handler.release.set()
        with handler.settled:
            assert handler.settled.wait_for(lambda: handler.held == 0, timeout=30)
        accepted_before = set(handler.ids())

        rerun = aftersales("deliver", env=env, cwd=tmp_path)
    finally:
        controller.stop()

    assert rerun.returncode == 0, rerun.stderr
    by_id = rows(db)
    unknown = {i for i, n in by_id.items() if n.status == "unknown"}
    assert len(unknown) == CONCURRENCY  # the letters in flight, and only those
    assert {mid(i) for i in unknown} <= accepted_before
    assert all(by_id[i].status == "sent" for i in set(ids) - unknown)
    # Nothing lost, nothing twice: each letter reached the server exactly once.
    assert handler.ids() == Counter({mid(i): 1 for i in ids})
    assert len(accepted_before) < len(ids)  # the kill really came mid-batch


# ---------------------------------------------------------------- 5. a locked database


class Locker:
    """A second SQLite connection that takes the write lock (BEGIN EXCLUSIVE) on cue."""

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        self.locked = threading.Event()

    def lock(self) -> None:
        if not self.locked.is_set():
            self.conn.execute("BEGIN EXCLUSIVE")
            self.locked.set()

    def unlock(self) -> None:
        if self.locked.is_set():
            self.conn.execute("COMMIT")
            self.locked.clear()

    def close(self) -> None:
        self.unlock()
        self.conn.close()


class RetrySeen(logging.Handler):
    """Sets `event` when delivery logs that it is retrying a write."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "database busy, retrying":
            self.event.set()


@pytest.fixture
def locker(sqlite_url) -> Iterator[Locker]:
    holder = Locker(sqlite_url)
    yield holder
    holder.close()


@pytest.fixture
def sqlite_db(sqlite_url) -> Iterator[Engine]:
    from engine.db.schema import upgrade
    from engine.db.session import connect

    engine = connect(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def lock_at_fifth_letter(handler: Recorder, locker: Locker) -> None:
    # Taken before the server answers the 5th letter, so that answer has to wait for it.
    count = iter(range(1, 10_000))
    handler.on_data = lambda _s, _m: locker.lock() if next(count) == 5 else None


def test_outcomes_wait_for_a_lock_released_later_and_are_all_recorded(
    sqlite_db, locker, server, tmp_path
):
    handler, port = server
    ids = add_notices(sqlite_db, 20)
    lock_at_fifth_letter(handler, locker)
    seen = RetrySeen()
    logging.getLogger("aftersales.delivery").addHandler(seen)
    releaser = threading.Thread(target=lambda: seen.event.wait(60) and locker.unlock())
    releaser.start()
    journal = OutcomeJournal(tmp_path / "journal.jsonl", "test")
    try:
        report = deliver(
            sqlite_db, plain(port), now=NOW, mail_from=MAIL_FROM, journal=journal, patience_s=30
        )
    finally:
        logging.getLogger("aftersales.delivery").removeHandler(seen)
        seen.event.set()
        releaser.join()

    assert seen.event.is_set() and locker.locked.is_set() is False
    assert (report.sent, report.unknown, report.failed) == (20, 0, 0)
    assert {n.status for n in rows(sqlite_db).values()} == {"sent"}
    assert handler.ids() == Counter({mid(i): 1 for i in ids})
    assert not journal.path.exists()


def test_outcomes_kept_in_the_journal_when_the_lock_never_ends_and_recorded_next_time(
    sqlite_db, locker, server, tmp_path
):
    handler, port = server
    ids = add_notices(sqlite_db, 20)
    lock_at_fifth_letter(handler, locker)
    journal = OutcomeJournal(tmp_path / "runs" / "delivery-journal.jsonl", "test")

    with pytest.raises(DatabaseBusy, match=r"kept in .*delivery-journal\.jsonl"):
        deliver(
            sqlite_db, plain(port), now=NOW, mail_from=MAIL_FROM, journal=journal, patience_s=0.5
        )
    first = set(handler.ids())
    assert 5 <= len(first) < 20 and journal.path.exists()
    locker.unlock()

    again = deliver(sqlite_db, plain(port), now=NOW, mail_from=MAIL_FROM, journal=journal)

    assert again.from_journal >= 1
    assert (again.recovered, again.unknown) == (0, 0)  # every answer was kept: none in doubt
    assert {n.status for n in rows(sqlite_db).values()} == {"sent"}
    assert handler.ids() == Counter({mid(i): 1 for i in ids})
    assert not journal.path.exists()


def test_deliver_on_a_locked_database_exits_4_with_one_message(sqlite_db, locker, server, tmp_path):
    handler, port = server
    add_notices(sqlite_db, 3)
    locker.lock()
    env = cli_env(str(sqlite_db.url), tmp_path, port, AFTERSALES_DELIVERY__RECORD_PATIENCE_S="0.5")

    result = aftersales("deliver", env=env, cwd=tmp_path)

    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    [message] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "could not be written" in message and "locked" in message
    assert handler.accepted == []
    locker.unlock()
    assert {n.status for n in rows(sqlite_db).values()} == {"pending"}


# ---------------------------------------------------------------- 6. connect, login, TLS


@pytest.mark.slow
def test_server_down_leaves_letters_exits_5_and_alerts_operations_once_per_outage(
    db, db_url, tmp_path
):
    ids = add_notices(db, 5)
    add_operations(db)
    port = free_port()  # nothing listens there yet
    env = cli_env(db_url, tmp_path, port)

    down = [aftersales("deliver", env=env, cwd=tmp_path) for _ in range(3)]

    assert [r.returncode for r in down] == [5, 5, 5]
    assert "cannot open a session" in down[0].stderr
    logs = [r.stdout + r.stderr for r in down]
    assert "ERROR" in logs[0] and "mail server unusable" in logs[0]  # logged once per outage
    assert all("mail server unusable" not in log for log in logs[1:])
    for notice_id in ids:
        row = rows(db)[notice_id]
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, None)
    [alert] = alerts(db, "transport_failed")
    assert (alert.recipient_address, alert.status) == ("ops@aftersales.example", "pending")
    assert "cannot open a session" in alert.body_text

    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        back = aftersales("deliver", env=env, cwd=tmp_path)
    finally:
        controller.stop()
    assert back.returncode == 0, back.stderr
    assert handler.ids() == Counter({mid(i): 1 for i in ids} | {alert.message_id: 1})

    add_notices(db, 1)
    again = aftersales("deliver", env=env, cwd=tmp_path)  # a new outage: a new alert
    assert again.returncode == 5
    assert len(alerts(db, "transport_failed")) == 2


def _refuse_everyone(server, session, envelope, mechanism, auth_data) -> AuthResult:
    return AuthResult(success=False, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_refused_login_leaves_letters_and_alerts_operations_once(db, db_url, settings_for):
    handler = Recorder()
    ids = add_notices(db, 3)
    add_operations(db)
    with serving(handler, authenticator=_refuse_everyone, **LOGIN_WANTED) as port:
        smtp = SmtpSettings(
            host="127.0.0.1", port=port, security="none", username="svc",
            password=SecretStr("wrong"), timeout_s=5,
        )  # fmt: skip
        settings = settings_for(db_url, smtp=smtp)
        first = deliver_outbox(settings, db)
        second = deliver_outbox(settings, db)

    assert "AUTH failed" in (first.transport_failure or "")
    assert "535" in (first.transport_failure or "")
    assert second.transport_failure is not None
    assert (first.sent, first.failed, first.dead) == (0, 0, 0)
    assert all((rows(db)[i].status, rows(db)[i].attempts) == ("pending", 0) for i in ids)
    assert len(alerts(db, "transport_failed")) == 1
    assert handler.accepted == []


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_leaves_letters_untouched(db, certificate, security):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    handler = Recorder()
    tls: dict[str, Any] = (
        {"ssl_context": context} if security == "tls" else {"tls_context": context}
    )
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **tls)
    controller.start()
    ids = add_notices(db, 3)
    settings = SmtpSettings(host="127.0.0.1", port=controller.port, security=security, timeout_s=5)
    try:
        # The client trusts only the system's authorities, not the self-signed certificate.
        report = deliver(db, SmtpSender(settings), now=NOW, mail_from=MAIL_FROM)
    finally:
        controller.stop()

    assert "CERTIFICATE_VERIFY_FAILED" in (report.transport_failure or "")
    assert all((rows(db)[i].status, rows(db)[i].attempts) == ("pending", 0) for i in ids)
    assert handler.accepted == []


# ---------------------------------------------------------------- 7. settings and --check


@pytest.mark.parametrize(
    ("port", "security"), [(587, "tls"), (25, "tls"), (465, "starttls"), (465, "none")]
)
def test_security_mode_against_the_wrong_well_known_port_is_refused(port, security):
    with pytest.raises(ValidationError, match=f"does not fit port {port}"):
        SmtpSettings(host="mail.example.com", port=port, security=security)
    odd = SmtpSettings(host="mail.example.com", port=port, security=security, unusual_port=True)
    assert odd.port == port


def test_validate_reports_the_port_mismatch(tmp_path):
    env = cli_env("sqlite:///x.db", tmp_path)
    env.update(AFTERSALES_SMTP__HOST="mail.example.com", AFTERSALES_SMTP__PORT="587",
               AFTERSALES_SMTP__SECURITY="tls")  # fmt: skip

    result = aftersales("validate", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "does not fit port 587" in result.stderr


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.slow
def test_deliver_check_logs_in_and_sends_nothing(tmp_path):
    def svc_only(server, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    handler = Recorder()
    with serving(handler, authenticator=svc_only, **LOGIN_WANTED) as port:
        login = {"AFTERSALES_SMTP__USERNAME": "svc", "AFTERSALES_SMTP__PASSWORD": "s3cret"}
        env = cli_env("sqlite:///never-opened.db", tmp_path, port, **login)
        good = aftersales("deliver", "--check", env=env, cwd=tmp_path)
        env["AFTERSALES_SMTP__PASSWORD"] = "wrong"
        refused = aftersales("deliver", "--check", env=env, cwd=tmp_path)
        # Logged in, but the configured sender is not this account's to use.
        env["AFTERSALES_SMTP__PASSWORD"] = "s3cret"
        handler.on_mail = lambda _address: "553 5.7.1 Sender address not owned by user svc"
        not_ours = aftersales("deliver", "--check", env=env, cwd=tmp_path)
    closed = aftersales("deliver", "--check", env=cli_env("x", tmp_path, free_port()), cwd=tmp_path)

    assert good.returncode == 0, good.stderr
    assert "AUTH: logged in as svc" in good.stdout and "mail server OK" in good.stdout
    assert "sender service@aftersales.example accepted (then reset)" in good.stdout
    assert (refused.returncode, closed.returncode, not_ours.returncode) == (5, 5, 5)
    assert "refused the sender service@aftersales.example: 553" in not_ours.stderr
    assert "AUTH failed" in refused.stderr and "connect failed" in closed.stderr
    assert handler.accepted == []
    assert not (tmp_path / "never-opened.db").exists()


# ---------------------------------------------------------------- 9. the reply after DATA


def test_final_reply_gets_its_own_longer_timeout():
    assert SmtpSettings().data_timeout_s >= 300  # RFC 5321 4.5.3.2: at least 10 minutes


def test_slow_final_reply_past_the_command_timeout_is_still_sent(db, server):
    handler, port = server
    [nid] = add_notices(db)
    answered = threading.Event()

    async def think_then_accept(server: Any, session, envelope) -> str:
        # Longer than the command timeout: the wait ends when the client's timeout would have.
        await asyncio.get_running_loop().run_in_executor(None, answered.wait, 1.0)
        handler.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    handler.handle_DATA = think_then_accept  # type: ignore[method-assign]
    report = deliver(db, plain(port, timeout_s=0.3), now=NOW, mail_from=MAIL_FROM)

    assert (report.sent, report.unknown) == (1, 0)
    assert rows(db)[nid].status == "sent"


def test_unknown_letters_are_listed_to_operations_once(db, db_url, server, settings_for):
    handler, port = server
    ids = add_notices(db, 3)
    add_operations(db)
    lost = mid(ids[1])
    original = handler.handle_DATA

    async def hang_up_on_one(server: Any, session, envelope) -> str:
        if f"Message-ID: {lost}".encode() in envelope.content:
            server.transport.close()  # the client never hears whether it was taken
            return "250 OK"
        return await original(server, session, envelope)

    handler.handle_DATA = hang_up_on_one  # type: ignore[method-assign]
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=5)
    report = deliver_outbox(settings_for(db_url, smtp=smtp), db)

    assert [u.message_id for u in report.unknown_notices] == [lost]
    [alert] = alerts(db, "outcome_unknown")
    assert lost in alert.body_text and alert.status == "sent"
    assert handler.ids()[alert.message_id] == 1
