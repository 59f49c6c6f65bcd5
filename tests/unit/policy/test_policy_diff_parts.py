"""What `aftersales diff` says changed in a rule: the innermost known key of each change."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.policy_diff import changed_parts

URBAN: dict[str, Any] = {
    "id": "dispatch-urban",
    "title": "Technician on site within 6 working hours",
    "when": "region == 'urban'",
    "within": "6 working hours",
    "warn_at": {"share": 0.8, "span": None},
    "on_breach": {"notice": "escalation", "notify": [{"role": "service_supervisor"}]},
    "escalate": [{"after": "2 working hours", "notice": "escalation", "urgent": True}],
}


def _changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    rule = copy.deepcopy(URBAN)
    *inner, last = path
    where: Any = rule
    for key in inner:
        where = where[key]
    where[last] = value
    return rule


@pytest.mark.parametrize(
    ("path", "value", "part"),
    [
        (("when",), "region == 'suburban'", "condition"),
        (("within",), "4 working hours", "timing"),
        (("warn_at", "share"), 0.5, "timing"),
        (("escalate", 0, "after"), "1 working hour", "timing"),
        (("on_breach", "notify", 0, "role"), "service_manager", "recipients"),
        (("on_breach", "notice"), "breach_letter", "notices"),
        (("escalate", 0, "urgent"), False, "notices"),
        (("title",), "On site in 4 hours", "wording"),
    ],
)
def test_each_change_is_named_by_what_it_is_about(path, value, part):
    assert changed_parts(URBAN, _changed(path, value)) == [part]


def test_an_unchanged_rule_has_no_parts_and_several_changes_are_all_named():
    assert changed_parts(URBAN, copy.deepcopy(URBAN)) == []
    both = _changed(("when",), "true")
    both["within"] = "4 working hours"
    assert changed_parts(URBAN, both) == ["condition", "timing"]
