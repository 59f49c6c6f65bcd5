"""The aftersales command: exit codes and messages an operator sees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Finding, Notice, Run
from engine.db.session import connect

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str):
    """Run the CLI in-process; stdout and stderr apart."""
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def rules(tmp_path) -> Path:
    """A copy of the shipped rules that a test may break."""
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder)
    return folder


BREAKAGES = {
    "yaml syntax": ("notify: [team_lead, sales_director]", "notify: [team_lead, sales_director"),
    "duplicate key": ("    date: ends_on\n", "    date: ends_on\n    date: starts_on\n"),
    "unknown field in when": ("kind == 'free_maintenance'", "knd == 'free_maintenance'"),
    "negative duration": (
        "offset: 3 months before",
        "offset: 3 months before\n    send_until: -1 day",
    ),
    "missing template": ("notice: free_maintenance_report", "notice: free_maintenance_letter"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_policy_exits_2_with_file_and_line_and_runs_nothing(
    breakage, rules, sqlite_url, tmp_path
):
    old, new = BREAKAGES[breakage]
    path = rules / "contracts.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert invoke("init", "--db", sqlite_url).exit_code == 0

    checked = invoke("validate", "--rules", str(rules))
    assert checked.exit_code == 2
    assert f"{path}:" in checked.stderr

    ran = invoke(
        "run", "--db", sqlite_url, "--rules", str(rules), "--as-of", "2026-11-23T02:00:00Z"
    )
    assert ran.exit_code == 2 and f"{path}:" in ran.stderr
    engine = connect(sqlite_url)
    with engine.connect() as conn:
        for table in (Finding, Notice):
            assert conn.scalar(select(func.count()).select_from(table)) == 0
        # The failed night is on record, so `aftersales status` shows it.
        assert list(conn.scalars(select(Run.outcome))) == ["invalid_policy"]


def test_validate_with_a_database_that_is_down_warns_and_still_passes():
    # Nothing listens on port 1: the customers' locales cannot be read, which is no policy error.
    result = invoke(
        "validate", "--rules", str(ROOT / "rules"), "--templates",
        str(ROOT / "templates" / "notices"), "--db", "postgresql://nobody@127.0.0.1:1/x",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "could not be read" in result.output


def test_shipped_policy_validates():
    result = invoke(
        "validate",
        "--rules",
        str(ROOT / "rules"),
        "--templates",
        str(ROOT / "templates" / "notices"),
    )
    assert result.exit_code == 0, result.output
    assert "policy OK" in result.stdout


def test_as_of_without_time_zone_is_a_usage_error(sqlite_url):
    result = invoke("run", "--db", sqlite_url, "--as-of", "2026-11-23T10:00:00")
    assert result.exit_code == 2 and "has no time zone" in result.stderr


def test_run_on_a_database_without_schema_says_to_init(sqlite_url):
    Path(sqlite_url.removeprefix("sqlite:///")).touch()  # an empty file is an empty database
    result = invoke("run", "--db", sqlite_url, "--as-of", "2026-11-23T02:00:00Z")
    assert result.exit_code == 1 and "aftersales init" in result.stderr


def test_schema_command_prints_a_json_schema(tmp_path):
    out = tmp_path / "policy.schema.json"
    assert invoke("schema", "--out", str(out)).exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert "reminders" in schema["properties"]


POLICY = ("--rules", str(ROOT / "rules"), "--templates", str(ROOT / "templates" / "notices"))
# Every command that opens the database, with what else it needs to get that far.
DATABASE_COMMANDS = {
    "status": ("status",),
    "run": ("run", "--as-of", "2026-11-23T02:00:00Z", *POLICY),
    "deliver": ("deliver",),
    "findings": ("findings",),
    "import": ("import", str(ROOT / "tests")),
    "explain": ("explain", "dispatch-urban", "1", *POLICY),
    "approve": ("approve", "2026-10", "--by", "gm"),
    "report penalties": ("report", "penalties", *POLICY),
    "report kpi": ("report", "kpi", *POLICY),
}


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize("command", DATABASE_COMMANDS)
def test_a_missing_sqlite_file_is_one_line_and_no_file_is_left(command, tmp_path):
    missing = tmp_path / "typo.db"
    result = invoke(*DATABASE_COMMANDS[command], "--db", f"sqlite:///{missing}")
    line = _one_line_error(result)
    assert f"no database at {missing}" in line and "aftersales init" in line
    assert list(tmp_path.iterdir()) == []  # no empty typo.db, no -wal or -shm beside it


def test_init_creates_the_missing_sqlite_file(tmp_path):
    result = invoke("init", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new.db").is_file()


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path):
    result = invoke("init", "--db", f"sqlite:///{tmp_path / 'no_such_folder' / 'x.db'}")
    assert "unable to open database file" in _one_line_error(result)


@pytest.mark.postgres
@pytest.mark.parametrize("command", [*DATABASE_COMMANDS, "init"])
def test_an_unknown_postgresql_database_is_one_line_and_exit_1(command, pg_server):
    url = pg_server.rsplit("/", 1)[0] + "/no_such_db"
    result = invoke(*DATABASE_COMMANDS.get(command, (command,)), "--db", url)
    line = _one_line_error(result)
    assert "cannot open the database" in line and 'database "no_such_db" does not exist' in line


def test_a_policy_line_with_brackets_is_quoted_as_written(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    sla = rules / "sla.yaml"
    text = sla.read_text()
    written = next(line for line in text.splitlines() if line.startswith("    stop: [arrived_at"))
    # A syntax error on the line after it: the excerpt quotes the lines before the error.
    sla.write_text(text.replace("within: 6 working hours", "within: 6 working: hours", 1))
    result = invoke("validate", "--rules", str(rules), "--templates", POLICY[3])
    assert result.exit_code == 2
    assert any(line.endswith(f"| {written}") for line in result.stderr.splitlines()), result.stderr
