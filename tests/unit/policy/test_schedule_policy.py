"""The policy's `schedule:` block: local times of the daily parts, every mistake located."""

from __future__ import annotations

import json
from pathlib import Path

from policyfiles import problems_of, write_policy

from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema
from engine.policy.schedule_spec import ScheduleSpec

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")


def test_the_shipped_policy_gives_every_part_its_time():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    assert policy.schedule.at("digests") == "08:00"
    assert policy.schedule.at("kpi_report") == "07:00"
    assert policy.schedule.at("month_close") == "06:00"


def test_parts_left_out_keep_their_defaults(tmp_path):
    folder = write_policy(tmp_path, schedule='schedule:\n  digests: "07:30"\n')
    schedule = load_policy(folder, TEMPLATES).schedule
    assert schedule.digests == "07:30"
    assert schedule.overdue_summary == "08:00" and schedule.tallies == "06:00"


def test_a_policy_without_schedule_uses_the_defaults(tmp_path):
    folder = write_policy(tmp_path, empty="{}\n")
    assert load_policy(folder, TEMPLATES).schedule == ScheduleSpec()


def test_an_unknown_part_is_located_and_the_near_name_suggested(tmp_path):
    folder = write_policy(tmp_path, schedule='schedule:\n  tallies: "06:00"\n  digest: "08:00"\n')
    (problem,) = problems_of(folder)
    assert problem.message == "unknown key 'digest'"
    assert problem.hint == "did you mean 'digests'?"
    assert (problem.location.file.name, problem.location.line, problem.location.column) == (
        "schedule.yaml",
        3,
        3,
    )


def test_an_unquoted_time_is_refused_with_the_quoting_hint(tmp_path):
    folder = write_policy(tmp_path, schedule="schedule:\n  overdue_summary: 10:30\n")
    problems = problems_of(folder)
    assert "10:30 reads as the number 630, not as a time of day" in problems[0].message
    assert problems[0].hint == "quote times: '10:30'"
    assert (problems[0].location.line, problems[0].location.column) == (2, 20)


def test_a_time_that_is_no_clock_reading_is_refused(tmp_path):
    folder = write_policy(tmp_path, schedule='schedule:\n  kpi_report: "24:00"\n')
    (problem,) = problems_of(folder)
    assert problem.message.startswith("schedule.kpi_report: '24:00' is not a time of day")
    assert (problem.location.line, problem.location.column) == (2, 15)


def test_schedule_given_twice_names_the_second_file(tmp_path):
    text = 'schedule:\n  digests: "08:00"\n'
    folder = write_policy(tmp_path, a=text, b=text)
    (problem,) = problems_of(folder)
    assert "`schedule` is given in more than one file" in problem.message
    assert problem.location.file.name == "b.yaml"


def test_the_json_schema_describes_the_block():
    schema = json.loads(json.dumps(policy_json_schema()))
    block = schema["$defs"]["ScheduleSpec"]
    assert block["additionalProperties"] is False
    assert set(block["properties"]) == {
        "digests", "overdue_summary", "obligations", "tallies", "month_close", "kpi_report"
    }  # fmt: skip
    assert block["properties"]["digests"]["pattern"] == "^([01]\\d|2[0-3]):[0-5]\\d$"
