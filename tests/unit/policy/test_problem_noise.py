"""One mistake in a policy file is one problem at its place, with a hint: not a page of
follow-on errors elsewhere that point away from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from policyfiles import line_col, problems_of, write_policy

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = {path.stem: path.read_text(encoding="utf-8") for path in (ROOT / "rules").glob("*.yaml")}


def shipped_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """The shipped policy, with `old` replaced by `new` (once) in `name`.yaml."""
    assert old in SHIPPED[name], old
    return write_policy(tmp_path, **{**SHIPPED, name: SHIPPED[name].replace(old, new, 1)})


# A line of the urban dispatch deadline indented two spaces too far: the YAML cannot be read,
# and the KPIs in kpis.yaml that measure its deadlines would each call them unknown.
OVER_INDENTED = ("    within: 6 working hours\n", "      within: 6 working hours\n")


def test_one_wrong_indentation_is_one_problem_at_its_line(tmp_path):
    folder = shipped_with(tmp_path, "sla", *OVER_INDENTED)
    (problem,) = problems_of(folder)
    assert problem.location.file == folder / "sla.yaml"
    assert problem.location.line == line_col(SHIPPED["sla"], "within: 6 working hours")[0]
    assert "indentation" in (problem.hint or "")


def test_a_misspelt_key_names_the_key_it_should_be_and_nothing_else(tmp_path):
    folder = shipped_with(tmp_path, "sla", "within: 6 working hours", "withn: 6 working hours")
    (problem,) = problems_of(folder)  # kpis.yaml's on_time: [dispatch-urban, ...] is not blamed
    assert problem.message == "unknown key 'withn'"
    assert problem.hint == "did you mean 'within'?"


def test_a_misspelt_required_key_is_not_also_missing(tmp_path):
    old = "on_breach: {notice: dispatch_priority, notify: [service_supervisor]}"
    folder = shipped_with(tmp_path, "sla", old, old.replace("notice:", "notce:"))
    (problem,) = problems_of(folder)
    assert problem.message == "unknown key 'notce'"
    assert problem.hint == "did you mean 'notice'?"


def test_a_key_dedented_out_of_its_block_is_one_problem_naming_the_empty_block(tmp_path):
    text = SHIPPED["roles"]
    line = next(x for x in text.splitlines() if x.startswith("    title: {en: Technician"))
    folder = shipped_with(tmp_path, "roles", line, line[2:])
    (problem,) = problems_of(folder)  # not every role of every rule, nor title's locales
    assert problem.location.line == line_col(text, "technician:")[0]
    assert "nothing under it" in problem.message
    assert "indent" in (problem.hint or "")


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        ("  promotions:", "promotions:", "`promotions` is a key of `warranty:` on line 6"),
        ("classifications:", "  classifications:", "in line with `warranty:`"),
    ],
)
def test_a_key_at_the_wrong_depth_is_named_with_the_block_it_belongs_to(tmp_path, old, new, hint):
    (problem,) = problems_of(shipped_with(tmp_path, "warranty", old, new))
    assert problem.message.startswith("unknown key")
    assert hint in (problem.hint or "")


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("sla", *OVER_INDENTED),
        ("calendars", "    hours:\n", "  hours:\n"),
        ("calendars", "  tw-office:\n", "    tw-office:\n"),
        ("roles", "  team_lead:\n", "    team_lead:\n"),
        ("warranty", "      paid:", "        paid:"),
        ("penalties", "  summary: penalty_summary", "    summary: penalty_summary"),
        ("obligations", "    due: 0 days after", "      due: 0 days after"),
        ("schedule", "schedule:\n", "  schedule:\n"),  # its keys tallies:, obligations: too
    ],
)
def test_every_problem_of_a_wrong_indentation_has_a_hint(tmp_path, name, old, new):
    problems = problems_of(shipped_with(tmp_path, name, old, new))
    assert all(p.hint and p.hint.strip() and not p.hint.endswith(": ") for p in problems)
    assert len(problems) <= 2, "\n".join(map(str, problems))
