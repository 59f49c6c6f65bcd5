"""A held staff item's context comes back from its JSON exactly as it went in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from engine.notices.context import dump_context, load_context


def test_every_value_a_template_gets_round_trips_with_its_type():
    context = {
        "as_of": datetime(2026, 11, 23, 18, 0, tzinfo=UTC),
        "shanghai": datetime(2026, 11, 24, 2, 0, tzinfo=timezone(timedelta(hours=8))),
        "naive": datetime(2026, 11, 23, 18, 0, 0, 123456),
        "ends_on": date(2026, 12, 23),
        "opens": time(8, 30),
        "used": timedelta(hours=7, minutes=5, microseconds=3),
        "left": timedelta(hours=-2),
        "amount": Decimal("12000.00"),  # the scale is kept: |money prints what was stored
        "tiny": Decimal("1E-7"),
        "flags": (True, False, None),
        "share": 0.8,
        "count": 3,
        "text": '空调不制冷 "quoted" ☃',
        "lines": [{"n": 1}, {"n": Decimal("2.50")}],
        "looks_like_a_tag": {"$date": "not a date"},
        "empty": {},
    }
    restored = load_context(dump_context(context))
    assert restored == context
    assert list(restored) == list(context)  # key order is what a template's loop sees
    for key, value in context.items():
        assert type(restored[key]) is type(value), key
    assert restored["amount"].as_tuple() == Decimal("12000.00").as_tuple()
    assert restored["shanghai"].utcoffset() == timedelta(hours=8)
    assert restored["naive"].tzinfo is None


def test_a_value_it_cannot_restore_is_refused_not_stringified():
    with pytest.raises(TypeError):
        dump_context({"odd": object()})
    with pytest.raises(TypeError):
        dump_context({"keys": {1: "one"}})
