"""The demo reads like a real department (issue 19 item 4): a few complaints per 100 repair
calls and most repairs fixed the first time in every month the KPI report shows, and preview's
sample letters agree with themselves."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.db.demo import DEMO_SCALE, load_demo
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.preview import SAMPLE_AS_OF, collect_samples
from engine.rules.metric import measure, months_to_measure

ROOT = Path(__file__).resolve().parents[2]


def _department(db: Engine, settings, as_of: datetime) -> dict[str, dict[str, Decimal]]:
    """Per KPI and month: the four branches' figures added up, and each branch's."""
    policy = load_policy(settings.rules, NoticeTemplates(settings.templates))
    months = months_to_measure(as_of, policy.kpi_report.history + 1)[:-1]  # without the current
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    worst: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    with db.connect() as conn:
        for metric in policy.metrics:
            if metric.rule.id not in ("complaint-rate", "first-time-fix"):
                continue
            for value in measure(conn, metric, months, as_of):
                if value.scope != "branch":
                    continue
                key = (metric.rule.id, value.period)
                sums[key][0] += value.numerator
                sums[key][1] += value.denominator
                worst[key].append(value.value or Decimal(0))
    return {
        f"{metric} {period}": {
            "department": numerator / denominator * 100,
            "worst branch": max(worst[(metric, period)])
            if metric == "complaint-rate"
            else min(worst[(metric, period)]) * 100,
        }
        for (metric, period), (numerator, denominator) in sums.items()
    }


# Mid-month, and early in a month, when this month's complaint cases fall into the last one.
@pytest.mark.parametrize(
    "as_of", [datetime(2026, 11, 23, 18, 0, tzinfo=UTC), datetime(2026, 12, 7, 6, 0, tzinfo=UTC)]
)
def test_the_demo_kpis_look_like_a_real_department(settings_for, sqlite_url, as_of):
    db = connect(sqlite_url)
    upgrade(db)
    load_demo(db, as_of, scale=DEMO_SCALE)
    figures = _department(db, settings_for(sqlite_url), as_of)
    db.dispose()
    assert len(figures) == 8, figures  # two KPIs, the reported month and the three before
    for name, value in figures.items():
        if name.startswith("complaint-rate"):
            assert 1.5 <= value["department"] <= 6, (name, value)
            assert value["worst branch"] <= 10, (name, value)
        else:
            assert 80 <= value["department"] <= 92, (name, value)
            assert value["worst branch"] >= 70, (name, value)


def _ended_on(name: str, context: dict) -> list[tuple[str, date]]:
    """The end dates a letter states as past: a lapsed contract's, and the warranty a quote
    says ended (templates/notices/quote: whenever it names an end date)."""
    entity = context.get("entity") or {}
    ended = []
    if name in ("contract_lapsed", "lapse_task"):
        ended.append(("contract ended", entity["ends_on"]))
    says_ended = not entity.get("warranty_void") and entity.get("warranty_basis")
    if name == "quote" and says_ended and entity.get("warranty_term"):
        ended.append(("warranty ended", entity["warranty_ends_on"]))
    return ended


@pytest.mark.slow
def test_preview_samples_do_not_contradict_their_letters(settings_for, tmp_path):
    """A sample that says something ended names a day before the letter's own date, also when
    the night does not reach the notice and preview takes a row of its rule's table: here the
    lapse letter, put ten years after the end so that no contract is due for one."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    contracts = rules / "contracts.yaml"
    text = contracts.read_text(encoding="utf-8")
    lapse = "offset: 1 day after                  # the first day without cover"
    assert lapse in text
    contracts.write_text(text.replace(lapse, "offset: 10 years after"), encoding="utf-8")
    settings = settings_for(f"sqlite:///{tmp_path / 'unused.db'}", rules=rules)
    policy = load_policy(settings.rules, NoticeTemplates(settings.templates))
    samples = collect_samples(settings, policy, SAMPLE_AS_OF)
    assert samples["contract_lapsed"][0] == "a row of rule maintenance-lapsed"
    checked, problems = 0, []
    for name, (source, context) in samples.items():
        letter_day = SAMPLE_AS_OF.date()
        for what, day in _ended_on(name, context):
            checked += 1
            if isinstance(day, datetime):
                day = day.date()
            if not day < letter_day:
                problems.append(f"{name} ({source}): {what} {day}, letter of {letter_day}")
    assert checked >= 3  # the lapse letter, the sales rep's task, the quote
    assert not problems, problems
