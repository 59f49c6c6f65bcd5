"""The editor schema's duration patterns accept exactly the texts the parsers read."""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import TypeAdapter, ValidationError

from engine.policy.durations import ClockSpan, Every, Offset, Span
from engine.policy.warranty_spec import TermLength

TEXTS = [
    f"{pad}{every}{sign}{amount} {working}{unit}{side}{pad}"
    for pad, every, sign, amount, working, unit, side in itertools.product(
        ["", " "],
        ["", "every ", "Every  ", "every"],
        ["", "+", "- "],
        ["0", "1", "06"],
        ["", "working ", "WORKING  "],
        ["h", "mins", "Hours", "day", "weeks", "MONTH", "years", "hrs", "fortnight"],
        ["", " before", " After"],
    )
]


@pytest.mark.parametrize(
    "kind", [Span, ClockSpan, Offset, Every, TermLength], ids=lambda kind: kind.__name__
)
def test_a_duration_pattern_matches_what_its_parser_reads(kind):
    adapter = TypeAdapter(kind)
    pattern = re.compile(adapter.json_schema()["pattern"])
    disagree = []
    for text in TEXTS:
        try:
            duration = adapter.validate_python(text)
            # Deadlines refuse months and years in their own check (DeadlineRule).
            read = not (kind is ClockSpan and duration.unit in ("month", "year"))
        except ValidationError:
            read = False
        if read != bool(pattern.search(text)):
            disagree.append(text)
    assert not disagree, disagree[:10]
