"""A runaway template (a 5 MB letter, a loop of ten billion turns) fails alone, in seconds.

The night marks that template's notices `render_failed` with the file and line and goes on:
the other letters are queued and reach a real SMTP server. `preview` names the file and line
and exits 2; `validate` does so for what is runaway whatever the data.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Notice
from engine.notices.delivery import deliver, sender_from_settings
from engine.notices.templates import NoticeTemplates, RenderLimitExceeded, RenderLimits
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
HEAD = "{{ recipient.name }}:\n{% set n = entity.id * 0 + 100000 %}\n"
"""Two lines every runaway body below starts with; `n` is known only once there is data."""
RUNAWAYS = {
    "five-megabytes": "{{ 'x' * 5000000 }}\n",
    "nested-loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
    "{% endfor %}\n",
    "nested-loops-printing-nothing": "{% for i in range(100000) %}{% for j in range(100000) %}"
    "{% endfor %}{% endfor %}\n",
    "five-megabytes-from-data": "{{ 'x' * (n * 50) }}\n",
    "loops-from-data": "{% for i in range(n) %}{% for j in range(n) %}x{% endfor %}{% endfor %}\n",
    "loops-from-data-printing-nothing": "{% for i in range(n) %}{% for j in range(n) %}"
    "{% endfor %}{% endfor %}\n",
    "power": "{{ 10 ** (n * 100000) }}\n",
}
DATA_FREE = ("five-megabytes", "nested-loops", "nested-loops-printing-nothing")


@pytest.fixture
def templates(tmp_path) -> Path:
    """A copy of the shipped templates that a test may break."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates" / "notices", folder)
    return folder


def break_template(templates: Path, body: str) -> Path:
    """The sales rep's renewal task (read in zh-CN) becomes runaway on its third line."""
    path = templates / "renewal_task" / "zh-CN.txt.j2"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


@pytest.mark.parametrize("runaway", RUNAWAYS)
@pytest.mark.slow
def test_runaway_template_fails_its_own_notices_and_the_night_delivers_the_rest(
    runaway, service_data, focused_settings_for, templates, smtp_server
):
    handler, port = smtp_server
    path = break_template(templates, RUNAWAYS[runaway])
    for name in ("Ada Wong", "Li Wei", "Ana Garcia"):
        customer = service_data.customer(name)
        service_data.contract(customer, date(2026, 12, 20))
    settings = focused_settings_for(
        str(service_data.engine.url),
        templates=templates,
        rendering={"max_seconds": 0.5},
        smtp={"host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 5},
    )

    started = time.monotonic()
    result = run_night(settings, service_data.engine, as_of=AS_OF)
    took = time.monotonic() - started
    report = deliver(
        service_data.engine, sender_from_settings(settings), now=AS_OF, mail_from=settings.mail_from
    )

    # One time-out at most (0.5 s): the template is not tried again for the other two tasks.
    assert took < 15, took
    assert result.outcome == "success"
    with service_data.engine.connect() as conn:
        notices = list(conn.execute(select(Notice).order_by(Notice.id)))
    failed = [n for n in notices if n.template == "renewal_task"]
    assert len(failed) == 3 and {n.status for n in failed} == {"render_failed"}
    assert all(f"{path}:3: " in n.last_error for n in failed), failed[0].last_error
    assert all(len(n.body_text) < 1000 for n in failed)
    letters = [n for n in notices if n.template == "maintenance_expiry"]
    assert len(letters) == 3 and {n.status for n in letters} == {"sent"}
    assert report.sent == 3
    received = {rcpt for _, rcpts, _ in handler.accepted for rcpt in rcpts}
    assert received == {n.recipient_address for n in letters}
    assert max(len(raw) for _, _, raw in handler.accepted) < 100_000


def test_status_counts_render_failed_notices(service_data, focused_settings_for, templates):
    break_template(templates, RUNAWAYS["five-megabytes"])
    customer = service_data.customer("Ada Wong")
    service_data.contract(customer, date(2026, 12, 20))
    url = str(service_data.engine.url)
    run_night(focused_settings_for(url, templates=templates), service_data.engine, as_of=AS_OF)

    result = CliRunner().invoke(app, ["status", "--db", url], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "render_failed" in result.output


@pytest.mark.slow
def test_preview_names_the_runaway_line_and_exits_2_in_seconds(templates):
    path = break_template(templates, RUNAWAYS["loops-from-data-printing-nothing"])
    started = time.monotonic()

    result = CliRunner().invoke(
        app,
        ["preview", "--templates", str(templates)],
        env={"AFTERSALES_RENDERING__MAX_SECONDS": "0.5"},
        catch_exceptions=False,
    )

    assert result.exit_code == 2
    assert f"{path}:3: the letter takes longer than 0.5 s to render" in result.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("runaway", DATA_FREE)
def test_validate_names_a_runaway_line_and_exits_2(runaway, templates):
    path = break_template(templates, RUNAWAYS[runaway])

    result = CliRunner().invoke(
        app, ["validate", "--templates", str(templates)], catch_exceptions=False
    )

    assert result.exit_code == 2
    assert f"{path}:3: " in result.stderr and "whatever the data" in result.stderr


def test_validate_passes_the_shipped_templates():
    result = CliRunner().invoke(
        app, ["validate", "--templates", str(ROOT / "templates" / "notices")]
    )
    assert result.exit_code == 0, result.output


def test_a_runaway_loop_is_stopped_off_the_main_thread_too(tmp_path):
    """Where no alarm signal can be used, the size and time checks between chunks still hold."""
    folder = tmp_path / "templates"
    (folder / "task").mkdir(parents=True)
    (folder / "task" / "en.subject.j2").write_text("Task\n", encoding="utf-8")
    (folder / "task" / "en.txt.j2").write_text(HEAD + RUNAWAYS["loops-from-data"])
    # The time limit is far off so that the size check, not the clock, stops it on a busy machine.
    notices = NoticeTemplates(folder, limits=RenderLimits(max_seconds=20))
    caught: list[RenderLimitExceeded] = []

    def render() -> None:
        try:
            notices.render("task", "en", {"recipient": {"name": "Li"}, "entity": {"id": 7}})
        except RenderLimitExceeded as exc:
            caught.append(exc)

    worker = threading.Thread(target=render)
    worker.start()
    worker.join(timeout=30)

    assert not worker.is_alive()
    (exc,) = caught
    assert "1,000,000 characters" in exc.message and str(exc.location).endswith("en.txt.j2:3")
