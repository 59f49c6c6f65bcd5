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
    result = invoke("run", "--db", sqlite_url, "--as-of", "2026-11-23T02:00:00Z")
    assert result.exit_code == 1 and "aftersales init" in result.stderr


def test_schema_command_prints_a_json_schema(tmp_path):
    out = tmp_path / "policy.schema.json"
    assert invoke("schema", "--out", str(out)).exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert "reminders" in schema["properties"]
