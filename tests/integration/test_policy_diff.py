"""`aftersales diff`: what a policy change would do to the calls on the database as it is,
against a folder, a git revision of the rules folder, or the policy of the last run; written
nowhere, on a real SQLite file and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Finding, Notice, PolicyVersion, Run
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = str(ROOT / "templates" / "notices")
SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 11, 23, 14, 30, tzinfo=SHANGHAI)  # a Monday, 4h30 of working time

runner = CliRunner()


def _diff(engine: Engine, rules: Path, *args: str):
    return runner.invoke(
        app,
        ["diff", "--db", engine.url.render_as_string(hide_password=False), "--rules", str(rules),
         "--templates", TEMPLATES, "--as-of", AS_OF.isoformat(), *args],
        catch_exceptions=False,
    )  # fmt: skip


def _shortened(folder: Path) -> Path:
    """A copy of the shipped policy with dispatch-urban's 6 working hours made 4."""
    shutil.copytree(ROOT / "rules", folder)
    sla = folder / "sla.yaml"
    text = sla.read_text(encoding="utf-8")
    assert text.count("within: 6 working hours") == 1
    sla.write_text(text.replace("within: 6 working hours", "within: 4 working hours"), "utf-8")
    return folder


def _calls(data) -> dict[str, int]:
    ada = data.customer("Ada Wong")
    return {
        # 6 hours: nothing yet at 14:30 (warned at 14:48); 4 hours: late since 14:00.
        "fresh": data.request(ada, datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)),
        # Late under both; its deadline moves from Friday 16:00 to 14:00.
        "late": data.request(ada, datetime(2026, 11, 20, 9, 0, tzinfo=SHANGHAI)),
        "suburban": data.request(
            ada, datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI), region="suburban"
        ),
    }


def _counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.scalar(select(func.count()).select_from(t)) for t in (Finding, Notice, Run)
        )


def test_shortening_urban_dispatch_lists_the_calls_it_moves_and_writes_nothing(
    service_data, settings_for, tmp_path
):
    calls = _calls(service_data)
    engine = service_data.engine
    run_night(settings_for(str(engine.url)), engine, as_of=AS_OF.replace(hour=10))
    before = _counts(engine)
    assert before[0] > 0  # the friday call's breach, recorded with its notices

    shorter = _shortened(tmp_path / "rules4")
    done = _diff(engine, shorter, "--against", str(ROOT / "rules"), "--format", "json")

    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["differs"] is True
    (rule,) = report["rules"]
    assert (rule["rule"], rule["change"]) == ("dispatch-urban", "changed")
    assert rule["parts"] == ["timing"]
    (appears,) = rule["examples"]["appear"]
    assert appears["entity_id"] == str(calls["fresh"])
    assert appears == {**appears, "before": {}, "after": {"breach": "2026-11-23T06:00:00+00:00"}}
    assert appears["explain"] == (
        f"aftersales explain dispatch-urban {calls['fresh']} --as-of 2026-11-23T06:30:00+00:00"
        f" --rules {shorter}"
    )
    (moved,) = rule["examples"]["change"]
    assert moved["entity_id"] == str(calls["late"])
    assert moved["before"]["breach"] == "2026-11-20T08:00:00+00:00"  # Friday 16:00
    assert moved["after"]["breach"] == "2026-11-20T06:00:00+00:00"  # Friday 14:00
    assert rule["findings"] == {"appear": 1, "disappear": 0, "change": 1}
    assert rule["notices"]["appear"]["escalation → service_supervisor"] == 1
    assert _counts(engine) == before

    text = _diff(engine, shorter, "--against", str(ROOT / "rules"))
    assert text.exit_code == 1
    assert "dispatch-urban (deadline): changed (timing)" in text.stdout
    assert "findings: 1 appear, 1 change" in text.stdout
    assert _counts(engine) == before


def test_the_same_policy_makes_no_difference(service_data):
    _calls(service_data)
    done = _diff(service_data.engine, ROOT / "rules", "--against", str(ROOT / "rules"))
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().endswith("no difference")


@pytest.mark.parametrize("side", ["--rules", "--against"])
def test_an_invalid_policy_on_either_side_exits_2_with_its_problems(db, tmp_path, side):
    broken = _shortened(tmp_path / "broken")
    sla = broken / "sla.yaml"
    sla.write_text(
        sla.read_text("utf-8").replace("within: 4 working hours", "within: 4 fortnights"), "utf-8"
    )
    rules, against = (broken, ROOT / "rules") if side == "--rules" else (ROOT / "rules", broken)
    done = _diff(db, rules, "--against", str(against))
    assert done.exit_code == 2
    assert "problem" in done.output and "sla.yaml:" in done.output


def test_an_invalid_policy_is_exit_2_even_without_a_database(tmp_path):
    broken = _shortened(tmp_path / "broken")
    sla = broken / "sla.yaml"
    sla.write_text(
        sla.read_text("utf-8").replace("within: 4 working hours", "within: 4 fortnights"), "utf-8"
    )
    done = runner.invoke(
        app,
        ["diff", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--rules", str(broken),
         "--templates", TEMPLATES, "--against", str(ROOT / "rules")],
    )  # fmt: skip
    assert done.exit_code == 2, done.output
    assert not (tmp_path / "none.db").exists()


def test_against_a_git_revision_of_the_rules_folder(service_data, tmp_path):
    calls = _calls(service_data)
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "rules", repo / "rules")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "policy")
    shutil.rmtree(repo / "rules")
    _shortened(repo / "rules")  # edited, not committed

    done = _diff(service_data.engine, repo / "rules", "--against", "HEAD", "--format", "json")
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["policy"]["against"] == "revision HEAD"
    assert [r["rule"] for r in report["rules"]] == ["dispatch-urban"]
    assert report["rules"][0]["examples"]["appear"][0]["entity_id"] == str(calls["fresh"])

    unknown = _diff(service_data.engine, repo / "rules", "--against", "no-such-revision")
    assert unknown.exit_code == 2
    assert "no-such-revision" in unknown.output


@pytest.mark.slow
def test_by_default_against_the_policy_of_the_last_successful_run(
    service_data, settings_for, tmp_path
):
    _calls(service_data)
    engine = service_data.engine
    shorter = _shortened(tmp_path / "rules4")
    never = _diff(engine, shorter)
    assert never.exit_code == 2
    assert "no successful run" in never.output

    run_night(settings_for(str(engine.url)), engine, as_of=AS_OF.replace(hour=10))
    with engine.connect() as conn:
        kept = conn.scalar(select(PolicyVersion.files))
    assert kept["sla.yaml"] == (ROOT / "rules" / "sla.yaml").read_text("utf-8")
    before = _counts(engine)

    done = _diff(engine, shorter)
    assert done.exit_code == 1, done.output
    assert "against the last successful run's policy" in done.stdout
    assert "dispatch-urban (deadline): changed (timing)" in done.stdout
    assert _diff(engine, ROOT / "rules").exit_code == 0
    assert _counts(engine) == before


def test_notices_of_states_recorded_already_are_not_counted(service_data, settings_for, tmp_path):
    calls = _calls(service_data)
    engine, shorter = service_data.engine, _shortened(tmp_path / "rules4")
    run_night(settings_for(str(engine.url), rules=shorter), engine, as_of=AS_OF)

    done = _diff(engine, shorter, "--against", str(ROOT / "rules"), "--format", "json")
    (rule,) = json.loads(done.stdout)["rules"]
    assert rule["examples"]["appear"][0]["entity_id"] == str(calls["fresh"])
    assert rule["notices"]["appear"] == {}  # its breach went to the supervisor at 14:30
