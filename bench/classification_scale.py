"""Time the classification rules on 1,000,000 repair calls (run by hand, not a test).

    .venv/bin/python bench/classification_scale.py                    # both databases
    .venv/bin/python bench/classification_scale.py --db sqlite --keep /tmp/bench.db

Builds the demo data set (engine.db.demo) at the size that gives the requested number of
repair calls, then runs every classification rule of the shipped policy, plus the same rule
over every call (no 90-day window), the way a night does: `classification.judge`, one
statement, rows streamed out to become findings. A `before_cursor_execute` listener counts
the statements each rule sends, to show that the decision is set-based (one statement per
rule) and not a Python loop over rows. `decide all` counts the decisions of every call by
outcome, in one statement too. PostgreSQL uses a scratch database on AFTERSALES_TEST_PG's
server, dropped afterwards; `--keep FILE` and `--keep-pg NAME` keep (and reuse) the data.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, text

from engine.db.demo import load_demo, scale_for_requests
from engine.db.models import ServiceRequest
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.expr import parse
from engine.notices.templates import NoticeTemplates
from engine.policy import CompiledRule, load_policy
from engine.rules import classification

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "AFTERSALES_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
EVERY_CALL = "status != 'cancelled'"
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class StatementCounter:
    """Counts the statements an Engine sends to the database."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLite's BEGIN (engine.db.session) is transaction control, not work.
        if not statement.lstrip().upper().startswith(_CONTROL):
            self.count += 1

    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Yields a one-item list that holds the statements sent inside the block."""
        out = [0]
        before = self.count
        try:
            yield out
        finally:
            out[0] = self.count - before


def _rules() -> list[CompiledRule[Any]]:
    policy = load_policy(ROOT / "rules", NoticeTemplates(ROOT / "templates" / "notices"))
    rules = list(policy.classifications)
    for item in policy.classifications:
        every = item.rule.model_copy(update={"id": f"{item.rule.id}-all", "when": EVERY_CALL})
        rules.append(replace(item, rule=every, condition=parse(EVERY_CALL)))
    return rules


def bench(label: str, url: str, requests: int) -> None:
    """Load the data if needed, then time each classification rule on it."""
    engine = connect(url)
    upgrade(engine)
    with engine.connect() as conn:
        calls = conn.scalar(select(func.count()).select_from(ServiceRequest))
    if not calls:
        started = time.perf_counter()
        load_demo(engine, AS_OF, scale=scale_for_requests(requests))
        print(f"{label}: demo data loaded in {time.perf_counter() - started:.1f} s")
        with engine.connect() as conn:
            calls = conn.scalar(select(func.count()).select_from(ServiceRequest))
            if engine.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
                conn.commit()
    print(f"{label}: {calls:,} service requests")
    counter = StatementCounter(engine)
    for item in _rules():
        with engine.connect() as conn, counter.counting() as sent:
            started = time.perf_counter()
            findings = list(classification.judge(conn, item, {}, AS_OF)[0])
            seconds = time.perf_counter() - started
        states: dict[str, int] = {}
        for finding in findings:
            states[finding.state] = states.get(finding.state, 0) + 1
        print(
            f"  {item.rule.id:24} judge      {seconds:7.2f} s  {sent[0]} statement(s)  "
            f"findings {states or 0}"
        )
        decided = classification.decisions(item, AS_OF).subquery()
        outcome = decided.c[classification.DECISION]
        tally = select(outcome, func.count()).group_by(outcome).order_by(outcome)
        with engine.connect() as conn, counter.counting() as sent:
            started = time.perf_counter()
            by_outcome = {k: n for k, n in conn.execute(tally)}
            seconds = time.perf_counter() - started
        total = sum(by_outcome.values())
        print(
            f"  {item.rule.id:24} decide all {seconds:7.2f} s  {sent[0]} statement(s)  "
            f"{total:,} calls {by_outcome}"
        )
    engine.dispose()


def main() -> None:
    """Parse the options and time each database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--keep", type=Path, help="SQLite file to build once and reuse")
    parser.add_argument("--keep-pg", help="PostgreSQL database to build once and reuse")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        if args.keep:
            bench("sqlite", f"sqlite:///{args.keep}", args.requests)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                bench("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.requests)
    if args.db in ("postgresql", "both"):
        name = args.keep_pg or f"aftersales_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            bench("postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, args.requests)
        finally:
            if not args.keep_pg:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
