"""Working-time arithmetic per second on a business calendar (not a test; prints figures).

    .venv/bin/python bench/calendar_speed.py [--count 1000000] [--repeat 3] [--seed 7]

Deadlines for `count` repair calls received at random instants over two years, 6 working hours
each, on the cn-office calendar (Asia/Shanghai, lunch break, Chinese holidays and make-up
days): `add_many` in one batch, `add` one call at a time, and `between_many` back again.
Each figure is the best of `repeat` runs, as timeit reports: the first run also pays for the
interpreter growing its heap to hold a million results.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from engine.calendar import build_calendar
from engine.policy.calendar_spec import CalendarSpec

SPEC = CalendarSpec.model_validate(
    {
        "timezone": "Asia/Shanghai",
        "holidays": {"country": "CN"},
        "hours": {"mon-fri": ["09:00-12:00", "13:00-18:00"]},
    }
)
FIRST = datetime(2025, 7, 1, tzinfo=UTC)
T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    two_years = 2 * 365 * 86_400
    starts = [FIRST + timedelta(seconds=rng.randrange(two_years)) for _ in range(args.count)]
    target = timedelta(hours=6)
    calendar = build_calendar("cn-office", SPEC)

    began = time.perf_counter()
    calendar.prepare(FIRST.date(), (FIRST + timedelta(days=3 * 365)).date())
    report("prepare 3 years of intervals", 1, time.perf_counter() - began)

    due = timed("add_many", args, lambda: calendar.add_many(starts, target))
    add = calendar.add
    one_by_one = timed("add, one call each", args, lambda: [add(s, target) for s in starts])
    used = timed("between_many", args, lambda: calendar.between_many(starts, due))

    assert one_by_one == due, "add and add_many disagree"
    assert all(u == target for u in used), "between is not the inverse of add"


def timed(what: str, args: argparse.Namespace, work: Callable[[], T]) -> T:
    best, result = float("inf"), None
    for _ in range(args.repeat):
        result = None  # let the previous run's results go before timing the next
        began = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - began)
    report(what, args.count, best)
    assert result is not None
    return result


def report(what: str, count: int, seconds: float) -> None:
    rate = f", {count / seconds:,.0f}/s" if count > 1 else ""
    print(f"{what:<30} {count:>10,} in {seconds:6.2f} s{rate}")


if __name__ == "__main__":
    main()
