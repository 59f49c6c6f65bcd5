"""`aftersales schedule`: one cycle every `--every` (15 minutes by default) until stopped.

Each cycle decides for itself what is due (engine.due_parts: the daily parts by their local
time, per branch), so the loop keeps only the cadence: no time of day, no zone, and no catch-up
of its own, because the first cycle runs at start and covers whatever came due while the host
was down. The loop reads time only through `clock` (UTC) and sleeps only through `wait`, so it
can be driven without sleeping. One failed cycle is logged and the next one still runs.

The `schedule` library is not used for the cadence: its intervals are counted on the host's
naive local clock, so on a host whose zone goes back an hour in autumn, `every(15).minutes`
waits 75 minutes once (Europe/Madrid, 25 October 2026: 02:45 CEST, then 03:00 CET).

The local-time helpers below work out when a wall-clock time comes in a zone, exactly, on days
the clocks change.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.errors import PolicyError, RunLocked

log = logging.getLogger("aftersales.schedule")

LONGEST_NAP = timedelta(seconds=60)
"""The loop looks at the clock at least this often: a suspended host or a clock set by NTP
is noticed within a minute, not after a nap computed from the old time."""

SHORTEST_EVERY, LONGEST_EVERY = timedelta(minutes=1), timedelta(hours=24)
_EVERY = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>m|min|h)\s*$")


def parse_every(text: str) -> timedelta:
    """A cycle interval such as `15m`, `5m` or `1h`; ValueError says what is accepted."""
    match = _EVERY.match(text)
    every = None
    if match is not None:
        n = int(match["n"])
        every = timedelta(hours=n) if match["unit"] == "h" else timedelta(minutes=n)
    if every is None or not SHORTEST_EVERY <= every <= LONGEST_EVERY:
        raise ValueError(
            f"{text!r} is not an interval between 1m and 24h: write minutes or hours, "
            "such as 15m, 5m or 1h"
        )
    return every


def wall_clock_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) when the clocks in `zone` show `at` on `day`.

    A time the clocks show twice (they go back) gives the first; a time they skip (they go
    forward) gives the first instant after the gap.
    """
    first = datetime.combine(day, at, zone)  # fold=0: the earlier of two equal readings
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == first.replace(tzinfo=None):
        return instant
    # `at` falls in the gap: read with the offset after the change it lies before the
    # change, read with the offset before it lies after; the change is between them.
    before, after = first.replace(fold=1).astimezone(UTC), instant
    new_offset = after.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) // 2
        if middle.astimezone(zone).utcoffset() == new_offset:
            after = middle
        else:
            before = middle
    return after.replace(microsecond=0)


def previous_occurrence(
    at: time, zone: ZoneInfo, now: datetime, days: Iterable[date]
) -> tuple[date, datetime] | None:
    """The first of `days` (newest first) whose `at` came at or before `now`: that day and the
    instant (UTC); None if none did."""
    for day in days:
        instant = wall_clock_instant(day, at, zone)
        if instant <= now:
            return day, instant
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CycleLoop:
    """Runs `cycle(as_of)` at start and then every `every`, until `stop` is set.

    `clock` gives the time (UTC) and `wait(seconds)` pauses (by default until `stop` is set or
    the time is up); a test passes a simulated pair.
    """

    def __init__(
        self,
        cycle: Callable[[datetime], object],
        *,
        every: timedelta,
        clock: Callable[[], datetime] = _utc_now,
        wait: Callable[[float], object] | None = None,
    ):
        if every <= timedelta(0):
            raise ValueError("a cycle interval must be positive")
        self.cycle = cycle
        self.every = every
        self.clock = clock
        self.stop = threading.Event()
        self.wait = wait if wait is not None else self.stop.wait

    def run_guarded(self) -> None:
        """One cycle at the clock's time; whatever goes wrong is logged and the loop goes on."""
        as_of = self.clock().replace(microsecond=0)
        try:
            self.cycle(as_of)
        except RunLocked as exc:
            log.warning("cycle skipped: %s", exc)
        except PolicyError as exc:
            log.error("cycle failed: the policy does not validate (%d problems)", len(exc.problems))
        except Exception:
            log.exception("cycle failed; the next one will still run")

    def serve(self) -> None:
        """A cycle now, then one every `every` from the start of the last, until `stop`."""
        log.info("scheduler started", extra={"every_s": self.every.total_seconds()})
        next_cycle = self.clock()
        while not self.stop.is_set():
            now = self.clock()
            if next_cycle - now > self.every:
                next_cycle = now + self.every  # the clock was set back: keep the cadence
            if now >= next_cycle:
                self.run_guarded()
                # From the cycle's start: one that took longer than `every` is followed at
                # once, and never by a burst of the cycles it overlapped.
                next_cycle = now + self.every
                log.info("next cycle", extra={"next_run": next_cycle.isoformat()})
            else:
                self.wait(min(next_cycle - now, LONGEST_NAP).total_seconds())
        log.info("scheduler stopped")
