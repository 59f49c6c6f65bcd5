"""One run at a time per database: a PostgreSQL advisory lock, or a lock file beside SQLite.

Both are released by the operating system or the server when the holding process dies,
even by kill -9, so a crashed run never blocks the next night.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from engine.errors import RunLocked

# An arbitrary constant naming "the aftersales run" among the database's advisory locks.
ADVISORY_KEY = 0x0AF7E55A1E5


@contextmanager
def run_lock(engine: Engine) -> Iterator[None]:
    """Hold the run lock of this database, or raise RunLocked at once."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            conn.commit()
            if not got:
                raise RunLocked(_busy(engine))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # a private in-memory database has nobody to share it with
        return
    path = Path(f"{database}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(_busy(engine)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _busy(engine: Engine) -> str:
    where = engine.url.render_as_string(hide_password=True)
    return (
        f"another aftersales run or delivery is working on {where}; "
        "this one stops without changing anything (try again when it has finished)"
    )
