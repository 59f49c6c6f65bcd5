"""`aftersales schedule`: the long-running nightly loop, on the `schedule` library.

`schedule` keeps nothing across restarts and lets a job's exception end its loop, so the
catch-up (a night missed while the process was down runs at start) and the error handling
(one failed night is logged, the next one still runs) are done here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import schedule
from sqlalchemy import Engine, select

from engine.db.models import Run
from engine.errors import PolicyError, RunLocked

log = logging.getLogger("aftersales.schedule")


def next_occurrence(at: str, tz: str, now: datetime) -> datetime:
    """The first instant after `now` whose wall-clock time in `tz` is `at` (UTC)."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    wanted = time.fromisoformat(at)
    candidate = datetime.combine(local.date(), wanted, zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), wanted, zone)
    return candidate.astimezone(UTC)


def previous_occurrence(at: str, tz: str, now: datetime) -> datetime:
    """The last instant at or before `now` whose wall-clock time in `tz` is `at` (UTC)."""
    following = next_occurrence(at, tz, now)
    zone = ZoneInfo(tz)
    day = following.astimezone(zone).date() - timedelta(days=1)
    return datetime.combine(day, time.fromisoformat(at), zone).astimezone(UTC)


def last_success(engine: Engine) -> datetime | None:
    """as_of of the newest successful run, if any."""
    with engine.connect() as conn:
        return conn.scalar(
            select(Run.as_of).where(Run.outcome == "success").order_by(Run.as_of.desc()).limit(1)
        )


class NightlyScheduler:
    """Runs `night(as_of)` every day at `at` in time zone `tz`, until told to stop."""

    def __init__(
        self,
        engine: Engine,
        night: Callable[[datetime], object],
        *,
        at: str,
        tz: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        deliver: Callable[[], object] | None = None,
        deliver_every_minutes: int = 15,
    ):
        self.engine = engine
        self.night = night
        self.at, self.tz = at, tz
        self.clock = clock
        self.stop = threading.Event()
        self.scheduler = schedule.Scheduler()
        self.job = self.scheduler.every().day.at(at, tz).do(self.run_guarded)
        if deliver is not None:
            # Between nights: retries come due (5 min, 30 min, ...) and held customer letters
            # reach their send window; without this they would wait for the next night.
            self.scheduler.every(deliver_every_minutes).minutes.do(self._guarded, deliver)

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
        log.info(
            "scheduler started",
            extra={"at": self.at, "timezone": self.tz,
                   "next_run": next_occurrence(self.at, self.tz, self.clock()).isoformat()},
        )  # fmt: skip
        if self.missed():
            log.info("catching up the night missed while the scheduler was not running")
            self.run_guarded()
        while not self.stop.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            self.stop.wait(timeout=min(max(idle if idle is not None else 60, 1), 60))
        log.info("scheduler stopped")
