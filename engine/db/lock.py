"""One run at a time per database: a PostgreSQL advisory lock, or a lock file beside SQLite.

Both are released by the operating system or the server when the holding process dies,
even by kill -9, so a crashed run never blocks the next night.

The SQLite lock file sits beside the database's real path (symbolic links and `.`/`..`
resolved), which is also where SQLite keeps its write-ahead log: every name that shares the
log shares the lock. A hard link is the one way to reach the same file by another real path;
SQLite would then keep a second log beside it (its documentation lists that as a way to
corrupt a database), so a database file with more than one name is refused instead.

Nights, deliveries and imports take the lock; one that already holds it (in the same thread)
may call another, which then goes on under the lock it holds.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

from engine.errors import RunLocked, UsageError

# An arbitrary constant naming "the aftersales run" among the database's advisory locks.
ADVISORY_KEY = 0x0AF7E55A1E5


class _Held(threading.local):
    """The locks this thread holds, by identity."""

    def __init__(self) -> None:
        self.keys: set[str] = set()


_held = _Held()


@contextmanager
def run_lock(engine: Engine) -> Iterator[None]:
    """Hold the run lock of this database, or raise RunLocked at once."""
    key = database_identity(engine)
    if key is None or key in _held.keys:
        yield  # nobody to share it with, or this thread holds it already
        return
    lock = (
        _advisory_lock(engine) if engine.dialect.name == "postgresql" else _lock_file(engine, key)
    )
    with lock:
        _held.keys.add(key)
        try:
            yield
        finally:
            _held.keys.discard(key)


def database_identity(engine: Engine) -> str | None:
    """What the lock is keyed by: the server's database, or the SQLite file's real path."""
    if engine.dialect.name == "postgresql":
        return engine.url.render_as_string(hide_password=True)
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None  # a private in-memory database
    return os.path.realpath(database)


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    # Advisory locks belong to the database itself, whatever host name reached it.
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


@contextmanager
def _lock_file(engine: Engine, real_path: str) -> Iterator[None]:
    _refuse_hard_links(real_path)
    fd = os.open(f"{real_path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(_busy(engine, real_path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _refuse_hard_links(real_path: str) -> None:
    try:
        names = os.stat(real_path).st_nlink
    except FileNotFoundError:
        return  # not created yet: nobody else can reach it
    if names > 1:
        raise UsageError(
            f"the SQLite database {real_path} has {names} names (hard links); SQLite keeps its "
            "write-ahead log beside the name it was opened by, so two names can lose "
            "transactions, and runs through them could not see each other's run lock. "
            "Keep one name (a symbolic link is fine for another path)"
        )


def _busy(engine: Engine, real_path: str | None = None) -> str:
    where = engine.url.render_as_string(hide_password=True)
    if real_path is not None and real_path != engine.url.database:
        where += f" (the file {real_path})"
    return (
        f"another aftersales run, delivery or import is working on {where}; "
        "this one stops without changing anything (try again when it has finished)"
    )
