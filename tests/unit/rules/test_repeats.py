"""Repeats on a running clock: every N working days until it stops (pure arithmetic)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from engine.calendar import build_calendar
from engine.findings import base_state, repeat_index, repeat_state
from engine.policy.calendar_spec import CalendarSpec
from engine.policy.durations import Duration
from engine.rules.repeats import reached_until, series

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = build_calendar(
    "cn-office",
    CalendarSpec.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "holidays": {"country": "CN"},
            "hours": {"mon-fri": ["09:00-12:00", "13:00-18:00"]},
        }
    ),
)
EVERY_2 = {"breach": Duration(2, "day", True)}


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_urges_every_two_working_days_skip_national_day():
    # Overdue Tuesday 29 September 10:00; 1-7 October are closed, Sunday 27 September and
    # Saturday 10 October are make-up working days.
    found = series(EVERY_2, warn_at=None, deadline=sh(2026, 9, 29, 10, 0), running=True,
                   calendar=OFFICE, as_of=sh(2026, 10, 12, 9, 0))  # fmt: skip
    assert found is not None and found.state == "breach"
    assert [t.astimezone(SHANGHAI) for t in found.reached] == [
        sh(2026, 10, 8, 10, 0),  # Wednesday 30th, then Thursday 8th
        sh(2026, 10, 10, 10, 0),  # Friday 9th, Saturday 10th (make-up)
    ]
    assert found.latest == ("breach:repeat-2", found.reached[-1])
    assert found.next == sh(2026, 10, 13, 10, 0)


def test_no_repeat_once_the_clock_stops_or_before_the_first_interval():
    deadline = sh(2026, 11, 18, 10, 0)
    stopped = series(EVERY_2, warn_at=None, deadline=deadline, running=False,
                     calendar=OFFICE, as_of=sh(2026, 11, 30, 10, 0))  # fmt: skip
    assert stopped is None
    early = series(EVERY_2, warn_at=None, deadline=deadline, running=True,
                   calendar=OFFICE, as_of=sh(2026, 11, 20, 9, 59))  # fmt: skip
    assert early is not None and early.latest is None and early.next == sh(2026, 11, 20, 10, 0)


def test_a_warnings_repeats_end_at_the_deadline():
    every = {"warning": Duration(3, "day", True)}
    # Warned on day 5 (Monday 9th) of 15 working days (deadline Monday 23rd).
    warn, deadline = sh(2026, 11, 9, 10, 0), sh(2026, 11, 23, 10, 0)
    found = series(every, warn_at=warn, deadline=deadline, running=True, calendar=OFFICE,
                   as_of=sh(2026, 11, 20, 11, 0))  # fmt: skip
    assert found is not None and found.done == 3 and found.next is None
    instants = reached_until(every, warn_at=warn, deadline=deadline, calendar=OFFICE,
                             until=sh(2026, 12, 31, 0, 0))  # fmt: skip
    assert instants == [sh(2026, 11, 12, 10, 0), sh(2026, 11, 17, 10, 0), sh(2026, 11, 20, 10, 0)]


def test_repeat_states_name_their_index_and_what_they_repeat():
    assert repeat_state("warning", 3) == "warning:repeat-3"
    assert (base_state("breach:repeat-12"), repeat_index("breach:repeat-12")) == ("breach", 12)
    assert (base_state("escalation:1"), repeat_index("escalation:1")) == ("escalation:1", None)


def test_time_the_entity_waits_in_a_paused_status_does_not_count_towards_a_repeat():
    # Overdue Monday 16 November 10:00; waiting for the customer from Tuesday 10:00 to Thursday
    # 10:00 (two working days paused): the first repeat comes on Friday, not on Wednesday.
    waiting = ((sh(2026, 11, 17, 10, 0), sh(2026, 11, 19, 10, 0)),)
    found = series(EVERY_2, warn_at=None, deadline=sh(2026, 11, 16, 10, 0), running=True,
                   calendar=OFFICE, as_of=sh(2026, 11, 20, 12, 0), pauses=waiting)  # fmt: skip
    assert found is not None
    assert [t.astimezone(SHANGHAI) for t in found.reached] == [sh(2026, 11, 20, 10, 0)]
