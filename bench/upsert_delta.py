"""Time `aftersales import DIR --upsert` of a 15-minute delta into a demo database (by hand).

    .venv/bin/python bench/upsert_delta.py --requests 100000 --db sqlite
    .venv/bin/python bench/upsert_delta.py --requests 1000000 --db both

The delta is what 15 minutes bring (`build_delta`, shared with bench/continuous_cycle.py): 30 new
calls with their first status change, 120 status changes on open calls, one in six of them a
closure (the row updated and a status change), so 150 status changes in all, 5 complaints and
30 hotline calls. It is imported twice, each time by the command line in a child process
(start included): the first import writes it, the second finds everything already there.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scratch import run_child, scratch_database
from sqlalchemy import Engine, select

from engine.db.demo import scale_for_requests
from engine.db.models import ServiceRequest
from engine.db.session import connect

AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
_CLOSED = ("completed", "collected", "cancelled")
_AFTERSALES = Path(sys.executable).with_name("aftersales")


def _csv(folder: Path, table: str, header: list[str], rows: list[list[object]]) -> None:
    with (folder / f"{table}.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)


_CALL_COLUMNS = ("id", "number", "branch_id", "customer_id", "unit_id", "kind", "region")
# What 15 minutes bring; closures are a share of the calls whose status changes.
NEW_CALLS = 30
CHANGED_CALLS = 120
CLOSED_SHARE = 6  # one changed call in six is closed
COMPLAINTS = 5
HOTLINE_CALLS = 30


def build_delta(engine: Engine, folder: Path, start: datetime = AS_OF) -> None:
    """Write 15 minutes of activity from `start` into `folder`, on calls the database holds.

    Every instant falls in [start, start + 15 min); numbers carry `start`, so the deltas of
    consecutive windows bring new rows rather than updating the previous window's."""

    def stamp(minutes: float) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    tag = start.astimezone(UTC).strftime("%Y%m%d%H%M")
    sr = ServiceRequest.__table__
    with engine.connect() as conn:
        # A CRM exports a changed call whole: the open calls as they are stored.
        open_calls = conn.execute(
            select(*(sr.c[n] for n in _CALL_COLUMNS), sr.c.status, sr.c.received_at)
            .where(sr.c.status.not_in(_CLOSED))
            .order_by(sr.c.id.desc())
            .limit(CHANGED_CALLS)
        ).all()
        last_id = conn.execute(select(sr.c.id).order_by(sr.c.id.desc()).limit(1)).scalar_one()
    header = [*_CALL_COLUMNS, "status", "received_at", "completed_at"]
    new_calls = [
        [
            last_id + 1 + i,
            f"DELTA-{tag}-{i:04d}",
            *call[2:5],
            "repair",
            "urban",
            "received",
            stamp(i / 2),
            None,
        ]
        for i, call in enumerate(open_calls[:NEW_CALLS])
    ]
    closed = open_calls[: len(open_calls) // CLOSED_SHARE]
    closures = [
        [*call[:7], "completed", call.received_at.isoformat(), stamp(5 + i / 5)]
        for i, call in enumerate(closed)
    ]
    _csv(folder, "service_requests", header, new_calls + closures)
    changes = [[row[0], "received", row[8]] for row in new_calls]
    changes += [[c.id, "on_site", stamp(i / 10)] for i, c in enumerate(open_calls[len(closed) :])]
    changes += [[c.id, "completed", stamp(5 + i / 5)] for i, c in enumerate(closed)]
    _csv(folder, "status_changes", ["service_request_id", "status", "changed_at"], changes)
    _csv(
        folder,
        "complaints",
        [
            "number",
            "branch_id",
            "customer_id",
            "service_request_id",
            "kind",
            "severity",
            "status",
            "received_at",
        ],
        [
            [
                f"DELTA-CP-{tag}-{i}",
                c.branch_id,
                c.customer_id,
                c.id,
                "appeal",
                "general",
                "open",
                stamp(i),
            ]
            for i, c in enumerate(closed[:COMPLAINTS])
        ],
    )
    _csv(
        folder,
        "hotline_calls",
        ["branch_id", "received_at", "answered", "caller_phone", "duration_s"],
        [
            [c.branch_id, stamp(i / 2), i % 3 != 0, f"+86 21 5555 {i:04d}", 60 + i]
            for i, c in enumerate(open_calls[:HOTLINE_CALLS])
        ],
    )


def _timed_import(url: str, folder: Path) -> tuple[float, float, str]:
    """Wall time and peak RSS (MiB) of `aftersales import --upsert` in a child process, and
    what it printed."""
    command = [str(_AFTERSALES), "import", str(folder), "--db", url, "--upsert"]
    seconds, peak, said, code = run_child(command)
    if code:
        raise SystemExit(f"import failed with exit {code}:\n{said}")
    return seconds, peak, said


def demo_command(url: str, requests: int, as_of: datetime) -> list[str]:
    """`aftersales init --demo` with about `requests` repair calls built around `as_of`."""
    scale = str(scale_for_requests(requests))
    return [
        str(_AFTERSALES),
        "init",
        "--db",
        url,
        "--demo",
        "--scale",
        scale,
        "--as-of",
        as_of.isoformat(),
    ]


def _bench(kind: str, url: str, requests: int) -> None:
    # The demo is loaded by a child too: a child forked from a large parent would report the
    # parent's peak as its own.
    started = time.perf_counter()
    subprocess.run(demo_command(url, requests, AS_OF), check=True, capture_output=True)
    print(f"{kind}: demo of {requests:,} requests loaded in {time.perf_counter() - started:.1f} s")
    engine = connect(url)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_delta(engine, folder)
        engine.dispose()
        for label in ("first import", "same delta again"):
            seconds, peak, said = _timed_import(url, folder)
            print(f"{kind}: {label}: {seconds:.2f} s wall (process start included), ", end="")
            print(f"peak RSS {peak:.0f} MiB\n{said}")


def main() -> None:
    """Parse the options and time each database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        if args.db in (kind, "both"):
            with scratch_database(kind) as url:
                _bench(kind, url, args.requests)


if __name__ == "__main__":
    main()
