"""Durations that read like speech: `6 working hours`, `24 hours`, `1 month before`, `+3 days`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from dateutil.relativedelta import relativedelta
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from engine.policy.schema_parts import anycase, one_of_words

Unit = Literal["minute", "hour", "day", "week", "month", "year"]

_UNITS: dict[str, Unit] = {
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hour": "hour", "hours": "hour",
    "day": "day", "days": "day",
    "week": "week", "weeks": "week",
    "month": "month", "months": "month",
    "year": "year", "years": "year",
}  # fmt: skip

_PATTERN = re.compile(
    r"^\s*(?P<sign>[+-])?\s*(?P<amount>\d+)\s+(?P<working>working\s+)?(?P<unit>[a-z]+)"
    r"(?:\s+(?P<side>before|after))?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Duration:
    """A signed span of calendar or working time."""

    amount: int
    unit: Unit
    working: bool = False

    def __str__(self) -> str:
        plural = "" if abs(self.amount) == 1 else "s"
        working = "working " if self.working else ""
        return f"{self.amount} {working}{self.unit}{plural}"

    @property
    def is_negative(self) -> bool:
        """True for offsets that point back in time (`1 month before`)."""
        return self.amount < 0

    def spoken(self) -> str:
        """`1 month before` / `3 days after`, for reasons and explain output."""
        span = Duration(abs(self.amount), self.unit, self.working)
        return f"{span} {'before' if self.is_negative else 'after'}"

    def delta(self) -> relativedelta:
        """The calendar shift; month and year shifts clamp to the month's last day."""
        if self.working:
            raise ValueError("working-time spans need a business calendar")
        if self.unit == "week":
            return relativedelta(days=7 * self.amount)
        return relativedelta(**{f"{self.unit}s": self.amount})

    def add_to(self, value: date | datetime) -> date | datetime:
        """`value` shifted by this duration on the calendar."""
        return value + self.delta()

    def rough_days(self) -> timedelta:
        """An upper bound of the span in days, for widening SQL windows."""
        per_unit = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1, "week": 7, "month": 31}
        days = abs(self.amount) * per_unit.get(self.unit, 366)
        return timedelta(days=days + 1)


def parse_duration(text: Any, *, signed: bool) -> Duration:
    """Read a duration; `signed` allows `before`/`after` and a leading sign."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError("expected a duration such as '3 days' or '6 working hours'")
    match = _PATTERN.match(str(text))
    unit = _UNITS.get(match.group("unit").lower()) if match else None
    if match is None or unit is None:
        units = "minutes, hours, days, weeks, months, years"
        raise ValueError(f"{text!r} is not a duration; write e.g. '3 days' ({units})")
    amount = int(match.group("amount"))
    sign, side = match.group("sign"), (match.group("side") or "").lower()
    if sign and side:
        raise ValueError(f"{text!r}: use either a sign or before/after, not both")
    negative = sign == "-" or side == "before"
    if not signed and (negative or side or sign == "+"):
        raise ValueError(f"{text!r}: a negative or directed duration is not allowed here")
    if not signed and amount == 0:
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    return Duration(-amount if negative else amount, unit, bool(match.group("working")))


def _span_text(units: tuple[Unit, ...], amount: str, working: bool) -> str:
    names = [name for name, unit in _UNITS.items() if unit in units]
    optional_working = rf"({anycase('working')}\s+)?" if working else ""
    return rf"{amount}\s+{optional_working}{one_of_words(names)}"


_POSITIVE = r"\d*[1-9]\d*"


def span_pattern(units: tuple[Unit, ...], *, working: bool = True) -> str:
    """An ECMA-262 pattern of the positive spans parse_duration(signed=False) reads in `units`,
    for JSON Schema."""
    return rf"^\s*{_span_text(units, _POSITIVE, working)}\s*$"


CLOCK_UNITS: tuple[Unit, ...] = ("minute", "hour", "day", "week")
_ALL_UNITS: tuple[Unit, ...] = (*CLOCK_UNITS, "month", "year")
CLOCK_SPAN_PATTERN = span_pattern(CLOCK_UNITS)
"""What a deadline's spans and repeats accept: no months or years."""
_SIGNED = _span_text(_ALL_UNITS, r"\d+", working=True)
OFFSET_PATTERN = (
    rf"^\s*([+-]\s*{_SIGNED}|{_SIGNED}(\s+({anycase('before')}|{anycase('after')}))?)\s*$"
)
"""What an Offset accepts: a sign or before/after, not both; zero allowed."""


def _schema(description: str, pattern: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern, "description": description})


def _span(value: Any) -> Duration:
    return value if isinstance(value, Duration) else parse_duration(value, signed=False)


Span = Annotated[
    Duration,
    PlainValidator(_span),
    PlainSerializer(str),
    _schema(
        "A positive span, e.g. '24 hours', '6 working hours', '7 days'", span_pattern(_ALL_UNITS)
    ),
]
"""A positive duration in a policy file."""

ClockSpan = Annotated[
    Duration,
    PlainValidator(_span),
    PlainSerializer(str),
    _schema("A positive span, e.g. '24 hours', '6 working hours', '2 days'", CLOCK_SPAN_PATTERN),
]
"""A span of a deadline's clock: the deadline rule refuses months and years (it counts time)."""

Offset = Annotated[
    Duration,
    PlainValidator(lambda v: v if isinstance(v, Duration) else parse_duration(v, signed=True)),
    PlainSerializer(lambda d: d.spoken()),
    _schema(
        "A shift from a date, e.g. '1 month before', '3 days after', '-1 month'", OFFSET_PATTERN
    ),
]
"""A signed duration in a policy file."""


def parse_every(text: Any) -> Duration:
    """Read a repeat interval: `every 2 working days` (the `every` may be left out)."""
    if isinstance(text, str) and text.strip().lower().startswith("every "):
        text = text.strip()[len("every ") :]
    span = parse_duration(text, signed=False)
    if span.unit in ("month", "year"):
        raise ValueError(f"'{span}': a repeat counts minutes, hours, days or weeks")
    return span


# parse_every drops a leading "every " (one space) before reading the span.
_EVERY_PATTERN = rf"^\s*({anycase('every')} )?\s*{_span_text(CLOCK_UNITS, _POSITIVE, True)}\s*$"

Every = Annotated[
    Duration,
    PlainValidator(lambda v: v if isinstance(v, Duration) else parse_every(v)),
    PlainSerializer(lambda d: f"every {d}"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _EVERY_PATTERN,
            "description": "A repeat interval, e.g. 'every 2 working days', 'every 4 hours'",
        }
    ),
]
"""How often a state is repeated while the clock runs."""


PeriodKind = Literal["day", "week", "month", "quarter", "half-year", "year"]
"""The calendar periods work recurs in and tallies add up over (engine.ledger.periods)."""

PERIOD_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "half-year": 6, "year": 12}
"""The months of each period made of months (days and weeks are not)."""


def fits_in(inner: PeriodKind, outer: PeriodKind) -> bool:
    """True when every `outer` period is made of whole `inner` periods (months of a quarter,
    days of anything); weeks straddle months, so they fit only in weeks."""
    if inner in (outer, "day"):
        return True
    if inner not in PERIOD_MONTHS or outer not in PERIOD_MONTHS:
        return False
    return PERIOD_MONTHS[outer] % PERIOD_MONTHS[inner] == 0
