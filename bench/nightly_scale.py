"""The nightly run at scale, against the floor and the naive way (run by hand, not a test).

    .venv/bin/python bench/nightly_scale.py                          # 10k, 100k, 1M; both databases
    .venv/bin/python bench/nightly_scale.py --requests 100000 --db sqlite

For each scale and database: builds the demo data set (repair calls with complaints, contracts,
units and hotline calls in proportion) in a scratch database, then in a fresh process runs the
full shipped policy twice at the same instant, and in a third process the naive evaluation.
Prints per step wall time, rows scanned and peak memory, and three ratios from the same data:

    engine/floor   evaluation time / the time to read once, with plain SELECTs, every column
                   the night's SQL names on the service tables (night/floor: the whole night)
    naive/engine   bench/naive.py / the engine, over the families naive covers
    2nd/1st        a second night with no data change / the first night

Each process reports its own peak RSS, so the night's memory excludes the data load; the
night's figure is taken after the first night, before the floor read and the second night.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from naive import NAIVE_FAMILIES, naive_keys
from scratch import scratch_database
from sqlalchemy import Engine, event, select, text

from engine.db.demo import load_demo, scale_for_requests
from engine.db.models import SERVICE_TABLES
from engine.db.models import Finding as FindingRow
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.run import load_checked_policy, run_night
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
_QUALIFIED = re.compile(r'"?\b([a-z_]+)"?\."?([a-z_]+)\b"?')
_SERVICE = {m.__tablename__: m.__table__ for m in SERVICE_TABLES}


def _settings(url: str, folder: Path) -> Settings:
    return Settings(
        db=url,
        rules=ROOT / "rules",
        templates=ROOT / "templates" / "notices",
        artifacts_dir=folder / "runs",
        outbox_dir=folder / "outbox",
    )


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(url: str, requests: int) -> dict[str, Any]:
    engine = connect(url)
    upgrade(engine)
    started = time.perf_counter()
    counts = load_demo(engine, AS_OF, scale=scale_for_requests(requests))
    return {"seconds": time.perf_counter() - started, "counts": counts, "peak_mib": _peak_mib()}


def _columns_named(statements: list[str]) -> dict[str, set[str]]:
    """The service-table columns the statements name (table.column)."""
    named: dict[str, set[str]] = defaultdict(set)
    for statement in statements:
        for table, column in _QUALIFIED.findall(statement):
            if table in _SERVICE and column in _SERVICE[table].c:
                named[table].add(column)
    return named


def _read_once(engine: Engine, columns: dict[str, set[str]]) -> tuple[float, int]:
    """Seconds and rows to read `columns` of each table once, every row consumed."""
    rows = 0
    started = time.perf_counter()
    with engine.connect() as conn:
        for table, names in columns.items():
            stmt = select(*(_SERVICE[table].c[name] for name in sorted(names)))
            # Through the driver: the floor is the database's reading, not our type conversion.
            # Streamed: psycopg would otherwise hold a whole table in this process.
            cursor = conn.execution_options(stream_results=True).exec_driver_sql(
                str(stmt.compile(conn))
            )
            while chunk := cursor.fetchmany(10_000):
                rows += len(chunk)
    return time.perf_counter() - started, rows


def _night(url: str) -> dict[str, Any]:
    engine = connect(url)
    everything = {name: {c.name for c in table.c} for name, table in _SERVICE.items()}
    _read_once(engine, everything)  # both the engine and the floor start from a warm cache
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with tempfile.TemporaryDirectory() as folder:
        settings = _settings(url, Path(folder))
        event.listen(engine, "before_cursor_execute", seen)
        first = run_night(settings, engine, as_of=AS_OF)
        event.remove(engine, "before_cursor_execute", seen)
        # Only the figures are kept: the first night's findings must not weigh on the second.
        timings, counts, peak = first.timings, first.counts, _peak_mib()
        del first
        floor_s, rows = _read_once(engine, _columns_named(statements))
        second = run_night(settings, engine, as_of=AS_OF).timings
    return {
        "first": timings,
        "second": second,
        "counts": counts,
        "floor_s": floor_s,
        "rows_scanned": rows,
        "peak_mib": peak,
        "peak_all_mib": _peak_mib(),
    }


def _naive(url: str) -> dict[str, Any]:
    engine = connect(url)
    policy, _ = load_checked_policy(_settings(url, ROOT))
    started = time.perf_counter()
    found = naive_keys(engine, policy, AS_OF)
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        recorded = conn.execute(
            select(FindingRow.rule_id, FindingRow.key).where(FindingRow.family.in_(NAIVE_FAMILIES))
        ).all()
    engine_keys: dict[str, set[str]] = defaultdict(set)
    for rule_id, key in recorded:
        engine_keys[rule_id].add(key)
    differ = sum(len(keys ^ engine_keys[rule]) for rule, keys in found.items())
    return {"seconds": seconds, "findings": sum(map(len, found.values())), "differ": differ}


def _child(step: str, url: str, requests: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, "--url", url, "--requests", str(requests)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode:
        raise SystemExit(f"{step} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(kind: str, requests: int, naive: bool) -> dict[str, Any]:
    with scratch_database(kind) as url:
        build = _child("build", url, requests)
        night = _child("night", url, requests)
        night["build"] = build
        night["naive"] = _child("naive", url, requests) if naive else None
        if kind == "postgresql":
            with connect(url).connect() as conn:
                night["db_mib"] = conn.scalar(text("SELECT pg_database_size(current_database())"))
    return night


def _report(kind: str, requests: int, m: dict[str, Any]) -> None:
    first, second = m["first"], m["second"]
    families = {k: v for k, v in first.items() if k.startswith("evaluate_") and k != "evaluate_s"}
    covered = sum(first.get(f"evaluate_{f}_s", 0.0) for f in NAIVE_FAMILIES)
    print(f"\n== {kind}, {m['build']['counts']['service_requests']:,} repair calls ==")
    print(f"  build       {m['build']['seconds']:8.1f} s (peak {m['build']['peak_mib']:.0f} MiB)")
    # notices_s includes metrics_s: the KPIs are measured and reported in the notices step.
    steps = ("load_s", "evaluate_s", *families, "record_s", "metrics_s", "notices_s", "total_s")
    for step in steps:
        print(
            f"  {step[:-2]:<30} {first.get(step, 0.0):8.2f} s   2nd {second.get(step, 0.0):8.2f} s"
        )
    print(
        f"  findings {m['counts']['findings_new']:,}, notices {m['counts']['notices_queued']:,}; "
        f"rows scanned by the floor {m['rows_scanned']:,} in {m['floor_s']:.2f} s; "
        f"peak RSS of the first night {m['peak_mib']:.0f} MiB "
        f"(with the floor and the second night {m['peak_all_mib']:.0f} MiB)"
    )
    print(f"  engine/floor  {first['evaluate_s'] / m['floor_s']:8.2f}")
    print(f"  night/floor   {first['total_s'] / m['floor_s']:8.2f}")
    print(f"  2nd/1st       {second['total_s'] / first['total_s']:8.2f}")
    if m["naive"]:
        naive = m["naive"]
        print(
            f"  naive/engine  {naive['seconds'] / covered:8.1f}   (naive {naive['seconds']:.1f} s "
            f"vs {covered:.2f} s for {' + '.join(NAIVE_FAMILIES)}; "
            f"{naive['findings']:,} findings, {naive['differ']} differ)"
        )


def main() -> None:
    """Parse the options, then measure every scale on every database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", default="10000,100000,1000000")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive evaluation")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "build":
            print(json.dumps(_build(args.url, int(args.requests)), default=str))
        else:
            step = _night if args.child == "night" else _naive
            print(json.dumps(step(args.url), default=str))
        return
    for requests in (int(n) for n in args.requests.split(",")):
        for kind in args.db.split(","):
            _report(kind, requests, _measure(kind, requests, not args.no_naive))


if __name__ == "__main__":
    main()
