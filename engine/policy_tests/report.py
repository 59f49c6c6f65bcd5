"""`aftersales test`: read the cases, run them, print expected against got and the total."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import AftersalesError, ImportDataError, Problem
from engine.policy_tests.cases import TESTS_FOLDER, case_files, read_cases
from engine.policy_tests.pool import play
from engine.policy_tests.runner import Night, Outcome
from engine.run import load_checked_policy
from engine.settings import Settings


@dataclass
class Summary:
    """Every case's outcome, in file order."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many cases missed an expectation."""
        return sum(not o.passed for o in self.outcomes)

    @property
    def line(self) -> str:
        """The closing line: `N passed, M failed`."""
        return f"{len(self.outcomes) - self.failed} passed, {self.failed} failed"


class InvalidTests(AftersalesError):
    """A policy test file is not a valid case file, or its rows do not import."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        count = len(problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the policy tests"
        super().__init__("\n".join([head, *map(str, problems)]))


def run_policy_tests(settings: Settings, say: Callable[[str], None], jobs: int = 1) -> Summary:
    """Run the cases of `settings.rules`/tests, `jobs` processes at a time, saying each failure
    in the cases' order. Raises PolicyError when the policy is invalid, before anything runs,
    and InvalidTests (both exit 2) when a test file is."""
    # Checked once: an invalid policy is reported as itself, not once per case.
    policy, templates = load_checked_policy(settings)
    files = case_files(settings.rules)
    if not files:
        say(f"no policy tests: {settings.rules / TESTS_FOLDER} holds no *.yaml files")
    cases, problems = read_cases(files)
    if problems:
        raise InvalidTests(problems)
    summary = Summary()
    bad: list[Problem] = []
    night = Night(settings, policy, templates)
    for played in play(cases, night, files, jobs):
        if isinstance(played, ImportDataError):  # rows that do not import: the file is wrong
            bad += played.problems
            continue
        summary.outcomes.append(played)
        if not played.passed:
            say(failure_text(played))
    if bad:
        raise InvalidTests(bad)
    return summary


def failure_text(outcome: Outcome) -> str:
    """A failed case: its name, article and place, then each expectation missed with what the
    night gave instead."""
    case = outcome.case
    lines = [f"FAIL {case.location()}: {case.case.name} [{case.case.article}]"]
    for miss in outcome.misses:
        if miss.absent:
            lines.append(f"  {miss.location}: expected no {miss.expected}")
            lines += [f"      got: {g}" for g in miss.got]
            continue
        lines.append(f"  {miss.location}: expected {miss.expected}")
        lines += [f"      got: {g}" for g in miss.got] or ["      got: nothing like it"]
    return "\n".join(lines)
