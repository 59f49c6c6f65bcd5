"""The cases played one after another, or spread over worker processes (`--jobs`).

Either way each outcome comes back in the cases' order, so the report reads the same. A worker
loads the policy and reads the case files itself (a policy does not pickle; the parent has
checked both already) and plays its cases in a database file of its own, reusing its Engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from engine.errors import ImportDataError, Problem
from engine.policy_tests.cases import LocatedCase, read_cases
from engine.policy_tests.runner import (
    CaseDatabase,
    Miss,
    Night,
    Outcome,
    run_case,
    template_database,
)
from engine.run import load_checked_policy
from engine.settings import Settings

Played = Outcome | ImportDataError
"""A case's outcome, or the error of its rows that did not import (with the case's location)."""


def default_jobs() -> int:
    """One worker per CPU."""
    return os.cpu_count() or 1


def play(cases: list[LocatedCase], night: Night, files: list[Path], jobs: int) -> Iterator[Played]:
    """Each case of `cases` (read from `files`) played, in order; `jobs` processes at a time,
    in this process when 1."""
    workers = min(jobs, len(cases))
    with template_database() as template:
        if workers <= 1:
            database = CaseDatabase(template, "case.db")
            try:
                for case in cases:
                    try:
                        yield run_case(case, night, database)
                    except ImportDataError as exc:
                        yield exc
            finally:
                database.close()
            return
        start = (night.settings, files, template)
        with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=start) as pool:
            try:
                # map hands back the results in the order given, whichever worker finishes first.
                for case, (misses, problems) in zip(
                    cases, pool.map(_play, range(len(cases))), strict=True
                ):
                    yield ImportDataError(problems) if problems else Outcome(case, misses)
            finally:
                pool.shutdown(cancel_futures=True)  # a case that raised: the rest need not run


_WORKER: dict[str, tuple[list[LocatedCase], Night, CaseDatabase]] = {}
"""A worker process's cases, night and database, set once when it starts."""


def _start_worker(settings: Settings, files: list[Path], template: Path) -> None:
    policy, templates = load_checked_policy(settings)
    cases, _ = read_cases(files)
    database = CaseDatabase(template, f"case-{os.getpid()}.db")
    _WORKER["this"] = (cases, Night(settings, policy, templates), database)


def _play(index: int) -> tuple[list[Miss], list[Problem]]:
    """The case's misses, or the problems of its rows that did not import: plain data, as
    they pickle back to the parent."""
    cases, night, database = _WORKER["this"]
    try:
        return run_case(cases[index], night, database).misses, []
    except ImportDataError as exc:
        return [], exc.problems
