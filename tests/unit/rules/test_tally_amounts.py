"""The arithmetic of tallies, in Decimal: measures, band edges, weighted scores, caps (pure)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.db.catalogue import entity_table
from engine.errors import Location
from engine.ledger.periods import Period
from engine.policy import CompiledTally, LedgerSettings
from engine.policy.tally_spec import Measure, TallyRule
from engine.rules.tally_amounts import PART, PARTY, Group, band, inside, measure, tally_group

LEDGER = LedgerSettings(currency="CNY")
OCTOBER = Period.parse("2026-10")
TARGET_BANDS = [
    {"at_least": "100%", "points": 100},
    {"at_least": "95%", "points": 90},
    {"at_least": "90%", "points": 80},
]


def _tally(entity: str, **rule: Any) -> CompiledTally:
    spec = TallyRule.model_validate(
        {"id": "t", "title": "t", "entity": entity, "period": "month", "charge": "staff", **rule}
    )
    return CompiledTally(spec, entity_table(entity), None, Location(Path("t.yaml")), ledger=LEDGER)


def _group(rows: list[dict[str, Any]]) -> Group:
    return Group(
        OCTOBER,
        7,
        "staff",
        "CNY",
        [{"id": i, PARTY.format(0): 7, **r} for i, r in enumerate(rows, 1)],
    )


@pytest.mark.parametrize(
    ("actual", "points"),
    [("100", 100), ("95", 90), ("94.99", 80), ("90", 80), ("89.99", None)],
)
def test_target_bands_at_their_edges(actual, points):
    rows = [{"actual": Decimal(actual), "target": Decimal("100")}]
    ratio = measure(Measure.model_validate("ratio of actual to target"), rows)
    tally = _tally(
        "targets",
        at="period_start",
        reward="8 per point",
        score=[{"name": "task", "weight": "100%", "measure": "ratio of actual to target",
                "bands": TARGET_BANDS}],
    )  # fmt: skip
    hit = band(tally.rule.score[0].bands, ratio)
    assert (hit.points if hit else None) == points


def test_weighted_score_and_the_required_part():
    score = [
        {"name": "task", "weight": "40%", "when": "item == 'task'", "required": True,
         "measure": "ratio of actual to target", "bands": TARGET_BANDS},
        {"name": "review", "weight": "30%", "when": "item == 'service_review'",
         "measure": "average of actual", "bands": [{"at_least": 90, "points": 100}]},
        {"name": "training", "weight": "30%", "when": "item == 'training'",
         "measure": "average of actual", "bands": [{"at_least": 80, "points": 100}]},
    ]  # fmt: skip
    tally = _tally("targets", at="period_start", reward="8 per point", score=score)

    def rows(task: str) -> list[dict[str, Any]]:
        return [
            {"actual": Decimal(task), "target": Decimal(100), PART.format(0): 1},
            {"actual": Decimal(92), "target": None, PART.format(1): 1},
            {"actual": Decimal(70), "target": None, PART.format(2): 1},  # below: 0 points
        ]

    done = tally_group(tally, _group(rows("95")), Counter())
    assert done is not None
    assert done.amount == Decimal("528.00")  # (90 × 40% + 100 × 30% + 0) × 8
    assert done.details["points"] == "66.0"
    assert "task 95% → 90 points × 40%" in done.reason
    assert tally_group(tally, _group(rows("89")), Counter()) is None  # no bonus at all


def test_average_of_several_fields_counts_every_rating_once():
    rows = [{"a": 4, "b": 3}, {"a": 4, "b": None}]
    assert measure(Measure.model_validate("average of a, b"), rows) == Decimal(11) / 3
    assert measure(Measure.model_validate("count"), rows) == 2
    assert measure(Measure.model_validate("sum of a"), rows) == 8
    assert measure(Measure.model_validate("ratio of a to b"), rows) == Decimal(8) / 3
    assert measure(Measure.model_validate("ratio of b to b"), [{"b": 0}]) is None


def test_each_with_multipliers_and_a_cap():
    tally = _tally(
        "complaints",
        at="closed_at",
        penalty="100 each",
        cap=250,
        multiply=[{"when": "repeat_of_id is not null", "by": 2}, {"by": "1.5"}],
    )
    one = tally_group(tally, _group([{"number": "CP-1", "_factor_0": 0}]), Counter())
    assert one is not None and one.amount == Decimal("-150.00")
    two = tally_group(
        tally,
        _group([{"number": "CP-1", "_factor_0": 0}, {"number": "CP-2", "_factor_0": 1}]),
        Counter(),
    )
    assert two is not None and two.amount == Decimal("-250.00")
    assert two.details["uncapped"] == "-450.00" and "capped at 250" in two.reason
    assert two.per_entity == {"1": Decimal("-150.00"), "2": Decimal("-300.00")}


def test_share_of_a_money_field_skips_other_currencies():
    tally = _tally("complaints", at="closed_at", penalty="10% of compensation")
    rows = [
        {"compensation": Decimal("1234.55"), "currency": "CNY"},
        {"compensation": Decimal("80"), "currency": "EUR"},
        {"compensation": None, "currency": None},
    ]
    skipped: Counter[str] = Counter()
    done = tally_group(tally, _group(rows), skipped)
    assert done is not None and done.amount == Decimal("-123.46")  # half up, to the cent
    assert skipped == {"compensation in EUR, not CNY": 1, "compensation is empty": 1}


def test_local_hours_in_python_match_the_sql_test():
    assert inside("09:00", ("09:00", "22:00")) and not inside("22:00", ("09:00", "22:00"))
    assert inside("23:30", ("22:00", "06:00")) and inside("05:59", ("22:00", "06:00"))
    assert not inside("12:00", ("22:00", "06:00"))
    assert date(2026, 10, 1) == OCTOBER.start
