"""The zone a letter's local times are in, named as its reader says it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.notices.templates import NoticeTemplates

TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "notices"


@pytest.mark.parametrize(
    ("zone", "locale", "name"),
    [
        ("Asia/Shanghai", "zh-CN", "中国（上海）时间"),
        ("Asia/Taipei", "zh-TW", "台灣時間"),
        ("Europe/Madrid", "es", "hora de España (Madrid)"),
        ("Europe/Madrid", "en", "Spain (Madrid) Time"),
        ("UTC", "zh-CN", "UTC"),  # no place to name: not "unknown region"
    ],
)
def test_a_time_zone_is_named_in_the_readers_language(zone, locale, name):
    env = NoticeTemplates(TEMPLATES, "en").env
    assert env.from_string("{{ timezone|zone }}").render(timezone=zone, locale=locale) == name
