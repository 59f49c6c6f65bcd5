"""A real SMTP server for tests: aiosmtpd on loopback, recording what it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any


class Recorder:
    """aiosmtpd handler that keeps every accepted message and can refuse or drop on cue."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.on_mail: Callable[[str], str | None] = lambda _address: None
        self.on_rcpt: Callable[[str], str | None] = lambda _address: None
        self.on_data: Callable[[Any, EmailMessage], str | None] = lambda _server, _msg: None

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        refusal = self.on_mail(address)
        if refusal:
            return refusal
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        refusal = self.on_rcpt(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        refusal = self.on_data(server, msg)
        if refusal:
            return refusal
        with self.lock:
            self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [
                email.message_from_bytes(raw, policy=email.policy.default)
                for _, _, raw in self.accepted
            ]

    def ids(self) -> Counter[str]:
        return Counter(m["Message-ID"] for m in self.messages())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
