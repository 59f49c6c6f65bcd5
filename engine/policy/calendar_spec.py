"""The YAML shape of a business calendar (`calendars:` in a policy file), validated.

    calendars:
      cn-office:
        timezone: Asia/Shanghai
        holidays: {country: CN}
        hours:
          mon-fri: ["09:00-12:00", "13:00-18:00"]
        closed: [2026-12-31]
      always: {timezone: UTC, hours: 24x7}

Only the `public` category of the `holidays` package closes a day: half days (China's Women's
Day afternoon, Youth Day) and optional or bank holidays are ordinary working days here, because
an after-sales desk stays open for them; list such a day under `closed:` to close it.
`engine.calendar` turns a spec into the working-time arithmetic.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from itertools import pairwise
from typing import Annotated, Any

import holidays as holidays_package
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from engine.policy.schema_parts import LazySchema, any_of_words, anycase

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day keys in `date.weekday()` order."""

TWENTY_FOUR_SEVEN = "24x7"

# JSON Schema (ECMA-262) patterns of what parse_day_key and parse_interval read.
_DAY = r"\s*(" + "|".join(anycase(day) for day in DAY_NAMES) + r")\s*"
DAY_KEY_PATTERN = rf"^{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*$"
_TIME = r"([01]?\d|2[0-3]):[0-5]\d"
INTERVAL_PATTERN = rf"^\s*{_TIME}\s*-\s*({_TIME}|24:00)\s*$"
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Minutes = tuple[int, int]
"""An opening interval as (start, end) minutes after local midnight; end may be 1440."""


def parse_interval(text: str) -> Minutes:
    """`"09:00-12:00"` as `(540, 720)`; raises ValueError with a sentence for a person."""
    match = _INTERVAL.match(text)
    if match is None:
        raise ValueError(f'{text!r} is not an interval; write it as "09:00-12:00"')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hour, minute in ((h1, m1), (h2, m2)):
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise ValueError(
                f"{text!r}: {hour:02}:{minute:02} is not a time of day; "
                "times run from 00:00 to 24:00"
            )
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == 24 * 60:
        raise ValueError(f"{text!r}: an interval cannot start at 24:00; start it at 00:00")
    if end <= start:
        raise ValueError(
            f"{text!r}: the end must come after the start (an interval cannot cross midnight; "
            "split it in two days)"
        )
    return start, end


def parse_day_key(key: str) -> tuple[int, ...]:
    """`"mon-fri"` as (0, 1, 2, 3, 4); ranges may wrap (`sun-thu`), lists use commas."""
    days: list[int] = []
    for part in key.lower().split(","):
        ends = [name.strip() for name in part.split("-")]
        unknown = [name for name in ends if name not in DAY_NAMES]
        if len(ends) > 2 or unknown:
            bad = unknown[0] if unknown else part.strip()
            close = difflib.get_close_matches(bad, DAY_NAMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown day {bad!r} in {key!r}; {hint}use mon, tue, wed, thu, fri, "
                "sat, sun, a range such as mon-fri, or a list such as mon,wed"
            )
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        # A wrapping range reads naturally for offices whose week starts on Sunday.
        days.extend((first + step) % 7 for step in range((last - first) % 7 + 1))
    return tuple(days)


def _interval_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(
            'opening hours must be quoted strings such as "09:00-12:00" '
            "(unquoted, YAML reads 10:30 as a number)"
        )
    start, end = parse_interval(value)
    return f"{start // 60:02}:{start % 60:02}-{end // 60:02}:{end % 60:02}"


def _sorted_apart(value: tuple[str, ...]) -> tuple[str, ...]:
    ordered = sorted(value, key=parse_interval)
    for before, after in pairwise(ordered):
        if parse_interval(after)[0] < parse_interval(before)[1]:
            raise ValueError(f"the intervals {before!r} and {after!r} overlap")
    return tuple(ordered)


Interval = Annotated[
    str,
    BeforeValidator(_interval_text),
    WithJsonSchema({"type": "string", "pattern": INTERVAL_PATTERN}),
]
"""One opening interval, `"HH:MM-HH:MM"`, normalised to two-digit hours."""

DayHours = Annotated[tuple[Interval, ...], AfterValidator(_sorted_apart)]
"""The opening intervals of one day, sorted; they may touch but not overlap."""


def _hours_input(value: Any) -> Any:
    if isinstance(value, str):
        if value.strip().lower() == TWENTY_FOUR_SEVEN:
            return {"mon-sun": ("00:00-24:00",)}
        raise ValueError(f"hours must be a mapping of days to intervals, or {TWENTY_FOUR_SEVEN!r}")
    if not isinstance(value, dict):
        raise ValueError(
            'hours must be a mapping such as {mon-fri: ["09:00-12:00", "13:00-18:00"]}, '
            f"or {TWENTY_FOUR_SEVEN!r}"
        )
    return value


def _week_check(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    seen: dict[int, str] = {}
    for key in value:
        for day in parse_day_key(key):
            if day in seen:
                raise ValueError(
                    f"{DAY_NAMES[day]} is given twice (in {seen[day]!r} and {key!r}); "
                    "list each day once"
                )
            seen[day] = key
    if not any(value.values()):
        raise ValueError("no day has opening hours; a calendar must open at least one weekday")
    return value


_HOURS_SCHEMA = {
    "oneOf": [
        {"type": "string", "pattern": rf"^\s*{anycase(TWENTY_FOUR_SEVEN)}\s*$"},
        {
            "type": "object",
            "propertyNames": {"pattern": DAY_KEY_PATTERN},
            "minProperties": 1,
            "additionalProperties": {
                "type": "array",
                "items": {"type": "string", "pattern": INTERVAL_PATTERN},
            },
        },
    ]
}

WeekHours = Annotated[
    dict[str, DayHours],
    BeforeValidator(_hours_input),
    AfterValidator(_week_check),
    WithJsonSchema(_HOURS_SCHEMA),
]
"""Opening intervals per day key; `24x7` reads as `{mon-sun: ["00:00-24:00"]}`."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def time_zone_schema() -> dict[str, Any]:
    """The IANA time zones this machine knows, as ZoneInfo reads them."""
    return {"type": "string", "enum": sorted(zoneinfo.available_timezones())}


def _country_schema() -> dict[str, Any]:
    codes = holidays_package.list_supported_countries(include_aliases=True)
    return {"type": "string", "pattern": any_of_words(codes)}


class HolidaySource(_Frozen):
    """Public holidays and make-up working days from the `holidays` package."""

    country: Annotated[str, LazySchema(_country_schema)] = Field(
        description="ISO 3166-1 country code known to the `holidays` package, e.g. CN, ES, TW"
    )
    subdivision: str | None = Field(
        default=None,
        description="Region code where holidays differ by region, e.g. MD (Madrid) for ES",
    )

    @field_validator("country", mode="before")
    @classmethod
    def _known_country(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        code = value.strip().upper()
        try:
            holidays_package.country_holidays(code)
        except NotImplementedError:
            known = sorted(holidays_package.list_supported_countries(include_aliases=False))
            close = difflib.get_close_matches(code, known, n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ValueError(
                f"the holidays package has no country {value!r}; {hint}use an ISO 3166-1 "
                f"code such as CN, ES, TW, US ({len(known)} countries are supported)"
            ) from None
        return code

    @field_validator("subdivision", mode="before")
    @classmethod
    def _known_subdivision(cls, value: Any, info: ValidationInfo) -> Any:
        country = info.data.get("country")
        if not isinstance(value, str) or country is None:
            return value
        known = holidays_package.country_holidays(country).subdivisions
        if not known:
            raise ValueError(f"{country} has no subdivisions in the holidays package; remove it")
        for candidate in (value.strip(), value.strip().upper()):
            try:
                holidays_package.country_holidays(country, subdiv=candidate)
            except NotImplementedError:
                continue
            return candidate
        raise ValueError(f"{country} has no subdivision {value!r}; use one of {', '.join(known)}")


class CalendarSpec(_Frozen):
    """A named business calendar: where it is, when it is open, and which days it closes."""

    timezone: Annotated[str, LazySchema(time_zone_schema)] = Field(
        description="IANA time zone of the office, e.g. Asia/Shanghai"
    )
    holidays: HolidaySource | None = Field(
        default=None,
        description=(
            "Country (and region) whose public holidays close the office and whose make-up "
            "working days open it; none: only `closed` and `open` change the week"
        ),
    )
    hours: WeekHours = Field(
        description=(
            'Opening intervals per day, e.g. {mon-fri: ["09:00-12:00", "13:00-18:00"]}; '
            "keys are mon..sun, ranges such as mon-fri, or lists such as mon,wed; days not "
            "listed are closed. Or 24x7 for a calendar that never closes"
        )
    )
    workday_hours: DayHours | None = Field(
        default=None,
        json_schema_extra={"minItems": 1},  # the check is _consistent's, with its message
        description=(
            "Opening intervals of make-up working days and `open` days; default: Monday's hours "
            "(or the first open weekday's)"
        ),
    )
    closed: tuple[dt.date, ...] = Field(default=(), description="Local extra closed dates")
    open: tuple[dt.date, ...] = Field(default=(), description="Local extra open dates")

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_timezone(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use e.g. Asia/Shanghai or UTC"
            raise ValueError(f"unknown time zone {value!r}; {hint}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CalendarSpec:
        both = sorted(set(self.closed) & set(self.open))
        if both:
            dates = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"{dates} listed under both closed and open; keep one")
        if self.workday_hours is not None and not self.workday_hours:
            raise ValueError("workday_hours needs at least one interval")
        return self

    def weekly_minutes(self) -> tuple[tuple[Minutes, ...], ...]:
        """Opening intervals for Monday..Sunday (index = `date.weekday()`)."""
        week: list[tuple[Minutes, ...]] = [()] * 7
        for key, intervals in self.hours.items():
            for day in parse_day_key(key):
                week[day] = tuple(parse_interval(text) for text in intervals)
        return tuple(week)

    def workday_minutes(self) -> tuple[Minutes, ...]:
        """Opening intervals of make-up working days and `open` days."""
        if self.workday_hours:
            return tuple(parse_interval(text) for text in self.workday_hours)
        # Monday stands for "a normal working day"; an office closed on Mondays uses its first
        # open weekday instead. The week validator guarantees one exists.
        return next(day for day in self.weekly_minutes() if day)
