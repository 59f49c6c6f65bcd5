"""`aftersales test`: the policy tests kept beside the policy, as an operator runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

URBAN_CASE = """\
cases:
  - name: an urban call with nobody on site after 6 working hours breaches
    article: "000 art.14"
    given:
      service_requests:
        - {{id: 1, region: urban, received_at: 2026-11-23T09:00:00+08:00}}
    at: 2026-11-23T17:30:00+08:00
    expect:
      findings:
        - {{rule: dispatch-urban, id: 1, state: breach, due: {due}}}
"""


def invoke(*args: str):
    """Run the CLI in-process; stdout and stderr apart."""
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def rules(tmp_path) -> Path:
    """The shipped policy with one test file of our own in place of the shipped ones."""
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder, ignore=shutil.ignore_patterns("tests"))
    (folder / "tests").mkdir()
    return folder


@pytest.mark.slow
def test_the_shipped_policy_passes_its_tests():
    result = invoke("test", "--rules", str(ROOT / "rules"))
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 20


def test_a_wrong_expectation_fails_with_expected_got_and_line(rules):
    case = rules / "tests" / "sla.yaml"
    case.write_text(URBAN_CASE.format(due="2026-11-23T15:00:00+08:00"), encoding="utf-8")

    result = invoke("test", "--rules", str(rules))

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"FAIL {case}:2:5: an urban call")
    assert lines[1] == (
        f"  {case}:10:11: expected finding rule=dispatch-urban, id=1, state=breach, "
        "due=2026-11-23T15:00:00+08:00"
    )
    # What the night gave: the same rule and call, due at 16:00 (09:00 + 6 working hours).
    assert lines[2].strip() == (
        "got: rule=dispatch-urban, entity=service_requests, id=1, state=breach, "
        "occurrence=2026-11-23T01:00:00+00:00, due=2026-11-23T16:00:00+08:00"
    )
    assert lines[-1] == "0 passed, 1 failed"


def test_validate_with_tests_runs_them(rules):
    (rules / "tests" / "sla.yaml").write_text(
        URBAN_CASE.format(due="2026-11-23T16:00:00+08:00"), encoding="utf-8"
    )
    result = invoke("validate", "--rules", str(rules), "--tests")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (URBAN_CASE.replace("    at:", "    when:"), ":7:5:", "unknown key 'when'"),
        (URBAN_CASE.replace("region: urban", "region: downtown"), ":6:11:", "region"),
        (URBAN_CASE.replace("service_requests:", "service_calls:"), ":5:7:", "unknown table"),
    ],
    ids=["unknown key", "a row the import refuses", "unknown table"],
)
def test_an_invalid_test_file_exits_2_with_file_and_line(rules, text, where, message):
    case = rules / "tests" / "sla.yaml"
    case.write_text(text.format(due="2026-11-23T16:00:00+08:00"), encoding="utf-8")

    result = invoke("test", "--rules", str(rules))

    assert result.exit_code == 2
    assert f"{case}{where}" in result.stderr
    assert message in result.stderr


def test_test_files_are_not_policy_and_leave_its_version_alone(rules):
    templates = NoticeTemplates(ROOT / "templates" / "notices")
    before = load_policy(rules, templates)
    (rules / "tests" / "sla.yaml").write_text("cases: [not, a, policy]\n", encoding="utf-8")
    after = load_policy(rules, templates)
    assert after.hash == before.hash
    assert after.files == before.files


def test_an_absent_expectation_that_appears_fails_with_what_was_found(rules):
    case = rules / "tests" / "sla.yaml"
    text = URBAN_CASE.format(due="2026-11-23T16:00:00+08:00")
    case.write_text(text.replace("    expect:", "    absent:"), encoding="utf-8")

    result = invoke("test", "--rules", str(rules))

    assert result.exit_code == 1
    assert f"  {case}:10:11: expected no finding rule=dispatch-urban" in result.stdout
    assert "got: rule=dispatch-urban, entity=service_requests, id=1, state=breach" in result.stdout


def test_cases_spread_over_workers_report_as_one_after_another(rules):
    # Failures among passes, so the order of the lines shows: the second and fourth fail.
    cases = [URBAN_CASE.format(due=f"2026-11-23T{hour}:00:00+08:00") for hour in (16, 15, 16, 14)]
    text = "cases:\n" + "".join(case.removeprefix("cases:\n") for case in cases)
    (rules / "tests" / "sla.yaml").write_text(text, encoding="utf-8")

    serial = invoke("test", "--rules", str(rules), "--jobs", "1")
    spread = invoke("test", "--rules", str(rules), "--jobs", "2")

    assert serial.exit_code == spread.exit_code == 1
    assert spread.stdout == serial.stdout
    assert [line.split(":")[1] for line in spread.stdout.splitlines() if "FAIL" in line] == [
        "11",
        "29",
    ]
    assert spread.stdout.splitlines()[-1] == "2 passed, 2 failed"


def test_a_row_the_import_refuses_in_a_worker_exits_2_with_file_and_line(rules):
    good = URBAN_CASE.format(due="2026-11-23T16:00:00+08:00")
    bad = good.replace("region: urban", "region: downtown").removeprefix("cases:\n")
    case = rules / "tests" / "sla.yaml"
    case.write_text(good + bad, encoding="utf-8")

    result = invoke("test", "--rules", str(rules), "--jobs", "2")

    assert result.exit_code == 2
    assert f"{case}:15:11:" in result.stderr
    assert "region" in result.stderr
