"""Staff letters read in the reader's language: rule titles and reasons in Chinese or Spanish,
local times, names rather than codes (issue 18 §1, issue 19 item 1).

The demo night at AS_OF sends every family's staff letters (deadlines, reminders, obligations,
classification, the overdue summary and the KPI report, the month's close: the approval request
and the penalty summary; once approved, each person's reward/penalty notice); each letter a rule
sent is rendered again in every locale, and each must be free of the English the engine knows
(the rule titles and the words of the findings' English reasons, the ledger's among them), of
raw instants and of role codes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, select

from engine.db.demo import load_demo
from engine.db.models import Finding as FindingRow
from engine.db.models import ServiceRequest, Staff
from engine.ledger.approval import approve, waiting
from engine.notices.templates import NoticeTemplates, RenderedNotice
from engine.policy import load_policy
from engine.reports.overdue import PAGE_TEMPLATE, OverdueSummary
from engine.run import run_night

AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
LOCALES = ("zh-CN", "zh-TW", "es")

STAFF_LETTERS = {
    "escalation",
    "obligation_notice",
    "written_report",
    "dispatch_priority",
    "category_mismatch",
    "renewal_task",
    "lapse_task",
    "follow_up_call",
    "free_maintenance_report",
    "overdue_summary",
    "kpi_report",
    "urge_notice",
    "inquiry_notice",
    "repair_delay",
    "digest",
    # The ledger's: the general manager's approval request, each person's reward/penalty
    # notice (after the approval) and the branch's summary.
    "approval_request",
    "reward_penalty_notice",
    "penalty_summary",
}
"""The staff letters the demo night sends, each checked here."""

INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}|\+00:00")
# A regulation cited as the policy writes it ("000 part 2 §2(3)", "000 art.14").
CITATION = re.compile(r"\bpart \d+|\bart\.\d+")
ROOT = Path(__file__).resolve().parents[2]
ROLES = yaml.safe_load((ROOT / "rules" / "roles.yaml").read_text(encoding="utf-8"))["roles"]
ROLE_CODES = re.compile(r"\b(" + "|".join(r for r in ROLES if "_" in r) + r")\b")
WORD = re.compile(r"[A-Za-z][a-z]{3,}")
# Tags with their style attributes, mail addresses and a command's options are not prose.
MARKUP = re.compile(r"<[^>]*>|[\w.+-]+@[\w.-]+|--[a-z][a-z-]*")
# Words of the English titles and reasons that are Spanish words as well, or names.
SHARED = {
    "final",
    "general",
    "total",
    "local",
    "plan",
    "director",
    "supervisor",
    "madrid",
    "shanghai",
    "taipei",
}


class Recording(NoticeTemplates):
    """The shipped templates, keeping every letter's name, reader's locale and context."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rendered: list[tuple[str, str | None, dict[str, Any]]] = []

    def render(
        self, name: str, wanted_locale: str | None, context: dict[str, Any]
    ) -> RenderedNotice:
        """Render as shipped, and keep what was rendered."""
        self.rendered.append((name, wanted_locale, context))
        return super().render(name, wanted_locale, context)


def _english(settings, engine: Engine) -> set[str]:
    """The English the engine knows: the rule titles and the words of the recorded reasons."""
    policy = load_policy(settings.rules, NoticeTemplates(settings.templates))
    text = " ".join(c.rule.title for c in policy.rules())
    with engine.connect() as conn:
        text += " " + " ".join(conn.scalars(select(FindingRow.reason)))
    sources = " ".join(c.rule.source or "" for c in policy.rules())
    # Sources name the regulations' sections ("003 (4S pay)"): checked as citations instead.
    cited = {w.lower() for w in WORD.findall(sources)}
    # A reason names the people it is about (a technician's daily report): names, not English.
    with engine.connect() as conn:
        names = " ".join(conn.scalars(select(Staff.name)))
    named = {w.lower() for w in WORD.findall(names)}
    return {w.lower() for w in WORD.findall(text)} - cited - named - SHARED


def _customers_words(engine: Engine) -> list[str]:
    """The faults as customers described them: quoted to staff as said, in the customer's
    language (an English-speaking customer's "Not working" is theirs, not the engine's)."""
    with engine.connect() as conn:
        said = conn.scalars(select(ServiceRequest.description).distinct())
        return sorted((s for s in said if s), key=len, reverse=True)


def _problems(name: str, locale: str, text: str, english: set[str]) -> list[str]:
    text = MARKUP.sub(" ", text)
    found = [f"instant {m!r}" for m in INSTANT.findall(text)]
    found += [f"role code {m!r}" for m in ROLE_CODES.findall(text)]
    found += [f"citation {m!r}" for m in CITATION.findall(text)]
    found += sorted({f"English {w!r}" for w in WORD.findall(text) if w.lower() in english})
    return [f"{name} ({locale}): {problem}" for problem in found]


@pytest.mark.slow
def test_staff_letters_speak_the_readers_language(db: Engine, settings_for, db_url):
    settings = settings_for(db_url)
    load_demo(db, AS_OF)
    templates = Recording(settings.templates)
    run_night(settings, db, as_of=AS_OF, templates=templates)
    with db.begin() as conn:  # the held reward/penalty notices go out once approved
        for month in sorted({w.period for w in waiting(conn)}):
            approve(conn, month, by="王总", branch=None, at=AS_OF)
    run_night(settings, db, as_of=AS_OF, templates=templates)
    english = _english(settings, db)
    quoted = _customers_words(db)
    # The reasons' words are known, the ledger's too (a bonus's score, a survey reward's band).
    assert {"deadline", "notice", "recorded", "breach", "points", "band", "hotline"} <= english

    seen: set[str] = set()
    problems: list[str] = []
    for name, wanted, context in list(templates.rendered):
        if name not in STAFF_LETTERS:
            continue
        seen.add(name)
        # A digest's items were rendered in the reader's language: it is read in it alone.
        locales = [wanted] if name == "digest" else list(LOCALES)
        for locale in locales:
            if locale not in LOCALES:
                continue
            letter = templates.render(name, locale, context)
            assert letter.locale == locale
            text = "\n".join((letter.subject, letter.text, letter.html or ""))
            for said in quoted:
                text = text.replace(said, " ")
            problems += _problems(name, locale, text, english)
        if name == "overdue_summary":
            summary = OverdueSummary(AS_OF, [context["part"]])
            page = templates.env.get_template(PAGE_TEMPLATE)
            for locale in LOCALES:
                values = {"summary": summary, "charts": {context["part"].code: ""}}
                html = page.render(values, locale=locale, timezone="UTC")
                problems += _problems("overdue page", locale, html, english)
    assert seen >= STAFF_LETTERS
    shown = sorted(set(problems))
    assert not shown, f"{len(shown)} problems:\n" + "\n".join(shown[:60])


@pytest.mark.slow
def test_a_rule_title_and_reason_in_each_locale(db: Engine, settings_for, db_url):
    """One escalation, read in four languages: the title the policy gives, the reason's
    instants in the branch's time, how late in working hours."""
    settings = settings_for(db_url)
    load_demo(db, AS_OF)
    templates = Recording(settings.templates)
    run_night(settings, db, as_of=AS_OF, templates=templates)
    context = next(
        c
        for name, _, c in templates.rendered
        if name == "escalation"
        and c["finding"]["state"] == "breach"
        and c["rule"]["id"] == "dispatch-urban"
    )
    read = {loc: templates.render("escalation", loc, context).text for loc in (*LOCALES, "en")}
    assert "市区报修后 6 个工作小时内" in read["zh-CN"]  # the policy's zh-CN title
    assert "已超时" in read["zh-CN"] and "个工作小时" in read["zh-CN"]
    assert "已逾時" in read["zh-TW"] and "個工作小時" in read["zh-TW"]
    assert "de retraso" in read["es"] and "horas laborables" in read["es"]
    assert "late by" in read["en"] and "working hours" in read["en"]
    start = context["finding"]["details"]["start"]
    local = start.astimezone(ZoneInfo(context["timezone"]))
    assert f"{local.hour}:{local.minute:02d}" in read["zh-CN"]  # the branch's clock time
