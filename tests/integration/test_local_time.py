"""The branch-local wall clock in SQL agrees on SQLite, PostgreSQL and Python, DST included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import literal, select

from engine.db.local_time import local_clock, local_text, local_wall_clock
from engine.db.types import UtcDateTime

CASES = [
    # Madrid leaves summer time at 01:00 UTC on 25 October 2026: 02:30 happens twice.
    (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Europe/Madrid", "2026-10-25 02:30:00"),
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "Europe/Madrid", "2026-10-25 02:30:00"),
    (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/Madrid", "2026-03-29 03:00:00"),
    # 23:30 in Shanghai on 31 October is still October there; 16:30 UTC is November.
    (datetime(2026, 10, 31, 15, 30, tzinfo=UTC), "Asia/Shanghai", "2026-10-31 23:30:00"),
    (datetime(2026, 10, 31, 16, 30, tzinfo=UTC), "Asia/Shanghai", "2026-11-01 00:30:00"),
    (datetime(2026, 10, 31, 16, 30, tzinfo=UTC), "Asia/Taipei", "2026-11-01 00:30:00"),
]


@pytest.mark.parametrize(("instant", "zone", "expected"), CASES)
def test_local_wall_clock_in_sql_and_python(db, instant, zone, expected):
    wall = local_wall_clock(literal(instant, UtcDateTime()), literal(zone))
    with db.connect() as conn:
        text, clock = conn.execute(select(wall, local_clock(wall))).one()
    assert (text, clock) == (expected, expected[11:16])
    assert local_text(instant.strftime("%Y-%m-%d %H:%M:%S"), zone) == expected


def test_an_unknown_zone_matches_no_local_hours():
    assert local_text("2026-10-25 00:30:00", "Mars/Olympus") is None
    assert local_text(None, "Asia/Shanghai") is None
