"""A period's label in words for letters: every kind the ledger and obligations use."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.notices.templates import NoticeTemplates

TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "notices"
LABELS = ("2026", "2026-H2", "2026-Q4", "2026-12", "2026-W49")


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("en", ["2026", "second half of 2026", "Q4 2026", "December 2026", "week 49 of 2026"]),
        ("zh-CN", ["2026年", "2026年下半年", "2026年第4季度", "2026年12月", "2026年第49周"]),
        ("es", ["2026", "segundo semestre de 2026", "4.º trimestre de 2026",
                "diciembre de 2026", "semana 49 de 2026"]),
    ],
)  # fmt: skip
def test_each_kind_of_period_is_named_as_a_reader_says_it(locale, words):
    env = NoticeTemplates(TEMPLATES, "en").env
    template = env.from_string(
        '{% from "_layout/reasons.j2" import period_name with context %}{{ period_name(key) }}'
    )
    assert [template.render(locale=locale, key=key) for key in LABELS] == words
