"""The outbox side of a delivery: its rows' next states, written in short transactions.

`deliver` (engine.notices.delivery) hands the book what the server answered; the book records
it, claims rows just before their data goes out, reads the next due rows in id order, and
retries a busy database with backoff for `patience_s` before giving up with DatabaseBusy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from engine.db.models import Notice, NoticeAttachment
from engine.errors import DatabaseBusy
from engine.notices.journal import OutcomeJournal
from engine.notices.senders import Outcome, SendResult
from engine.notices.window import SendWindow

log = logging.getLogger("aftersales.delivery")
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


def _pg_exchange(written: Sequence[Written], claim: list[int], now: datetime) -> dict[str, Any]:
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
class Written:
    """One row's next state: the parameters of _RECORD."""

    params: dict[str, Any]
    message_id: str


def outcome_of(
    notice: Notice, result: SendResult, now: datetime, *, attempted: bool, claimed: bool
) -> Written:
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
    return Written(params, notice.message_id)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Notice.status.in_(("pending", "failed")),
        or_(Notice.next_attempt_at.is_(None), Notice.next_attempt_at <= now),
    )


@dataclass(slots=True)
class Loaded:
    notices: list[Notice]
    files: dict[int, list[NoticeAttachment]]
    read: int  # rows read, held back by the send window included
    read_up_to: int  # the last row id read
    held: int  # customer letters rescheduled to the send window's next opening


class OutboxBook:
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

    def _apply(self, conn: Connection, written: Sequence[Written]) -> None:
        if written:
            conn.execute(_RECORD, [w.params for w in written])

    def _counted(self, written: Sequence[Written]) -> None:
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

    def record(self, written: list[Written]) -> None:
        """Commit outcomes."""
        self._write("recording outcomes", lambda conn: self._apply(conn, written))
        self._counted(written)

    def exchange(self, written: list[Written], ids: list[int]) -> set[int]:
        """Commit outcomes and claim `ids` (those still due) in one transaction."""

        def work(conn: Connection) -> set[int]:
            if self.autocommit is not None:
                return set(conn.scalars(_PG_EXCHANGE, _pg_exchange(written, ids, self.now)))
            self._apply(conn, written)
            return set(conn.scalars(_CLAIM, {"c_ids": ids, "c_now": self.now})) if ids else set()

        claimed = self._write("recording outcomes and claiming", work, one_statement=True)
        self._counted(written)
        return claimed

    def load(self, written: list[Written], size: int) -> Loaded:
        """Commit outcomes, then read up to `size` due rows (not claimed) with their files."""

        def work(conn: Connection) -> Loaded:
            self._apply(conn, written)
            with Session(bind=conn, expire_on_commit=False) as session:
                return self._due_rows(session, size)

        loaded = self._write("reading due notices", work)
        # Taken over only once committed: a retried read must start where this one did.
        self.read_up_to = loaded.read_up_to
        self.report.held += loaded.held
        self._counted(written)
        return loaded

    def _due_rows(self, session: Session, size: int) -> Loaded:
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
                return Loaded(go, files, len(due), after, held)

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
