"""The policy test file: its shape (pydantic), read with every value's file and line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from engine.db.models import SERVICE_TABLES
from engine.errors import Location, Problem
from engine.policy.source import Path_, SourceFile, read_policy_file

TESTS_FOLDER = "tests"
"""Beside the policy: `rules/tests/*.yaml`. The loader reads `rules/*.yaml` only, so these are
never taken for policy, and the policy's version hash does not change when a test does."""

TABLE_NAMES = tuple(model.__tablename__ for model in SERVICE_TABLES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindingExpected(_Strict):
    """A finding: every key given must match; those left out are not checked."""

    rule: str | None = None
    entity: str | None = None
    id: int | str | None = Field(None, description="The entity's id")
    state: str | None = Field(None, description="due, warning, breach, escalation:1, charged, ...")
    occurrence: Annotated[str, BeforeValidator(str)] | None = Field(
        None, description="Which occurrence: a classification's category, a reminder's date"
    )
    due: datetime | None = Field(None, description="The instant it fell due")
    recipients: list[str] | None = Field(None, description="Roles notified, in any order")
    amount: Decimal | None = None
    open: bool | None = Field(None, description="Still open after the last run")


class LetterExpected(_Strict):
    """A notice in the outbox: its template and who it goes to."""

    template: str | None = None
    to: str | None = Field(None, description="The recipient's role, or customer")
    address: str | None = Field(None, description="The recipient's email address")
    locale: str | None = None
    rule: str | None = Field(None, description="The rule whose finding caused it")


class LedgerExpected(_Strict):
    """An entry booked to the ledger: signed amount (penalties negative)."""

    rule: str | None = None
    party: int | None = Field(None, description="The staff id fined or rewarded")
    amount: Decimal | None = None
    currency: str | None = None
    period: str | None = Field(None, description="2026-10, or 2026-Q4")


class KpiExpected(_Strict):
    """A KPI value of one month, for a branch or a person (`aftersales report kpi`)."""

    metric: str | None = None
    period: str | None = Field(None, description="The month: 2026-10")
    scope: str | None = Field(None, description="branch, or staff")
    party: int | None = Field(None, description="The branch id, or the staff id")
    value: Decimal | None = Field(None, description="A ratio (0.5 for 50%), or per its scale")


class Expectations(_Strict):
    """What must be found (under `expect:`) or must not be (under `absent:`)."""

    findings: list[FindingExpected] = []
    letters: list[LetterExpected] = []
    ledger: list[LedgerExpected] = []
    kpis: list[KpiExpected] = []


class Case(_Strict):
    """One policy test: rows given, instants run, results expected."""

    name: str
    article: str = Field(description="The regulation article the case pins, e.g. '003 1.1.1.2'")
    given: dict[str, list[dict[str, Any]]] = {}
    at: datetime | None = Field(None, description="One run at this instant")
    runs: list[datetime] | None = Field(None, description="Runs at these instants, in order")
    expect: Expectations = Expectations()
    absent: Expectations = Expectations()

    @model_validator(mode="after")
    def _one_timeline(self) -> Case:
        if (self.at is None) == (self.runs is None):
            raise ValueError("give either `at:` (one instant) or `runs:` (a list of instants)")
        for when in self.instants:
            if when.tzinfo is None:
                raise ValueError(f"{when.isoformat()} has no offset; add Z or +08:00")
        if self.instants != sorted(self.instants):  # a night never runs before the last one
            raise ValueError("list the runs in time order")
        return self

    @property
    def instants(self) -> list[datetime]:
        """The instants the case runs at, in order."""
        return [self.at] if self.at is not None else list(self.runs or [])


class CaseFile(_Strict):
    """A file of `rules/tests/`: a list of cases."""

    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class LocatedCase:
    """A case with its file, so its results can say where it and each expectation stand."""

    case: Case
    source: SourceFile
    index: int

    def location(self, *where: str | int) -> Location:
        """Where a part of the case stands: ("expect", "findings", 0), say."""
        return self.source.location(("cases", self.index, *where))


def case_files(rules: Path) -> list[Path]:
    """The policy's test files, in name order."""
    folder = rules / TESTS_FOLDER
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def read_cases(files: list[Path]) -> tuple[list[LocatedCase], list[Problem]]:
    """Every case of `files`, and every problem found in them (all files are read)."""
    cases: list[LocatedCase] = []
    problems: list[Problem] = []
    for path in files:
        source = read_policy_file(path, problems)
        if source is None:
            continue
        try:
            parsed = CaseFile.model_validate(source.data)
        except ValidationError as exc:
            problems += [_problem(source, error) for error in exc.errors()]
            continue
        for index, case in enumerate(parsed.cases):
            unknown = [t for t in case.given if t not in TABLE_NAMES]
            problems += [
                Problem(
                    f"unknown table {table!r}",
                    source.location(("cases", index, "given", table), key=True),
                    f"tables: {', '.join(TABLE_NAMES)}",
                )
                for table in unknown
            ]
            cases.append(LocatedCase(case, source, index))
    return cases, problems


def _problem(source: SourceFile, error: Any) -> Problem:
    where: Path_ = tuple(p for p in error["loc"] if isinstance(p, str | int))
    if error["type"] == "extra_forbidden":
        return Problem(f"unknown key {where[-1]!r}", source.location(where, key=True))
    if error["type"] == "missing":
        return Problem(f"missing required key {where[-1]!r}", source.location(where[:-1]))
    message = str(error["msg"]).removeprefix("Value error, ")
    return Problem(message, source.location(where))
