"""`aftersales preview` and the sandbox: a template mistake fails preview, not a letter."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import LOCALES, Notice
from engine.notices.delivery import EmlDirectorySender, deliver
from engine.preview import preview
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
CUSTOMER_LETTERS = (
    "maintenance_expiry",
    "renewal_reminder",
    "contract_lapsed",
    "warranty_ending",
    "complaint_received",
    "complaint_resolution",
    "repair_delay",
    "quote",
    "survey_request",
)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def templates(tmp_path) -> Path:
    """A copy of the shipped templates that a test may break."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "notices", folder)
    return folder


@pytest.mark.slow
def test_every_shipped_notice_renders_in_every_locale(settings_for, sqlite_url, tmp_path):
    result = preview(settings_for(sqlite_url))

    assert result.problems == [] and result.unsampled == []
    rendered = {(r.name, r.wanted) for r in result.renderings}
    names = {r.name for r in result.renderings}
    assert rendered == {(name, locale) for name in names for locale in LOCALES}
    # The customer letters and the manager's messages are among them, with real data.
    assert {"maintenance_expiry", "escalation", "urge_notice", "digest"} <= names
    assert result.sampled_from["digest"] == "demo night"
    # Each reader gets a letter written in their language, not a fallback to another one.
    assert [(r.name, r.wanted, r.rendered.locale) for r in result.fallbacks] == []
    # Customers get every letter the issue names, in every locale, with an HTML part.
    letters = {(r.name, r.wanted) for r in result.renderings if r.rendered.html}
    assert {(n, loc) for n in CUSTOMER_LETTERS for loc in LOCALES} <= letters
    assert {"complaint_received", "complaint_resolution"} <= {
        name for name, source in result.sampled_from.items() if source == "demo night"
    }

    pages = invoke("preview", "--open", "--out", str(tmp_path / "pages"))
    assert pages.exit_code == 0, pages.stderr
    index = (tmp_path / "pages" / "index.html").read_text(encoding="utf-8")
    assert "maintenance_expiry.es.html" in index


BREAKAGES = {
    # a variable nobody provides
    ("maintenance_expiry", "es"): "{{ customer.nickname }}",
    # reaching Python internals
    ("escalation", "en"): "{{ ''.__class__.__mro__ }}",
    # the format-string trick
    ("digest", "zh-CN"): "{{ '{0.__class__}'|attr('format')(recipient) }}",
}


@pytest.mark.slow
def test_broken_templates_fail_preview_each_with_its_file_and_line(templates):
    places = []
    for (name, locale), line in BREAKAGES.items():
        path = templates / name / f"{locale}.txt.j2"
        text = path.read_text(encoding="utf-8")
        path.write_text(text + line + "\n", encoding="utf-8")
        places.append(f"{path}:{text.count(chr(10)) + 1}:")

    result = invoke("preview", "--templates", str(templates))

    assert result.exit_code == 2
    assert "3 problems" in result.stderr
    for place in places:
        assert place in result.stderr
    assert "UndefinedError" in result.stderr and "SecurityError" in result.stderr


def test_a_template_that_breaks_the_sandbox_at_night_sets_only_that_letter_aside(
    db, db_url, settings_for, service_data, templates, tmp_path
):
    path = templates / "urge_notice" / "zh-CN.txt.j2"
    path.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n", encoding="utf-8")
    customer = service_data.customer("Han Meimei", locale="zh-CN")
    service_data.complaint(
        customer,
        AS_OF - timedelta(hours=30),
        number="CP-SH-001",
        handling_due_at=AS_OF - timedelta(hours=2),  # overdue: the urge notice goes out
    )
    settings = settings_for(db_url, templates=templates)

    run_night(settings, db, as_of=AS_OF)
    report = deliver(db, EmlDirectorySender(tmp_path / "out"), now=AS_OF, mail_from="a@b.example")

    with db.connect() as conn:
        urge = conn.execute(select(Notice).where(Notice.template == "urge_notice")).one()
    assert urge.status == "render_failed"
    assert urge.last_error.startswith("cannot render: SecurityError")
    assert report.sent >= 1  # the other letters of the night went out
    assert "__subclasses__" not in "".join(
        p.read_text(errors="replace") for p in (tmp_path / "out").glob("*.eml")
    )
