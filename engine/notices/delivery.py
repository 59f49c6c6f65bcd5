"""Deliver the outbox to a mail server or a folder of .eml files: never twice, never lost.

How `deliver` moves a row of `notices` (OUTBOX_STATES):

    pending, or failed and due ── claimed for one channel, committed ──▶ sending ── handed over:
        250, accepted ...................................... ▶ sent
        4xx, or refused / reset before DATA ................ ▶ failed, due again after BACKOFF
                                                               (the 7th such failure ▶ dead)
        5xx, or a missing / invalid address ................ ▶ dead
        no final reply after DATA (data_timeout_s) ......... ▶ unknown
        the session could not be (re)opened ................ ▶ back as it was (not charged)
    sending when a delivery starts (an earlier one was killed between handing over and recording):
        written again by an idempotent sender (.eml files), otherwise ▶ unknown

Each channel (one SMTP connection) carries one message at a time, and a row is claimed only
when a channel is free for it: the transaction that records the answers received since the
last one also claims the next rows, one per waiting channel. So at any instant at most
`concurrency` rows are `sending`, and a kill leaves at most that many `unknown`; every other
answer the server gave is already committed. `dead` and `unknown` rows stay put until a person
looks; nothing resends them.

If the outbox cannot be written (a lock held past `patience_s`, a full disk), delivery stops
claiming, keeps the answers it has, appends them to the journal (engine.notices.journal) and
raises DatabaseBusy; the next delivery applies the journal before anything else. If no
channel can open a session (server down, login refused, TLS failed) the delivery stops with
`transport_failure` set: the rows it did not hand over are as they were.

Deliveries must not overlap (the run lock's job): another one's `sending` rows would look like
crash leftovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from engine.db.models import Notice, NoticeAttachment
from engine.errors import DatabaseBusy, MailTransportError, PermanentDeliveryError
from engine.notices.journal import JOURNAL_NAME, OutcomeJournal
from engine.notices.message import build_message, parse_mailbox
from engine.notices.senders import (
    Channel,
    DeliveryOutcomeUnknown,
    EmlDirectorySender,
    MessageSender,
    Outcome,
    SendResult,
    eml_filename,
)
from engine.notices.smtp import SmtpSender, translate_smtp_error
from engine.notices.window import SendWindow
from engine.settings import Settings

__all__ = [
    "BACKOFF",
    "JOURNAL_NAME",
    "Channel",
    "DeliveryOutcomeUnknown",
    "DeliveryReport",
    "EmlDirectorySender",
    "MessageSender",
    "Outcome",
    "OutcomeJournal",
    "SendResult",
    "SmtpSender",
    "Undelivered",
    "check_transport",
    "deliver",
    "eml_filename",
    "sender_from_settings",
    "translate_smtp_error",
]

log = logging.getLogger("aftersales.delivery")
GATHER_S = 0.002
T = TypeVar("T")

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
    "found in 'sending' when a delivery started: an earlier delivery stopped while it was in "
    "flight, so it may or may not have been sent; not resent"
)


def sender_from_settings(settings: Settings) -> MessageSender:
    """SMTP when a host is configured, otherwise .eml files in `outbox_dir`."""
    if settings.smtp.host is None:
        return EmlDirectorySender(settings.outbox_dir)
    return SmtpSender(settings.smtp)


def check_transport(settings: Settings) -> list[str]:
    """Open one session as delivery would and close it, sending nothing; what was found.

    MailTransportError, with the step that failed, when no session can be had."""
    sender = sender_from_settings(settings)
    if isinstance(sender, SmtpSender):
        return asyncio.run(sender.probe())

    async def folder() -> list[str]:
        await sender.open()
        return [f"no smtp.host: letters are written as .eml files to {settings.outbox_dir}/"]

    return asyncio.run(folder())


# ---------------------------------------------------------------- the report


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
    skipped: int = 0  # due rows left for a later delivery (over `limit`, or stopped early)
    held: int = 0  # customer letters rescheduled to the send window's next opening
    recovered: int = 0  # rows found in `sending` from an interrupted delivery
    from_journal: int = 0  # outcomes of an earlier delivery applied from the journal file
    transport_failure: str | None = None  # why no session could be opened; the rest waits
    undelivered: list[Undelivered] = field(default_factory=list)

    @property
    def needs_attention(self) -> list[Undelivered]:
        """Dead and unknown notices: nothing will retry them without a person."""
        return [u for u in self.undelivered if u.status in ("dead", "unknown")]

    @property
    def unknown_notices(self) -> list[Undelivered]:
        """Notices that may or may not have reached the server."""
        return [u for u in self.undelivered if u.status == "unknown"]

    def _count(self, notice_id: int, message_id: str, status: str, reason: str | None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        if status != "sent":
            self.undelivered.append(Undelivered(notice_id, message_id, status, reason or ""))


# ---------------------------------------------------------------- entry point


def deliver(
    engine: Engine,
    sender: MessageSender,
    *,
    now: datetime,
    mail_from: str,
    reply_to: str | None = None,
    limit: int | None = None,
    batch_size: int = 500,
    window: SendWindow | None = None,
    journal: OutcomeJournal | None = None,
    patience_s: float = 60.0,
) -> DeliveryReport:
    """Send the due notices (pending, or failed and due at `now`) and record every outcome.

    `batch_size` rows are read at a time, but each is claimed only when a channel is free
    for it. With a `window`, a customer letter due outside it is not sent but rescheduled to
    the window's next opening in the customer's time zone. Raises DatabaseBusy when the
    outbox stayed unwritable for `patience_s` (outcomes already received go to `journal`).
    """
    # Synchronous on purpose (the CLI and the nightly job are): it runs its own event loop,
    # so this must not be called from inside a running one.
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if batch_size < 1 or (limit is not None and limit < 0) or patience_s <= 0:
        raise ValueError("batch_size and patience_s must be positive, limit not negative")
    report = DeliveryReport()
    build = _builder(now, parse_mailbox(mail_from), parse_mailbox(reply_to) if reply_to else None)
    book = _Book(engine, now, window, report, patience_s)
    try:
        if journal is not None:
            book.apply_journal(journal)
        book.recover(sender.idempotent)
        pump = _Pump(book, sender, build, limit, batch_size)
        asyncio.run(pump.run())
        if pump.db_error is not None:
            raise _keep(pump.unwritten, journal, pump.db_error)
        report.transport_failure = pump.transport_failure()
        report.skipped = book.count_due()
    finally:
        book.close()
    return report


def _keep(
    unwritten: list[_Written], journal: OutcomeJournal | None, error: DatabaseBusy
) -> DatabaseBusy:
    """Save the outcomes the database would not take; the error to raise, saying where."""
    if not unwritten:
        return error
    listing = ", ".join(f"notice {w.params['b_id']} {w.params['b_status']}" for w in unwritten)
    if journal is not None:
        try:
            journal.append([w.params for w in unwritten])
        except OSError as exc:
            log.error("delivery outcomes lost with the journal unwritable: %s", listing)
            return DatabaseBusy(
                f"{error}; the journal {journal.path} failed too ({exc}): {listing}"
            )
        return DatabaseBusy(
            f"{error}; {len(unwritten)} outcomes are kept in {journal.path} and the next "
            "delivery records them first"
        )
    log.error("delivery outcomes not recorded: %s", listing)
    return DatabaseBusy(f"{error}; outcomes not recorded: {listing}")


def _builder(
    now: datetime, from_address: Address, reply_address: Address | None
) -> Callable[[Notice, Sequence[NoticeAttachment]], EmailMessage]:
    def build(notice: Notice, files: Sequence[NoticeAttachment]) -> EmailMessage:
        return build_message(
            notice, mail_from=from_address, reply_to=reply_address, date=now, attachments=files
        )

    return build


# ---------------------------------------------------------------- the outbox's rows


_T = Notice.__table__.c
# Built once: constructing an UPDATE per row cost more than running it. `b_was` guards the
# row: an outcome changes it only from the state this delivery left it in.
_RECORD = (
    update(Notice)
    .where(_T.id == bindparam("b_id"), _T.status == bindparam("b_was", type_=_T.status.type))
    .values(
        status=bindparam("b_status", type_=_T.status.type),
        attempts=bindparam("b_attempts", type_=_T.attempts.type),
        sent_at=bindparam("b_sent_at", type_=_T.sent_at.type),
        next_attempt_at=bindparam("b_next_attempt_at", type_=_T.next_attempt_at.type),
        last_error=bindparam("b_last_error", type_=_T.last_error.type),
    )
)


# The due test is repeated so that a row another process took in between is left alone.
_CLAIM = (
    update(Notice)
    .where(
        _T.id.in_(bindparam("c_ids", expanding=True)),
        _T.status.in_(("pending", "failed")),
        or_(_T.next_attempt_at.is_(None), _T.next_attempt_at <= bindparam("c_now")),
    )
    .values(status="sending")
    .returning(_T.id)
)


@dataclass(frozen=True, slots=True)
class _Written:
    """One row's next state (the parameters of _RECORD), and whether the report counts it."""

    params: dict[str, Any]
    message_id: str
    counted: bool = True


def _outcome(notice: Notice, result: SendResult, attempted: bool, now: datetime) -> _Written:
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
        "b_was": "sending" if attempted else notice.status,
        "b_status": status,
        "b_attempts": attempts,
        "b_sent_at": sent_at,
        "b_next_attempt_at": next_attempt_at,
        "b_last_error": reason,
    }
    return _Written(params, notice.message_id)


def _release(notice: Notice) -> _Written:
    """A claimed row put back as it was: the transport failed before it was handed over."""
    params = {
        "b_id": notice.id,
        "b_was": "sending",
        "b_status": notice.status,
        "b_attempts": notice.attempts,
        "b_sent_at": None,
        "b_next_attempt_at": notice.next_attempt_at,
        "b_last_error": notice.last_error,
    }
    return _Written(params, notice.message_id, counted=False)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Notice.status.in_(("pending", "failed")),
        or_(Notice.next_attempt_at.is_(None), Notice.next_attempt_at <= now),
    )


@dataclass(slots=True)
class _Loaded:
    notices: list[Notice]
    files: dict[int, list[NoticeAttachment]]


class _Book:
    """The outbox side of a delivery: short transactions on one connection, retried while busy."""

    def __init__(
        self,
        engine: Engine,
        now: datetime,
        window: SendWindow | None,
        report: DeliveryReport,
        patience_s: float,
    ) -> None:
        self.now = now
        self.window = window
        self.report = report
        self.patience_s = patience_s
        # One connection: the delivery's steps follow one another, and a pool checkout per
        # step would cost as much as the step.
        self.conn = engine.connect()
        self.where = engine.url.render_as_string(hide_password=True)
        self._sqlite_wait: int | None = None
        if engine.dialect.name == "sqlite":
            # Waiting is done here, with backoff and a bound, rather than inside SQLite.
            self._sqlite_wait = self.conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            wait_ms = int(min(patience_s, 2.0) * 1000)
            self.conn.exec_driver_sql(f"PRAGMA busy_timeout = {wait_ms}")
            self.conn.commit()

    def close(self) -> None:
        """Give the connection back as it was lent."""
        try:
            if self._sqlite_wait is not None and not self.conn.invalidated:
                self.conn.rollback()
                self.conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(self._sqlite_wait)}")
                self.conn.commit()
        except OperationalError:
            self.conn.invalidate()  # never hand a pooled connection back half-configured
        finally:
            self.conn.close()

    def _write(self, step: str, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction, retried with backoff for up to `patience_s`."""
        deadline = time.monotonic() + self.patience_s
        pause = 0.05
        while True:
            try:
                with self.conn.begin():
                    return work(self.conn)
            except OperationalError as exc:  # locked, busy, disk full, connection lost
                left = deadline - time.monotonic()
                reason = str(exc.orig or exc).splitlines()[0]
                if left <= 0:
                    raise DatabaseBusy(
                        f"the database {self.where} could not be written for "
                        f"{self.patience_s:g} s ({step}): {reason}"
                    ) from None
                log.warning("database busy, retrying", extra={"step": step, "reason": reason})
                time.sleep(min(pause, left))
                pause = min(pause * 2, 2.0)

    def _apply(self, conn: Connection, written: Sequence[_Written]) -> None:
        if written:
            conn.execute(_RECORD, [w.params for w in written])

    def _counted(self, written: Sequence[_Written]) -> None:
        for w in written:
            if w.counted:
                p = w.params
                self.report._count(p["b_id"], w.message_id, p["b_status"], p["b_last_error"])

    def apply_journal(self, journal: OutcomeJournal) -> None:
        """Record the outcomes an earlier delivery could only keep in the journal file."""
        rows = journal.pending()
        if not rows:
            return
        self._write("applying the journal", lambda conn: conn.execute(_RECORD, rows))
        journal.applied()
        self.report.from_journal = len(rows)
        log.info("journal applied", extra={"outcomes": len(rows), "journal": str(journal.path)})

    def recover(self, idempotent: bool) -> None:
        """Deal with rows a killed delivery left in `sending` (at most one per channel)."""
        stuck = update(Notice).where(Notice.status == "sending")
        if idempotent:  # writing them again is harmless: they are simply due again
            stuck = stuck.values(status="pending", next_attempt_at=None)
        else:
            stuck = stuck.values(status="unknown", last_error=CRASH_REASON)
        stmt = stuck.returning(Notice.id, Notice.message_id)
        found = self._write("recovering rows left in sending", lambda c: c.execute(stmt).all())
        self.report.recovered = len(found)
        if not idempotent:
            for notice_id, message_id in sorted(found):
                self.report._count(notice_id, message_id, "unknown", CRASH_REASON)

    def record(self, written: list[_Written]) -> None:
        """Commit outcomes."""
        self._write("recording outcomes", lambda conn: self._apply(conn, written))
        self._counted(written)

    def exchange(self, written: list[_Written], ids: list[int]) -> set[int]:
        """Commit outcomes and claim `ids` (those still due) in one transaction."""

        def work(conn: Connection) -> set[int]:
            self._apply(conn, written)
            return set(conn.scalars(_CLAIM, {"c_ids": ids, "c_now": self.now})) if ids else set()

        claimed = self._write("recording outcomes and claiming", work)
        self._counted(written)
        return claimed

    def load(self, written: list[_Written], size: int) -> _Loaded:
        """Commit outcomes, then read up to `size` due rows (not claimed) with their files."""

        def work(conn: Connection) -> _Loaded:
            self._apply(conn, written)
            with Session(bind=conn, expire_on_commit=False) as session:
                notices = self._due_rows(session, size)
                return _Loaded(notices, _attachments(session, [n.id for n in notices]))

        loaded = self._write("reading due notices", work)
        self._counted(written)
        return loaded

    def _due_rows(self, session: Session, size: int) -> list[Notice]:
        stmt = select(Notice).where(_due(self.now)).order_by(Notice.id).limit(size)
        while True:
            due = list(session.scalars(stmt))
            if self.window is None or not due:
                return due
            go = self._outside_window(session, due)
            if go:
                return go

    def _outside_window(self, session: Session, due: list[Notice]) -> list[Notice]:
        """Reschedule the customer letters the window holds back; the rows that may go now."""
        assert self.window is not None
        go: list[Notice] = []
        for notice in due:
            opening = None
            if notice.recipient_role == "customer":
                opening = self.window.next_opening(self.now, notice.timezone)
            if opening is None:
                go.append(notice)
                continue
            session.execute(
                update(Notice).where(Notice.id == notice.id).values(next_attempt_at=opening)
            )
            self.report.held += 1
        return go

    def count_due(self) -> int:
        """Rows still due now: left for a later delivery."""
        count = select(func.count()).select_from(Notice).where(_due(self.now))
        return self._write("counting what is left", lambda conn: conn.scalar(count) or 0)


def _attachments(session: Session, ids: list[int]) -> dict[int, list[NoticeAttachment]]:
    """The files of each notice in `ids`, a digest's including those of its items."""
    if not ids:
        return {}
    owner = func.coalesce(Notice.digest_id, Notice.id)
    stmt = (
        select(owner, NoticeAttachment)
        .join(Notice, Notice.id == NoticeAttachment.notice_id)
        .where(or_(Notice.id.in_(ids), Notice.digest_id.in_(ids)))
        .order_by(NoticeAttachment.id)
    )
    files: dict[int, list[NoticeAttachment]] = {}
    for notice_id, attachment in session.execute(stmt):
        files.setdefault(notice_id, []).append(attachment)
    return files


# ---------------------------------------------------------------- channels at work


@dataclass(frozen=True, slots=True)
class _Job:
    notice: Notice
    message: EmailMessage


@dataclass(frozen=True, slots=True)
class _Done:
    job: _Job
    result: SendResult | None  # None: not handed over (the session could not be reopened)


@dataclass(frozen=True, slots=True)
class _Request:
    done: _Done | None  # the channel's last message, answered
    reply: asyncio.Future[_Job | None] | None  # None: the channel is leaving


class _Pump:
    """Channels ask for work; one coordinator records their answers and claims what they get."""

    def __init__(
        self,
        book: _Book,
        sender: MessageSender,
        build: Callable[[Notice, Sequence[NoticeAttachment]], EmailMessage],
        limit: int | None,
        batch_size: int,
    ) -> None:
        self.book = book
        self.sender = sender
        self.build = build
        self.budget = limit
        self.batch_size = batch_size
        self.candidates: deque[Notice] = deque()
        self.files: dict[int, list[NoticeAttachment]] = {}
        self.exhausted = False
        self.unwritten: list[_Written] = []
        self.db_error: DatabaseBusy | None = None
        self.transport_error: MailTransportError | None = None
        self.requests: asyncio.Queue[_Request] = asyncio.Queue()

    def transport_failure(self) -> str | None:
        """Why the delivery stopped with work left: no channel could open a session."""
        if self.transport_error is None or (self.exhausted and not self.candidates):
            return None
        return str(self.transport_error)

    async def run(self) -> None:
        """Deliver until the due rows run out, every channel fails, or the database does."""
        await self._refill()
        channels = min(self.sender.concurrency, len(self.candidates))
        workers = [asyncio.create_task(self._channel()) for _ in range(channels)]
        await self._coordinate(channels)
        await asyncio.gather(*workers)
        if self.unwritten and self.db_error is None:
            await self._db(self.book.record)

    async def _channel(self) -> None:
        leaving: _Done | None = None
        channel: Channel | None = None
        try:
            channel = await self.sender.open()
            done: _Done | None = None
            while (job := await self._ask(done)) is not None:
                try:
                    done = _Done(job, await channel.send(job.message))
                except MailTransportError as exc:
                    self._transport_failed(exc)
                    leaving = _Done(job, None)
                    return
        except MailTransportError as exc:
            self._transport_failed(exc)
        finally:
            if channel is not None:
                await channel.close()
            self.requests.put_nowait(_Request(leaving, None))

    def _transport_failed(self, exc: MailTransportError) -> None:
        log.warning("a mail channel failed: %s", exc)
        self.transport_error = exc

    async def _ask(self, done: _Done | None) -> _Job | None:
        reply: asyncio.Future[_Job | None] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait(_Request(done, reply))
        return await reply

    async def _coordinate(self, live: int) -> None:
        while live:
            requests = [await self.requests.get()]
            # A transaction costs about as much for one answer as for all: give the other
            # channels a moment to answer too, never so long that the first one idles.
            deadline = asyncio.get_running_loop().time() + GATHER_S
            while len(requests) < live:
                try:
                    left = deadline - asyncio.get_running_loop().time()
                    requests.append(await asyncio.wait_for(self.requests.get(), max(left, 0)))
                except TimeoutError:
                    break
            waiting = []
            for request in requests:
                if request.done is not None:
                    self.unwritten.append(self._written(request.done))
                if request.reply is None:
                    live -= 1
                else:
                    waiting.append(request.reply)
            jobs = await self._jobs(len(waiting)) if self.db_error is None else []
            if not waiting and self.unwritten and self.db_error is None:
                await self._db(self.book.record)  # a leaving channel's answer: commit it now
            for i, reply in enumerate(waiting):
                reply.set_result(jobs[i] if i < len(jobs) else None)

    def _written(self, done: _Done) -> _Written:
        if done.result is None:
            return _release(done.job.notice)
        return _outcome(done.job.notice, done.result, True, self.book.now)

    async def _jobs(self, wanted: int) -> list[_Job]:
        """Up to `wanted` messages, claimed in the transaction that records the answers so far."""
        jobs: list[_Job] = []
        while len(jobs) < wanted and self.db_error is None:
            picked: list[_Job] = []
            while len(jobs) + len(picked) < wanted:
                if not self.candidates:
                    if self.exhausted or picked:
                        break
                    await self._refill()
                    continue
                notice = self.candidates.popleft()
                try:
                    picked.append(_Job(notice, self.build(notice, self.files.pop(notice.id, ()))))
                except PermanentDeliveryError as exc:
                    # A missing or bad address sinks this letter only; nothing was tried.
                    self.unwritten.append(
                        _outcome(notice, SendResult.from_error(exc), False, self.book.now)
                    )
            if not picked:
                break
            claimed = await self._db(self.book.exchange, [j.notice.id for j in picked])
            jobs += [j for j in picked if j.notice.id in (claimed or ())]
        return jobs

    async def _refill(self) -> None:
        size = self.batch_size if self.budget is None else min(self.batch_size, self.budget)
        loaded = await self._db(self.book.load, size) if size else None
        if loaded is None:
            self.exhausted = True
            return
        self.candidates.extend(loaded.notices)
        self.files.update(loaded.files)
        if self.budget is not None:
            self.budget -= len(loaded.notices)
        # Fewer than asked: every due row is in hand (rows due later wait for the next delivery).
        self.exhausted = len(loaded.notices) < size or self.budget == 0

    async def _db(self, step: Callable[..., T], *args: Any) -> T | None:
        """Run a step of the book in a thread (the channels go on meanwhile), with the
        answers not yet written; None once the database has failed."""
        if self.db_error is not None:
            return None
        written = list(self.unwritten)
        try:
            result = await asyncio.to_thread(step, written, *args)
        except DatabaseBusy as exc:
            self.db_error = exc
            return None
        del self.unwritten[: len(written)]
        return result
