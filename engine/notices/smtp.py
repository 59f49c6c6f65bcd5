"""Sending through one SMTP server (aiosmtplib), and the probe behind `aftersales deliver --check`.

A session is connect, EHLO, STARTTLS, AUTH. When any of those fails, or the server refuses
the sender (the same for every letter), the mail server is unusable for every letter alike,
so it is a MailTransportError and no letter is charged for it. Once a session is up, what
happens to a message is that message's SendResult:

    250 after DATA .................................... sent
    4xx, or the connection lost before DATA ........... transient
    5xx, a missing or invalid address ................. permanent
    timeout or disconnect after the data went out ..... unknown (the server may have it)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from email.headerregistry import Address
from email.message import EmailMessage

import aiosmtplib

from engine.errors import (
    DeliveryError,
    MailTransportError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UsageError,
)
from engine.notices.message import validate_address
from engine.notices.senders import (
    Claim,
    DeliveryOutcomeUnknown,
    Outcome,
    SendResult,
    serialise,
)
from engine.settings import SmtpSettings

__all__ = ["SmtpSender", "translate_smtp_error"]


def translate_smtp_error(exc: BaseException, *, data_sent: bool) -> DeliveryError:
    """Map an aiosmtplib or socket error to the engine's tree; `data_sent`: DATA went out."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and 400 <= exc.code < 600:
        reply = f"{exc.code} {exc.message}".strip()
        if exc.code >= 500:
            return PermanentDeliveryError(f"mail server refused it: {reply}")
        return TransientDeliveryError(f"mail server deferred it: {reply}")
    what = str(exc) or type(exc).__name__
    if data_sent:
        return DeliveryOutcomeUnknown(
            f"no final reply after the message data was sent ({what}); "
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
    """Opens up to `concurrency` sessions with one SMTP server, each kept for many messages."""

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
        self.concurrency = settings.concurrency

    @property
    def where(self) -> str:
        """host:port of the server."""
        return f"{self._host}:{self._settings.port}"

    async def open(self) -> _SmtpChannel:
        """A logged-in session; MailTransportError when connect, TLS or login fails."""
        return _SmtpChannel(self, await self.session())

    async def probe(self, mail_from: str | None = None) -> list[str]:
        """Connect, EHLO, STARTTLS and AUTH as delivery would, offer `mail_from` as the
        sender and take it back (RSET); send nothing. What was found."""
        found: list[str] = []
        smtp = await self.session(found)
        if mail_from is not None:
            try:
                await smtp.mail(mail_from)
                await smtp.rset()
            except aiosmtplib.SMTPResponseException as exc:
                await _quit(smtp)
                raise MailTransportError(
                    f"mail server {self.where} refused the sender {mail_from}: "
                    f"{exc.code} {exc.message}"
                ) from exc
            found.append(f"sender {mail_from} accepted (then reset)")
        await _quit(smtp)
        found.append("session closed; nothing was sent")
        return found

    async def session(self, found: list[str] | None = None) -> aiosmtplib.SMTP:
        """Connect, EHLO, STARTTLS and AUTH per the settings; MailTransportError if any fails."""
        notes = found if found is not None else []
        if self._local_hostname is None:
            # aiosmtplib would look the FQDN up once per connection; it can take seconds.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
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
        step = "connect"
        try:
            reply = await smtp.connect()
            notes.append(f"connected to {self.where}: {reply.code} {reply.message}")
            if s.security == "tls":
                notes.append(f"implicit TLS: {_cipher(smtp)}")
            step = "EHLO"
            await smtp.ehlo()
            notes.append("EHLO: " + (", ".join(sorted(smtp.esmtp_extensions)) or "no extensions"))
            if s.security == "starttls":
                step = "STARTTLS"
                if not smtp.supports_extension("starttls"):
                    raise MailTransportError(
                        f"mail server {self.where} does not offer STARTTLS, so TLS was not "
                        "available; refusing to send in clear text (smtp.security = starttls)"
                    )
                await smtp.starttls()
                notes.append(f"STARTTLS: {_cipher(smtp)}")
            if s.username is not None:
                step = "AUTH"
                password = s.password.get_secret_value() if s.password is not None else ""
                await smtp.login(s.username, password)
                notes.append(f"AUTH: logged in as {s.username}")
            else:
                notes.append("AUTH: no smtp.username set, not logging in")
        except MailTransportError:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise MailTransportError(
                f"cannot open a session with mail server {self.where} ({step} failed): "
                f"{_describe(exc)}"
            ) from exc
        return smtp


class _SmtpChannel:
    """One session; reopened when the server dropped it between messages."""

    def __init__(self, sender: SmtpSender, smtp: aiosmtplib.SMTP) -> None:
        self._sender = sender
        self._smtp = smtp
        self._data_timeout = sender._settings.data_timeout_s

    async def send(self, message: EmailMessage, claim: Claim, name: str) -> SendResult | None:
        """MAIL, RCPT, `claim` and DATA for one message, waiting `data_timeout_s` for the
        last reply; None (and RSET) when the claim is refused. (`name` is for senders that
        file letters: the server knows a letter by its Message-ID.)"""
        try:
            mail_from, recipients = _envelope(message)
            data = serialise(message)
        except PermanentDeliveryError as exc:
            return SendResult.from_error(exc)
        if not self._smtp.is_connected:
            self._smtp = await self._sender.session()
        smtp = self._smtp
        data_sent = False
        try:
            try:
                await smtp.mail(mail_from)
            except aiosmtplib.SMTPSenderRefused as exc:
                # Every letter has this sender (a wrong mail_from, a login missing): the
                # server's refusal is the configuration's failure, not this letter's.
                await _reset(smtp)
                raise MailTransportError(
                    f"mail server {self._sender.where} refused the sender {exc.sender}: "
                    f"{exc.code} {exc.message}"
                ) from exc
            for recipient in recipients:
                await smtp.rcpt(recipient)
            if not smtp.is_connected:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before DATA")
            if not await claim():
                await _reset(smtp)
                return None
            if not smtp.is_connected:  # dropped while the claim was committed: nothing went
                raise aiosmtplib.SMTPServerDisconnected("connection lost before DATA")
            # From here on a lost connection may hide an accepted message.
            data_sent = True
            reply = await smtp.data(data, timeout=self._data_timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected:
                await _reset(smtp)
            return SendResult.from_error(translate_smtp_error(exc, data_sent=data_sent))
        return SendResult(Outcome.SENT, f"{reply.code} {reply.message}".strip())

    async def close(self) -> None:
        """QUIT, or drop the connection if the server does not answer."""
        await _quit(self._smtp)


def _cipher(smtp: aiosmtplib.SMTP) -> str:
    transport = smtp.transport
    info = transport.get_extra_info("cipher") if transport is not None else None
    return f"{info[1]} {info[0]}" if info else "negotiated"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    detail = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause if isinstance(cause, ssl.SSLError) else detail}"
    return detail


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
