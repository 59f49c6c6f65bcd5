"""The nightly loop across clock changes: one night per local day, at the local time asked for.

The loop is driven by a simulated clock: each nap moves the time on instead of sleeping, and a
night takes a few simulated minutes, as a real one does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert

from engine.db.models import Run
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.scheduler import NightlyScheduler

NIGHT_TAKES = timedelta(minutes=7)


class SimulatedTime:
    """A clock that moves only when the loop waits or a night works."""

    def __init__(self, start: datetime, end: datetime):
        self.now, self.end = start, end
        self.naps = 0
        self.loop: NightlyScheduler | None = None

    def clock(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        assert self.loop is not None and 0 < seconds <= 60
        self.naps += 1
        self.now += timedelta(seconds=seconds)
        if self.now >= self.end:
            self.loop.stop.set()
        return self.loop.stop.is_set()


@dataclass
class Simulation:
    """What the loop did: the nights' as_of and when each delivery began."""

    time: SimulatedTime
    nights: list[datetime] = field(default_factory=list)
    deliveries: list[datetime] = field(default_factory=list)


def scheduled(
    engine: Engine,
    *,
    at: str,
    tz: str,
    start: datetime,
    days: float,
    night: Callable[[datetime], object] | None = None,
    deliver: Callable[[], object] | None = None,
) -> Simulation:
    """Serve the loop from `start` for `days` simulated days."""
    run = Simulation(SimulatedTime(start, start + timedelta(days=days)))

    def working_night(as_of: datetime) -> None:
        run.nights.append(as_of)
        run.time.now += NIGHT_TAKES
        if night is not None:
            night(as_of)

    def delivery() -> None:
        run.deliveries.append(run.time.now)
        if deliver is not None:
            deliver()

    loop = NightlyScheduler(
        engine, working_night, at=at, tz=tz, clock=run.time.clock, wait=run.time.wait,
        deliver=delivery,
    )  # fmt: skip
    run.time.loop = loop
    loop.serve()
    return run


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    engine = connect(sqlite_url)
    upgrade(engine)
    return engine


def succeeded_at(engine: Engine, as_of: datetime) -> None:
    """Record a successful night, as the last one before the loop starts."""
    with engine.begin() as conn:
        conn.execute(
            insert(Run).values(
                id=str(uuid.uuid4()), as_of=as_of, started_at=as_of, finished_at=as_of,
                outcome="success", policy_hash="0" * 40,
            )
        )  # fmt: skip


# zone, at, first local day simulated, and the days the clocks change: what they must read.
CLOCK_CHANGES = [
    # The case: 02:00 does not exist on the last Sunday of March; Monday ran twice.
    ("Europe/Madrid", "02:00", date(2026, 3, 25), {date(2026, 3, 29): "03:00:00+02:00"}),
    ("Europe/Madrid", "02:30", date(2026, 3, 25), {date(2026, 3, 29): "03:00:00+02:00"}),
    ("Europe/Madrid", "02:30", date(2026, 10, 21), {date(2026, 10, 25): "02:30:00+02:00"}),
    ("America/New_York", "02:00", date(2026, 3, 4), {date(2026, 3, 8): "03:00:00-04:00"}),
    ("America/New_York", "02:30", date(2026, 3, 4), {date(2026, 3, 8): "03:00:00-04:00"}),
    ("America/New_York", "01:30", date(2026, 10, 28), {date(2026, 11, 1): "01:30:00-04:00"}),
    # Southern hemisphere: the clocks go back in April and forward in October.
    ("Australia/Sydney", "02:30", date(2026, 4, 1), {date(2026, 4, 5): "02:30:00+11:00"}),
    ("Australia/Sydney", "02:30", date(2026, 9, 30), {date(2026, 10, 4): "03:00:00+11:00"}),
    ("Asia/Shanghai", "02:00", date(2026, 3, 25), {}),
    # Chile changes at midnight: the repeated hour is Saturday's last, the skipped Sunday's first.
    ("America/Santiago", "23:30", date(2026, 3, 31), {date(2026, 4, 4): "23:30:00-03:00"}),
    ("America/Santiago", "00:30", date(2026, 9, 2), {date(2026, 9, 6): "01:00:00-03:00"}),
    # Chatham's offsets are 12:45 and 13:45, changing at 02:45 / 03:45 local.
    ("Pacific/Chatham", "03:00", date(2026, 4, 1), {date(2026, 4, 5): "03:00:00+13:45"}),
    ("Pacific/Chatham", "03:00", date(2026, 9, 23), {date(2026, 9, 27): "03:45:00+13:45"}),
    # Lord Howe moves its clocks by half an hour.
    ("Australia/Lord_Howe", "02:15", date(2026, 9, 30), {date(2026, 10, 4): "02:30:00+11:00"}),
    ("Australia/Lord_Howe", "01:45", date(2026, 4, 1), {date(2026, 4, 5): "01:45:00+11:00"}),
]


@pytest.mark.parametrize(("tz", "at", "first_day", "changes"), CLOCK_CHANGES)
def test_one_night_per_local_day_at_the_local_time_across_a_clock_change(
    engine: Engine, tz: str, at: str, first_day: date, changes: dict[date, str]
) -> None:
    zone = ZoneInfo(tz)
    # Started an hour after that day's night ran: nothing to catch up.
    night_before = datetime.combine(first_day, time.fromisoformat(at), zone).astimezone(UTC)
    succeeded_at(engine, night_before)
    # Half a day more: the tenth night is in even when the clocks went back an hour.
    run = scheduled(engine, at=at, tz=tz, start=night_before + timedelta(hours=1), days=10.5)

    local = [as_of.astimezone(zone) for as_of in run.nights]
    days = [first_day + timedelta(days=n) for n in range(1, 11)]
    assert [night.date() for night in local] == days  # one each, none twice, none missed
    for night in local:
        expected = changes.get(night.date(), f"{at}:00")
        assert night.isoformat()[11:].startswith(expected), night.isoformat()
    # Naps of up to a minute: the loop looks at the clock often enough to notice a jump.
    assert run.time.naps >= 10 * 24 * (60 - NIGHT_TAKES.total_seconds() / 60)


def test_a_missed_night_is_caught_up_at_start_and_a_failing_one_does_not_end_the_loop(
    engine: Engine,
) -> None:
    start = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)  # 10:00 in Madrid; last success long ago
    succeeded_at(engine, start - timedelta(days=3))
    failures = iter([RuntimeError("disk full")])

    def night(_as_of: datetime) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    run = scheduled(engine, at="02:00", tz="Europe/Madrid", start=start, days=3, night=night)
    assert run.nights == [
        start,  # the catch-up, which failed
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST: 02:00 did not exist
        datetime(2026, 3, 30, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 0, tzinfo=UTC),
    ]


def test_a_stop_during_a_night_lets_it_finish_then_ends_the_loop(engine: Engine) -> None:
    start = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)
    succeeded_at(engine, start)
    finished: list[datetime] = []
    deliveries: list[datetime] = []
    loop: NightlyScheduler | None = None

    def night(as_of: datetime) -> None:
        assert loop is not None
        loop.stop.set()  # SIGTERM arrives while the night works
        finished.append(as_of)

    simulated = SimulatedTime(start, start + timedelta(days=5))
    loop = NightlyScheduler(
        engine, night, at="02:00", tz="Europe/Madrid", clock=simulated.clock, wait=simulated.wait,
        deliver=lambda: deliveries.append(simulated.now),
    )  # fmt: skip
    simulated.loop = loop
    loop.serve()
    assert finished == [datetime(2026, 3, 28, 1, 0, tzinfo=UTC)]
    assert simulated.now == finished[0]  # no nap, night or delivery after it
    # The delivery due with the night (01:00) would have come after it: it never starts.
    assert deliveries == [start + timedelta(minutes=15 * n) for n in range(1, 4)]


def test_deliveries_run_every_interval_between_nights_and_go_on_after_a_failure(
    engine: Engine,
) -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    succeeded_at(engine, start)
    failures = iter([RuntimeError("mail server down")])

    def deliver() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    run = scheduled(engine, at="02:00", tz="Europe/Madrid", start=start, days=2, deliver=deliver)
    assert len(run.nights) == 2
    assert len(run.deliveries) >= 2 * 24 * 4 - 2
    # Every 15 minutes; one that falls due while a night works waits for it to end.
    gaps = [later - sooner for sooner, later in pairwise(run.deliveries)]
    assert all(timedelta(minutes=15) <= gap <= timedelta(minutes=15) + NIGHT_TAKES for gap in gaps)
