"""Deliver the outbox to a mail server or a folder of .eml files: never twice, never lost.

How `deliver` moves a row of `notices` (OUTBOX_STATES):

    pending, or failed and due ── read, built, MAIL and RCPT accepted
        ── claimed (committed) just before DATA ──▶ sending ── handed over:
        250, accepted ...................................... ▶ sent
        4xx, or refused / reset before DATA ................ ▶ failed, due again after BACKOFF
                                                               (the 7th such failure ▶ dead)
        5xx to RCPT or DATA, or a missing / invalid address  ▶ dead
        no final reply after DATA (data_timeout_s) ......... ▶ unknown
        no session (connect, TLS, login), or the sender
        refused: the server's failure, not the letter's .... ▶ as it was (not charged)
    sending when a delivery starts (an earlier one was killed while the data was out):
        written again by an idempotent sender (.eml files), otherwise ▶ unknown
    render_failed, dead and unknown rows stay put until a person looks; nothing resends them.

Each channel (one SMTP connection) carries one message at a time. Letters are read and built in
memory; a row becomes `sending` only once the server has accepted its envelope, in the
transaction that also records the answers received since the last one (one transaction for
every channel that asks within GATHER_S). So at any instant at most `concurrency` rows are
`sending`, each one whose data may have left: a kill leaves only those `unknown`, the letters
never handed over stay due, and every other answer the server gave is already committed.

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
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
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
        return asyncio.run(sender.probe(parse_mailbox(settings.mail_from).addr_spec))

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

    def add(self, other: DeliveryReport) -> None:
        """Count a later delivery's letters in this report (what is left is the later one's)."""
        for name in ("sent", "failed", "dead", "unknown", "held", "recovered", "from_journal"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped = other.skipped
        self.transport_failure = self.transport_failure or other.transport_failure
        self.undelivered += other.undelivered

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
        try:
            asyncio.run(pump.run())
        except Exception as exc:
            # Whatever went wrong, the answers the server gave must not be lost with it.
            if pump.unwritten and pump.db_error is None:
                pump.db_error = DatabaseBusy(f"delivery stopped: {exc}")
            if pump.unwritten:
                log.error("delivery stopped: %s", _keep(pump.unwritten, journal, pump.db_error))
            raise
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


# PostgreSQL: the outcomes (guarded by the state this delivery left each row in) and the
# claims of one round, in one statement. The claim is repeated from _CLAIM.
_PG_EXCHANGE = text(
    """
    WITH outcome AS (
        SELECT * FROM unnest(
            CAST(:ids AS integer[]), CAST(:was AS text[]), CAST(:status AS text[]),
            CAST(:attempts AS integer[]), CAST(:sent_at AS timestamptz[]),
            CAST(:next_attempt_at AS timestamptz[]), CAST(:last_error AS text[])
        ) AS o(id, was, status, attempts, sent_at, next_attempt_at, last_error)
    ), recorded AS (
        UPDATE notices AS n
        SET status = o.status, attempts = o.attempts, sent_at = o.sent_at,
            next_attempt_at = o.next_attempt_at, last_error = o.last_error
        FROM outcome AS o WHERE n.id = o.id AND n.status = o.was
    )
    UPDATE notices SET status = 'sending'
    WHERE id = ANY(CAST(:claim AS integer[])) AND status IN ('pending', 'failed')
      AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
    RETURNING id
    """
)


def _pg_exchange(written: Sequence[_Written], claim: list[int], now: datetime) -> dict[str, Any]:
    """_PG_EXCHANGE's parameters: one array per column of the outcomes."""
    params: dict[str, Any] = {"claim": claim, "now": now}
    for name, column in _PG_COLUMNS.items():
        params[name] = [w.params[column] for w in written]
    return params


_PG_COLUMNS = {
    "ids": "b_id",
    "was": "b_was",
    "status": "b_status",
    "attempts": "b_attempts",
    "sent_at": "b_sent_at",
    "next_attempt_at": "b_next_attempt_at",
    "last_error": "b_last_error",
}


@dataclass(frozen=True, slots=True)
class _Written:
    """One row's next state: the parameters of _RECORD."""

    params: dict[str, Any]
    message_id: str


def _outcome(
    notice: Notice, result: SendResult, now: datetime, *, attempted: bool, claimed: bool
) -> _Written:
    """The row's next state for `result`: sent, failed (with its next attempt), dead or unknown.

    `attempted`: the server was asked (it counts towards giving up); `claimed`: the row was
    marked `sending` before its data went out."""
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
        "b_was": "sending" if claimed else notice.status,
        "b_status": status,
        "b_attempts": attempts,
        "b_sent_at": sent_at,
        "b_next_attempt_at": next_attempt_at,
        "b_last_error": reason,
    }
    return _Written(params, notice.message_id)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Notice.status.in_(("pending", "failed")),
        or_(Notice.next_attempt_at.is_(None), Notice.next_attempt_at <= now),
    )


@dataclass(slots=True)
class _Loaded:
    notices: list[Notice]
    files: dict[int, list[NoticeAttachment]]
    read: int  # rows read, held back by the send window included
    read_up_to: int  # the last row id read
    held: int  # customer letters rescheduled to the send window's next opening


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
        self.read_up_to = 0  # the last row id read: rows are read once, in id order
        # One connection: the delivery's steps follow one another, and a pool checkout per
        # step would cost as much as the step.
        self.conn = engine.connect()
        # On PostgreSQL a round of answers and claims is one statement sent on its own: each
        # of BEGIN and COMMIT would cost another round trip, which is most of a round's time.
        self.autocommit: Connection | None = None
        if engine.dialect.name == "postgresql":
            self.autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
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
            if self.autocommit is not None:
                self.autocommit.close()

    def _write(
        self, step: str, work: Callable[[Connection], T], *, one_statement: bool = False
    ) -> T:
        """Run `work` in one transaction, retried with backoff for up to `patience_s`;
        `one_statement`: `work` runs a single statement, its own transaction."""
        deadline = time.monotonic() + self.patience_s
        pause = 0.05
        while True:
            try:
                if one_statement and self.autocommit is not None:
                    return work(self.autocommit)
                with self.conn.begin():
                    return work(self.conn)
            except OperationalError as exc:  # locked, busy, disk full, connection lost
                if self.autocommit is not None:
                    self.autocommit.rollback()  # SQLAlchemy began a transaction of its own
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
        unknown = {row["b_id"]: row["b_last_error"] for row in rows if row["b_status"] == "unknown"}
        if unknown:  # told like this delivery's own: a person must look at them
            ids = select(Notice.id, Notice.message_id).where(Notice.id.in_(list(unknown)))
            for notice_id, message_id in self.conn.execute(ids).all():
                self.report._count(notice_id, message_id, "unknown", unknown[notice_id])
            self.conn.commit()
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
            if self.autocommit is not None:
                return set(conn.scalars(_PG_EXCHANGE, _pg_exchange(written, ids, self.now)))
            self._apply(conn, written)
            return set(conn.scalars(_CLAIM, {"c_ids": ids, "c_now": self.now})) if ids else set()

        claimed = self._write("recording outcomes and claiming", work, one_statement=True)
        self._counted(written)
        return claimed

    def load(self, written: list[_Written], size: int) -> _Loaded:
        """Commit outcomes, then read up to `size` due rows (not claimed) with their files."""

        def work(conn: Connection) -> _Loaded:
            self._apply(conn, written)
            with Session(bind=conn, expire_on_commit=False) as session:
                return self._due_rows(session, size)

        loaded = self._write("reading due notices", work)
        # Taken over only once committed: a retried read must start where this one did.
        self.read_up_to = loaded.read_up_to
        self.report.held += loaded.held
        self._counted(written)
        return loaded

    def _due_rows(self, session: Session, size: int) -> _Loaded:
        """The next due rows after those already read (letters in hand are still due until
        claimed); fewer than `size` read means none is left."""
        after, held = self.read_up_to, 0
        while True:
            stmt = select(Notice).where(_due(self.now), Notice.id > after)
            due = list(session.scalars(stmt.order_by(Notice.id).limit(size)))
            after = due[-1].id if due else after
            go = due
            if self.window is not None:
                go = self._outside_window(session, due)
                held += len(due) - len(go)
            if go or len(due) < size:
                files = _attachments(session, [n.id for n in go])
                return _Loaded(go, files, len(due), after, held)

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
class _ClaimRequest:
    job: _Job | None  # None: the channel is leaving
    reply: asyncio.Future[bool] | None


class _Pump:
    """Channels take letters built in memory; one coordinator claims each letter just before
    its data goes out, in the transaction that also records the answers received so far."""

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
        self.built: deque[_Job] = deque()  # messages made ahead, not yet claimed
        self.files: dict[int, list[NoticeAttachment]] = {}
        self.exhausted = False
        self.claimed: set[int] = set()
        self.dropped = 0  # letters in a channel's hands when its session failed
        self.unwritten: list[_Written] = []
        self.db_error: DatabaseBusy | None = None
        self.transport_error: MailTransportError | None = None
        self.claims: asyncio.Queue[_ClaimRequest] = asyncio.Queue()

    def transport_failure(self) -> str | None:
        """Why the delivery stopped with work left: no channel could open a session."""
        left = self.candidates or self.built or self.dropped or not self.exhausted
        if self.transport_error is None or not left:
            return None
        return str(self.transport_error)

    async def run(self) -> None:
        """Deliver until the due rows run out, every channel fails, or the database does."""
        self._refill()
        channels = self.sender.concurrency
        if self.exhausted:  # every due row is in hand: no more channels than letters
            channels = min(channels, len(self.candidates))
        workers = [asyncio.create_task(self._channel()) for _ in range(channels)]
        await self._coordinate(channels)
        await asyncio.gather(*workers)
        if self.unwritten and self.db_error is None:
            self._db(self.book.record)

    async def _channel(self) -> None:
        channel: Channel | None = None
        try:
            channel = await self.sender.open()
            while (job := self._next_job()) is not None:
                # A transport failure leaves the letter unclaimed: it is as it was.
                self.dropped += 1
                result = await channel.send(job.message, partial(self._claim, job))
                self.dropped -= 1
                if result is not None:
                    claimed = job.notice.id in self.claimed
                    self.unwritten.append(
                        _outcome(job.notice, result, self.book.now, attempted=True, claimed=claimed)
                    )
        except MailTransportError as exc:
            log.warning("a mail channel failed: %s", exc)
            self.transport_error = exc
        finally:
            if channel is not None:
                await channel.close()
            self.claims.put_nowait(_ClaimRequest(None, None))

    def _next_job(self) -> _Job | None:
        """The next letter to hand over, built now if none is ready; None when none is left."""
        if self.db_error is not None:
            return None  # nothing more can be claimed
        while not self.built:
            if self.candidates:
                self._build_one()
            elif self.exhausted:
                return None
            else:
                self._refill()
        return self.built.popleft()

    async def _claim(self, job: _Job) -> bool:
        reply: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.claims.put_nowait(_ClaimRequest(job, reply))
        return await reply

    async def _coordinate(self, live: int) -> None:
        while live:
            requests = [await self._next_claim()]
            # A transaction costs about as much for one claim as for all: give the other
            # channels a moment to ask too, never so long that the first one idles.
            deadline = asyncio.get_running_loop().time() + GATHER_S
            while len(requests) < live:
                request = await self._next_claim(deadline)
                if request is None:
                    break
                requests.append(request)
            asking = [r for r in requests if r.job is not None]
            live -= len(requests) - len(asking)
            ids = [r.job.notice.id for r in asking if r.job is not None]
            claimed = self._db(self.book.exchange, ids) if ids else None
            if not ids and self.unwritten:
                self._db(self.book.record)  # a leaving channel's answer: commit it now
            self.claimed.update(claimed or ())
            for request in asking:
                assert request.job is not None and request.reply is not None
                request.reply.set_result(request.job.notice.id in (claimed or ()))

    async def _next_claim(self, deadline: float | None = None) -> _ClaimRequest | None:
        """The next channel's claim (None once `deadline` passes); letters are built
        meanwhile, so that the CPU works while the channels wait for the server."""
        loop = asyncio.get_running_loop()
        while (
            self.claims.empty()
            and self.db_error is None
            and len(self.built) < 3 * self.sender.concurrency
        ):
            if deadline is not None and loop.time() >= deadline:
                return None
            if not self._build_one():
                break
            await asyncio.sleep(0)  # let the channels read their answers
        if not self.claims.empty():
            return self.claims.get_nowait()
        if deadline is None:
            return await self.claims.get()
        try:
            return await asyncio.wait_for(self.claims.get(), max(deadline - loop.time(), 0))
        except TimeoutError:
            return None

    def _build_one(self) -> bool:
        """Build the next candidate's message; False when no candidate is in hand."""
        if not self.candidates:
            return False
        notice = self.candidates.popleft()
        try:
            self.built.append(_Job(notice, self.build(notice, self.files.pop(notice.id, ()))))
        except Exception as exc:
            # A missing or bad address, or a row no message can be made of, sinks this letter
            # only; nothing was tried.
            if not isinstance(exc, PermanentDeliveryError):
                exc = PermanentDeliveryError(f"cannot build the message: {exc}")
            refused = SendResult.from_error(exc)
            failed = _outcome(notice, refused, self.book.now, attempted=False, claimed=False)
            self.unwritten.append(failed)
        return True

    def _refill(self) -> None:
        size = self.batch_size if self.budget is None else min(self.batch_size, self.budget)
        loaded = self._db(self.book.load, size) if size else None
        if loaded is None:
            self.exhausted = True
            return
        self.candidates.extend(loaded.notices)
        self.files.update(loaded.files)
        if self.budget is not None:
            self.budget -= len(loaded.notices)
        # Fewer than asked: every due row is in hand (rows due later wait for the next delivery).
        self.exhausted = loaded.read < size or self.budget == 0

    def _db(self, step: Callable[..., T], *args: Any) -> T | None:
        """Run a step of the book with the answers not yet written; None once the database
        has failed. It runs on the event loop's own thread: handing each short transaction to
        a worker thread cost more than the transaction (they contend for the GIL), and while
        the outbox cannot be written no letter could be claimed anyway."""
        if self.db_error is not None:
            return None
        written = list(self.unwritten)
        try:
            result = step(written, *args)
        except DatabaseBusy as exc:
            self.db_error = exc
            return None
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            self.db_error = DatabaseBusy(f"the outbox could not be written: {reason}")
            return None
        del self.unwritten[: len(written)]
        return result
