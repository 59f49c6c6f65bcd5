"""The cycle loop, and the daily parts it does across clock changes: once per local day, at the
local time asked for.

The loop is driven by a simulated clock: each nap moves the time on instead of sleeping, and a
cycle may take a few simulated minutes, as a real one does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from engine.db.schema import upgrade
from engine.db.session import connect
from engine.due_parts import due_parts, mark_done
from engine.errors import RunLocked
from engine.policy.schedule_spec import ScheduleSpec
from engine.scheduler import CycleLoop, parse_every

EVERY = timedelta(minutes=15)


class SimulatedTime:
    """A clock that moves only when the loop waits or a cycle works."""

    def __init__(self, start: datetime, end: datetime):
        self.now, self.end = start, end
        self.naps = 0
        self.loop: CycleLoop | None = None

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
    """What the loop did: each cycle's as_of."""

    time: SimulatedTime
    cycles: list[datetime] = field(default_factory=list)


def served(
    *,
    start: datetime,
    days: float,
    cycle: Callable[[datetime], object] | None = None,
    takes: timedelta = timedelta(0),
) -> Simulation:
    """Serve the loop from `start` for `days` simulated days, a cycle taking `takes`."""
    run = Simulation(SimulatedTime(start, start + timedelta(days=days)))

    def working(as_of: datetime) -> None:
        run.cycles.append(as_of)
        run.time.now += takes
        if cycle is not None:
            cycle(as_of)

    loop = CycleLoop(working, every=EVERY, clock=run.time.clock, wait=run.time.wait)
    run.time.loop = loop
    loop.serve()
    return run


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    engine = connect(sqlite_url)
    upgrade(engine)
    return engine


# zone, local time, first local day simulated, and the days the clocks change: what they read.
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
def test_a_branch_gets_its_digests_once_per_local_day_at_the_local_time_across_a_clock_change(
    engine: Engine, tz: str, at: str, first_day: date, changes: dict[date, str]
) -> None:
    zone = ZoneInfo(tz)
    schedule = ScheduleSpec(digests=at)
    done: list[tuple[str, datetime]] = []  # the branch's local day, and the cycle doing it

    def cycle(as_of: datetime) -> None:
        with engine.begin() as conn:
            due = due_parts(conn, schedule, {1: tz}, "UTC", as_of, close_on_day=10)
            done.extend(
                (i.period, as_of) for i in due.items if (i.part, i.scope) == ("digests", "1")
            )
            mark_done(conn, due, f"cycle-{as_of:%Y%m%dT%H%M}", ["digests"])

    # Started an hour after that day's time: the first cycle does that day's digests (nothing
    # is recorded yet), then one a day. Half a day more: the tenth is in even when the clocks
    # went back an hour.
    that_day = datetime.combine(first_day, time.fromisoformat(at), zone).astimezone(UTC)
    run = served(start=that_day + timedelta(hours=1), days=10.5, cycle=cycle)

    days = [first_day + timedelta(days=n) for n in range(11)]
    assert [period for period, _ in done] == [day.isoformat() for day in days]  # once each
    digests = dict(done)
    for day in days[1:]:
        done = digests[day.isoformat()].astimezone(zone)
        assert done.date() == day
        assert done.isoformat()[11:].startswith(changes.get(day, f"{at}:00")), done.isoformat()
    # Cycles every 15 minutes; naps of up to a minute, so a jump of the clock is noticed soon.
    assert len(run.cycles) == 10.5 * 24 * 4
    assert run.time.naps >= 10 * 24 * 60


def test_the_first_cycle_runs_at_start_and_a_failing_one_does_not_end_the_loop() -> None:
    start = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)  # the host was down for days before
    failures = iter([RuntimeError("disk full"), RunLocked("a run is on")])

    def cycle(_as_of: datetime) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    run = served(start=start, days=1 / 24, cycle=cycle)
    # The catch-up is the first cycle, at once; it failed, the locked one was skipped, and the
    # loop went on every 15 minutes.
    assert run.cycles == [start + n * EVERY for n in range(4)]


def test_a_cycle_longer_than_the_interval_is_followed_at_once_and_the_cadence_keeps() -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    slow = iter([timedelta(minutes=20)])

    def cycle(_as_of: datetime) -> None:
        run.time.now += next(slow, timedelta(minutes=2))

    run = Simulation(SimulatedTime(start, start + timedelta(hours=2)))
    loop = CycleLoop(lambda as_of: (run.cycles.append(as_of), cycle(as_of)), every=EVERY,
                     clock=run.time.clock, wait=run.time.wait)  # fmt: skip
    run.time.loop = loop
    loop.serve()
    gaps = [later - sooner for sooner, later in pairwise(run.cycles)]
    assert gaps[0] == timedelta(minutes=20)  # no burst of the cycles it overlapped
    assert set(gaps[1:]) == {EVERY}  # start to start: a 2-minute cycle does not push the next


def test_a_stop_during_a_cycle_lets_it_finish_then_ends_the_loop() -> None:
    start = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)
    simulated = SimulatedTime(start, start + timedelta(days=1))
    finished: list[datetime] = []

    def cycle(as_of: datetime) -> None:
        if len(finished) == 2:
            loop.stop.set()  # SIGTERM arrives while the cycle works
        simulated.now += timedelta(minutes=3)
        finished.append(as_of)

    loop = CycleLoop(cycle, every=EVERY, clock=simulated.clock, wait=simulated.wait)
    simulated.loop = loop
    loop.serve()
    assert finished == [start, start + EVERY, start + 2 * EVERY]
    assert simulated.now == finished[-1] + timedelta(minutes=3)  # no nap or cycle after it


def test_a_clock_set_back_does_not_stall_the_loop() -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    simulated = SimulatedTime(start, start + timedelta(hours=1))
    cycles: list[datetime] = []

    def cycle(as_of: datetime) -> None:
        cycles.append(as_of)
        if len(cycles) == 1:
            simulated.now -= timedelta(hours=2)  # NTP puts the clock right
            simulated.end -= timedelta(hours=2)

    loop = CycleLoop(cycle, every=EVERY, clock=simulated.clock, wait=simulated.wait)
    simulated.loop = loop
    loop.serve()
    assert cycles[1] - cycles[0] == EVERY - timedelta(hours=2)


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("5m", 5), ("1h", 60), ("90 min", 90), ("24h", 1440)]
)
def test_every_takes_minutes_or_hours(text: str, minutes: int) -> None:
    assert parse_every(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["15", "0m", "15s", "25h", "quarter", "-5m", "1.5h"])
def test_every_refuses_what_is_not_an_interval_of_1m_to_24h(text: str) -> None:
    with pytest.raises(ValueError, match="such as 15m, 5m or 1h"):
        parse_every(text)
