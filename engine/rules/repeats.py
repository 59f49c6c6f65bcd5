"""Repeats of a deadline's warning or breach: "every 2 working days until it stops".

A state with `repeat:` is sent again at each interval after it was reached, while the clock
runs: a warning's repeats until the deadline (the breach takes over), a breach's until the
stop event. Repeat N is its own finding, state `breach:repeat-N`, so each goes out once; it is
an event, closed when recorded. A run records the latest repeat reached; a catch-up run after
downtime stands in for each missed daily run (engine.rules.catch_up), so it also records the
repeats those runs would have, as it does for the other states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engine.calendar import BusinessCalendar, always_open
from engine.findings import repeat_state
from engine.policy.durations import Duration
from engine.rules.working_time import Pause, reach

if TYPE_CHECKING:
    from engine.rules.deadline import Clock

_MAX_REPEATS = 10_000  # a runaway interval (every minute for years) stops counting here


@dataclass(frozen=True, slots=True)
class Series:
    """The repeats of one state of one clock, as they stand at an instant."""

    state: str  # the state repeated: warning or breach
    every: Duration
    reached: tuple[datetime, ...]  # the repeats reached by then, the state itself not counted
    next: datetime | None  # the next one, if the clock keeps running

    @property
    def done(self) -> int:
        """How many repeats were reached."""
        return len(self.reached)

    @property
    def last(self) -> datetime | None:
        """When the latest repeat was reached, if any."""
        return self.reached[-1] if self.reached else None

    @property
    def latest(self) -> tuple[str, datetime] | None:
        """The state of the latest repeat reached and its instant, if any."""
        return (repeat_state(self.state, self.done), self.reached[-1]) if self.reached else None


def repeats_of(
    every: Mapping[str, Duration], clock: Clock, calendar: BusinessCalendar, as_of: datetime
) -> Series | None:
    """The repeats of the clock's warning or breach under way at `as_of`, if it has any."""
    if not every:
        return None
    return series(
        every,
        warn_at=clock.warn_at,
        deadline=clock.deadline,
        running=clock.running,
        calendar=calendar,
        as_of=as_of,
        pauses=clock.pauses,
    )


def repeat_points(
    every: Mapping[str, Duration], clock: Clock, calendar: BusinessCalendar, as_of: datetime
) -> list[datetime]:
    """Every instant the clock reached a repeat, up to its stop or `as_of`."""
    if not every:
        return []
    until = min(clock.stop or as_of, as_of)
    return reached_until(
        every,
        warn_at=clock.warn_at,
        deadline=clock.deadline,
        calendar=calendar,
        until=until,
        pauses=clock.pauses,
    )


def series(
    every: Mapping[str, Duration],
    *,
    warn_at: datetime | None,
    deadline: datetime,
    running: bool,
    calendar: BusinessCalendar,
    as_of: datetime,
    pauses: Sequence[Pause] = (),
) -> Series | None:
    """The repeats under way at `as_of` (a warning's before the deadline, a breach's after),
    counted on `calendar` (the branch's) or the wall clock, as each interval says."""
    if not running:
        return None
    if as_of < deadline:
        if warn_at is None or as_of < warn_at or "warning" not in every:
            return None
        return _walk("warning", warn_at, every["warning"], calendar, as_of, deadline, pauses)
    if "breach" not in every:
        return None
    return _walk("breach", deadline, every["breach"], calendar, as_of, None, pauses)


def reached_until(
    every: Mapping[str, Duration],
    *,
    warn_at: datetime | None,
    deadline: datetime,
    calendar: BusinessCalendar,
    until: datetime,
    pauses: Sequence[Pause] = (),
) -> list[datetime]:
    """Every instant a repeat was reached up to `until` (the stop or as_of): the points a
    catch-up run looks at, as it does at the warning point and the deadline."""
    out: list[datetime] = []
    if warn_at is not None and "warning" in every and warn_at <= until:
        warning = _walk("warning", warn_at, every["warning"], calendar, until, deadline, pauses)
        out += warning.reached
    if "breach" in every and deadline <= until:
        out += _walk("breach", deadline, every["breach"], calendar, until, None, pauses).reached
    return out


def _walk(
    state: str,
    anchor: datetime,
    interval: Duration,
    calendar: BusinessCalendar,
    until: datetime,
    bound: datetime | None,
    pauses: Sequence[Pause] = (),
) -> Series:
    """The repeats of `state` from `anchor` reached by `until`, all before `bound` if given;
    time paused (the entity waiting in a `pause_while` status) does not count."""
    clock = calendar if interval.working else always_open(calendar.timezone.key)
    reached: list[datetime] = []
    at = anchor
    for _ in range(_MAX_REPEATS):
        following = reach(clock, at, interval, pauses)
        if bound is not None and following >= bound:
            return Series(state, interval, tuple(reached), None)
        if following > until:
            return Series(state, interval, tuple(reached), following)
        reached.append(following)
        at = following
    return Series(state, interval, tuple(reached), None)
