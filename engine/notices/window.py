"""The hours in which customer letters may be handed to the mail server, in the reader's time.

An escalation found at 02:00 on a Sunday is queued at once but waits in the outbox until the
window opens where the customer lives; staff notices are not held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local opening hours (`opens` to `closes`) on the given weekdays."""

    opens: time
    closes: time
    days: frozenset[int] = frozenset(range(7))

    @classmethod
    def parse(cls, hours: str, days: tuple[str, ...] = WEEKDAYS) -> SendWindow:
        """`"09:00-20:00"` and weekday names; raises ValueError with what is wrong."""
        start, sep, end = hours.partition("-")
        try:
            opens, closes = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
        except ValueError:
            sep = ""
        if not sep or opens >= closes:
            raise ValueError(f"send window {hours!r} is not HH:MM-HH:MM with opening first")
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown or not days:
            raise ValueError(f"send window days must be some of {', '.join(WEEKDAYS)}")
        return cls(opens, closes, frozenset(WEEKDAYS.index(d) for d in days))

    def next_opening(self, now: datetime, timezone: str | None) -> datetime | None:
        """None if a letter may go at `now`; otherwise when the window next opens (UTC-aware)."""
        try:
            zone = ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        local = now.astimezone(zone)
        if local.weekday() in self.days and self.opens <= local.time() < self.closes:
            return None
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            start = datetime.combine(day, self.opens, zone)
            if day.weekday() in self.days and start > local:
                return start.astimezone(now.tzinfo)
        raise AssertionError("a window with at least one day opens within a week")
