"""CSV import: one `<table>.csv` per service table, all or nothing.

`import_dir(engine, DIR)` reads the files in dependency order (`models.SERVICE_TABLES`) and
inserts their rows in one transaction. Every cell is converted by its column's type
(docs/tables.md): empty is NULL, booleans are true/false/1/0/yes/no, dates YYYY-MM-DD, instants
ISO 8601 with an offset or Z, and choice columns take only their listed values. Problems are
collected (up to MAX_PROBLEMS) with file, line and column name, then `ImportDataError` is raised
and nothing is written; errors the database finds (foreign keys, unique values) are translated
the same way.

`upsert_dir(engine, DIR)` (`aftersales import --upsert`, docs/feeding.md) reads the same files
but finds each row first, by id or by its table's natural key (engine/db/natural_keys.py): a row
already there is updated in the columns the file has (left alone if nothing differs, and always
for an event), the others are inserted, and a row whose `_delete` cell is true is deleted. Rows
are looked up a chunk at a time with indexed IN lists, so a small delta costs a few statements
whatever the size of the database, and rows that did not change are not written (their row
versions stay, so the next incremental run does not judge them again).

Rows that point at rows of their own table (staff.supervisor_id, contracts.renewal_of_id, ...)
are inserted without that reference and linked afterwards, so a file may list a person before
their supervisor: neither database here has deferrable foreign keys.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
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
    RowMapping,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from engine.db.lock import run_lock
from engine.db.models import SERVICE_TABLES
from engine.db.natural_keys import ENGINE_KEPT_COLUMNS, NATURAL_KEYS
from engine.db.session import chunks
from engine.db.types import UtcDateTime
from engine.errors import ImportDataError, Location, Problem, UsageError

__all__ = [
    "DELETE_COLUMN",
    "MAX_PROBLEMS",
    "UpsertCounts",
    "after_bulk_load",
    "column_required",
    "import_dir",
    "upsert_dir",
]

MAX_PROBLEMS = 50
"""Stop reading after this many problems: the first ones are enough to fix the files."""

BATCH_ROWS = 1_000

DELETE_COLUMN = "_delete"
"""Upsert only: a row whose cell in this column is true is deleted (found by its key)."""

ANALYZE_AFTER_ROWS = 10_000
"""An upsert that inserted this many rows into a table refreshes its planner statistics."""

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
        or column.name in ENGINE_KEPT_COLUMNS
    )


def after_bulk_load(conn: Connection, tables: Sequence[str]) -> None:
    """After rows with explicit ids were loaded in bulk on PostgreSQL: move each id sequence
    past the largest id, and refresh the planner's statistics of those tables."""
    if conn.dialect.name != "postgresql" or not tables:
        return  # SQLite's INTEGER PRIMARY KEY continues from max(id) by itself
    _advance_sequences(conn, tables)
    # Autovacuum would analyze them minutes later; a night started at once would plan blind
    # (at 1M repair calls the classification statement took minutes instead of seconds).
    conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{name}"' for name in tables))


def _advance_sequences(conn: Connection, tables: Sequence[str]) -> None:
    """On PostgreSQL, move each table's id sequence past its largest id (an index lookup)."""
    if conn.dialect.name != "postgresql":
        return
    for name in tables:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f'COALESCE(MAX(id), 0) + 1, false) FROM "{name}"'
            ),
            {"table": name},
        )


@dataclass
class UpsertCounts:
    """What an upsert did to one table."""

    event: bool
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    """Rows found as the file has them, events already present, deletions of absent rows."""
    deleted: int = 0

    def __str__(self) -> str:
        same = "already present" if self.event else "unchanged"
        return (
            f"{self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} {same}, {self.deleted} deleted"
        )


def import_dir(engine: Engine, directory: Path) -> dict[str, int]:
    """Import each `<table>.csv` in `directory` in one transaction, under the run lock."""
    counts: dict[str, int] = {}

    def load(conn: Connection, table: Table, path: Path, state: _State) -> None:
        counts[table.name] = _load(conn, table, path, state)

    def finish(conn: Connection, _state: _State) -> None:
        after_bulk_load(conn, list(counts))

    _in_one_transaction(engine, directory, load, finish)
    return counts


def upsert_dir(engine: Engine, directory: Path) -> dict[str, UpsertCounts]:
    """Insert or update each `<table>.csv` in `directory` by key, in one transaction."""
    counts: dict[str, UpsertCounts] = {}
    deletions: dict[str, tuple[Path, list[_Row]]] = {}

    def load(conn: Connection, table: Table, path: Path, state: _State) -> None:
        counts[table.name] = UpsertCounts(event=NATURAL_KEYS[table.name].event)
        _upsert(conn, table, path, state, counts[table.name], deletions)

    def finish(conn: Connection, state: _State) -> None:
        # Children before parents: a call's status changes go before the call itself.
        for name in reversed(TABLES):
            if name in deletions and state.writing:
                path, rows = deletions[name]
                _delete(conn, TABLES[name], path, rows, state, counts[name])
        bulk = [name for name, c in counts.items() if c.inserted >= ANALYZE_AFTER_ROWS]
        if bulk and conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{name}"' for name in bulk))

    _in_one_transaction(engine, directory, load, finish)
    return counts


_Loader = Callable[[Connection, Table, Path, "_State"], None]


def _in_one_transaction(
    engine: Engine,
    directory: Path,
    load: _Loader,
    finish: Callable[[Connection, _State], None],
) -> None:
    """Load the files in table order and `finish`, committing only if no problem was found."""
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
    # A night reads rule by rule in many transactions: an import committed between two of
    # them would show one night two versions of the data (and on SQLite hold up its writes).
    with run_lock(engine), engine.connect() as conn:
        transaction = conn.begin()
        try:
            state = _State(problems)
            for name, table in TABLES.items():
                if name in files and not state.full:
                    load(conn, table, files[name], state)
            if state.writing:
                finish(conn, state)
            if state.problems:
                transaction.rollback()
                shown = state.problems[:MAX_PROBLEMS]
                if state.full:
                    last = shown[-1].location
                    shown.append(
                        Problem(f"stopped after {MAX_PROBLEMS} problems", last, "fix these first")
                    )
                raise ImportDataError(shown)
            transaction.commit()
        finally:
            if transaction.is_active:
                transaction.rollback()


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
    # As it is stored (UtcDateTime), so an upsert compares it with the stored value.
    return value.astimezone(UTC).replace(microsecond=0)


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
    delete: bool = False


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


def _header(
    table: Table, path: Path, header: list[str], state: _State, *, upsert: bool
) -> list[str] | None:
    names = [h.strip() for h in header]
    ok = True
    for name in names:
        if name in ENGINE_KEPT_COLUMNS:
            state.add(
                f"column {name!r} is kept by the database, not imported",
                path,
                1,
                "remove it from the file: the database sets it on every write, whoever writes",
            )
            ok = False
        elif name not in table.c and not (upsert and name == DELETE_COLUMN):
            hint = f"columns of {table.name}: {', '.join(table.c.keys())}"
            if name == DELETE_COLUMN:
                hint = f"deleting rows by a {DELETE_COLUMN} column takes `import --upsert`"
            state.add(f"unknown column {name!r} in the header", path, 1, hint)
            ok = False
    for name in sorted({n for n in names if names.count(n) > 1}):
        state.add(f"column {name!r} appears twice in the header", path, 1)
        ok = False
    if upsert:
        ok = _key_in_header(table, path, names, state) and ok
    else:
        missing = _missing_required(table, names)
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


def _missing_required(table: Table, names: list[str]) -> list[str]:
    return [c.name for c in table.c if column_required(c) and c.name not in names]


def _key_in_header(table: Table, path: Path, names: list[str], state: _State) -> bool:
    """An upsert must be able to find each row: by id, or by all of the natural key."""
    key = NATURAL_KEYS[table.name].columns
    if "id" in names or _has_natural_key(table, names):
        return True
    if key:
        missing = ", ".join(c for c in key if c not in names and not table.c[c].nullable)
        state.add(
            f"the header has no id column and not all of the natural key ({missing} missing)",
            path,
            1,
            f"an upsert finds {table.name} rows by id or by {', '.join(key)}; "
            "docs/feeding.md lists the keys",
        )
    else:
        state.add(
            f"the header has no id column, and {table.name} have no natural key",
            path,
            1,
            f"an upsert finds {table.name} rows by id only: add the id column",
        )
    return False


def _rows(
    table: Table, path: Path, state: _State, *, upsert: bool
) -> tuple[list[str], Iterator[_Row]] | None:
    """The header's column names and the converted rows; None if the header is unusable.

    A row with a problem is reported and not yielded."""
    before = len(state.problems)
    records = _read(path, state)
    first = next(records, None)
    if first is None:
        if len(state.problems) == before:  # not already reported as unreadable
            state.add("is empty; expected a header row with column names", path, None)
        return None
    names = _header(table, path, first[1], state, upsert=upsert)
    if names is None:
        return None
    return names, _converted(table, path, names, records, state, upsert=upsert)


def _converted(
    table: Table,
    path: Path,
    names: list[str],
    records: Iterator[tuple[int, list[str]]],
    state: _State,
    *,
    upsert: bool,
) -> Iterator[_Row]:
    columns = [table.c[n] if n != DELETE_COLUMN else None for n in names]
    converters = [_converter(c) if c is not None else _boolean for c in columns]
    # An id column, once given, needs every id: other files refer to rows by it. An upsert
    # may leave it empty and find the row by its natural key instead.
    required = [
        c is not None and (column_required(c) or (not upsert and c is table.autoincrement_column))
        for c in columns
    ]
    defaults = [
        c.default.arg if c is not None and c.default is not None and c.default.is_scalar else None  # type: ignore[attr-defined]
        for c in columns
    ]
    flag = names.index(DELETE_COLUMN) if DELETE_COLUMN in names else None
    for line, record in records:
        if not record:
            continue  # a blank line
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
        # A deletion needs only the key: its other cells may be left empty.
        removal = flag is not None and record[flag].strip().lower() in _TRUE
        values: dict[str, Any] = {}
        good = True
        for name, cell, convert, needed, default in zip(
            names, record, converters, required, defaults, strict=True
        ):
            if cell.strip() == "":
                if needed and not removal:
                    state.add(f"column {name}: a value is required", path, line)
                    good = False
                values[name] = default
                continue
            try:
                values[name] = convert(cell)
            except _Bad as bad:
                state.add(f"column {name}: {bad}", path, line, bad.hint)
                good = False
        values.pop(DELETE_COLUMN, None)
        if good:
            yield _Row(line, values, removal)


def _load(conn: Connection, table: Table, path: Path, state: _State) -> int:
    """Check and insert one file; returns the number of rows it held."""
    parsed = _rows(table, path, state, upsert=False)
    if parsed is None:
        return 0
    names, rows = parsed
    # References to the same table are linked after the file is in (see module docstring).
    late = _self_references(table, names) if "id" in names else []
    batch: list[_Row] = []
    links: list[tuple[int, str, Any, int]] = []  # (row id, column, value, line)
    count = 0
    for row in rows:
        count += 1
        if not state.writing:
            continue
        for name in late:
            if row.values[name] is not None:
                links.append((row.values["id"], name, row.values[name], row.line))
                row.values[name] = None
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            _write(conn, table, path, insert(table), _as_params(batch), state)
            batch = []
    if batch and state.writing:
        _write(conn, table, path, insert(table), _as_params(batch), state)
    if links and state.writing:
        _link(conn, table, path, links, state)
    return count


def _self_references(table: Table, names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if n in table.c and any(fk.column.table is table for fk in table.c[n].foreign_keys)
    ]


# ---------------------------------------------------------------- upsert

_Identity = tuple[Any, ...]
"""How a row is found: ("id", 42) or ("key", *natural key values)."""


def _identity(table: Table, row: _Row) -> _Identity:
    if row.values.get("id") is not None:
        return ("id", row.values["id"])
    # A key column that may be empty may also be left out of the file: it is empty then.
    return ("key", *(row.values.get(c) for c in NATURAL_KEYS[table.name].columns))


def _upsert(
    conn: Connection,
    table: Table,
    path: Path,
    state: _State,
    counts: UpsertCounts,
    deletions: dict[str, tuple[Path, list[_Row]]],
) -> None:
    """Check one file and write it by key; deletions wait for `upsert_dir`'s last step."""
    parsed = _rows(table, path, state, upsert=True)
    if parsed is None:
        return
    names, rows = parsed
    writer = _Upserter(conn, table, path, state, counts, names)
    removals: list[_Row] = []
    for row in rows:
        if not writer.findable(row):
            continue
        if row.delete:
            removals.append(row)
        elif state.writing:
            writer.add(row)
    writer.close()
    if removals:
        deletions[table.name] = (path, removals)


class _Upserter:
    """One file's rows, gathered a chunk at a time, looked up together, then written."""

    def __init__(
        self,
        conn: Connection,
        table: Table,
        path: Path,
        state: _State,
        counts: UpsertCounts,
        names: list[str],
    ) -> None:
        self.conn, self.table, self.path, self.state, self.counts = conn, table, path, state, counts
        self.key = NATURAL_KEYS[table.name]
        self.by_key = _has_natural_key(table, names)
        self.columns = [n for n in names if n in table.c]
        self.late = _self_references(table, names)
        # Columns an update sets: the file's, less the id it is found by and the late links.
        self.changing = [n for n in self.columns if n != "id" and n not in self.late]
        self.missing = _missing_required(table, names)
        self.pending: dict[_Identity, _Row] = {}
        self.links: list[tuple[int, str, Any, int]] = []  # (row id, column, value, line)

    def findable(self, row: _Row) -> bool:
        """True if the row has an id or a natural key; otherwise a problem says so."""
        if row.values.get("id") is not None:
            return True
        name, key = self.table.name, self.key
        if not key.columns:
            self.state.add(
                f"column id: empty, and {name} have no natural key to find the row by",
                self.path,
                row.line,
                f"give the id of each {name} row in an upsert",
            )
            return False
        if not self.by_key or any(row.values.get(c) is None for c in key.probe):
            self.state.add(
                f"column id: empty, and no {', '.join(key.columns)} to find the row by",
                self.path,
                row.line,
                f"give the id, or the natural key {', '.join(key.columns)}",
            )
            return False
        return True

    def add(self, row: _Row) -> None:
        """Queue a row; a full chunk, or a row named twice, writes what is queued first."""
        identity = _identity(self.table, row)
        if identity in self.pending or len(self.pending) >= BATCH_ROWS:
            self.flush()
        self.pending[identity] = row

    def close(self) -> None:
        """Write the last chunk, then the references to rows of the same file."""
        self.flush()
        if self.links and self.state.writing:
            _link(self.conn, self.table, self.path, self.links, self.state)

    def flush(self) -> None:
        """Look the queued rows up together; update the changed ones, insert the new ones."""
        pending, self.pending = self.pending, {}
        if not pending or not self.state.writing:
            return
        found = _lookup(self.conn, self.table, self.columns, list(pending.values()))
        updates: list[tuple[_Row, dict[str, Any]]] = []
        inserts: list[_Row] = []
        for identity, row in pending.items():
            matches = found.get(identity, [])
            if len(matches) > 1:
                _ambiguous(self.state, self.table, self.path, row, len(matches))
            elif matches and self.key.event:
                self.counts.unchanged += 1
            elif matches:
                self._compare(row, matches[0], updates)
            elif self.missing:
                self.state.add(
                    f"row not in {self.table.name} yet, and to add it "
                    f"{', '.join(self.missing)} {'are' if len(self.missing) > 1 else 'is'} "
                    "needed: missing from the header",
                    self.path,
                    row.line,
                    "add those columns, or check the key if the row should already be there",
                )
            else:
                inserts.append(row)
        if updates and self.state.writing:
            statement = (
                update(self.table)
                .where(self.table.c.id == bindparam("row_id"))
                .values({n: bindparam(f"new_{n}") for n in self.changing})
            )
            _write(self.conn, self.table, self.path, statement, updates, self.state)
            self.counts.updated += len(updates)
        if inserts and self.state.writing:
            self._insert(inserts)

    def _compare(
        self, row: _Row, stored: RowMapping, updates: list[tuple[_Row, dict[str, Any]]]
    ) -> None:
        """Queue the row's changes to `stored`, if any; links are compared with the rest."""
        links = [
            (stored["id"], n, row.values[n], row.line)
            for n in self.late
            if row.values[n] != stored[n]
        ]
        if any(row.values[n] != stored[n] for n in self.changing):
            params = {f"new_{n}": row.values[n] for n in self.changing}
            updates.append((row, {"row_id": stored["id"], **params}))
        elif links:
            self.counts.updated += 1
        else:
            self.counts.unchanged += 1
        self.links.extend(links)

    def _insert(self, rows: list[_Row]) -> None:
        """Rows with ids first; on PostgreSQL the sequence then moves past them."""
        table = self.table
        # References to the same table are set once every row of the file is in.
        late = [(r, n, r.values[n]) for r in rows for n in self.late if r.values[n] is not None]
        for row, name, _ in late:
            row.values[name] = None
        given = [r for r in rows if r.values.get("id") is not None]
        fresh = [r for r in rows if r.values.get("id") is None]
        if given:
            _write(self.conn, table, self.path, insert(table), _as_params(given), self.state)
            _advance_sequences(self.conn, [table.name])
        if fresh and self.state.writing:
            statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            for row in fresh:
                row.values.pop("id", None)  # NULL would not make PostgreSQL number the row
            ids = _write(self.conn, table, self.path, statement, _as_params(fresh), self.state)
            for row, new_id in zip(fresh, ids or [], strict=False):
                row.values["id"] = new_id
        self.counts.inserted += len(rows)
        self.links.extend((r.values["id"], n, value, r.line) for r, n, value in late)


def _has_natural_key(table: Table, names: list[str]) -> bool:
    """The file names every natural key column that cannot be empty (the others default to it)."""
    key = NATURAL_KEYS[table.name].columns
    return bool(key) and all(c in names or table.c[c].nullable for c in key)


def _lookup(
    conn: Connection, table: Table, columns: list[str], rows: Sequence[_Row]
) -> dict[_Identity, list[RowMapping]]:
    """The stored rows of a chunk, by identity: one query by id, one by the natural key."""
    key = NATURAL_KEYS[table.name]
    wanted = [table.c.id, *(table.c[n] for n in sorted({*columns, *key.columns} - {"id"}))]
    found: dict[_Identity, list[RowMapping]] = {}
    ids = [r.values["id"] for r in rows if r.values.get("id") is not None]
    if ids:
        for stored in conn.execute(select(*wanted).where(table.c.id.in_(ids))).mappings():
            found[("id", stored["id"])] = [stored]
    keyed = [r for r in rows if r.values.get("id") is None]
    if keyed:
        # Each probe column narrows by its own IN list (an index serves them); the exact
        # key, which may include empty cells, is compared here.
        narrowing = [table.c[p].in_({r.values[p] for r in keyed}) for p in key.probe]
        for stored in conn.execute(select(*wanted).where(*narrowing)).mappings():
            found.setdefault(("key", *(stored[c] for c in key.columns)), []).append(stored)
    return found


def _ambiguous(state: _State, table: Table, path: Path, row: _Row, count: int) -> None:
    key = NATURAL_KEYS[table.name].columns
    state.add(
        f"{count} {table.name} rows have this {', '.join(key)}; the row cannot say which",
        path,
        row.line,
        "give the id of the row meant",
    )


def _delete(
    conn: Connection,
    table: Table,
    path: Path,
    rows: list[_Row],
    state: _State,
    counts: UpsertCounts,
) -> None:
    """Delete the rows marked `_delete` that are there; an absent one counts as unchanged."""
    for chunk in chunks(rows, BATCH_ROWS):
        found = _lookup(conn, table, [], chunk)
        doomed: list[tuple[_Row, int]] = []
        for row in chunk:
            matches = found.get(_identity(table, row), [])
            if len(matches) > 1:
                _ambiguous(state, table, path, row, len(matches))
            elif matches:
                doomed.append((row, matches[0]["id"]))
            else:
                counts.unchanged += 1
        if not state.writing or not doomed:
            continue
        try:
            with conn.begin_nested():
                conn.execute(delete(table).where(table.c.id.in_([i for _, i in doomed])))
            counts.deleted += len(doomed)
            continue
        except DBAPIError:
            pass
        for row, row_id in doomed:
            try:
                with conn.begin_nested():
                    conn.execute(delete(table).where(table.c.id == row_id))
            except DBAPIError as exc:
                message, hint = _explain_delete(conn, table, row_id, exc)
                state.add(message, path, row.line, hint)
                return


def _explain_delete(
    conn: Connection, table: Table, row_id: int, exc: DBAPIError
) -> tuple[str, str | None]:
    """Name the rows that still point at a row the database would not delete."""
    referrers: list[str] = []
    for other in table.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is table:
                count = conn.execute(
                    select(func.count()).select_from(other).where(fk.parent == row_id)
                ).scalar_one()
                if count:
                    rows = "row" if count == 1 else "rows"
                    referrers.append(f"{count} {other.name} {rows} ({fk.parent.name})")
    if not referrers:
        return _refused(exc)
    return (
        f"cannot delete {table.name} id {row_id}: still referred to by " + ", ".join(referrers),
        f"delete those too ({DELETE_COLUMN} rows in their files, same import), "
        "or send a cancellation instead: see docs/feeding.md",
    )


# ---------------------------------------------------------------- database errors


def _as_params(rows: list[_Row]) -> list[tuple[_Row, dict[str, Any]]]:
    return [(r, r.values) for r in rows]


def _write(
    conn: Connection,
    table: Table,
    path: Path,
    statement: Any,
    batch: list[tuple[_Row, dict[str, Any]]],
    state: _State,
) -> list[Any] | None:
    """Run `statement` for a batch; if the database refuses it, find the row and say why.

    Returns what the statement returned, one per row (new ids), or None after a refusal."""
    try:
        with conn.begin_nested():
            result = conn.execute(statement, [params for _, params in batch])
            return list(result.scalars()) if result.returns_rows else []
    except DBAPIError:
        pass
    # Replay row by row to name the line; the first refusal ends the writing.
    for row, params in batch:
        try:
            with conn.begin_nested():
                conn.execute(statement, [params])
        except DBAPIError as exc:
            message, hint = _explain(conn, table, row.values, exc, params.get("row_id"))
            state.add(message, path, row.line, hint)
            return None
    return None


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
                    message, hint = _explain(conn, table, {name: value}, exc, row_id)
                    state.add(message, path, line, hint)
                    return


def _explain(
    conn: Connection,
    table: Table,
    values: dict[str, Any],
    exc: DBAPIError,
    own_id: int | None = None,
) -> tuple[str, str | None]:
    """Name the column a refused row got wrong (SQLite's messages do not say).

    `own_id` is the row an update was for: its own values do not clash with it."""
    for name, value in values.items():
        if value is None or name not in table.c:
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
        column = table.c.get(name)
        if column is None or value is None or not (column.unique or column.primary_key):
            continue
        clash = select(column).where(column == value)
        if own_id is not None:
            clash = clash.where(table.c.id != own_id)
        if conn.execute(clash.limit(1)).first() is not None:
            return (
                f"column {name}: {value!r} already exists in {table.name}",
                "each value must be unique (already in the database or earlier in the file)",
            )
    return _refused(exc)


def _refused(exc: DBAPIError) -> tuple[str, None]:
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"the database refused the row: {detail}", None
