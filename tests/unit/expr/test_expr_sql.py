"""to_sql(): Core expressions with bound parameters, never text spliced from the YAML."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Column, Date, Engine, Integer, MetaData, Table, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import CompileError

import engine.expr
from engine.db.models import Contract
from engine.db.session import connect
from engine.expr import ExprTypeError, parse, to_sql
from engine.expr.sqlite_functions import register

contracts = Contract.__table__
AS_OF = datetime(2026, 1, 31, 18, 0, tzinfo=UTC)


def _sql(text: str, dialect: object = postgresql.dialect()) -> tuple[str, dict[str, object]]:
    compiled = select(contracts.c.id).where(to_sql(parse(text), contracts, AS_OF))
    result = compiled.compile(dialect=dialect)  # type: ignore[arg-type]
    return str(result), dict(result.params)


def test_literals_are_bound_parameters_not_sql_text() -> None:
    sql, params = _sql("kind == '; DROP TABLE contracts; --' or number in ('A''1', \"B\")")
    assert "DROP" not in sql and "A'1" not in sql
    assert set(params.values()) == {"; DROP TABLE contracts; --", "A'1", "B"}


def test_as_of_and_date_literals_are_bound_with_their_types() -> None:
    _, params = _sql("renewed_at < as_of and ends_on >= 2026-01-01 and renewed_at > 2026-01-01")
    assert sorted(map(repr, params.values())) == sorted(
        map(
            repr,
            [AS_OF, date(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC)],
        )
    )


def test_arithmetic_without_columns_is_computed_once_in_python() -> None:
    # as_of is Jan 31: one month earlier is Dec 31, one month later Feb 28.
    _, params = _sql("ends_on between as_of - 1 month and as_of + 1 month")
    assert set(params.values()) == {
        datetime(2025, 12, 31, 18, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 18, 0, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [("1 == 1", "true"), ("as_of < 2026-01-01", "false"), ("true", "true"), ("not true", "false")],
)
def test_conditions_without_columns_fold_to_true_or_false(text: str, where: str) -> None:
    sql, params = _sql(text)
    assert sql.endswith(f"WHERE {where}")
    assert params == {}


def test_column_arithmetic_compiles_per_dialect() -> None:
    pg, _ = _sql("ends_on + 1 month < as_of and renewed_at - 2 hours > as_of")
    assert "make_interval(months => 1)" in pg
    assert "AT TIME ZONE 'UTC'" in pg
    assert "make_interval(hours => -2)" in pg
    lite, _ = _sql("ends_on + 1 month < as_of and renewed_at - 2 hours > as_of", sqlite.dialect())
    assert "aftersales_add_months(contracts.ends_on, 1)" in lite
    assert "datetime(contracts.renewed_at, '-2 hours')" in lite


def test_text_ordering_uses_code_point_order_on_postgresql() -> None:
    pg, _ = _sql("number >= 'C-1'")
    assert 'contracts.number COLLATE "C"' in pg
    lite, _ = _sql("number >= 'C-1'", sqlite.dialect())
    assert "COLLATE" not in lite


def test_date_arithmetic_on_other_databases_is_refused_when_compiled() -> None:
    with pytest.raises(CompileError, match="not mysql"):
        _sql("ends_on + 1 day < as_of", mysql.dialect())


def test_compiles_against_an_aliased_table_or_subquery() -> None:
    alias = contracts.alias("c")
    sql = str(select(alias.c.id).where(to_sql(parse("kind == 'project'"), alias, AS_OF)))
    assert "c.kind = " in sql


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope == 1", "contracts has no field 'nope'"),
        ("kind == 5", "cannot compare"),
        ("kind", "not true/false"),
        ("amount + 1 day < as_of", "cannot add a duration"),
        ("status in ('active', 3)", "cannot compare"),
    ],
)
def test_conditions_that_do_not_fit_the_table_raise(text: str, message: str) -> None:
    with pytest.raises(ExprTypeError, match=message):
        to_sql(parse(text), contracts, AS_OF)


# ---------------------------------------------------------------- on a real SQLite database


terms = Table("terms", MetaData(), Column("id", Integer, primary_key=True), Column("ends_on", Date))


@pytest.fixture
def terms_db(sqlite_url: str) -> Iterator[Engine]:
    db = connect(sqlite_url)
    terms.metadata.create_all(db)
    with db.begin() as conn:
        conn.execute(
            insert(terms),
            [{"id": 1, "ends_on": date(2026, 1, 31)}, {"id": 2, "ends_on": date(2026, 2, 27)}],
        )
    yield db
    db.dispose()


def _ids(db: Engine, text: str) -> set[int]:
    with db.connect() as conn:
        return set(conn.scalars(select(terms.c.id).where(to_sql(parse(text), terms, AS_OF))))


def test_statements_differing_only_in_a_duration_are_not_confused_by_the_cache(
    terms_db: Engine,
) -> None:
    # The duration is rendered into the SQL, so it must be part of the cache key.
    assert _ids(terms_db, "ends_on + 1 month >= 2026-02-28") == {1, 2}
    assert _ids(terms_db, "ends_on + 2 months >= 2026-04-27") == {2}
    assert _ids(terms_db, "ends_on + 1 day >= 2026-02-28") == {2}
    assert _ids(terms_db, "ends_on + 1 week >= 2026-02-07") == {1, 2}


def test_sqlite_month_function_clamps_and_keeps_the_time_of_day() -> None:
    conn = sqlite3.connect(":memory:")
    register(conn)
    rows = conn.execute(
        "select aftersales_add_months('2026-01-31', 1), "
        "aftersales_add_months('2024-02-29 23:59:59', 12), "
        "aftersales_add_months('2026-03-31 08:00:00', -1), "
        "aftersales_add_months(NULL, 1)"
    ).fetchone()
    assert rows == ("2026-02-28", "2025-02-28 23:59:59", "2026-02-28 08:00:00", None)


def test_public_surface_is_exactly_all() -> None:
    modules = {"checker", "errors", "evaluator", "kinds", "nodes", "parser", "sql"}
    modules |= {"sqlite_functions", "temporal", "tokens"}
    public = {name for name in dir(engine.expr) if not name.startswith("_")}
    assert public - modules == set(engine.expr.__all__)
    for name in engine.expr.__all__:
        assert getattr(engine.expr, name).__doc__, name
