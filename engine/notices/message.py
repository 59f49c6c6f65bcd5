"""Turn one rendered outbox row into an RFC 5322 message that nothing a customer typed can bend.

Names, subjects and other header text have their RFC 2047 encoded words decoded, then every
control and line-break character replaced by a space, before they reach the `email` package;
addresses must be one plain addr-spec, and the SMTP policy encodes non-ASCII header text as
RFC 2047 words of its own. A name like "Zhang\\r\\nBcc: x@evil", or the same line break hidden
in "=?UTF-8?Q?=0D=0ABcc:_x@evil?=", therefore stays one display name in one `To` header.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from functools import lru_cache
from typing import Protocol

from engine.db.models import Notice
from engine.errors import PermanentDeliveryError, UsageError

__all__ = ["build_message", "clean_header_text", "parse_mailbox", "validate_address"]


class _FoldOnce:
    """Header mixin: an immutable header folds to the same text under equal folding settings."""

    def fold(self, *, policy: email.policy.Policy) -> str:
        # The generator clones the policy for every MIME part, so compare settings, not identity.
        key = (policy.linesep, policy.max_line_length, getattr(policy, "utf8", False))
        cached = self.__dict__.get("_folded")
        if cached is not None and cached[0] == key:
            return cached[1]
        folded: str = super().fold(policy=policy)  # type: ignore[misc]
        self.__dict__["_folded"] = (key, folded)
        return folded


class _HeaderClasses(HeaderRegistry):
    """The standard registry, building each header class once rather than on every header."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._built.get(key)
        if cls is None:
            kind = self.registry.get(key, self.default_class)
            cls = type("_" + kind.__name__, (_FoldOnce, kind, self.base_class), {})
            self._built[key] = cls
        return cls


# The SMTP policy (CRLF, strict header folding, RFC 2047 words) with 7-bit-clean bodies, as we
# do not negotiate 8BITMIME. The stock registry creates a class for every header set and folds
# shared headers again for every letter; together that was most of the time a letter took.
POLICY = email.policy.SMTP.clone(cte_type="7bit", header_factory=_HeaderClasses())

# C0/C1 controls (CR, LF, NEL, VT, FF, ...) plus U+2028/U+2029: str.splitlines() treats all of
# them as line breaks, and so do some header parsers downstream of us.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


# An RFC 2047 encoded word, and the blanks between two of them, which a decoder drops.
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[QqBb]\?[^?\s]*\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)[ \t]+(?==\?)")


def clean_header_text(value: str) -> str:
    """Header text as a reader sees it: encoded words decoded, line breaks and controls spaced."""
    if "=?" in value:
        # The email package decodes encoded words it is given and, before Python's fix for
        # CVE-2024-6923, writes a CR/LF found inside one verbatim when folding: decode them here
        # so the check below sees what the header would hold.
        value = _ENCODED_WORD.sub(_decoded_word, _BETWEEN_WORDS.sub("", value))
        # Whatever still starts like an encoded word (one encoded twice, one no decoder agrees
        # on) would be decoded by the email package's own parser: break it up.
        value = value.replace("=?", "= ?")
    return _CONTROL.sub(" ", value).strip()


def _decoded_word(word: re.Match[str]) -> str:
    try:
        [(data, charset)] = decode_header(word[0])
    except (HeaderParseError, binascii.Error, ValueError):
        return word[0]  # not decodable: left as text, and broken up by the caller
    if isinstance(data, str):
        return data
    try:
        return data.decode(charset or "ascii", errors="replace")
    except LookupError:  # an unknown charset: the bytes are still what a client would show
        return data.decode("utf-8", errors="replace")


# Each address is checked when the message is built and again for the envelope.
@lru_cache(maxsize=4096)
def validate_address(addr: str | None) -> str:
    """Return `addr` as one plain ASCII addr-spec, or raise PermanentDeliveryError saying why."""
    if addr is None or not addr.strip():
        raise PermanentDeliveryError("no email address")
    if _CONTROL.search(addr):
        raise PermanentDeliveryError(f"email address {addr!r} contains control characters")
    candidate = addr.strip()
    if "," in candidate or ";" in candidate:
        raise PermanentDeliveryError(f"email address {addr!r} holds more than one address")
    if candidate.count("@") != 1:
        raise PermanentDeliveryError(f"email address {addr!r} must contain exactly one @")
    local, domain = candidate.split("@")
    try:
        # IDNA turns an internationalised domain into the ASCII form every server accepts.
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise PermanentDeliveryError(f"email address {addr!r} has an invalid domain") from exc
    # A quoted or non-ASCII local part would need SMTPUTF8 or quoting rules that mail systems
    # disagree on; a customer address like that is a data-entry error far more often than real.
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise PermanentDeliveryError(f"email address {addr!r} has an invalid local part")
    if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        raise PermanentDeliveryError(f"email address {addr!r} has an invalid domain")
    plain = f"{local}@{domain}"
    try:
        parsed = Address(addr_spec=plain)
    except (ValueError, IndexError) as exc:
        raise PermanentDeliveryError(f"email address {addr!r} is not valid: {exc}") from exc
    if parsed.addr_spec != plain:
        raise PermanentDeliveryError(f"email address {addr!r} is not a plain address")
    return plain


def parse_mailbox(value: str) -> Address:
    """Parse a configured `Name <addr>` or bare address (From, Reply-To); UsageError if invalid."""
    header = POLICY.header_factory("From", clean_header_text(value))
    addresses = getattr(header, "addresses", ())
    if len(addresses) != 1 or header.defects:
        raise UsageError(f"not a single mailbox: {value!r}")
    try:
        addr_spec = validate_address(addresses[0].addr_spec)
    except PermanentDeliveryError as exc:
        raise UsageError(f"not a usable sender address: {value!r} ({exc})") from exc
    return Address(display_name=clean_header_text(addresses[0].display_name), addr_spec=addr_spec)


def build_message(
    notice: Notice,
    *,
    mail_from: str | Address,
    reply_to: str | Address | None = None,
    date: datetime | None = None,
    attachments: Sequence[AttachedFile] = (),
) -> EmailMessage:
    """Build the message for `notice`; raises PermanentDeliveryError if it can never be sent."""
    username, domain = validate_address(notice.recipient_address).split("@")
    # Given as its two halves, the already validated address is not parsed a second time.
    to = Address(
        display_name=clean_header_text(notice.recipient_name or ""),
        username=username,
        domain=domain,
    )
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _mailbox_header("From", mail_from)
    msg["To"] = to
    if reply_to is not None:
        msg["Reply-To"] = _mailbox_header("Reply-To", reply_to)
    msg["Subject"] = clean_header_text(notice.subject)
    # The default is the queueing instant so that rewriting a message gives the same bytes.
    msg["Date"] = date or notice.created_at
    msg["Message-ID"] = _message_id(notice.message_id)
    msg["Auto-Submitted"] = _header("Auto-Submitted", "auto-generated")
    msg["X-Aftersales-Template"] = _header("X-Aftersales-Template", notice.template)
    locale = clean_header_text(notice.locale or "")
    if _LANGUAGE_TAG.fullmatch(locale):  # a malformed one loses only this informative header
        msg["Content-Language"] = _header("Content-Language", locale)
    msg["MIME-Version"] = _header("MIME-Version", "1.0")
    body = _text_part(notice.body_text, "plain")
    if notice.body_html:
        body = _container("alternative", [body, _text_part(notice.body_html, "html")])
    inline = [a for a in attachments if a.content_id]
    if inline and notice.body_html:
        body = _container("related", [body, *map(_file_part, inline)])
    files = [a for a in attachments if not a.content_id or not notice.body_html]
    if files:
        body = _container("mixed", [body, *map(_file_part, files)])
    for name, value in body.items():
        msg[name] = value
    msg.set_payload(body.get_payload())
    return msg


class AttachedFile(Protocol):
    """What build_message needs of an attachment (a `notice_attachments` row or an Attachment)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None


def _container(subtype: str, parts: list[EmailMessage]) -> EmailMessage:
    """A multipart/`subtype` part holding `parts`, with a boundary none of them contains."""
    box = EmailMessage(policy=POLICY)
    leaves = (leaf for part in parts for leaf in part.walk() if not leaf.is_multipart())
    boundary = _boundary("".join(str(leaf.get_payload()) for leaf in leaves), subtype)
    box["Content-Type"] = _header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    for part in parts:
        box.attach(part)
    return box


def _file_part(attachment: AttachedFile) -> EmailMessage:
    """A base64 part for a file; an inline image is referred to by its Content-ID."""
    part = EmailMessage(policy=POLICY)
    kind = attachment.content_type if _MIME_TYPE.fullmatch(attachment.content_type) else ""
    if kind.startswith("text/"):
        kind += '; charset="utf-8"'  # report files are written as UTF-8
    part["Content-Type"] = _header("Content-Type", kind or "application/octet-stream")
    part["Content-Transfer-Encoding"] = _header("Content-Transfer-Encoding", "base64")
    filename = _SAFE_FILENAME.sub("_", clean_header_text(attachment.filename)) or "attachment"
    if attachment.content_id:
        part["Content-ID"] = _message_id(f"<{attachment.content_id}>")
        part["Content-Disposition"] = f'inline; filename="{filename}"'
    else:
        part["Content-Disposition"] = f'attachment; filename="{filename}"'
    part.set_payload(base64.encodebytes(attachment.data).decode("ascii"))
    return part


_MIME_TYPE = re.compile(r"[a-z]+/[a-z0-9.+-]+")
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def _boundary(payloads: str, subtype: str = "alternative") -> str:
    # A constant boundary keeps rewritten .eml files identical and its Content-Type header
    # cached. "=_" never occurs in base64, so only a 7-bit body could contain it.
    boundary = f"=_aftersales_{subtype}"
    while boundary in payloads:
        boundary = "=_" + secrets.token_hex(16)
    return boundary


def _text_part(body: str, subtype: str) -> EmailMessage:
    """One UTF-8 text part: plain ASCII as 7bit, anything else base64 (we do not offer 8bit)."""
    # The MIME parts are assembled by hand rather than with set_content(): the same result,
    # with the constant Content-* headers parsed once per process instead of several times
    # per letter, which was most of the cost of building a message.
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = _header("Content-Type", f'text/{subtype}; charset="utf-8"')
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if _SEVEN_BIT.fullmatch(body) and all(len(line) <= 998 for line in body.split("\n")):
        part["Content-Transfer-Encoding"] = _header("Content-Transfer-Encoding", "7bit")
        part.set_payload(body)
    else:
        part["Content-Transfer-Encoding"] = _header("Content-Transfer-Encoding", "base64")
        # Text is encoded in its canonical form, CRLF line ends (RFC 2045, 6.8).
        data = body.replace("\n", "\r\n").encode("utf-8")
        part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


_SEVEN_BIT = re.compile(r"[\t\n\x20-\x7e]*")


@lru_cache(maxsize=256)
def _header(name: str, value: str) -> BaseHeader:
    # Header objects are immutable; the constant ones are parsed once and shared by every letter.
    return POLICY.header_factory(name, clean_header_text(value))


def _mailbox_header(name: str, value: str | Address) -> BaseHeader:
    if isinstance(value, str):
        value = parse_mailbox(value)
    return _mailbox_header_cached(name, value.display_name, value.addr_spec)


@lru_cache(maxsize=64)
def _mailbox_header_cached(name: str, display_name: str, addr_spec: str) -> BaseHeader:
    address = Address(display_name=clean_header_text(display_name), addr_spec=addr_spec)
    return POLICY.header_factory(name, [address])


def _message_id(value: str) -> str:
    mid = value.strip()
    if not mid.startswith("<"):
        mid = f"<{mid}>"
    if not _MESSAGE_ID.fullmatch(mid):
        # Our own code generates these, so a bad one is a bug, but it only sinks this letter.
        raise PermanentDeliveryError(f"malformed Message-ID {value!r}")
    return mid
