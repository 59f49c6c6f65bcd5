"""Working-time arithmetic on a business calendar: deadlines and elapsed working time.

A `BusinessCalendar` lays each day's opening intervals out as UTC instants (integer
microseconds), computed from that day's local wall times, so a day on which the clocks change
is exactly as long as the office is really open. Beside the sorted interval starts and ends it
keeps the working time elapsed before each interval, so `add` and `between` are two binary
searches whatever the span: no loop over minutes or days. The table covers whole years and
grows on demand (first use: the year asked about, two either side).

Boundary rule: `add` returns the *earliest* instant at which the working time has elapsed. Time
that runs out exactly at closing lands on the closing instant (Wed 17:00 + 1 h = Wed 18:00, not
Thu 09:00), and adding nothing returns the start unchanged. A start outside opening hours
counts from the next opening. `between(a, b)` counts working time in [a, b), and the two are
inverse: `between(a, add(a, d)) == d`. An instant is open from an interval's start up to, not
including, its end.

Which days open, in order of precedence: a local `open` date (workday hours), a local `closed`
date, a public holiday (the `holidays` package's `public` category only), a make-up working
day of that package (workday hours), else the weekday's hours.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import repeat
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays as holidays_package

if TYPE_CHECKING:
    # Types only: the policy loader imports this module, so importing the policy package back
    # at run time would be circular. A spec arrives already validated.
    from engine.policy.calendar_spec import CalendarSpec, Minutes

__all__ = ["BusinessCalendar", "always_open", "build_calendar"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ALL_DAY: tuple[Minutes, ...] = ((0, 24 * 60),)
_SPAN_YEARS = 2  # years either side of the first year asked about
_GROW_YEARS = 2  # years added at a time when `add` runs past the end of the table


@dataclass(frozen=True, slots=True)
class _Table:
    """Working intervals of whole days `first..last`, as sorted UTC microseconds.

    `offset[i]` is `starts[i]` minus the working time before it, so the working time elapsed
    at an instant t inside interval i is `t - offset[i]`; `done[i]` is the working time
    elapsed at `ends[i]`. Both count from the start of the table.
    """

    first: date
    last: date
    low: int  # local midnight opening `first`
    high: int  # local midnight closing `last`
    starts: list[int]
    ends: list[int]
    offset: list[int]
    done: list[int]


class _Holidays:
    """Public holidays and make-up working days of one country, fetched per year on demand."""

    def __init__(self, country: str, subdivision: str | None) -> None:
        self.country, self.subdivision = country, subdivision
        self.names: dict[date, str] = {}
        self.make_up: set[date] = set()
        self.years: set[int] = set()
        self._lock = threading.Lock()

    def load(self, years: Collection[int]) -> None:
        if self.years.issuperset(years):
            return
        with self._lock:
            missing = sorted(set(years) - self.years)
            if not missing:
                return
            probe = holidays_package.country_holidays(self.country, subdiv=self.subdivision)
            language = "en_US" if "en_US" in probe.supported_languages else None
            # One year either side: a day off in January may be made up on a December weekend
            # and is only known when the later year is computed.
            wanted = range(missing[0] - 1, missing[-1] + 2)
            found = holidays_package.country_holidays(
                self.country,
                subdiv=self.subdivision,
                years=wanted,
                language=language,
                categories=("public",),
            )
            keep = set(missing)
            self.names.update((d, str(n)) for d, n in found.items() if d.year in keep)
            self.make_up.update(d for d in found.weekend_workdays if d.year in keep)
            self.years.update(keep)


class _Cache:
    """The only mutable part of a calendar: the table, replaced whole when it grows."""

    __slots__ = ("lock", "table")

    def __init__(self) -> None:
        self.table: _Table | None = None
        self.lock = threading.Lock()


class BusinessCalendar:
    """Working hours of one office: adds working time to instants and measures it."""

    __slots__ = ("_cache", "_closed", "_holidays", "_name", "_open", "_tz", "_week", "_workday")
    _cache: _Cache
    _closed: frozenset[date]
    _holidays: _Holidays | None
    _name: str
    _open: frozenset[date]
    _tz: ZoneInfo
    _week: tuple[tuple[Minutes, ...], ...]
    _workday: tuple[Minutes, ...]

    def __init__(
        self,
        name: str,
        timezone: str,
        week: Sequence[Sequence[Minutes]],
        workday: Sequence[Minutes],
        *,
        country: str | None = None,
        subdivision: str | None = None,
        closed: Iterable[date] = (),
        open: Iterable[date] = (),
    ) -> None:
        """Prefer `build_calendar(name, spec)`: the spec validates what this trusts."""
        if len(week) != 7 or not any(week):
            raise ValueError("a week needs seven days, one of them with opening hours")
        set_ = object.__setattr__  # the public __setattr__ refuses, to keep calendars immutable
        set_(self, "_name", name)
        set_(self, "_tz", ZoneInfo(timezone))
        set_(self, "_week", tuple(tuple(day) for day in week))
        set_(self, "_workday", tuple(workday))
        set_(self, "_holidays", _Holidays(country, subdivision) if country else None)
        set_(self, "_closed", frozenset(closed))
        set_(self, "_open", frozenset(open))
        set_(self, "_cache", _Cache())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"<BusinessCalendar {self._name!r} {self._tz.key}>"

    @property
    def name(self) -> str:
        """The name the policy gives this calendar."""
        return self._name

    @property
    def timezone(self) -> ZoneInfo:
        """The office's time zone, for showing instants in local time."""
        return self._tz

    # -- days ---------------------------------------------------------------------------------

    def day_status(self, day: date) -> tuple[bool, str]:
        """Whether `day` (a local date) has working hours, and why, for people to read."""
        _, working, reason = self._plan(day)
        return working, reason

    def skipped_days(self, start: datetime, end: datetime) -> list[tuple[date, str]]:
        """Closed days strictly between the local dates of `start` and `end`, with reasons."""
        first = start.astimezone(self._tz).date() + timedelta(days=1)
        last = end.astimezone(self._tz).date()
        out = []
        for n in range((last - first).days):
            day = first + timedelta(days=n)
            working, reason = self.day_status(day)
            if not working:
                out.append((day, reason))
        return out

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same local time `days` working days later: Monday 10:00 + 2 is Wednesday 10:00.

        Closed days are skipped; a start outside opening hours counts from the next opening.
        """
        if days < 0:
            raise ValueError("working days to add must not be negative")
        opened = self.add(start, _US) - _US
        local = opened.astimezone(self._tz)
        day = local.date()
        while days:
            day += timedelta(days=1)
            days -= self.day_status(day)[0]
        return datetime.combine(day, local.timetz().replace(tzinfo=None), self._tz).astimezone(UTC)

    def end_of_working_day(self, at: datetime) -> datetime:
        """Closing time of the working day `at` falls in (the next one if it is after hours)."""
        opened = self.add(at, _US) - _US
        day = opened.astimezone(self._tz).date()
        closing = self._plan(day)[0][-1][1]  # minutes after local midnight; 1440 is midnight
        day, closing = (day + timedelta(days=1), 0) if closing == 24 * 60 else (day, closing)
        return datetime.combine(day, time(*divmod(closing, 60)), self._tz).astimezone(UTC)

    def prepare(self, first_day: date, last_day: date) -> None:
        """Compute the working intervals of these days now rather than on first use."""
        self._table_for(self._midnight(first_day), self._midnight(last_day + timedelta(days=1)) - 1)

    # -- instants -----------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls inside opening hours (an interval's end is already closed)."""
        t = _micros(at)
        table = self._table_for(t, t)
        return t < table.ends[bisect_right(table.starts, t) - 1]

    def add(self, start: datetime, working: timedelta) -> datetime:
        """The instant (UTC) at which `working` working time has elapsed since `start`."""
        t, span = _micros(start), _span(working)
        if span == 0:
            return _EPOCH + timedelta(0, 0, t)
        table = self._cache.table
        if table is None or not table.low <= t < table.high:
            table = self._table_for(t, t)
        i = bisect_right(table.starts, t) - 1
        end = table.ends[i]
        target = (t if t < end else end) - table.offset[i] + span
        # The first interval whose end reaches the target holds the earliest such instant.
        j = bisect_left(table.done, target)
        if j == len(table.done):
            return self._add_far(t, span)
        return _EPOCH + timedelta(0, 0, target + table.offset[j])

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time in [start, end); zero when `end` is not after `start`."""
        a, b = _micros(start), _micros(end)
        if b <= a:
            return timedelta(0)
        table = self._table_for(a, b)
        return timedelta(0, 0, _elapsed(table, b) - _elapsed(table, a))

    def add_many(
        self, starts: Sequence[datetime], working: timedelta | Sequence[timedelta]
    ) -> list[datetime]:
        """`add` for each start, with one working time for all or one per start."""
        points = [_micros(s) for s in starts]
        if isinstance(working, timedelta):
            spans: Iterable[int] = repeat(_span(working), len(points))
        elif len(working) == len(points):
            spans = [_span(w) for w in working]
        else:
            raise ValueError("add_many needs one working time per start, or a single one")
        if not points:
            return []
        table = self._table_for(min(points), max(points))
        # The loop of `add` with everything bound locally: this is the hot path of a night run.
        starts_, ends, offset, done = table.starts, table.ends, table.offset, table.done
        count, epoch, delta = len(done), _EPOCH, timedelta
        out: list[datetime] = []
        append = out.append
        for t, span in zip(points, spans, strict=True):
            i = bisect_right(starts_, t) - 1
            end = ends[i]
            target = (t if t < end else end) - offset[i] + span
            j = bisect_left(done, target)
            if span and j < count:
                append(epoch + delta(0, 0, target + offset[j]))
            else:
                append(self._add_far(t, span) if span else epoch + delta(0, 0, t))
        return out

    def between_many(self, starts: Sequence[datetime], ends: Sequence[datetime]) -> list[timedelta]:
        """`between` for each pair of `starts[k]` and `ends[k]`."""
        if len(starts) != len(ends):
            raise ValueError("between_many needs as many ends as starts")
        lows = [_micros(s) for s in starts]
        highs = [_micros(e) for e in ends]
        if not lows:
            return []
        table = self._table_for(min(lows), max(highs))
        starts_, ends_, offset, delta, zero = table.starts, table.ends, table.offset, timedelta, 0
        out: list[timedelta] = []
        append = out.append
        for a, b in zip(lows, highs, strict=True):
            if b <= a:
                append(delta(zero))
                continue
            i = bisect_right(starts_, a) - 1
            end = ends_[i]
            used = (a if a < end else end) - offset[i]
            i = bisect_right(starts_, b) - 1
            end = ends_[i]
            append(delta(0, 0, (b if b < end else end) - offset[i] - used))
        return out

    # -- insides ------------------------------------------------------------------------------

    def _add_far(self, t: int, span: int) -> datetime:
        """`add` past the end of the table: grow it until the target falls inside."""
        table = self._table_for(t, t)
        while True:
            elapsed = _elapsed(table, t)
            j = bisect_left(table.done, elapsed + span)
            if j < len(table.done):
                return _EPOCH + timedelta(microseconds=elapsed + span + table.offset[j])
            last = table.last.replace(year=table.last.year + _GROW_YEARS, month=12, day=31)
            table = self._table_for(t, self._midnight(last))

    def _plan(self, day: date) -> tuple[tuple[Minutes, ...], bool, str]:
        """The opening intervals of a local date, whether it is a working day, and why."""
        if day in self._open:
            return self._workday, True, "local open day"
        if day in self._closed:
            return (), False, "local closed day"
        weekday = day.weekday()
        if self._holidays is not None:
            self._holidays.load((day.year,))
            name = self._holidays.names.get(day)
            if name is not None:
                return (), False, f"public holiday: {name}"
            if day in self._holidays.make_up:
                return self._workday, True, f"make-up working day ({_WEEKDAYS[weekday]})"
        hours = self._week[weekday]
        if hours:
            return hours, True, "working day"
        if weekday >= 5:
            return (), False, "weekend"
        return (), False, f"no working hours on {_WEEKDAYS[weekday]}s"

    def _midnight(self, day: date) -> int:
        return _micros(datetime.combine(day, time(), self._tz))

    def _table_for(self, low: int, high: int) -> _Table:
        """A table covering instants `low..high`, grown (never shrunk) when needed."""
        table = self._cache.table
        if table is not None and table.low <= low and high < table.high:
            return table
        with self._cache.lock:
            table = self._cache.table
            if table is not None and table.low <= low and high < table.high:
                return table
            first_year = _local_year(low, self._tz)
            last_year = _local_year(high, self._tz)
            if table is None:
                first_year, last_year = first_year - _SPAN_YEARS, last_year + _SPAN_YEARS
            else:
                # Grow by whole years, a year beyond the instant, so neighbours hit the table.
                first_year = min(table.first.year, first_year - 1)
                last_year = max(table.last.year, last_year + 1)
            first_year, last_year = max(first_year, 1), min(last_year, 9998)
            if not (first_year <= _local_year(low, self._tz) <= last_year) or not (
                first_year <= _local_year(high, self._tz) <= last_year
            ):
                raise ValueError("working time is only counted between the years 1 and 9998")
            table = self._build(date(first_year, 1, 1), date(last_year, 12, 31))
            self._cache.table = table
            return table

    def _build(self, first: date, last: date) -> _Table:
        if self._holidays is not None:
            self._holidays.load(range(first.year, last.year + 1))
        low = self._midnight(first)
        # A closed sentinel interval at the table's start: every covered instant has an
        # interval at or before it, so the hot loops need no "before the first" branch.
        starts: list[int] = [low]
        ends: list[int] = [low]
        tz = self._tz
        day = first
        one_day = timedelta(days=1)
        while day <= last:
            hours, _, _ = self._plan(day)
            midnight = datetime.combine(day, time())
            for open_min, close_min in hours:
                # Wall time to instant per day: a DST day's hours are as long as they really
                # are. A time in the spring-forward gap reads with the offset before the gap.
                begin = _micros((midnight + timedelta(minutes=open_min)).replace(tzinfo=tz))
                end = _micros((midnight + timedelta(minutes=close_min)).replace(tzinfo=tz))
                if begin < ends[-1]:  # a repeated autumn hour may overlap
                    begin = ends[-1]
                if end <= begin:
                    continue
                if begin == ends[-1] and len(ends) > 1:  # touching intervals (24x7) merge
                    ends[-1] = end
                else:
                    starts.append(begin)
                    ends.append(end)
            day += one_day
        offset: list[int] = []
        done: list[int] = []
        elapsed = 0
        for begin, end in zip(starts, ends, strict=True):
            offset.append(begin - elapsed)
            elapsed += end - begin
            done.append(elapsed)
        return _Table(
            first,
            last,
            low,
            self._midnight(last + one_day),
            starts,
            ends,
            offset,
            done,
        )


def build_calendar(name: str, spec: CalendarSpec) -> BusinessCalendar:
    """The calendar a validated spec describes."""
    source = spec.holidays
    return BusinessCalendar(
        name,
        spec.timezone,
        spec.weekly_minutes(),
        spec.workday_minutes(),
        country=source.country if source else None,
        subdivision=source.subdivision if source else None,
        closed=spec.closed,
        open=spec.open,
    )


@lru_cache(maxsize=128)
def always_open(tz: str = "UTC", *, name: str = "24x7") -> BusinessCalendar:
    """A calendar that never closes: working time is elapsed time, DST changes included.

    Shared per time zone (calendars are immutable), so its table is built once.
    """
    return BusinessCalendar(name, tz, (_ALL_DAY,) * 7, _ALL_DAY)


def _micros(at: datetime) -> int:
    """Microseconds since the epoch of an aware datetime; exact, unlike float timestamps."""
    try:
        return (at - _EPOCH) // _US
    except TypeError:  # cheaper than checking utcoffset() first on every call
        raise ValueError(f"working time needs aware datetimes, got {at!r}") from None


def _span(working: timedelta) -> int:
    span = working // _US
    if span < 0:
        raise ValueError(f"working time to add cannot be negative, got {working}")
    return span


def _elapsed(table: _Table, t: int) -> int:
    """Working time from the table's start to the covered instant `t`."""
    i = bisect_right(table.starts, t) - 1
    return min(t, table.ends[i]) - table.offset[i]


def _local_year(micros: int, tz: ZoneInfo) -> int:
    return (_EPOCH + timedelta(microseconds=micros)).astimezone(tz).year
