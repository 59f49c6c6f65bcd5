"""Time `load_demo` at benchmark size on SQLite and PostgreSQL (run by hand, not a test).

    .venv/bin/python bench/demo_scale.py                       # 1,000,000 requests, both databases
    .venv/bin/python bench/demo_scale.py --requests 100000 --db sqlite

Each database is loaded in a child process so that its peak RSS is its own. PostgreSQL uses a
scratch database created on AFTERSALES_TEST_PG's server (bench/scratch.py) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime

from scratch import scratch_database

from engine.db.demo import load_demo, scale_for_requests
from engine.db.schema import upgrade
from engine.db.session import connect

AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def _child(url: str, requests: int) -> None:
    engine = connect(url)
    upgrade(engine)
    started = time.perf_counter()
    counts = load_demo(engine, AS_OF, scale=scale_for_requests(requests))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine.dispose()
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib, "counts": counts}))


def _run(label: str, url: str, requests: int) -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--requests", str(requests)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = sum(result["counts"].values())
    print(
        f"{label:10} {result['counts']['service_requests']:>9,} requests {rows:>11,} rows "
        f"{result['seconds']:7.1f} s {rows / result['seconds']:>9,.0f} rows/s "
        f"peak RSS {result['peak_rss_mib']:6.0f} MiB"
    )


def main() -> None:
    """Parse the options and time each database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests)
        return
    for kind in ("sqlite", "postgresql"):
        if args.db in (kind, "both"):
            with scratch_database(kind) as url:
                _run(kind, url, args.requests)


if __name__ == "__main__":
    main()
