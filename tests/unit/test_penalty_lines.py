"""Ledger entries booked before their details were kept still read in every letter: the
summary gives their booked reason instead of failing the letter (and the month's report)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.notices.templates import NoticeTemplates
from engine.reports import penalties

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")
AT = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
# As entries were booked before: a band without its `kind`, a score without `ratio` and
# `per_point`, items without `base` and `times`.
EARLIER = {
    "survey-excellence": {"direction": "reward", "measure": "4.8", "count": 12, "band": "4.5"},
    "quarterly-bonus": {
        "points": "90",
        "parts": [{"name": "a", "measure": "0.95", "points": "90"}],
    },
    "unanswered-hotline": {"items": [{"id": "3"}], "count": 1},
}


@pytest.mark.parametrize("locale", ["en", "zh-CN", "es"])
def test_entries_booked_before_their_details_render_with_their_reason(locale):
    lines = [
        penalties.Line(
            "2026-10",
            rule,
            rule,
            "reward",
            "original",
            Decimal(100),
            "CNY",
            "staff",
            ("7",),
            f"booked reason of {rule}",
            "run",
            AT,
            details=penalties.explained(details, None),
        )
        for rule, details in EARLIER.items()
    ]
    part = penalties.BranchPart(1, "SH-01", "上海服务中心", "Asia/Shanghai")
    part.people.append(penalties.Person(7, "王工", "technician", lines))
    summary = penalties.Summary("2026-10", ("2026-10",), AT, [part])

    html = penalties.render_html(summary, TEMPLATES, locale)

    assert all(f"booked reason of {rule}" in html for rule in EARLIER)
