"""`aftersales schedule`: the long-running nightly loop, timed on the zone's wall clock.

Each night's instant is worked out with zoneinfo from the local date and `at`, one local day
at a time, so a day the clocks change gets exactly one night: the `schedule` library kept the
UTC offset of the day it was set up and ran twice the day after spring-forward. The loop reads
time only through `clock` and sleeps only through `wait`, so it can be driven without sleeping.
It also does the catch-up (a night missed while the process was down runs at start) and the
error handling (one failed night is logged, the next one still runs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from engine.db.models import Run
from engine.errors import PolicyError, RunLocked

log = logging.getLogger("aftersales.schedule")

LONGEST_NAP = timedelta(seconds=60)
"""The loop looks at the clock at least this often: a suspended host or a clock set by NTP
is noticed within a minute, not after a nap computed from the old time."""


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


def next_occurrence(at: str, tz: str, now: datetime) -> datetime:
    """The first scheduled instant (UTC) after `now`: `at` on the zone's wall clock."""
    zone, wanted = ZoneInfo(tz), time.fromisoformat(at)
    today = now.astimezone(zone).date()
    # Yesterday's time may come after `now` when a gap pushed it past midnight.
    for day in (today - timedelta(days=1), today):
        instant = wall_clock_instant(day, wanted, zone)
        if instant > now:
            return instant
    return wall_clock_instant(today + timedelta(days=1), wanted, zone)


def previous_occurrence(at: str, tz: str, now: datetime) -> datetime:
    """The last scheduled instant (UTC) at or before `now`."""
    zone, wanted = ZoneInfo(tz), time.fromisoformat(at)
    today = now.astimezone(zone).date()
    for day in (today, today - timedelta(days=1)):
        instant = wall_clock_instant(day, wanted, zone)
        if instant <= now:
            return instant
    return wall_clock_instant(today - timedelta(days=2), wanted, zone)


def last_success(engine: Engine) -> datetime | None:
    """as_of of the newest successful run, if any."""
    with engine.connect() as conn:
        return conn.scalar(
            select(Run.as_of).where(Run.outcome == "success").order_by(Run.as_of.desc()).limit(1)
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class NightlyScheduler:
    """Runs `night(as_of)` every day at `at` in time zone `tz`, until told to stop.

    `clock` gives the time and `wait(seconds)` pauses (by default until `stop` is set or the
    time is up); a test passes a simulated pair.
    """

    def __init__(
        self,
        engine: Engine,
        night: Callable[[datetime], object],
        *,
        at: str,
        tz: str,
        clock: Callable[[], datetime] = _utc_now,
        deliver: Callable[[], object] | None = None,
        deliver_every_minutes: int = 15,
        wait: Callable[[float], object] | None = None,
    ):
        self.engine = engine
        self.night = night
        self.at, self.tz = at, tz
        time.fromisoformat(at), ZoneInfo(tz)  # a bad time or zone fails here, not at night
        self.clock = clock
        self.stop = threading.Event()
        self.wait = wait if wait is not None else self.stop.wait
        # Between nights: retries come due (5 min, 30 min, ...) and held customer letters
        # reach their send window; without this they would wait for the next night.
        self.deliver = deliver
        self.delivery_interval = timedelta(minutes=deliver_every_minutes)

    def _guarded(self, task: Callable[[], object]) -> None:
        try:
            task()
        except RunLocked as exc:
            log.warning("delivery skipped: %s", exc)
        except Exception:
            log.exception("delivery failed; it will be tried again")

    def missed(self) -> bool:
        """True when the last scheduled night has no successful run (the host was down)."""
        due = previous_occurrence(self.at, self.tz, self.clock())
        done = last_success(self.engine)
        return done is None or done < due

    def run_guarded(self) -> None:
        """One night; whatever goes wrong is logged and the loop goes on."""
        as_of = self.clock().replace(microsecond=0)
        try:
            self.night(as_of)
        except RunLocked as exc:
            log.warning("night skipped: %s", exc)
        except PolicyError as exc:
            log.error("night failed: the policy does not validate (%d problems)", len(exc.problems))
        except Exception:
            log.exception("night failed; the next one will still run")

    def serve(self) -> None:
        """Catch up a missed night, then run at the scheduled time until `stop` is set."""
        started = self.clock()
        next_night = next_occurrence(self.at, self.tz, started)
        next_delivery = started + self.delivery_interval
        log.info(
            "scheduler started",
            extra={"at": self.at, "timezone": self.tz, "next_run": next_night.isoformat()},
        )
        if self.missed():
            log.info("catching up the night missed while the scheduler was not running")
            self.run_guarded()
        while not self.stop.is_set():
            now = self.clock()
            if now >= next_night:
                self.run_guarded()
                # Counted from the later of the two: a clock set back during the night must
                # not bring tonight's time round again.
                next_night = next_occurrence(self.at, self.tz, max(now, self.clock()))
                log.info("next night", extra={"next_run": next_night.isoformat()})
            elif self.deliver is not None and now >= next_delivery:
                self._guarded(self.deliver)
                next_delivery = max(now, self.clock()) + self.delivery_interval
            else:
                due = next_night if self.deliver is None else min(next_night, next_delivery)
                self.wait(min(due - now, LONGEST_NAP).total_seconds())
        log.info("scheduler stopped")
