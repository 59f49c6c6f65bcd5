"""Repeats of a deadline's warning or breach: "every 2 working days until it stops".

A state with `repeat:` is sent again at each interval after it was reached, while the clock
runs: a warning's repeats until the deadline (the breach takes over), a breach's until the
stop event. Repeat N is its own finding, state `breach:repeat:N`, so each goes out once; it is
an event, closed when recorded. A run that finds several repeats passed since the previous run
(the host was down) records only the latest: the reader needs one reminder that the case is
still open, not one per missed interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from engine.calendar import BusinessCalendar, always_open
from engine.policy.durations import Duration
from engine.rules.working_time import reach

REPEAT = ":repeat:"
_MAX_REPEATS = 10_000  # a runaway interval (every minute for years) stops counting here


@dataclass(frozen=True, slots=True)
class Series:
    """The repeats of one state of one clock, as they stand at `as_of`."""

    state: str  # the state repeated: warning or breach
    every: Duration
    done: int  # repeats reached by as_of (the state itself not counted)
    last: datetime | None  # when the latest of them was reached
    next: datetime | None  # the next one, if the clock keeps running

    @property
    def latest(self) -> tuple[str, datetime] | None:
        """The state of the latest repeat reached and its instant, if any."""
        return (repeat_state(self.state, self.done), self.last) if self.last else None


def repeat_state(state: str, index: int) -> str:
    """`breach:repeat:2`: the second repeat of the breach."""
    return f"{state}{REPEAT}{index}"


def base_state(state: str) -> str:
    """The state a repeat repeats (`breach` for `breach:repeat:2`); other states unchanged."""
    return state.partition(REPEAT)[0]


def repeat_index(state: str) -> int | None:
    """N of `...:repeat:N`; None for a state that is not a repeat."""
    base, found, index = state.partition(REPEAT)
    return int(index) if found and base else None


def series(
    every: Mapping[str, Duration],
    *,
    warn_at: datetime | None,
    deadline: datetime,
    running: bool,
    calendar: BusinessCalendar,
    as_of: datetime,
) -> Series | None:
    """The repeats under way at `as_of` (a warning's before the deadline, a breach's after),
    counted on `calendar` (the branch's) or the wall clock, as each interval says."""
    if not running:
        return None
    if as_of < deadline:
        state, anchor, bound = "warning", warn_at, deadline
        if anchor is None or as_of < anchor:
            return None
    else:
        state, anchor, bound = "breach", deadline, None
    interval = every.get(state)
    if interval is None:
        return None
    clock = calendar if interval.working else always_open(calendar.timezone.key)
    done, last, at = 0, None, anchor
    for _ in range(_MAX_REPEATS):
        following = reach(clock, at, interval, ())
        if bound is not None and following >= bound:
            return Series(state, interval, done, last, None)
        if following > as_of:
            return Series(state, interval, done, last, following)
        done, last, at = done + 1, following, following
    return Series(state, interval, done, last, None)
