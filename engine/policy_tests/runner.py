"""Play each case through the engine's real night, in a throwaway SQLite database.

The schema is built once (Alembic) into a template file that each case copies: a case costs
its import and its runs, not a migration. Cases run one after another in one process, or
spread over worker processes (`pool.play`, `aftersales test --jobs`), each with a file of its
own. SQLite by design: a case is a few rows, and the rules compile to SQL that both databases
run alike (tests/integration/test_expr_sql_agrees.py).
Nothing is delivered: the letters a case expects are the notices the night queued.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine.db.importer import import_dir
from engine.db.models import Finding, KpiValue, LedgerEntry, Notice
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.errors import ImportDataError, Location, Problem
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy
from engine.policy_tests.cases import Expectations, LocatedCase
from engine.policy_tests.world import rows_of, write_csv
from engine.run import run_night
from engine.settings import Settings


@dataclass(frozen=True)
class Miss:
    """One expectation not met: where it is written, what was wanted, what the night gave."""

    location: Location
    expected: str
    got: list[str]
    absent: bool = False  # an `absent:` expectation that was found


@dataclass
class Outcome:
    """A case's result: passed when nothing was missed."""

    case: LocatedCase
    misses: list[Miss] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No expectation missed."""
        return not self.misses


@contextmanager
def template_database() -> Iterator[Path]:
    """A SQLite file with the current schema, for the cases to copy; removed afterwards with
    the files the cases ran in, which lie beside it (`CaseDatabase`)."""
    with tempfile.TemporaryDirectory(prefix="aftersales-tests-") as folder:
        path = Path(folder) / "template.db"
        engine = connect(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # the last connection's close folds the WAL into the file
        yield path


class CaseDatabase:
    """The one file a process runs its cases in, copied afresh from the schema-only template
    before each: a case sees nothing of the one before. The file keeps its path, so one Engine
    serves every case, and with it SQLAlchemy's compiled-statement cache, which is per Engine
    (its key holds the dialect): a new Engine per case compiled every statement again."""

    def __init__(self, template: Path, name: str):
        self.template = template
        self.path = template.with_name(name)
        self.engine = connect(f"sqlite:///{self.path}")

    def fresh(self) -> Engine:
        """The Engine, on a new copy of the template (no connection of the last case open)."""
        self.engine.dispose()  # closing the last connection checkpoints and removes the WAL
        for leftover in (self.path, *(Path(f"{self.path}{s}") for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(self.template, self.path)
        return self.engine

    def close(self) -> None:
        """Close the connections of the last case."""
        self.engine.dispose()


@dataclass(frozen=True)
class Night:
    """What every case's nights share: the settings, and the policy and templates checked once."""

    settings: Settings
    policy: Policy
    templates: NoticeTemplates


def run_case(case: LocatedCase, night: Night, database: CaseDatabase) -> Outcome:
    """Import the case's rows into a fresh copy of the template, run a night at each instant,
    compare. Raises ImportDataError (with the case's location) when its rows do not import."""
    with tempfile.TemporaryDirectory(prefix="aftersales-case-") as folder:
        work = Path(folder)
        engine = database.fresh()
        _load(engine, case, work / "data")
        here = night.settings.model_copy(
            update={
                "db": f"sqlite:///{database.path}",
                "artifacts_dir": work / "runs",
                "outbox_dir": work / "outbox",
            }
        )
        failed: list[str] = []
        for instant in case.case.instants:
            result = run_night(
                here, engine, as_of=instant, policy=night.policy, templates=night.templates
            )
            failed += [f"{r.rule_id}: {r.error}" for r in result.rules if r.error]
        # A rule that could not be judged is a failure even when the expectations hold.
        broken = [Miss(case.location(), "every rule judged", failed)] if failed else []
        return Outcome(case, broken + _compare(case, engine))


def _load(engine: Engine, case: LocatedCase, folder: Path) -> None:
    """Import the world and the case's rows with `aftersales import`'s own reader."""
    folder.mkdir()
    tables = rows_of(case)
    write_csv(folder, tables)
    try:
        import_dir(engine, folder)
    except ImportDataError as exc:
        raise ImportDataError([_at_case_row(case, tables, p) for p in exc.problems]) from None


def _at_case_row(case: LocatedCase, tables: dict[str, Any], problem: Problem) -> Problem:
    """An import problem told at the case row it came from (CSV line 2 is the first row)."""
    table = Path(problem.location.file).stem
    rows = tables.get(table, [])
    line = (problem.location.line or 0) - 2
    origin = rows[line][1] if 0 <= line < len(rows) else None
    where = case.location("given", table, origin) if origin is not None else case.location("given")
    return Problem(f"{table}: {problem.message}", where, problem.hint)


def _compare(case: LocatedCase, engine: Engine) -> list[Miss]:
    with engine.connect() as conn:
        findings = [_finding(r) for r in conn.execute(select(Finding)).mappings()]
        letters = [_letter(r) for r in conn.execute(select(Notice)).mappings()]
        ledger = [_entry(r) for r in conn.execute(select(LedgerEntry)).mappings()]
        kpis = [_kpi(r) for r in conn.execute(select(KpiValue)).mappings()]
    got = {"findings": findings, "letters": letters, "ledger": ledger, "kpis": kpis}
    return _check(case, "expect", case.case.expect, got) + _check(
        case, "absent", case.case.absent, got
    )


def _check(
    case: LocatedCase, part: str, wanted: Expectations, got: dict[str, list[dict[str, Any]]]
) -> list[Miss]:
    """Each expectation of `part` against what the night recorded: under `expect:` one must
    match, under `absent:` none may."""
    misses = []
    for kind in _NOUN:
        for index, expectation in enumerate(getattr(wanted, kind)):
            keys = expectation.model_dump(exclude_none=True)
            matched = [g for g in got[kind] if _matches(keys, g)]
            if bool(matched) == (part == "expect"):
                continue
            shown = matched if part == "absent" else _nearest(keys, got[kind])
            # Instants are shown at the offset the case wrote them in, so they compare at a glance.
            zone = next((v.tzinfo for v in keys.values() if isinstance(v, datetime)), None)
            misses.append(
                Miss(
                    case.location(part, kind, index),
                    f"{_NOUN[kind]} {_show(keys, zone)}",
                    [_show(_relevant(g, keys), zone) for g in shown],
                    absent=part == "absent",
                )
            )
    return misses


_NOUN = {"findings": "finding", "letters": "letter", "ledger": "ledger entry", "kpis": "KPI"}
_IDENTITY = (
    *("rule", "entity", "id", "state", "occurrence", "template", "to", "party", "amount"),
    *("metric", "period", "scope", "value"),
)


def _relevant(got: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    """Of a row the night gave, what the expectation names and what identifies it."""
    return {k: v for k, v in got.items() if k in keys or (k in _IDENTITY and v is not None)}


def _matches(keys: dict[str, Any], got: dict[str, Any]) -> bool:
    for key, value in keys.items():
        have = got.get(key)
        if isinstance(value, list):
            if sorted(value) != sorted(have or []):
                return False
        elif isinstance(value, datetime):
            if have is None or have != value:
                return False
        elif isinstance(value, Decimal):  # to the precision written: 66.67 matches 66.666667
            if have is None or Decimal(str(have)).quantize(value) != value:
                return False
        elif str(value) != str(have):
            return False
    return True


def _nearest(keys: dict[str, Any], got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the night gave that is closest to an expectation not met: same rule (or template)
    first, so the reader sees the state or time that differed; else nothing of that rule."""
    for key in ("rule", "metric", "template", "entity"):
        if key in keys:
            return [g for g in got if g.get(key) == keys[key]][:5]
    return got[:5]


def _show(values: dict[str, Any], zone: Any) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, datetime):
            value = value.astimezone(zone or UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, list):
            value = "[" + ", ".join(map(str, sorted(value))) + "]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _finding(row: Any) -> dict[str, Any]:
    return dict(
        rule=row.rule_id, entity=row.entity, id=row.entity_id, state=row.state,
        occurrence=row.occurrence, due=row.due_at,
        recipients=list(row.recipients or []), amount=row.amount, open=row.closed_at is None,
    )  # fmt: skip


def _letter(row: Any) -> dict[str, Any]:
    return dict(
        template=row.template, to=row.recipient_role, address=row.recipient_address,
        locale=row.locale, rule=row.finding_key.split("|", 1)[0],
    )  # fmt: skip


def _entry(row: Any) -> dict[str, Any]:
    return dict(
        rule=row.rule_id, party=row.party_id, amount=row.amount, currency=row.currency,
        period=row.period,
    )  # fmt: skip


def _kpi(row: Any) -> dict[str, Any]:
    return dict(
        metric=row.metric_id, period=row.period, scope=row.scope, party=row.party_id,
        value=row.value,
    )  # fmt: skip
