"""Working time on a business calendar: how far a span reaches from an instant, pauses
excluded (the arithmetic of deadline clocks, their escalations and repeats)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.calendar import BusinessCalendar
from engine.policy.durations import Duration

Pause = tuple[datetime, datetime | None]
_MAX_SOLVER_STEPS = 50


def span(duration: Duration) -> timedelta:
    """A duration as elapsed time on the clock's calendar (working or 24x7)."""
    per = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
    if duration.unit not in per:  # months and years are refused when the policy is loaded
        raise ValueError(f"{duration}: deadlines are measured in minutes, hours, days or weeks")
    return timedelta(seconds=duration.amount * per[duration.unit])


def reach(
    calendar: BusinessCalendar, start: datetime, duration: Duration, pauses: Sequence[Pause]
) -> datetime:
    """When `duration` has run on the clock since `start`, pauses excluded.

    Working days count whole days (Monday 10:00 + 2 working days is Wednesday 10:00, holidays
    skipped); shorter spans count working time. Wall-clock durations run on the 24x7 calendar.
    """
    if duration.working and duration.unit in ("day", "week"):
        days = duration.amount * (5 if duration.unit == "week" else 1)
        base = calendar.add_working_days(start, days)
        at = base
        for _ in range(_MAX_SOLVER_STEPS):
            following = calendar.add(base, paused(calendar, start, at, pauses))
            if following == at:
                break
            at = following
        return at
    return solve(calendar, start, span(duration), pauses)


def paused(
    calendar: BusinessCalendar, start: datetime, until: datetime, pauses: Sequence[Pause]
) -> timedelta:
    """The working time between `start` and `until` spent in `pauses` (open ones to `until`)."""
    total = timedelta(0)
    for begin, end in pauses:
        lo, hi = max(begin, start), min(end or until, until)
        if hi > lo:
            total += calendar.between(lo, hi)
    return total


def solve(
    calendar: BusinessCalendar, start: datetime, target: timedelta, pauses: Sequence[Pause]
) -> datetime:
    """The instant at which `target` working time, pauses excluded, has run since `start`."""
    at = calendar.add(start, target)
    for _ in range(_MAX_SOLVER_STEPS):
        following = calendar.add(start, target + paused(calendar, start, at, pauses))
        if following == at:
            return at
        at = following
    return at
