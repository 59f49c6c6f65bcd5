"""The one exception tree of the engine.

    AftersalesError
    ├── UsageError            bad command-line input or configuration          (exit 2)
    ├── PolicyError           one or more problems in rules/*.yaml or templates (exit 2)
    ├── ImportDataError       a CSV import that was rejected whole              (exit 1)
    ├── DatabaseUnavailable   the database cannot be opened or reached          (exit 1)
    ├── DatabaseNotReady      the schema is missing or out of date              (exit 1)
    ├── RunLocked             another run holds the lock                        (exit 3)
    ├── DatabaseBusy          the database stayed locked or unwritable          (exit 4)
    ├── MailTransportError    no session with the mail server: connect, login
    │                         or TLS failed; no letter was charged for it      (exit 5)
    ├── DeliveryError         a message that could not be handed over
    │   ├── TransientDeliveryError   try again later (4xx, connection refused)
    │   └── PermanentDeliveryError   do not retry (5xx, bad address)
    └── InternalError         a bug in the engine, never the user's fault      (exit 1)

User-fixable problems carry a `Location` (file, line, column) and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file, 1-based line and column."""

    file: Path | str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [str(self.file)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Problem:
    """One user-fixable mistake, with where it is and how to fix it."""

    message: str
    location: Location
    hint: str | None = None
    excerpt: str | None = None

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        if self.excerpt:
            text += "\n" + self.excerpt
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class AftersalesError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


class UsageError(AftersalesError):
    """The command line or the configuration is wrong."""

    exit_code = 2


class PolicyError(AftersalesError):
    """The policy files or templates have problems; all of them are listed."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(
            problems,
            key=lambda p: (str(p.location.file), p.location.line or 0, p.location.column or 0),
        )
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the policy"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


class ImportDataError(AftersalesError):
    """A CSV import was rejected; nothing of it was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("import rejected, nothing written:\n" + "\n".join(map(str, problems)))


class DatabaseUnavailable(AftersalesError):
    """The database could not be opened: no such SQLite file, server down, unknown database,
    login refused."""


class DatabaseNotReady(AftersalesError):
    """The database has no schema or an older one."""


class RunLocked(AftersalesError):
    """Another run already holds the run lock."""

    exit_code = 3


class DatabaseBusy(AftersalesError):
    """The database stayed locked (or could not be written) longer than delivery waits."""

    exit_code = 4


class MailTransportError(AftersalesError):
    """The mail server could not be reached, refused the login, or TLS could not be set up."""

    exit_code = 5


class DeliveryError(AftersalesError):
    """A message could not be handed to the mail server."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later."""


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help."""


class InternalError(AftersalesError):
    """A bug in the engine."""
