"""Working-time calendars: the boundary cases the dispatch and repair deadlines rely on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import engine.calendar
from engine.calendar import BusinessCalendar, always_open, build_calendar
from engine.policy.calendar_spec import CalendarSpec

SHANGHAI = ZoneInfo("Asia/Shanghai")
MADRID = ZoneInfo("Europe/Madrid")
HOUR = timedelta(hours=1)

CALENDARS_YAML = """
calendars:
  cn-office:
    timezone: Asia/Shanghai
    holidays: {country: CN}
    hours:
      mon-fri: ["09:00-12:00", "13:00-18:00"]
  cn-local:
    timezone: Asia/Shanghai
    holidays: {country: CN}
    hours:
      mon-fri: ["09:00-12:00", "13:00-18:00"]
      sat: ["09:00-12:00"]
    workday_hours: ["08:30-12:00", "13:00-17:30"]
    closed: [2026-12-31]
    open: [2027-01-02, 2026-10-02]
  es-madrid:
    timezone: Europe/Madrid
    holidays: {country: ES, subdivision: MD}
    hours: {mon-fri: ["09:00-14:00", "16:00-19:00"]}
  tw-office:
    timezone: Asia/Taipei
    holidays: {country: TW}
    hours: {mon-fri: ["09:00-12:00", "13:00-18:00"]}
  always: {timezone: UTC, hours: 24x7}
"""


@pytest.fixture(scope="module")
def calendars() -> dict[str, BusinessCalendar]:
    specs = yaml.safe_load(CALENDARS_YAML)["calendars"]
    return {
        name: build_calendar(name, CalendarSpec.model_validate(raw)) for name, raw in specs.items()
    }


@pytest.fixture(scope="module")
def cn(calendars: dict[str, BusinessCalendar]) -> BusinessCalendar:
    return calendars["cn-office"]


@pytest.fixture(scope="module")
def madrid(calendars: dict[str, BusinessCalendar]) -> BusinessCalendar:
    return calendars["es-madrid"]


def shanghai(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# -- dispatch within 6 (urban) / 7 (suburban) working hours, Chinese office --------------------


def test_urban_call_due_after_national_day(cn: BusinessCalendar) -> None:
    received = shanghai(2026, 9, 30, 16, 0)
    due = cn.add(received, 6 * HOUR)
    assert due == shanghai(2026, 10, 8, 14, 0)
    assert due.tzinfo is UTC
    assert cn.between(received, due) == 6 * HOUR


def test_national_day_closure_is_explained_day_by_day(cn: BusinessCalendar) -> None:
    skipped = cn.skipped_days(shanghai(2026, 9, 30, 16, 0), shanghai(2026, 10, 8, 14, 0))
    assert [day for day, _ in skipped] == [date(2026, 10, d) for d in range(1, 8)]
    reasons = dict(skipped)
    for day in (1, 2, 3):  # the 3rd is a Saturday, and the holiday is the better reason
        assert reasons[date(2026, 10, day)] == "public holiday: National Day"
    assert reasons[date(2026, 10, 4)] == "weekend"
    for day in (5, 6, 7):  # observed and substituted days off
        assert reasons[date(2026, 10, day)].startswith("public holiday: ")


def test_call_on_make_up_saturday_starts_its_clock_at_once(cn: BusinessCalendar) -> None:
    assert cn.day_status(date(2026, 10, 10)) == (True, "make-up working day (Saturday)")
    assert cn.is_open(shanghai(2026, 10, 10, 10, 0))
    assert cn.add(shanghai(2026, 10, 10, 10, 0), HOUR) == shanghai(2026, 10, 10, 11, 0)


def test_call_on_make_up_sunday_starts_its_clock_at_once(cn: BusinessCalendar) -> None:
    assert cn.day_status(date(2026, 9, 20)) == (True, "make-up working day (Sunday)")
    assert cn.add(shanghai(2026, 9, 20, 10, 0), HOUR) == shanghai(2026, 9, 20, 11, 0)


def test_ordinary_weekend_is_closed(cn: BusinessCalendar) -> None:
    assert cn.day_status(date(2026, 9, 27)) == (False, "weekend")
    assert cn.add(shanghai(2026, 9, 26, 10, 0), HOUR) == shanghai(2026, 9, 28, 10, 0)


def test_call_a_minute_before_closing_carries_over(cn: BusinessCalendar) -> None:
    # 1 minute on Tuesday, 3 h Wednesday morning, 2 h 59 min after lunch.
    assert cn.add(shanghai(2026, 9, 29, 17, 59), 6 * HOUR) == shanghai(2026, 9, 30, 15, 59)


def test_call_at_lunch_starts_counting_after_lunch(cn: BusinessCalendar) -> None:
    assert not cn.is_open(shanghai(2026, 9, 29, 12, 30))
    assert cn.add(shanghai(2026, 9, 29, 12, 30), HOUR) == shanghai(2026, 9, 29, 14, 0)


def test_time_running_out_at_closing_lands_on_closing(cn: BusinessCalendar) -> None:
    assert cn.add(shanghai(2026, 9, 29, 17, 0), HOUR) == shanghai(2026, 9, 29, 18, 0)
    assert cn.add(shanghai(2026, 9, 29, 11, 0), HOUR) == shanghai(2026, 9, 29, 12, 0)
    assert not cn.is_open(shanghai(2026, 9, 29, 18, 0))
    assert cn.is_open(shanghai(2026, 9, 29, 9, 0))


def test_call_on_holiday_eve_is_due_after_the_holiday(cn: BusinessCalendar) -> None:
    assert cn.add(shanghai(2026, 9, 30, 17, 30), HOUR) == shanghai(2026, 10, 8, 9, 30)


def test_suburban_call_gets_seven_working_hours(cn: BusinessCalendar) -> None:
    assert cn.add(shanghai(2026, 9, 29, 10, 0), 7 * HOUR) == shanghai(2026, 9, 29, 18, 0)
    assert cn.add(shanghai(2026, 9, 30, 16, 0), 7 * HOUR) == shanghai(2026, 10, 8, 15, 0)


def test_call_received_at_night_counts_from_next_opening(cn: BusinessCalendar) -> None:
    assert cn.add(shanghai(2026, 9, 29, 22, 0), 2 * HOUR) == shanghai(2026, 9, 30, 11, 0)
    assert cn.between(shanghai(2026, 9, 29, 18, 0), shanghai(2026, 9, 30, 9, 0)) == timedelta(0)


def test_adding_nothing_keeps_the_instant(cn: BusinessCalendar) -> None:
    night = shanghai(2026, 9, 29, 22, 0)
    assert cn.add(night, timedelta(0)) == night


def test_repairs_with_parts_seven_working_days(cn: BusinessCalendar) -> None:
    # 7 working days of 8 hours from Wednesday 2026-09-30 09:00: the 30th, then 8..13 October.
    assert cn.add(shanghai(2026, 9, 30, 9, 0), 56 * HOUR) == shanghai(2026, 10, 14, 18, 0)


def test_working_days_keep_the_time_of_day_and_skip_national_day(cn: BusinessCalendar) -> None:
    # 8, 9, 10 (make-up Saturday), 12, 13, 14, 15 October.
    start = shanghai(2026, 9, 30, 16, 0)
    assert cn.add_working_days(start, 7) == shanghai(2026, 10, 15, 16, 0)
    # After hours the count starts at the next opening, 8 October 09:00.
    assert cn.add_working_days(shanghai(2026, 9, 30, 19, 0), 1) == shanghai(2026, 10, 9, 9, 0)
    assert cn.add_working_days(start, 0) == start


def test_same_day_means_closing_time_of_the_working_day(cn: BusinessCalendar) -> None:
    assert cn.end_of_working_day(shanghai(2026, 9, 30, 16, 0)) == shanghai(2026, 9, 30, 18, 0)
    # A call on the eve of the holiday, after hours, belongs to 8 October.
    assert cn.end_of_working_day(shanghai(2026, 9, 30, 19, 0)) == shanghai(2026, 10, 8, 18, 0)
    # Saturday 2026-11-21 is an ordinary weekend: Monday's closing.
    assert cn.end_of_working_day(shanghai(2026, 11, 21, 10, 0)) == shanghai(2026, 11, 23, 18, 0)


# -- Madrid branch across the end of summer time (last Sunday of October) ----------------------


def test_madrid_call_across_end_of_summer_time(madrid: BusinessCalendar) -> None:
    received = datetime(2026, 10, 23, 18, 0, tzinfo=MADRID)  # Friday, UTC+2
    due = madrid.add(received, 3 * HOUR)
    assert due == datetime(2026, 10, 26, 11, 0, tzinfo=MADRID)  # Monday, UTC+1
    assert received.utcoffset() == 2 * HOUR
    assert due.astimezone(MADRID).utcoffset() == HOUR
    assert due == datetime(2026, 10, 26, 10, 0, tzinfo=UTC)
    assert madrid.between(received, due) == 3 * HOUR


def test_madrid_regional_holiday_is_closed(madrid: BusinessCalendar) -> None:
    working, reason = madrid.day_status(date(2026, 11, 2))  # Monday after All Saints', MD only
    assert not working
    assert reason.startswith("public holiday: ")


def test_always_open_counts_real_time_across_dst_changes() -> None:
    calendar = always_open("Europe/Madrid")
    autumn = datetime(2026, 10, 24, 12, 0, tzinfo=MADRID)
    assert calendar.add(autumn, 24 * HOUR) == datetime(2026, 10, 25, 11, 0, tzinfo=MADRID)
    spring = datetime(2026, 3, 28, 12, 0, tzinfo=MADRID)
    assert calendar.add(spring, 24 * HOUR) == datetime(2026, 3, 29, 13, 0, tzinfo=MADRID)
    day_of_change = datetime(2026, 10, 25, tzinfo=MADRID), datetime(2026, 10, 26, tzinfo=MADRID)
    assert calendar.between(*day_of_change) == 25 * HOUR


def test_24x7_policy_calendar_never_closes(calendars: dict[str, BusinessCalendar]) -> None:
    calendar = calendars["always"]
    start = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert calendar.add(start, 2 * HOUR) == datetime(2027, 1, 1, 1, 0, tzinfo=UTC)
    assert calendar.day_status(date(2026, 12, 26)) == (True, "working day")


# -- local closed and open days ------------------------------------------------------------------


def test_local_closed_day_is_skipped(calendars: dict[str, BusinessCalendar]) -> None:
    calendar = calendars["cn-local"]
    assert calendar.day_status(date(2026, 12, 31)) == (False, "local closed day")
    due = calendar.add(shanghai(2026, 12, 30, 17, 0), 2 * HOUR)
    # 1 h on the 30th; the 31st closed locally, 1 January a public holiday, Saturday 2
    # January a local open day with workday hours from 08:30.
    assert due == shanghai(2027, 1, 2, 9, 30)


def test_local_open_day_overrides_public_holiday(calendars: dict[str, BusinessCalendar]) -> None:
    calendar = calendars["cn-local"]
    assert calendar.day_status(date(2026, 10, 2)) == (True, "local open day")
    assert calendar.add(shanghai(2026, 10, 2, 8, 0), HOUR) == shanghai(2026, 10, 2, 9, 30)


def test_make_up_day_uses_workday_hours(calendars: dict[str, BusinessCalendar]) -> None:
    calendar = calendars["cn-local"]  # Saturdays 09:00-12:00, workdays until 17:30
    assert calendar.add(shanghai(2026, 10, 10, 17, 0), HOUR) == shanghai(2026, 10, 12, 9, 30)


def test_taiwan_national_day_is_closed(calendars: dict[str, BusinessCalendar]) -> None:
    working, reason = calendars["tw-office"].day_status(date(2026, 10, 9))  # observed, Friday
    assert not working
    assert "National Day" in reason


# -- arithmetic properties -----------------------------------------------------------------------

INSTANTS = st.integers(
    min_value=int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000),
    max_value=int(datetime(2028, 1, 1, tzinfo=UTC).timestamp() * 1_000_000),
).map(lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us))
SPANS = st.integers(min_value=0, max_value=400 * 3600 * 1_000_000).map(
    lambda us: timedelta(microseconds=us)
)


@settings(max_examples=300, deadline=None)
@given(start=INSTANTS, span=SPANS)
def test_between_undoes_add(cn: BusinessCalendar, start: datetime, span: timedelta) -> None:
    due = cn.add(start, span)
    assert due >= start
    assert cn.between(start, due) == span
    assert cn.add(start, cn.between(start, due)) == due


@settings(max_examples=200, deadline=None)
@given(first=INSTANTS, second=INSTANTS, span=SPANS, more=SPANS)
def test_add_is_monotonic(
    madrid: BusinessCalendar, first: datetime, second: datetime, span: timedelta, more: timedelta
) -> None:
    early, late = sorted((first, second))
    assert madrid.add(early, span) <= madrid.add(late, span)
    assert madrid.add(early, span) <= madrid.add(early, span + more)
    assert madrid.between(early, late) <= late - early


def test_batch_calls_agree_with_single_calls(cn: BusinessCalendar) -> None:
    starts = [shanghai(2026, 9, 30, 16, 0) + timedelta(minutes=37 * k) for k in range(300)]
    spans = [timedelta(minutes=11 * k) for k in range(300)]
    assert cn.add_many(starts, 6 * HOUR) == [cn.add(s, 6 * HOUR) for s in starts]
    assert cn.add_many(starts, spans) == [cn.add(s, d) for s, d in zip(starts, spans, strict=True)]
    ends = cn.add_many(starts, spans)
    assert cn.between_many(starts, ends) == spans
    assert cn.between_many(ends, starts)[1:] == [timedelta(0)] * 299


def test_table_grows_for_instants_far_away() -> None:
    calendar = build_calendar(
        "far", CalendarSpec(timezone="Asia/Shanghai", hours={"mon-fri": ("09:00-17:00",)})
    )
    calendar.prepare(date(2026, 1, 1), date(2026, 12, 31))
    start = datetime(2026, 1, 5, 9, 0, tzinfo=SHANGHAI)  # a Monday
    due = calendar.add(start, 8 * HOUR * 5 * 312)  # 312 full weeks, no holidays
    assert due == datetime(2026, 1, 9, 17, 0, tzinfo=SHANGHAI) + timedelta(weeks=311)
    assert calendar.between(datetime(1999, 12, 31, 16, tzinfo=SHANGHAI), start).days > 0


def test_naive_and_negative_inputs_are_refused(cn: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        cn.add(datetime(2026, 9, 30, 16, 0), HOUR)
    with pytest.raises(ValueError, match="negative"):
        cn.add(shanghai(2026, 9, 30, 16, 0), -HOUR)


def test_calendar_is_immutable_with_a_small_surface(cn: BusinessCalendar) -> None:
    with pytest.raises(AttributeError):
        cn._week = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cn.name = "other"  # type: ignore[misc]
    assert cn.name == "cn-office"
    assert cn.timezone == SHANGHAI
    assert sorted(engine.calendar.__all__) == ["BusinessCalendar", "always_open", "build_calendar"]


# -- the calendar spec refuses what operations staff get wrong -------------------------------


def _problem(raw: Mapping[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        CalendarSpec.model_validate(raw)
    return "\n".join(f"{e['loc']}: {e['msg']}" for e in caught.value.errors())


def test_unknown_time_zone_is_refused_with_a_suggestion() -> None:
    message = _problem({"timezone": "Asia/Shangai", "hours": "24x7"})
    assert "unknown time zone 'Asia/Shangai'; did you mean 'Asia/Shanghai'?" in message


def test_hours_outside_the_day_are_refused() -> None:
    message = _problem({"timezone": "UTC", "hours": {"mon": ["25:00-26:00"]}})
    assert "('hours', 'mon', 0)" in message
    assert "25:00 is not a time of day" in message


def test_overlapping_intervals_are_refused() -> None:
    message = _problem({"timezone": "UTC", "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}})
    assert "'09:00-12:00' and '11:00-13:00' overlap" in message


def test_intervals_are_sorted_and_normalised() -> None:
    spec = CalendarSpec(timezone="UTC", hours={"mon": ("13:00-18:00", "9:00-12:00")})
    assert spec.hours["mon"] == ("09:00-12:00", "13:00-18:00")
    assert spec.weekly_minutes()[0] == ((540, 720), (780, 1080))


def test_unknown_day_key_is_refused() -> None:
    message = _problem({"timezone": "UTC", "hours": {"mon-frx": ["09:00-12:00"]}})
    assert "unknown day 'frx' in 'mon-frx'; did you mean 'fri'?" in message


def test_day_given_twice_is_refused() -> None:
    message = _problem({"timezone": "UTC", "hours": {"mon-fri": ["09:00-12:00"], "fri": []}})
    assert "fri is given twice" in message


def test_day_keys_accept_lists_and_wrapping_ranges() -> None:
    spec = CalendarSpec(timezone="UTC", hours={"mon,wed": ("09:00-12:00",), "fri-sun": ()})
    week = spec.weekly_minutes()
    assert [bool(day) for day in week] == [True, False, True, False, False, False, False]
    spec = CalendarSpec(timezone="UTC", hours={"sun-thu": ("08:00-24:00",)})
    assert [bool(day) for day in spec.weekly_minutes()] == [1, 1, 1, 1, 0, 0, 1]


def test_unquoted_times_are_refused() -> None:
    message = _problem({"timezone": "UTC", "hours": {"mon": [630]}})
    assert "quoted strings" in message


def test_unknown_country_is_refused_with_a_hint() -> None:
    message = _problem({"timezone": "UTC", "hours": "24x7", "holidays": {"country": "CNN"}})
    assert "('holidays', 'country')" in message
    assert "no country 'CNN'; did you mean CN?" in message


def test_unknown_subdivision_lists_the_known_ones() -> None:
    raw = {"timezone": "UTC", "hours": "24x7", "holidays": {"country": "ES", "subdivision": "XX"}}
    message = _problem(raw)
    assert "ES has no subdivision 'XX'" in message
    assert "MD" in message


def test_date_both_closed_and_open_is_refused() -> None:
    raw = {"timezone": "UTC", "hours": "24x7", "closed": ["2026-01-01"], "open": ["2026-01-01"]}
    assert "2026-01-01 listed under both closed and open" in _problem(raw)


def test_a_week_without_hours_is_refused() -> None:
    assert "no day has opening hours" in _problem({"timezone": "UTC", "hours": {"mon": []}})
