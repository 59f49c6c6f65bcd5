"""No customer gets a letter in a language nobody chose for them (issue 19, 7): `validate --db`
refuses a customer notice lacking a language the database's customers read, and the run sets
such a letter aside with the reason instead of sending English."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from policyfiles import line_col, write_policy
from sqlalchemy import select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Notice
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

POLICY = """\
calendars:
  cn-office:
    timezone: Asia/Shanghai
    holidays: {country: CN}
    hours: {mon-fri: ["09:00-18:00"]}

reminders:
  - id: contract-ending
    title: The customer is told a month before the contract ends
    entity: contracts
    date: ends_on
    offset: 1 month before
    notice: ending_letter
    notify: [customer]
"""


@pytest.fixture
def templates(tmp_path) -> Path:
    """The shipped templates, plus a customer letter in English and Simplified Chinese."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "notices", folder)
    (folder / "ending_letter").mkdir()
    for locale, word in (("en", "ends"), ("zh-CN", "到期")):
        (folder / "ending_letter" / f"{locale}.subject.j2").write_text(
            f"{{{{ entity.number }}}} {word}\n", encoding="utf-8"
        )
        (folder / "ending_letter" / f"{locale}.txt.j2").write_text(
            "{{ recipient.name }}\n", encoding="utf-8"
        )
    return folder


def test_validate_with_the_database_refuses_a_letter_its_spanish_customer_cannot_read(
    service_data, tmp_path, templates
):
    rules = write_policy(tmp_path, contracts=POLICY)
    service_data.customer("Ana García", locale="es")
    args = ["validate", "--rules", str(rules), "--templates", str(templates)]
    runner = CliRunner()

    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0  # no database
    checked = runner.invoke(
        app, [*args, "--db", str(service_data.engine.url)], catch_exceptions=False
    )

    assert checked.exit_code == 2
    line, column = line_col(POLICY, "ending_letter")
    assert f"{rules / 'contracts.yaml'}:{line}:{column}: customer notice 'ending_letter'" in (
        checked.stderr
    )
    assert "customers reading es would get no letter (es: 1 customer)" in checked.stderr


def test_the_run_sets_aside_a_letter_in_a_language_the_customer_does_not_read(
    service_data, settings_for, tmp_path, templates
):
    data = service_data
    ends = date(2026, 12, 23)  # a month after the night: due tonight
    for name, locale in (("Ana García", "es"), ("Li Wei", "zh-CN"), ("Chen Mei", "zh-TW")):
        data.contract(data.customer(name, locale=locale), ends)
    rules = write_policy(tmp_path, contracts=POLICY)
    settings = settings_for(str(data.engine.url), rules=rules, templates=templates)

    result = run_night(settings, data.engine, as_of=AS_OF)

    with data.engine.connect() as conn:
        rows = conn.execute(
            select(Notice.recipient_name, Notice.status, Notice.locale, Notice.last_error)
        ).all()
    letters = {name: (status, locale, error) for name, status, locale, error in rows}
    assert letters["Li Wei"][:2] == ("pending", "zh-CN")
    for name, locale in (("Ana García", "es"), ("Chen Mei", "zh-TW")):
        status, _, error = letters[name]
        assert status == "render_failed"
        assert error.startswith(f"no {locale} template: ending_letter has en, zh-CN only")
    assert result.set_aside == {"no es template": 1, "no zh-TW template": 1}


def test_a_declared_fallback_sends_the_spanish_customer_english(
    service_data, settings_for, tmp_path, templates
):
    data = service_data
    data.contract(data.customer("Ana García", locale="es"), date(2026, 12, 23))
    declared = "defaults:\n  customer_fallback: {es: en}\n"
    rules = write_policy(tmp_path, contracts=declared + POLICY)
    settings = settings_for(str(data.engine.url), rules=rules, templates=templates)

    run_night(settings, data.engine, as_of=AS_OF)

    with data.engine.connect() as conn:
        status, locale, subject = conn.execute(
            select(Notice.status, Notice.locale, Notice.subject)
        ).one()
    assert (status, locale) == ("pending", "en")
    assert subject.endswith(" ends")
