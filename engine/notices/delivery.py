"""Deliver the outbox to a mail server or a folder of .eml files: never twice, never lost.

How `deliver` moves a row of `notices` (OUTBOX_STATES):

    pending, or failed and due ── claim, commit ──▶ sending ── handed over:
        250, accepted ...................................... ▶ sent
        4xx, or refused / reset before DATA ................ ▶ failed, due again after BACKOFF
                                                               (the 7th such failure ▶ dead)
        5xx, or a missing / invalid address ................ ▶ dead
        timeout or disconnect after DATA went out .......... ▶ unknown
    sending when a delivery starts (an earlier one crashed between handing over and recording):
        written again by an idempotent sender (.eml files), otherwise ▶ unknown

`dead` and `unknown` rows stay put until a person looks; nothing resends them. Rows are committed
as `sending` before the server hears of them and results are committed in short transactions
right after each batch, so a crash leaves at worst rows in `sending`, never a letter sent twice.
Deliveries must not overlap (the run lock's job): another one's `sending` rows would look like
crash leftovers.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import tempfile
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from sqlalchemy import ColumnElement, Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from engine.db.models import Notice, NoticeAttachment
from engine.errors import (
    DeliveryError,
    InternalError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UsageError,
)
from engine.notices.message import build_message, parse_mailbox, validate_address
from engine.notices.window import SendWindow
from engine.settings import Settings, SmtpSettings

__all__ = [
    "BACKOFF",
    "DeliveryOutcomeUnknown",
    "DeliveryReport",
    "EmlDirectorySender",
    "MessageSender",
    "Outcome",
    "SendResult",
    "SmtpSender",
    "Undelivered",
    "deliver",
    "eml_filename",
    "sender_from_settings",
    "translate_smtp_error",
]

# Waits after the 1st..6th failed attempt; the 7th failure makes the row dead.
BACKOFF: tuple[timedelta, ...] = (
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
)
CRASH_REASON = (
    "found in 'sending' when a delivery started: an earlier delivery stopped between handing "
    "it over and recording the result, so it may or may not have been sent; not resent"
)


class DeliveryOutcomeUnknown(DeliveryError):
    """The connection failed after the message data went out: the server may have accepted it."""


class Outcome(StrEnum):
    """What became of one message handed to a sender."""

    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome for one message, with the server's reply or our reason."""

    outcome: Outcome
    detail: str = ""

    @classmethod
    def from_error(cls, error: DeliveryError) -> SendResult:
        """The result a translated delivery error stands for."""
        if isinstance(error, PermanentDeliveryError):
            return cls(Outcome.PERMANENT, str(error))
        if isinstance(error, DeliveryOutcomeUnknown):
            return cls(Outcome.UNKNOWN, str(error))
        return cls(Outcome.TRANSIENT, str(error))


class MessageSender(Protocol):
    """Hands messages over; an `idempotent` sender may safely get the same Message-ID twice."""

    idempotent: bool

    async def send_batch(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send every message; one result per message in the same order, never raising for one."""
        ...


# ---------------------------------------------------------------- .eml files


def eml_filename(message_id: str) -> str:
    """A file name that is safe on any file system and the same for the same Message-ID."""
    core = message_id.strip().strip("<>")
    safe = re.sub(r"[^A-Za-z0-9._@+=-]", "_", core).lstrip(".")[:120]
    if safe != core:
        # Replacing characters could make two ids collide; a digest of the original cannot.
        safe = f"{safe}-{hashlib.sha256(message_id.encode()).hexdigest()[:16]}"
    return f"{safe}.eml"


class EmlDirectorySender:
    """Writes each message to `<directory>/<Message-ID>.eml`; rewriting one is harmless."""

    idempotent = True

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    async def send_batch(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Write every message atomically (temporary file, fsync, rename)."""
        return await asyncio.to_thread(self._write_all, messages)

    def _write_all(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create outbox folder {self.directory}: {exc}"
            return [SendResult(Outcome.TRANSIENT, reason) for _ in messages]
        results = [self._write_one(msg) for msg in messages]
        try:
            _fsync_directory(self.directory)
        except OSError as exc:
            # The renames may not survive a power cut; writing again later is harmless.
            reason = f"cannot sync outbox folder {self.directory}: {exc}"
            results = [
                SendResult(Outcome.TRANSIENT, reason) if r.outcome is Outcome.SENT else r
                for r in results
            ]
        return results

    def _write_one(self, msg: EmailMessage) -> SendResult:
        message_id = msg.get("Message-ID")
        if not message_id:
            return SendResult(Outcome.PERMANENT, "message has no Message-ID")
        target = self.directory / eml_filename(str(message_id))
        try:
            data = _serialise(msg)
        except PermanentDeliveryError as exc:
            return SendResult.from_error(exc)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            return SendResult(Outcome.TRANSIENT, f"cannot write {target}: {exc}")
        return SendResult(Outcome.SENT, f"written to {target}")


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- SMTP


def translate_smtp_error(exc: BaseException, *, data_sent: bool) -> DeliveryError:
    """Map an aiosmtplib or socket error to the engine's tree; `data_sent`: DATA went out."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 400 <= exc.code < 600:
        reply = f"{exc.code} {exc.message}".strip()
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            # A refused sender (wrong mail_from, login missing) would sink every letter alike;
            # they stay retryable while someone fixes the configuration.
            return TransientDeliveryError(f"mail server refused the sender {exc.sender}: {reply}")
        if exc.code >= 500:
            return PermanentDeliveryError(f"mail server refused it: {reply}")
        return TransientDeliveryError(f"mail server deferred it: {reply}")
    what = str(exc) or type(exc).__name__
    if data_sent:
        return DeliveryOutcomeUnknown(
            f"connection failed after the message data was sent ({what}); "
            "the server may have accepted it, so it is not resent automatically"
        )
    return TransientDeliveryError(f"connection failed before the message was sent: {what}")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serialise(msg: EmailMessage) -> bytes:
    try:
        return msg.as_bytes()
    except Exception as exc:  # a letter that cannot be written out is that letter's problem
        raise PermanentDeliveryError(f"cannot serialise the message: {exc}") from exc


def _envelope(msg: EmailMessage) -> tuple[str, list[str]]:
    senders = getattr(msg["From"], "addresses", ())
    if len(senders) != 1:
        raise PermanentDeliveryError("message needs exactly one From address")
    recipients: list[Address] = []
    for name in ("To", "Cc"):
        for header in msg.get_all(name, []):
            recipients.extend(getattr(header, "addresses", ()))
    if not recipients:
        raise PermanentDeliveryError("message has no recipient")
    return (
        validate_address(senders[0].addr_spec),
        [validate_address(a.addr_spec) for a in recipients],
    )


class SmtpSender:
    """Sends through one SMTP server, reusing `concurrency` connections across a batch."""

    idempotent = False

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if settings.host is None:
            raise UsageError("smtp.host is not set; without it notices go to .eml files")
        if settings.security == "none" and not _is_loopback(settings.host):
            raise UsageError(
                f"smtp.security = none is only allowed for a loopback server, not {settings.host}"
            )
        self._settings = settings
        self._host = settings.host
        self._tls_context = tls_context
        self._local_hostname = local_hostname

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._settings.port}"

    async def send_batch(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send the batch over at most `concurrency` connections, each kept for many messages."""
        results: list[SendResult | None] = [None] * len(messages)
        envelopes: dict[int, tuple[str, list[str]]] = {}
        for i, msg in enumerate(messages):
            try:
                envelopes[i] = _envelope(msg)
            except PermanentDeliveryError as exc:
                results[i] = SendResult.from_error(exc)
        todo = deque(sorted(envelopes))
        connect_errors: list[DeliveryError] = []
        if self._local_hostname is None and todo:
            # aiosmtplib would look the FQDN up once per connection; it can take seconds.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)

        async def work() -> None:
            smtp: aiosmtplib.SMTP | None = None
            try:
                while todo:
                    if smtp is None or not smtp.is_connected:
                        try:
                            smtp = await self._connect()
                        except DeliveryError as exc:
                            # Other connections may still work; they take this one's share.
                            connect_errors.append(exc)
                            return
                    if not todo:
                        break
                    i = todo.popleft()
                    try:
                        # Serialised here, not up front, so that it overlaps the server's work
                        # on the other connections' messages.
                        data = _serialise(messages[i])
                    except PermanentDeliveryError as exc:
                        results[i] = SendResult.from_error(exc)
                        continue
                    results[i] = await self._send_one(smtp, *envelopes[i], data)
            finally:
                if smtp is not None:
                    await _quit(smtp)

        workers = min(self._settings.concurrency, len(todo))
        await asyncio.gather(*(work() for _ in range(workers)))
        if todo:
            error = connect_errors[-1] if connect_errors else TransientDeliveryError("not tried")
            for i in todo:
                results[i] = SendResult.from_error(error)
        if any(r is None for r in results):
            raise InternalError("SMTP batch ended with messages neither sent nor failed")
        return [r for r in results if r is not None]

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=s.port,
            use_tls=s.security == "tls",
            # STARTTLS is done by hand below so that a server not offering it is refused
            # with a clear reason, and so that the login can only happen after it.
            start_tls=False,
            timeout=s.timeout_s,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()
            if s.security == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise TransientDeliveryError(
                        f"mail server {self._where} does not offer STARTTLS, so TLS was not "
                        "available; refusing to send in clear text (smtp.security = starttls)"
                    )
                await smtp.starttls()
            if s.username is not None:
                password = s.password.get_secret_value() if s.password is not None else ""
                await smtp.login(s.username, password)
        except DeliveryError:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            detail = (
                f"{exc.code} {exc.message}"
                if isinstance(exc, aiosmtplib.SMTPResponseException)
                else str(exc) or type(exc).__name__
            )
            if isinstance(exc, ssl.SSLError):
                detail = f"TLS failed: {detail}"
            raise TransientDeliveryError(
                f"cannot open a session with mail server {self._where}: {detail}"
            ) from exc
        return smtp

    async def _send_one(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: list[str], data: bytes
    ) -> SendResult:
        data_sent = False
        try:
            await smtp.mail(sender)
            for recipient in recipients:
                await smtp.rcpt(recipient)
            if not smtp.is_connected:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before DATA")
            # From here on a lost connection may hide an accepted message.
            data_sent = True
            reply = await smtp.data(data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected:
                await _reset(smtp)
            return SendResult.from_error(translate_smtp_error(exc, data_sent=data_sent))
        return SendResult(Outcome.SENT, f"{reply.code} {reply.message}".strip())


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    # A refused MAIL/RCPT/DATA leaves a half-open transaction; RSET clears it for the next one.
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if not smtp.is_connected:
        return
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


def sender_from_settings(settings: Settings) -> MessageSender:
    """SMTP when a host is configured, otherwise .eml files in `outbox_dir`."""
    if settings.smtp.host is None:
        return EmlDirectorySender(settings.outbox_dir)
    return SmtpSender(settings.smtp)


# ---------------------------------------------------------------- the outbox


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A notice this delivery did not get out, and why."""

    notice_id: int
    message_id: str
    status: str  # failed, dead or unknown
    reason: str


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery did; `undelivered` lists every failed, dead and unknown notice."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    unknown: int = 0
    skipped: int = 0  # due rows left for a later delivery (over `limit`)
    held: int = 0  # customer letters rescheduled to the send window's next opening
    recovered: int = 0  # rows found in `sending` from an interrupted delivery
    undelivered: list[Undelivered] = field(default_factory=list)

    @property
    def needs_attention(self) -> list[Undelivered]:
        """Dead and unknown notices: nothing will retry them without a person."""
        return [u for u in self.undelivered if u.status in ("dead", "unknown")]

    def _count(self, notice: Notice, status: str, reason: str | None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        if status != "sent":
            self.undelivered.append(Undelivered(notice.id, notice.message_id, status, reason or ""))


def deliver(
    engine: Engine,
    sender: MessageSender,
    *,
    now: datetime,
    mail_from: str,
    reply_to: str | None = None,
    limit: int | None = None,
    batch_size: int = 500,
    commit_every: int = 50,
    window: SendWindow | None = None,
) -> DeliveryReport:
    """Send the due notices (pending, or failed and due at `now`) and record every outcome.

    With a `window`, a customer letter due outside it is not sent but rescheduled to the
    window's next opening in the customer's time zone.
    """
    # Synchronous on purpose (the CLI and the nightly job are): each batch runs its own event
    # loop, so this must not be called from inside a running one.
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if batch_size < 1 or commit_every < 1 or (limit is not None and limit < 0):
        raise ValueError("batch_size and commit_every must be positive, limit not negative")
    from_address = parse_mailbox(mail_from)
    reply_address = parse_mailbox(reply_to) if reply_to is not None else None
    report = DeliveryReport()
    leftovers = _recover(engine, sender, report)
    budget = limit
    while budget is None or budget > 0:
        size = batch_size if budget is None else min(batch_size, budget)
        if leftovers:
            batch = _load_sending(engine, leftovers[:size])
            del leftovers[:size]
        else:
            batch = _claim(engine, now, size, window, report)
        if not batch:
            break
        if budget is not None:
            budget -= len(batch)
        outcomes = _send(engine, sender, batch, now, from_address, reply_address)
        _record(engine, outcomes, now, report, commit_every)
    with engine.connect() as conn:
        count = select(func.count()).select_from(Notice).where(_due(now))
        report.skipped = conn.scalar(count) or 0
    return report


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Notice.status.in_(("pending", "failed")),
        or_(Notice.next_attempt_at.is_(None), Notice.next_attempt_at <= now),
    )


def _recover(engine: Engine, sender: MessageSender, report: DeliveryReport) -> list[int]:
    """Deal with rows a crashed delivery left in `sending`; returns the ids to write again."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if sender.idempotent:
            stmt = select(Notice.id).where(Notice.status == "sending").order_by(Notice.id)
            ids = list(session.scalars(stmt))
            report.recovered = len(ids)
            return ids
        stale = session.scalars(
            update(Notice)
            .where(Notice.status == "sending")
            .values(status="unknown", last_error=CRASH_REASON)
            .returning(Notice),
            execution_options={"synchronize_session": False},
        ).all()
    report.recovered = len(stale)
    for notice in sorted(stale, key=lambda n: n.id):
        report._count(notice, "unknown", CRASH_REASON)
    return []


def _load_sending(engine: Engine, ids: list[int]) -> list[Notice]:
    with Session(engine, expire_on_commit=False) as session:
        stmt = select(Notice).where(Notice.id.in_(ids), Notice.status == "sending")
        return list(session.scalars(stmt.order_by(Notice.id)))


def _claim(
    engine: Engine, now: datetime, size: int, window: SendWindow | None, report: DeliveryReport
) -> list[Notice]:
    """Mark up to `size` due rows `sending` and commit, before any of them is handed over."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        ids: list[int] = []
        while not ids:
            stmt = select(Notice.id, Notice.recipient_role, Notice.timezone).where(_due(now))
            due = session.execute(stmt.order_by(Notice.id).limit(size)).all()
            if not due:
                return []
            ids = [row.id for row in due]
            if window is not None:
                ids = _outside_window(session, due, now, window, report)
        # The due test is repeated so that a row another process took in between is left alone.
        claimed = session.scalars(
            update(Notice)
            .where(Notice.id.in_(ids), _due(now))
            .values(status="sending")
            .returning(Notice),
            execution_options={"synchronize_session": False},
        ).all()
    return sorted(claimed, key=lambda n: n.id)


def _outside_window(
    session: Session, due: Sequence[Any], now: datetime, window: SendWindow, report: DeliveryReport
) -> list[int]:
    """Reschedule the customer letters `window` holds back; returns the ids that may go now."""
    go: list[int] = []
    for row in due:
        opening = None
        if row.recipient_role == "customer":
            opening = window.next_opening(now, row.timezone)
        if opening is None:
            go.append(row.id)
            continue
        session.execute(update(Notice).where(Notice.id == row.id).values(next_attempt_at=opening))
        report.held += 1
    return go


def _attachments(engine: Engine, batch: list[Notice]) -> dict[int, list[NoticeAttachment]]:
    """The files of each notice in `batch`, a digest's including those of its items."""
    ids = [notice.id for notice in batch]
    owner = func.coalesce(Notice.digest_id, Notice.id)
    stmt = (
        select(owner, NoticeAttachment)
        .join(Notice, Notice.id == NoticeAttachment.notice_id)
        .where(or_(Notice.id.in_(ids), Notice.digest_id.in_(ids)))
        .order_by(NoticeAttachment.id)
    )
    files: dict[int, list[NoticeAttachment]] = {}
    with Session(engine, expire_on_commit=False) as session:
        for notice_id, attachment in session.execute(stmt):
            files.setdefault(notice_id, []).append(attachment)
    return files


def _send(
    engine: Engine,
    sender: MessageSender,
    batch: list[Notice],
    now: datetime,
    from_address: Address,
    reply_address: Address | None,
) -> list[tuple[Notice, SendResult, bool]]:
    """Build and hand over one batch; returns (notice, result, attempted) for every row."""
    outcomes: list[tuple[Notice, SendResult, bool]] = []
    to_send: list[Notice] = []
    messages: list[EmailMessage] = []
    files = _attachments(engine, batch)
    for notice in batch:
        try:
            msg = build_message(
                notice,
                mail_from=from_address,
                reply_to=reply_address,
                date=now,
                attachments=files.get(notice.id, ()),
            )
        except PermanentDeliveryError as exc:
            # A missing or bad address sinks this letter only; the batch goes on.
            outcomes.append((notice, SendResult.from_error(exc), False))
            continue
        to_send.append(notice)
        messages.append(msg)
    results = asyncio.run(sender.send_batch(messages)) if messages else []
    if len(results) != len(messages):
        raise InternalError(f"sender returned {len(results)} results for {len(messages)}")
    outcomes.extend((n, r, True) for n, r in zip(to_send, results, strict=True))
    return outcomes


_T = Notice.__table__.c
# Built once: constructing an UPDATE per row cost more than running it.
_RECORD = (
    update(Notice)
    .where(_T.id == bindparam("b_id"), _T.status == "sending")
    .values(
        status=bindparam("b_status", type_=_T.status.type),
        attempts=bindparam("b_attempts", type_=_T.attempts.type),
        sent_at=bindparam("b_sent_at", type_=_T.sent_at.type),
        next_attempt_at=bindparam("b_next_attempt_at", type_=_T.next_attempt_at.type),
        last_error=bindparam("b_last_error", type_=_T.last_error.type),
    )
)


def _record(
    engine: Engine,
    outcomes: list[tuple[Notice, SendResult, bool]],
    now: datetime,
    report: DeliveryReport,
    commit_every: int,
) -> None:
    """Write the outcomes in short transactions of at most `commit_every` rows each."""
    # One commit per row costs an fsync each (about 1 ms on PostgreSQL), which alone would cap
    # delivery near 1,000 letters a second; small groups keep every transaction short, and a
    # crash before a commit leaves those rows in `sending`, which is never resent blindly.
    with engine.connect() as conn:
        for start in range(0, len(outcomes), commit_every):
            group = [_outcome(*item, now) for item in outcomes[start : start + commit_every]]
            with conn.begin():
                conn.execute(_RECORD, [params for params, _ in group])
            for params, notice in group:
                report._count(notice, params["b_status"], params["b_last_error"])


def _outcome(
    notice: Notice, result: SendResult, attempted: bool, now: datetime
) -> tuple[dict[str, Any], Notice]:
    """The row's next state for `result`: sent, failed (with its next attempt), dead or unknown."""
    attempts = notice.attempts + (1 if attempted else 0)
    status, reason = "dead", result.detail
    sent_at = next_attempt_at = None
    if result.outcome is Outcome.SENT:
        status, reason, sent_at = "sent", None, now
    elif result.outcome is Outcome.TRANSIENT and attempts <= len(BACKOFF):
        status, next_attempt_at = "failed", now + BACKOFF[max(attempts, 1) - 1]
    elif result.outcome is Outcome.TRANSIENT:
        reason = f"gave up after {attempts} attempts; last: {result.detail}"
    elif result.outcome is Outcome.UNKNOWN:
        status = "unknown"
    params = {
        "b_id": notice.id,
        "b_status": status,
        "b_attempts": attempts,
        "b_sent_at": sent_at,
        "b_next_attempt_at": next_attempt_at,
        "b_last_error": reason,
    }
    return params, notice
