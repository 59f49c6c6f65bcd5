"""Continuous operation at scale: go-live, 15-minute cycles, the morning's daily parts (by hand).

    .venv/bin/python bench/continuous_cycle.py                       # 10k and 100k, both databases
    .venv/bin/python bench/continuous_cycle.py --requests 10000 --db sqlite
    .venv/bin/python bench/continuous_cycle.py --requests 100000 1000000 --db postgresql

For each scale and database, in a scratch database (bench/scratch.py) built by
`aftersales init --demo` at T0 = 2026-11-23T18:00Z, every step by the command line in a child
process, its wall time counted from the process start and its peak RSS its own:

1. go-live: `aftersales run --as-of T0 --no-deliver` over the whole history, with the
   repository's policy and `defaults: effective_from:` T0's day, as a department going live
   would write it: the history is recorded without letters (`--no-go-live-day` letters it);
2. three 15-minute cycles: a delta (bench/upsert_delta.py's `build_delta`: 30 new calls, 150
   status changes, 5 complaints, closures in proportion) imported by
   `aftersales import DIR --upsert`, then `aftersales run --as-of T0+15min --no-deliver` (+30,
   +45); the run is timed, the import is not; median and max over the three;
3. the cycle ratio: the largest scale's median cycle / 100k's, when both are measured;
4. daily parts: the night's remaining 15-minute deltas imported (untimed, in process), then a
   run at the next local morning, 2026-11-24T08:00+08:00 (Shanghai and Taipei
   branches' digests and overdue summaries at 08:00, the company-wide obligations, tallies and
   KPI report at 06:00 and 07:00 in the ledger's Asia/Shanghai; Madrid's 08:00 comes 7 hours
   later and is not in it);
5. incremental vs full: before each cycle's run the database is copied (SQLite: the file, by
   SQLite's backup; PostgreSQL: CREATE DATABASE ... TEMPLATE), `aftersales run --full` runs on
   the copy at the same instant, and the two `findings` tables are compared: the set of
   (key, closed_at IS NULL), plus the difference in `notices` rows.

Run artifacts, reports and any .eml file go to a temporary folder (AFTERSALES_ARTIFACTS_DIR,
AFTERSALES_OUTBOX_DIR); the children run there, so the benchmark leaves nothing in the
repository. Prints each step as it goes, then a Markdown table, the targets and the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from scratch import PG_ADMIN_URL, run_child, scratch_database
from sqlalchemy import create_engine, func, make_url, select, text
from upsert_delta import AS_OF, build_delta, demo_command

from engine.db.importer import upsert_dir
from engine.db.models import Finding, Notice
from engine.db.session import connect

ROOT = Path(__file__).resolve().parents[1]
AFTERSALES = Path(sys.executable).with_name("aftersales")
T0 = AS_OF
CYCLES = 3
CYCLE = timedelta(minutes=15)
# The next local morning after T0 (02:00 in Shanghai): 08:00 in Shanghai and Taipei.
SHANGHAI = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI).astimezone(UTC)
MB = 1_000_000 / 2**20  # MiB per MB

# Targets: (limit, unit) per figure.
CYCLE_WALL_S = 3.0
CYCLE_PEAK_MB = 250
CYCLE_RATIO = 2.0
DAILY_WALL_S = 60.0
GO_LIVE_WALL_S = 180.0
PG_FACTOR = 1.5  # PostgreSQL's times may be this many times SQLite's targets
GO_LIVE_PEAK_MB = 500


@dataclass(frozen=True, slots=True)
class Timed:
    """One child process: wall seconds from its start, its own peak RSS, what it printed."""

    seconds: float
    peak_mib: float
    said: str


@dataclass(slots=True)
class Measure:
    """The figures of one scale on one database."""

    requests: int
    kind: str
    go_live: Timed | None = None
    cycles: list[Timed] = field(default_factory=list)
    daily: Timed | None = None
    differing: list[int] = field(default_factory=list)


class Commands:
    """The commands run, with the scratch paths and URLs written as placeholders."""

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}
        self.names: dict[str, str] = {}

    def note(self, command: list[str]) -> None:
        """Remember `command` once, its scratch parts replaced by their placeholders."""
        line = " ".join(command).replace(str(AFTERSALES), "aftersales")
        for value, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            line = line.replace(value, name)
        line = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+\+00:00", "<T>", line)
        self.seen.setdefault(line)


COMMANDS = Commands()


def go_live_policy(work: Path, day: date | None) -> Path:
    """The repository's policy, with `defaults: effective_from: day` (the go-live day) when
    `day` is given, in `work`/rules."""
    rules = work / "rules"
    shutil.copytree(ROOT / "rules", rules)
    if day is None:
        return rules
    given = [p for p in rules.glob("*.yaml") if re.search(r"^defaults:\n", p.read_text(), re.M)]
    if len(given) != 1:
        raise SystemExit(f"expected one policy file with a defaults: section, found {given}")
    text = given[0].read_text()
    given[0].write_text(text.replace("defaults:\n", f"defaults:\n  effective_from: {day}\n", 1))
    return rules


def _env(work: Path) -> dict[str, str]:
    """The children's environment: the policy in `work`/rules (go_live_policy), every file
    they write in `work`."""
    return {
        **os.environ,
        "AFTERSALES_RULES": str(work / "rules"),
        "AFTERSALES_TEMPLATES": str(ROOT / "templates" / "notices"),
        "AFTERSALES_ARTIFACTS_DIR": str(work / "runs"),
        "AFTERSALES_OUTBOX_DIR": str(work / "outbox"),
        "COLUMNS": "200",  # whole lines in --help
    }


def timed(command: list[str], work: Path) -> Timed:
    """Run `command` in a child process in `work`; exit on failure with what it printed."""
    COMMANDS.note(command)
    seconds, peak, said, code = run_child(command, cwd=work, env=_env(work))
    if code:
        raise SystemExit(f"{' '.join(command)} failed with exit {code}:\n{said}")
    return Timed(seconds, peak, said)


def _run(url: str, at: datetime, work: Path, *, full: bool = False) -> Timed:
    command = [str(AFTERSALES), "run", *(["--full"] if full else [])]
    return timed([*command, "--as-of", at.isoformat(), "--no-deliver", "--db", url], work)


def _summary(said: str) -> str:
    """The run's own summary line ("run ...: success; N new of M findings, ..."), the number
    of report files it wrote (overdue summaries, KPI, penalties: the daily parts) and where
    its time went, from its artifact: what the wall time has beyond `total` is process start."""
    lines = said.splitlines()
    summary = next((line for line in lines if line.startswith("run ")), said[-200:])
    reports = sum(line.startswith("report: ") for line in lines)
    artifact = next(line[len("artifact: ") :] for line in lines if line.startswith("artifact: "))
    timings = json.loads(Path(artifact).read_text("utf-8"))["timings"]
    steps = ("load_s", "evaluate_s", "record_s", "notices_s", "total_s")
    spent = ", ".join(f"{step[:-2]} {timings.get(step, 0):.2f}" for step in steps)
    return f"{summary}; {reports} report files; seconds: {spent}"


@contextmanager
def copy_of(kind: str, url: str, work: Path) -> Iterator[str]:
    """Yield the URL of a copy of the database at `url`, removed afterwards."""
    if kind == "sqlite":
        source = make_url(url).database
        assert source
        target = work / f"copy-{uuid.uuid4().hex[:8]}.db"
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)  # whole pages, the write-ahead log's included
        _settle()
        COMMANDS.names[f"sqlite:///{target}"] = "<copy URL>"
        try:
            yield f"sqlite:///{target}"
        finally:
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
        return
    name = f"aftersales_copy_{uuid.uuid4().hex[:10]}"
    source = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        conn.execute(text("CHECKPOINT"))  # the copy's pages, written now rather than mid-cycle
    _settle()
    copy = make_url(url).set(database=name).render_as_string(hide_password=False)
    COMMANDS.names[copy] = "<copy URL>"
    try:
        yield copy
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _settle() -> None:
    """Write the copy's gigabytes to disk before the timed run: left to the kernel, the
    flush lands in the cycle, which a real deployment (that copies nothing) would not pay."""
    os.sync()


def _findings(url: str) -> tuple[set[tuple[str, bool]], int]:
    """The findings as (key, open), and the number of notices rows."""
    engine = connect(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Finding.key, Finding.closed_at.is_(None))).all()
            notices = conn.scalar(select(func.count()).select_from(Notice)) or 0
    finally:
        engine.dispose()
    return {(key, bool(is_open)) for key, is_open in rows}, notices


def differing(incremental: str, full: str) -> tuple[int, str]:
    """How many findings differ between the two databases (plus the notices rows' difference),
    and in words."""
    inc_keys, inc_notices = _findings(incremental)
    full_keys, full_notices = _findings(full)
    only_inc, only_full = len(inc_keys - full_keys), len(full_keys - inc_keys)
    n = only_inc + only_full + abs(inc_notices - full_notices)
    return n, (
        f"{len(inc_keys):,} findings, {only_inc} only incremental, {only_full} only full; "
        f"notices {inc_notices:,} incremental, {full_notices:,} full"
    )


def _load(url: str, requests: int, work: Path) -> Timed:
    return timed(demo_command(url, requests, T0), work)


def _cycle(m: Measure, url: str, work: Path, n: int) -> None:
    start = T0 + (n - 1) * CYCLE
    at = start + CYCLE
    delta = work / f"delta-{n}"
    delta.mkdir()
    engine = connect(url)
    build_delta(engine, delta, start)
    engine.dispose()  # a PostgreSQL template must have no other session
    COMMANDS.names[str(delta)] = "<delta folder>"
    imported = timed([str(AFTERSALES), "import", str(delta), "--db", url, "--upsert"], work)
    label = f"{m.kind} {m.requests:,}: cycle {n} at {at:%H:%M}Z"
    print(f"{label}: import {imported.seconds:.2f} s; {' / '.join(imported.said.splitlines())}")
    with copy_of(m.kind, url, work) as copy:
        run = _run(url, at, work)
        _run(copy, at, work, full=True)
        count, words = differing(url, copy)
    m.differing.append(count)
    compared = f"\n{label}: incremental vs full: {count} differing ({words})"
    m.cycles.append(run)
    print(
        f"{label}: run {run.seconds:.2f} s, peak {run.peak_mib:.0f} MiB; {_summary(run.said)}"
        + compared
    )


def _rest_of_the_night(url: str, work: Path) -> int:
    """Import, untimed and in this process, the 15-minute deltas from the last cycle to the
    morning, so the daily parts come after the night's activity; how many."""
    engine = connect(url)
    start, count = T0 + CYCLES * CYCLE, 0
    while start + CYCLE <= MORNING:
        folder = work / f"night-{count}"
        folder.mkdir()
        build_delta(engine, folder, start)
        upsert_dir(engine, folder)
        start, count = start + CYCLE, count + 1
    engine.dispose()
    return count


def measure(kind: str, requests: int, go_live_day: date | None) -> Measure:
    """Go-live, the cycles and the morning on a fresh demo database of `kind`."""
    m = Measure(requests, kind)
    with scratch_database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        go_live_policy(work, go_live_day)
        COMMANDS.names[url] = "<db URL>"
        COMMANDS.names[str(work)] = "<tmp>"
        loaded = _load(url, requests, work)
        print(f"{kind} {requests:,}: demo loaded in {loaded.seconds:.1f} s")
        m.go_live = _run(url, T0, work)
        print(
            f"{kind} {requests:,}: go-live {m.go_live.seconds:.2f} s, "
            f"peak {m.go_live.peak_mib:.0f} MiB; {_summary(m.go_live.said)}"
        )
        for n in range(1, CYCLES + 1):
            _cycle(m, url, work, n)
        windows = _rest_of_the_night(url, work)
        print(f"{kind} {requests:,}: {windows} more 15-minute deltas imported up to the morning")
        m.daily = _run(url, MORNING, work)
        print(
            f"{kind} {requests:,}: daily parts at {MORNING.astimezone(SHANGHAI).isoformat()} "
            f"{m.daily.seconds:.2f} s, peak {m.daily.peak_mib:.0f} MiB; {_summary(m.daily.said)}"
        )
    return m


def _scale(requests: int) -> str:
    if requests % 1_000_000 == 0:
        return f"{requests // 1_000_000}M"
    return f"{requests // 1000}k" if requests % 1000 == 0 else f"{requests:,}"


def _s(seconds: float, limit: float) -> str:
    return f"{seconds:.2f} s" + (" ✗" if seconds > limit else "")


def _mib(mib: float, limit_mb: float) -> str:
    return f"{mib:.0f} MiB" + (" ✗" if mib > limit_mb * MB else "")


def _row(m: Measure) -> str:
    assert m.go_live is not None and m.daily is not None
    walls = [c.seconds for c in m.cycles]
    slack = 1.0 if m.kind == "sqlite" else PG_FACTOR
    cells = [
        _scale(m.requests),
        "SQLite" if m.kind == "sqlite" else "PostgreSQL",
        _s(m.go_live.seconds, GO_LIVE_WALL_S * slack),
        _mib(m.go_live.peak_mib, GO_LIVE_PEAK_MB),
        _s(statistics.median(walls), CYCLE_WALL_S * slack),
        _s(max(walls), CYCLE_WALL_S * slack),
        _mib(max(c.peak_mib for c in m.cycles), CYCLE_PEAK_MB),
        _s(m.daily.seconds, DAILY_WALL_S * slack),
        f"{m.daily.peak_mib:.0f} MiB",
        str(sum(m.differing)),
    ]
    return "| " + " | ".join(cells) + " |"


def report(measures: list[Measure]) -> None:
    """The table, the cycle ratio, the targets and the commands."""
    print(
        "\n| scale | database | go-live wall | go-live peak | cycle median | cycle max "
        "| cycle peak | daily parts wall | daily parts peak | differing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in measures:
        print(_row(m))
    print(
        f"\ntargets (✗: missed): cycle ≤ {CYCLE_WALL_S:g} s wall and ≤ {CYCLE_PEAK_MB} MB "
        f"({CYCLE_PEAK_MB * MB:.0f} MiB) peak; cycle at the largest scale / cycle at 100k ≤ "
        f"{CYCLE_RATIO:g}; daily parts ≤ {DAILY_WALL_S:g} s; go-live ≤ {GO_LIVE_WALL_S:g} s and "
        f"≤ {GO_LIVE_PEAK_MB} MB ({GO_LIVE_PEAK_MB * MB:.0f} MiB). Cycle wall: the run alone, "
        "process start included, median and max of "
        f"{CYCLES}; peaks: each process's own. PostgreSQL's times may be {PG_FACTOR:g}× these."
    )
    largest = max(m.requests for m in measures)
    for kind in ("sqlite", "postgresql"):
        by_scale = {m.requests: m for m in measures if m.kind == kind}
        if largest > 100_000 and largest in by_scale and 100_000 in by_scale:
            ratio = statistics.median(c.seconds for c in by_scale[largest].cycles) / (
                statistics.median(c.seconds for c in by_scale[100_000].cycles)
            )
            mark = " ✗" if ratio > CYCLE_RATIO else ""
            print(f"cycle ratio {_scale(largest)}/100k, {kind}: {ratio:.2f}{mark}")
    total = sum(sum(m.differing) for m in measures)
    print(f"incremental vs full: {total} differing (0 expected)")
    print("\ncommands (children run in <tmp>, with AFTERSALES_RULES=<tmp>/rules, the")
    print("repository's policy with the go-live day unless --no-go-live-day,")
    print("AFTERSALES_TEMPLATES the repository's, AFTERSALES_ARTIFACTS_DIR=<tmp>/runs and")
    print("AFTERSALES_OUTBOX_DIR=<tmp>/outbox):")
    for line in COMMANDS.seen:
        print(f"    {line}")
    print(f"  <T>: {T0.isoformat()} (go-live), then + 15, 30, 45 min, and {MORNING.isoformat()}")


def main() -> None:
    """Parse the options, then measure every scale on every database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--no-go-live-day",
        action="store_true",
        help="run the policy as shipped, without effective_from: the go-live letters the "
        "whole history",
    )
    args = parser.parse_args()
    day = None if args.no_go_live_day else T0.date()
    print(f"policy: the repository's, {f'effective_from: {day}' if day else 'as shipped'}")
    measures = [
        measure(kind, requests, day)
        for requests in args.requests
        for kind in ("sqlite", "postgresql")
        if args.db in (kind, "both")
    ]
    report(measures)


if __name__ == "__main__":
    main()
