"""The warranty book in Python: terms by model then category, start basis, promotions, windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from hypothesis import given
from hypothesis import strategies as st

from engine.expr import parse
from engine.expr.sqlite_functions import _add_months, _local_date
from engine.expr.temporal import add_months, local_date
from engine.warranty import (
    Length,
    Promotion,
    Selector,
    Term,
    WarrantyBook,
    call_coverage,
    unit_warranty,
)

BASIS = ("purchase_with_proof", "installed_on", "manufactured_on")
AC = Term("ac", None, Selector("air_conditioner"), {"unit": Length(12), "compressor": Length(36)},
          BASIS, parse("human_damage"), "human_damage")  # fmt: skip
VRF = Term("vrf", None, Selector(None, ("AC-VRF160",)), {"unit": Length(24)}, BASIS)
LAMPS = Term("lamps", None, Selector("instrument"), {"lamp": Length(0, 90)}, BASIS)
WINTER = Promotion("winter", None, date(2025, 12, 1), date(2025, 12, 31), Selector(),
                   {"unit": Length(6)})  # fmt: skip
LATER = Promotion("later", None, date(2025, 12, 1), date(2026, 1, 31), Selector(),
                  {"unit": Length(12)})  # fmt: skip
BOOK = WarrantyBook((VRF, AC, LAMPS), (WINTER, LATER))


def _unit(**values):
    return {"product_category": "air_conditioner", "product_model": "AC-KFR35",
            "proof_of_purchase": False, "purchased_on": None, "installed_on": None,
            "manufactured_on": None, **values}  # fmt: skip


def test_lengths_read_like_the_policy():
    assert str(Length(12)) == "1 year" and str(Length(18)) == "1 year 6 months"
    assert str(Length(0, 90)) == "90 days" and str(Length(36) + Length(6)) == "3 years 6 months"


def test_a_window_ends_the_day_before_the_anniversary():
    assert Length(12).last_day(date(2025, 11, 1)) == date(2026, 10, 31)
    assert Length(0, 90).last_day(date(2026, 1, 1)) == date(2026, 3, 31)
    # A month too short for the day: the window runs to its last day.
    assert Length(1).last_day(date(2025, 1, 31)) == date(2025, 2, 28)
    assert Length(12).last_day(date(2024, 2, 29)) == date(2025, 2, 28)
    assert Length(18).last_day(date(2025, 12, 31)) == date(2027, 6, 30)
    assert Length(1).last_day(date(2025, 3, 1)) == date(2025, 3, 31)
    assert Length(12, 10).last_day(date(2025, 11, 1)) == date(2026, 11, 10)


def test_a_models_own_term_beats_its_categorys():
    assert BOOK.term_for("air_conditioner", "AC-VRF160") is VRF
    assert BOOK.term_for("air_conditioner", "AC-KFR35") is AC
    assert BOOK.term_for("garden", "XX-1") is None


def test_start_basis_in_order_and_proof_needed_for_the_purchase_date():
    proven = unit_warranty(BOOK, _unit(purchased_on=date(2025, 11, 1), proof_of_purchase=True,
                                       installed_on=date(2025, 11, 9)))  # fmt: skip
    assert (proven.basis, proven.starts_on) == ("purchase_with_proof", date(2025, 11, 1))
    unproven = unit_warranty(BOOK, _unit(purchased_on=date(2025, 11, 1),
                                         installed_on=date(2025, 11, 9)))  # fmt: skip
    assert (unproven.basis, unproven.starts_on) == ("installed_on", date(2025, 11, 9))
    serial = unit_warranty(BOOK, _unit(manufactured_on=date(2025, 6, 30)))
    assert serial.basis == "manufactured_on"
    nothing = unit_warranty(BOOK, _unit(purchased_on=date(2025, 11, 1)))
    assert nothing.basis is None and nothing.windows == ()


def test_first_fitting_promotion_only_with_proof_of_purchase():
    december = unit_warranty(BOOK, _unit(purchased_on=date(2025, 12, 31), proof_of_purchase=True))
    assert december.promotion is WINTER
    assert december.window("unit").ends_on == date(2027, 6, 30)
    assert december.window("compressor").ends_on == date(2028, 12, 30)  # not extended
    january = unit_warranty(BOOK, _unit(purchased_on=date(2026, 1, 1), proof_of_purchase=True))
    assert january.promotion is LATER
    no_proof = unit_warranty(BOOK, _unit(purchased_on=date(2025, 12, 5),
                                         installed_on=date(2025, 12, 5)))  # fmt: skip
    assert no_proof.promotion is None


def test_a_fault_without_its_own_term_falls_back_to_the_whole_unit():
    unit = _unit(purchased_on=date(2025, 11, 1), proof_of_purchase=True)
    call = {**unit, "received_on": date(2026, 11, 10), "human_damage": False}
    assert call_coverage(BOOK, {**call, "fault_part": "compressor"}).in_warranty is True
    fan = call_coverage(BOOK, {**call, "fault_part": "fan"})
    assert (fan.warranty_part, fan.in_warranty) == ("unit", False)
    damaged = call_coverage(BOOK, {**call, "fault_part": "compressor", "human_damage": True})
    assert damaged.in_warranty_term and damaged.warranty_void and not damaged.in_warranty
    # A term without a whole-unit part covers only its own parts.
    lamp = {**call, "product_category": "instrument", "fault_part": "board"}
    assert call_coverage(BOOK, lamp).warranty_part is None


@given(st.dates(date(1990, 1, 1), date(2090, 12, 31)), st.integers(-400, 400))
def test_month_arithmetic_is_relativedeltas(day, months):
    assert add_months(day, months) == day + relativedelta(months=months)
    assert _add_months(day.isoformat(), months) == (day + relativedelta(months=months)).isoformat()


@given(
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31)),
    st.sampled_from(["Asia/Shanghai", "Europe/Madrid", "Asia/Kolkata", "America/St_Johns"]),
)
def test_sqlite_local_day_matches_python_across_dst_and_half_hour_zones(instant, zone):
    text = instant.replace(microsecond=0).isoformat(sep=" ")
    expected = local_date(instant.replace(microsecond=0, tzinfo=UTC), zone)
    assert _local_date(text, zone) == expected.isoformat()


def test_sqlite_local_day_around_madrids_autumn_change():
    # 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET; local days stay right around it.
    for minutes in range(-180, 180, 7):
        instant = datetime(2026, 10, 25, 1, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        text = instant.replace(tzinfo=None).isoformat(sep=" ")
        assert (
            _local_date(text, "Europe/Madrid") == local_date(instant, "Europe/Madrid").isoformat()
        )
