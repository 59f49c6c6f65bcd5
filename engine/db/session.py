"""Database connections: one Engine per command, SQLite tuned for a single nightly writer."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine.errors import DatabaseUnavailable, UsageError

T = TypeVar("T")
_OPEN: weakref.WeakSet[Engine] = weakref.WeakSet()


def connect(url: str) -> Engine:
    """Open an Engine for `url`; SQLite gets foreign keys, WAL and the engine's SQL functions."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise UsageError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
    _OPEN.add(engine)
    return engine


def open_database(url: str, *, create: bool = False) -> Engine:
    """`connect`, then open the database once: one that cannot be used is a DatabaseUnavailable
    naming it and the server's reason, not a driver's traceback halfway through a command. A
    missing SQLite file is created only when `create` (`aftersales init`): any other command
    would leave an empty file behind."""
    engine = connect(url)
    where = make_url(url).render_as_string(hide_password=True)  # as the user wrote it
    path = sqlite_file(engine)
    if path is not None and not create and not path.is_file():
        raise DatabaseUnavailable(
            f"no database at {path}: create it with `aftersales init`, or name one with --db"
        )
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # refused, unknown database, login failed, unable to open
        lines = (" ".join(line.split()) for line in str(exc.orig or exc).splitlines())
        reason = "; ".join(line for line in lines if line)  # the driver's words, on one line
        raise DatabaseUnavailable(f"cannot open the database {where}: {reason}") from None
    return engine


def sqlite_file(engine: Engine) -> Path | None:
    """The file an SQLite engine opens; None for other databases and in-memory ones."""
    name = engine.url.database or ":memory:"
    if engine.dialect.name != "sqlite" or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def close_all() -> None:
    """Close the pooled connections of every Engine still open: the process is ending, and a
    server should see a goodbye rather than a dropped socket."""
    for engine in list(_OPEN):
        engine.dispose()


def _begin_sqlite(conn: Any) -> None:
    # pysqlite sends BEGIN only before DML, so a SAVEPOINT issued first would open (and its
    # RELEASE commit) a transaction of its own; SQLAlchemy's documented recipe is to BEGIN here.
    conn.exec_driver_sql("BEGIN")


def _tune_sqlite(dbapi_conn: Any, _record: Any) -> None:
    from engine.expr.sqlite_functions import register

    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    if cur.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
    dbapi_conn.isolation_level = None  # transactions are begun in _begin_sqlite
    register(dbapi_conn)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Slices of at most `size` items: a statement gets a bounded IN list or VALUES batch."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
