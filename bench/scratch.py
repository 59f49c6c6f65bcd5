"""A throwaway database for a benchmark: a SQLite file in a temporary folder, or a PostgreSQL
database created on a server and dropped afterwards (even when the benchmark fails)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

PG_ADMIN_URL = os.environ.get(
    "AFTERSALES_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def scratch_database(kind: str, server: str = PG_ADMIN_URL) -> Iterator[str]:
    """Yield the URL of an empty database of `kind` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"aftersales_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_child(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, float, str, int]:
    """Run `command` in a child process: its wall time (start included), its own peak RSS in
    MiB, what it printed (stdout and stderr) and its exit code."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env
    )
    assert child.stdout is not None
    ended, readings = threading.Event(), []
    watcher = threading.Thread(target=_high_water, args=(child.pid, ended, readings))
    watcher.start()
    said = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    ended.set()
    watcher.join()
    # The child's rusage counts the RSS of this process at the fork too (Linux keeps the
    # high-water mark of the image exec replaced), so a bench that holds 500 MiB would see every
    # child at 500 MiB. The last VmHWM read before the child ended is its own image's peak.
    peak = readings[-1] if readings else usage.ru_maxrss / 1024
    return seconds, peak, said.strip(), os.waitstatus_to_exitcode(status)


def _high_water(pid: int, ended: threading.Event, readings: list[float]) -> None:
    """Read the process's peak RSS (VmHWM, in MiB) every 10 ms until `ended` (Linux only)."""
    status = Path(f"/proc/{pid}/status")
    while not ended.wait(0.01):
        try:
            text = status.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                readings.append(int(line.split()[1]) / 1024)
