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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Engine,
)
from sqlalchemy.exc import SQLAlchemyError

from engine.db.models import Notice, NoticeAttachment
from engine.errors import DatabaseBusy, MailTransportError, PermanentDeliveryError
from engine.notices.delivery_book import (
    BACKOFF,
    DeliveryReport,
    OutboxBook,
    Undelivered,
    Written,
    outcome_of,
)
from engine.notices.journal import JOURNAL_NAME, OutcomeJournal
from engine.notices.message import build_message, parse_mailbox
from engine.notices.senders import (
    Channel,
    DeliveryOutcomeUnknown,
    EmlDirectorySender,
    MessageSender,
    Outcome,
    SendResult,
    letter_name,
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
    "letter_name",
    "sender_from_settings",
    "translate_smtp_error",
]

log = logging.getLogger("aftersales.delivery")
GATHER_S = 0.002
T = TypeVar("T")


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
    book = OutboxBook(engine, now, window, report, patience_s)
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
    unwritten: list[Written], journal: OutcomeJournal | None, error: DatabaseBusy
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


# ---------------------------------------------------------------- channels at work


def _name(notice: Notice) -> str:
    """The letter's name, dated on the reader's calendar (the day its letter speaks of)."""
    try:  # ZoneInfo keeps each zone it made: this costs a lookup per letter
        zone = ZoneInfo(notice.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    created = notice.created_at.astimezone(zone)
    return letter_name(notice.id, created, notice.template, notice.recipient_name)


@dataclass(frozen=True, slots=True)
class _Job:
    notice: Notice
    message: EmailMessage
    name: str  # letter_name: how a person finds it among files


@dataclass(frozen=True, slots=True)
class _ClaimRequest:
    job: _Job | None  # None: the channel is leaving
    reply: asyncio.Future[bool] | None


class _Pump:
    """Channels take letters built in memory; one coordinator claims each letter just before
    its data goes out, in the transaction that also records the answers received so far."""

    def __init__(
        self,
        book: OutboxBook,
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
        self.unwritten: list[Written] = []
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
                result = await channel.send(job.message, partial(self._claim, job), job.name)
                self.dropped -= 1
                if result is not None:
                    claimed = job.notice.id in self.claimed
                    self.unwritten.append(
                        outcome_of(
                            job.notice, result, self.book.now, attempted=True, claimed=claimed
                        )
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
            message = self.build(notice, self.files.pop(notice.id, ()))
            self.built.append(_Job(notice, message, _name(notice)))
        except Exception as exc:
            # A missing or bad address, or a row no message can be made of, sinks this letter
            # only; nothing was tried.
            if not isinstance(exc, PermanentDeliveryError):
                exc = PermanentDeliveryError(f"cannot build the message: {exc}")
            refused = SendResult.from_error(exc)
            failed = outcome_of(notice, refused, self.book.now, attempted=False, claimed=False)
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
