"""A digest names each kind of item it bundles in the reader's language: a staff letter whose
kind has no title shows its template name (`approval request`) in a Chinese digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.notices.templates import NoticeTemplates

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")
# Every letter the engine sends to staff, which a digest may bundle.
STAFF_KINDS = (
    "escalation", "dispatch_priority", "urge_notice", "inquiry_notice", "written_report",
    "repair_delay", "follow_up_call", "renewal_task", "lapse_task", "free_maintenance_report",
    "category_mismatch", "reward_penalty_notice", "approval_request", "penalty_summary",
    "overdue_summary", "kpi_report", "obligation_notice", "undeliverable",
)  # fmt: skip


def kind_title(kind: str, locale: str) -> str:
    source = '{% from "_layout/kinds.j2" import kind_title %}{{ kind_title(kind, locale) }}'
    return TEMPLATES.env.from_string(source).render(kind=kind, locale=locale)


@pytest.mark.parametrize("kind", STAFF_KINDS)
def test_every_staff_kind_has_a_title_in_every_language(kind):
    english = kind_title(kind, "en")
    assert english != kind.replace("_", " "), f"{kind} has no English title"
    for locale in ("zh-CN", "zh-TW", "es"):
        title = kind_title(kind, locale)
        assert title not in (english, kind.replace("_", " ")), f"{kind} in {locale}: {title}"


def test_every_staff_template_is_listed():
    folders = {p.name for p in (ROOT / "templates" / "notices").iterdir() if p.is_dir()}
    assert set(STAFF_KINDS) <= folders
