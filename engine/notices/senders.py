"""What delivery hands messages to: a sender opens channels, a channel sends one message at a time.

A sender that cannot open a channel (or a channel that cannot reopen its session) raises
MailTransportError: the transport failed, not the letter, and the letter was not handed over.
Anything that happens to one letter is a SendResult instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from engine.errors import DeliveryError, MailTransportError, PermanentDeliveryError

__all__ = [
    "Channel",
    "Claim",
    "DeliveryOutcomeUnknown",
    "EmlDirectorySender",
    "MessageSender",
    "Outcome",
    "SendResult",
    "letter_name",
    "serialise",
]


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


Claim = Callable[[], Awaitable[bool]]
"""Awaited just before a message's data goes out: it marks the row `sending` and commits, so
that only a letter whose data may have left is ever found `sending` after a crash. False: the
row is no longer due (someone changed it meanwhile), and nothing is sent."""


class Channel(Protocol):
    """One session with the destination; carries one message at a time."""

    async def send(self, message: EmailMessage, claim: Claim, name: str) -> SendResult | None:
        """Hand one message over, calling `claim` just before its data goes out; None when the
        claim was refused. MailTransportError if the session could not be (re)opened. `name`
        (letter_name) is how a person would find the letter, for a sender that files it."""
        ...

    async def close(self) -> None:
        """End the session politely; never raises."""
        ...


class MessageSender(Protocol):
    """Opens channels; an `idempotent` sender may safely get the same Message-ID twice."""

    idempotent: bool
    concurrency: int

    async def open(self) -> Channel:
        """A new channel; MailTransportError when the destination cannot be reached."""
        ...


def serialise(msg: EmailMessage) -> bytes:
    """The message as bytes; a letter that cannot be written out is that letter's problem."""
    try:
        return msg.as_bytes()
    except Exception as exc:
        raise PermanentDeliveryError(f"cannot serialise the message: {exc}") from exc


# ---------------------------------------------------------------- .eml files


_UNSAFE = re.compile(r"[^\w-]+")  # \w is Unicode: 张伟 and Muñoz stay readable


def letter_name(notice_id: int, created: datetime, template: str, recipient: str) -> str:
    """How a person finds a letter among files: the day it was queued (the reader's), the
    template, the recipient's name made safe for any file system, then the notice id (what
    `aftersales outbox` lists) to keep two letters apart; the same for the same notice."""
    who = _UNSAFE.sub("-", recipient).strip("-")[:60] or "nobody"
    return f"{created:%Y-%m-%d}_{_UNSAFE.sub('-', template)}_{who}_{notice_id}"


class EmlDirectorySender:
    """Writes each message to `<directory>/<letter name>.eml`; rewriting one is harmless."""

    idempotent = True
    concurrency = 2  # file writes wait on fsync; two threads keep the disk busy

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    async def open(self) -> Channel:
        """A channel into the folder, created if missing."""
        try:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise MailTransportError(
                f"cannot create outbox folder {self.directory}: {exc}"
            ) from exc
        return self

    async def send(self, message: EmailMessage, claim: Claim, name: str) -> SendResult | None:
        """Write the message atomically (temporary file, fsync, rename, folder fsync) to
        `<name>.eml`."""
        if not await claim():
            return None
        return await asyncio.to_thread(self._write, message, self.directory / f"{name}.eml")

    async def close(self) -> None:
        """Nothing stays open between messages."""

    def _write(self, msg: EmailMessage, target: Path) -> SendResult:
        try:
            data = serialise(msg)
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
            # Without it the rename may not survive a power cut.
            _fsync_directory(self.directory)
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
