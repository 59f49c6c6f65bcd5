"""CSV import: one `<table>.csv` per service table, all or nothing.

`import_dir(engine, DIR)` reads the files in dependency order (`models.SERVICE_TABLES`) and
writes them in one transaction. Every cell is converted by its column's type (docs/tables.md):
empty is NULL, booleans are true/false/1/0/yes/no, dates YYYY-MM-DD, instants ISO 8601 with an
offset or Z, and choice columns take only their listed values. Problems are collected (up to
MAX_PROBLEMS) with file, line and column name, then `ImportDataError` is raised and nothing is
written; errors the database finds (foreign keys, unique values) are translated the same way.

Rows that point at rows of their own table (staff.supervisor_id, contracts.renewal_of_id, ...)
are inserted without that reference and linked afterwards, so a file may list a person before
their supervisor: neither database here has deferrable foreign keys.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    Numeric,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from engine.db.lock import run_lock
from engine.db.models import SERVICE_TABLES
from engine.db.types import UtcDateTime
from engine.errors import ImportDataError, Location, Problem, UsageError

__all__ = ["MAX_PROBLEMS", "after_bulk_load", "column_required", "import_dir"]

MAX_PROBLEMS = 50
"""Stop reading after this many problems: the first ones are enough to fix the files."""

BATCH_ROWS = 1_000

TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in SERVICE_TABLES}  # type: ignore[misc]
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_INT = re.compile(r"[+-]?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def column_required(column: Column[Any]) -> bool:
    """True if an import must give a value: NOT NULL, no default, not the generated id."""
    return not (
        column.nullable
        or column.default is not None
        or column.server_default is not None
        or column is column.table.autoincrement_column
    )


def after_bulk_load(conn: Connection, tables: Sequence[str]) -> None:
    """After rows with explicit ids were loaded in bulk on PostgreSQL: move each id sequence
    past the largest id, and refresh the planner's statistics of those tables."""
    if conn.dialect.name != "postgresql" or not tables:
        return  # SQLite's INTEGER PRIMARY KEY continues from max(id) by itself
    for name in tables:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f'COALESCE(MAX(id), 0) + 1, false) FROM "{name}"'
            ),
            {"table": name},
        )
    # Autovacuum would analyze them minutes later; a night started at once would plan blind
    # (at 1M repair calls the classification statement took minutes instead of seconds).
    conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{name}"' for name in tables))


def import_dir(engine: Engine, directory: Path) -> dict[str, int]:
    """Import each `<table>.csv` in `directory` in one transaction, under the run lock."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    files = {p.stem: p for p in sorted(directory.iterdir()) if p.suffix.lower() == ".csv"}
    if not files:
        raise UsageError(
            f"{directory} holds no CSV files; expected any of "
            + ", ".join(f"{t}.csv" for t in TABLES)
        )
    problems = [
        Problem(
            f"{path.name} is not a table of the service database",
            Location(path),
            f"name the file after its table: {', '.join(f'{t}.csv' for t in TABLES)}",
        )
        for stem, path in files.items()
        if stem not in TABLES
    ]
    counts: dict[str, int] = {}
    # A night reads rule by rule in many transactions: an import committed between two of
    # them would show one night two versions of the data (and on SQLite hold up its writes).
    with run_lock(engine), engine.connect() as conn:
        transaction = conn.begin()
        try:
            state = _State(problems)
            for name, table in TABLES.items():
                if name in files and not state.full:
                    counts[name] = _load(conn, table, files[name], state)
            if state.problems:
                transaction.rollback()
                shown = state.problems[:MAX_PROBLEMS]
                if state.full:
                    last = shown[-1].location
                    shown.append(
                        Problem(f"stopped after {MAX_PROBLEMS} problems", last, "fix these first")
                    )
                raise ImportDataError(shown)
            after_bulk_load(conn, list(counts))
            transaction.commit()
        finally:
            if transaction.is_active:
                transaction.rollback()
    return counts


@dataclass
class _State:
    """Problems so far; once there is one, rows are still checked but no longer written."""

    problems: list[Problem] = field(default_factory=list)

    @property
    def writing(self) -> bool:
        return not self.problems

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_PROBLEMS

    def add(self, message: str, path: Path, line: int | None, hint: str | None = None) -> None:
        self.problems.append(Problem(message, Location(path, line, None), hint))


# ---------------------------------------------------------------- cell conversion


class _Bad(ValueError):
    """A cell that does not fit its column; message and hint for the problem."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


Converter = Callable[[str], Any]


def _converter(column: Column[Any]) -> Converter:
    """How to turn one non-empty cell of `column` into a Python value."""
    kind = column.type
    choices: tuple[str, ...] | None = column.info.get("choices")
    if choices:
        allowed = frozenset(choices)

        def choice(cell: str) -> str:
            if cell not in allowed:
                raise _Bad(f"{cell!r} is not allowed", "use one of: " + ", ".join(choices))
            return cell

        return choice
    if isinstance(kind, UtcDateTime):
        return _instant
    if isinstance(kind, Boolean):
        return _boolean
    if isinstance(kind, Date):
        return _date
    if isinstance(kind, Integer):
        return _integer
    if isinstance(kind, Numeric):
        return _decimal_for(kind.precision, kind.scale)
    if isinstance(kind, String) and kind.length:
        length = kind.length

        def bounded(cell: str) -> str:
            if len(cell) > length:
                raise _Bad(f"is {len(cell)} characters long, at most {length} fit")
            return cell

        return bounded
    return str


def _instant(cell: str) -> datetime:
    try:
        value = datetime.fromisoformat(cell.strip())
    except ValueError:
        raise _Bad(
            f"{cell!r} is not an ISO 8601 timestamp", "write e.g. 2026-11-23T09:30:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise _Bad(
            f"{cell!r} has no UTC offset, so the instant is ambiguous",
            f"add Z (UTC) or the branch's offset, e.g. {cell.strip()}Z or {cell.strip()}+08:00",
        )
    return value


def _boolean(cell: str) -> bool:
    word = cell.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _Bad(f"{cell!r} is not a boolean", "write true or false (also 1/0, yes/no)")


def _date(cell: str) -> date:
    try:
        if not _DATE.fullmatch(cell.strip()):
            raise ValueError
        return date.fromisoformat(cell.strip())
    except ValueError:
        raise _Bad(f"{cell!r} is not a date", "write YYYY-MM-DD, e.g. 2026-11-23") from None


def _integer(cell: str) -> int:
    if not _INT.fullmatch(cell.strip()):
        raise _Bad(f"{cell!r} is not a whole number")
    return int(cell)


def _decimal_for(precision: int | None, scale: int | None) -> Converter:
    def convert(cell: str) -> Decimal:
        try:
            value = Decimal(cell.strip())
        except InvalidOperation:
            raise _Bad(
                f"{cell!r} is not a number", "write e.g. 1200.50 (a dot, no thousands)"
            ) from None
        if not value.is_finite():
            raise _Bad(f"{cell!r} is not a number")
        exponent = value.as_tuple().exponent
        if scale is not None and isinstance(exponent, int) and -exponent > scale:
            raise _Bad(f"{cell!r} has more than {scale} decimals")
        if precision is not None and abs(value) >= Decimal(10) ** (precision - (scale or 0)):
            raise _Bad(f"{cell!r} is too large for this column")
        return value

    return convert


# ---------------------------------------------------------------- one file


@dataclass
class _Row:
    line: int
    values: dict[str, Any]


def _read(path: Path, state: _State) -> Iterator[tuple[int, list[str]]]:
    """Records with the line each starts on; encoding and CSV syntax errors become problems."""
    line = 1
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            for record in reader:
                yield line, record
                line = reader.line_num + 1
    except UnicodeDecodeError as exc:
        state.add(f"is not UTF-8 text ({exc.reason})", path, None, "save the file as UTF-8")
    except csv.Error as exc:
        state.add(f"is not valid CSV: {exc}", path, line, "check the quotes on this line")


def _header(table: Table, path: Path, header: list[str], state: _State) -> list[str] | None:
    names = [h.strip() for h in header]
    ok = True
    unknown = [n for n in names if n not in table.c]
    for name in unknown:
        state.add(
            f"unknown column {name!r} in the header",
            path,
            1,
            f"columns of {table.name}: {', '.join(table.c.keys())}",
        )
        ok = False
    for name in sorted({n for n in names if names.count(n) > 1}):
        state.add(f"column {name!r} appears twice in the header", path, 1)
        ok = False
    missing = [c.name for c in table.c if column_required(c) and c.name not in names]
    if missing:
        state.add(
            f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing "
            "from the header",
            path,
            1,
            "see docs/tables.md for the columns of each table",
        )
        ok = False
    return names if ok else None


def _load(conn: Connection, table: Table, path: Path, state: _State) -> int:
    """Check and insert one file; returns the number of rows it held."""
    before = len(state.problems)
    records = _read(path, state)
    first = next(records, None)
    if first is None:
        if len(state.problems) == before:  # not already reported as unreadable
            state.add("is empty; expected a header row with column names", path, None)
        return 0
    names = _header(table, path, first[1], state)
    if names is None:
        return 0
    columns = [table.c[n] for n in names]
    converters = [_converter(c) for c in columns]
    # An id column, once given, needs every id: other files refer to rows by it.
    required = [column_required(c) or c is table.autoincrement_column for c in columns]
    defaults = [
        c.default.arg if c.default is not None and c.default.is_scalar else None  # type: ignore[attr-defined]
        for c in columns
    ]
    # References to the same table are linked after the file is in (see module docstring).
    late = [
        n
        for n, c in zip(names, columns, strict=True)
        if "id" in names and any(fk.column.table is table for fk in c.foreign_keys)
    ]
    batch: list[_Row] = []
    links: list[tuple[int, str, Any, int]] = []  # (row id, column, value, line)
    count = 0
    for line, record in records:
        if not record:
            continue  # a blank line
        count += 1
        if state.full:
            break
        if len(record) != len(names):
            state.add(
                f"row has {len(record)} cells, the header has {len(names)}",
                path,
                line,
                "quote cells that contain commas",
            )
            continue
        values: dict[str, Any] = {}
        good = True
        for name, cell, convert, needed, default in zip(
            names, record, converters, required, defaults, strict=True
        ):
            if cell.strip() == "":
                if needed:
                    state.add(f"column {name}: a value is required", path, line)
                    good = False
                values[name] = default
                continue
            try:
                values[name] = convert(cell)
            except _Bad as bad:
                state.add(f"column {name}: {bad}", path, line, bad.hint)
                good = False
        if not good or not state.writing:
            continue
        for name in late:
            if values[name] is not None:
                links.append((values["id"], name, values[name], line))
                values[name] = None
        batch.append(_Row(line, values))
        if len(batch) >= BATCH_ROWS:
            _insert(conn, table, path, batch, state)
            batch = []
    if batch and state.writing:
        _insert(conn, table, path, batch, state)
    if links and state.writing:
        _link(conn, table, path, links, state)
    return count


# ---------------------------------------------------------------- database errors


def _insert(conn: Connection, table: Table, path: Path, batch: list[_Row], state: _State) -> None:
    """Insert a batch; if the database refuses it, find the row and say why."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table), [r.values for r in batch])
        return
    except DBAPIError:
        pass
    # Replay row by row to name the line; the first refusal ends the writing.
    for row in batch:
        try:
            with conn.begin_nested():
                conn.execute(insert(table), [row.values])
        except DBAPIError as exc:
            message, hint = _explain(conn, table, row.values, exc)
            state.add(message, path, row.line, hint)
            return


def _link(
    conn: Connection,
    table: Table,
    path: Path,
    links: list[tuple[int, str, Any, int]],
    state: _State,
) -> None:
    for name in sorted({link[1] for link in links}):
        mine = [link for link in links if link[1] == name]
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({name: bindparam("target")})
        )
        for start in range(0, len(mine), BATCH_ROWS):
            chunk = mine[start : start + BATCH_ROWS]
            try:
                with conn.begin_nested():
                    conn.execute(statement, [{"row_id": r, "target": v} for r, _, v, _ in chunk])
                continue
            except DBAPIError:
                pass
            for row_id, _, value, line in chunk:
                try:
                    with conn.begin_nested():
                        conn.execute(statement, [{"row_id": row_id, "target": value}])
                except DBAPIError as exc:
                    message, hint = _explain(conn, table, {name: value}, exc)
                    state.add(message, path, line, hint)
                    return


def _explain(
    conn: Connection, table: Table, values: dict[str, Any], exc: DBAPIError
) -> tuple[str, str | None]:
    """Name the column a refused row got wrong (SQLite's messages do not say)."""
    for name, value in values.items():
        if value is None:
            continue
        for fk in table.c[name].foreign_keys:
            target = fk.column
            found = conn.execute(select(target).where(target == value).limit(1)).first()
            if found is None:
                return (
                    f"column {name}: no {target.table.name} row has {target.name} {value}",
                    f"import {target.table.name}.csv with that row, or fix the reference",
                )
    for name, value in values.items():
        column = table.c[name]
        if value is not None and (column.unique or column.primary_key):
            found = conn.execute(select(column).where(column == value).limit(1)).first()
            if found is not None:
                return (
                    f"column {name}: {value!r} already exists in {table.name}",
                    "each value must be unique (already in the database or earlier in the file)",
                )
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"the database refused the row: {detail}", None
