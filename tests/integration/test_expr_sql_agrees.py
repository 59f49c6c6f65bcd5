"""The SQL a condition compiles to selects exactly the rows evaluate() says True for.

Random conditions over a small table with a column of each kind, random rows with NULLs and
month ends, on a real SQLite file and a real PostgreSQL database. PostgreSQL runs with a
session time zone that has daylight saving time and a column collation that orders text
differently from Python, so neither can leak into the results.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    delete,
    insert,
    select,
)

from engine.db.session import connect
from engine.db.types import UtcDateTime, choices
from engine.expr import check, evaluate, parse, to_sql, unparse
from engine.expr.nodes import (
    And,
    AsOf,
    Between,
    Compare,
    Expr,
    Field,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    Shift,
    Value,
)

AS_OF = datetime(2026, 1, 31, 18, 30, tzinfo=UTC)  # a month end: as_of + 1 month clamps
KINDS = ("appeal", "claim", "Zulu", "ärger")  # mixed case and non-ASCII: collation matters
LABELS = (*KINDS, "Appeal", "b", "")


def _text(length: int | None = None) -> Any:
    # An ICU collation sorts 'appeal' < 'Zulu'; Python (and SQLite) sort 'Zulu' < 'appeal'.
    return String(length).with_variant(String(length, collation="en-x-icu"), "postgresql")


metadata = MetaData()
things = Table(
    "expr_things",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", Integer),
    Column("amount", Numeric(12, 2)),
    Column("kind", _text(20), info=choices(*KINDS)),
    Column("label", _text()),
    Column("flag", Boolean),
    Column("ends_on", Date),
    Column("starts_on", Date),
    Column("at", UtcDateTime()),
    Column("at2", UtcDateTime()),
)

# ---------------------------------------------------------------- rows

# Month ends and the days month arithmetic lands on (clamped or, wrongly, overflowed), the
# US daylight-saving switches, and as_of's day: values drawn from a small pool collide often
# enough for a boundary mistake to show within a few dozen examples.
EDGE_DAYS = [(1, 31), (2, 28), (2, 29), (3, 1), (3, 2), (3, 3), (3, 8), (3, 31), (4, 30), (5, 1)]
EDGE_DAYS += [(11, 1), (11, 2), (12, 31)]
EDGE_DATES = [
    date(year, month, day)
    for year in (2024, 2025, 2026)
    for month, day in EDGE_DAYS
    if (month, day) != (2, 29) or calendar.isleap(year)
]
DATES = st.sampled_from(EDGE_DATES) | st.dates(date(2023, 1, 1), date(2029, 12, 31))
# 03:00 UTC is the evening before in New York; 05:00 UTC is New York's midnight in winter.
TIMES = st.sampled_from(
    [time(0), time(3), time(5), time(23, 59, 59), AS_OF.time()]
) | st.times().map(lambda t: t.replace(microsecond=0))
INSTANTS = st.builds(lambda d, t: datetime.combine(d, t, tzinfo=UTC), DATES, TIMES)
AMOUNTS_OF_TIME = st.sampled_from([0, 1, 1, 2, 12, 13, 24]) | st.integers(0, 40)
NUMBERS = st.integers(-3, 30)
AMOUNTS = st.sampled_from([Decimal("0.10"), Decimal("2.50"), Decimal("19.99"), Decimal("-1.25")])


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # One NULL in four: enough to exercise three-valued logic, few enough to leave matches.
    return st.one_of(strategy, strategy, strategy, st.none())


ROW = st.fixed_dictionaries(
    {
        "n": _maybe(NUMBERS),
        "amount": _maybe(AMOUNTS | NUMBERS.map(Decimal)),
        "kind": _maybe(st.sampled_from(KINDS)),
        "label": _maybe(st.sampled_from(LABELS)),
        "flag": _maybe(st.booleans()),
        "ends_on": _maybe(DATES),
        "starts_on": _maybe(DATES),
        "at": _maybe(INSTANTS),
        "at2": _maybe(INSTANTS),
    }
)
ROWS = st.lists(ROW, min_size=3, max_size=12).map(
    lambda rows: [{"id": i, **row} for i, row in enumerate(rows, start=1)]
)

# ---------------------------------------------------------------- well-typed conditions
# Weighted towards what differs between the databases: column arithmetic by months, dates
# meeting timestamps, text ordering. Repeated names in sampled_from are the weights.

Kind = str  # "number", "text", "bool", "date", "instant"
DATE_UNITS = ["day", "week", "month", "month", "year"]
CLOCK_UNITS = ["minute", "hour", "hour"]


def _lit(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Literal]:
    return strategy.map(Literal)


def _fields(*names: str) -> st.SearchStrategy[Field]:
    return st.sampled_from(names).map(Field)


def constants(kind: Kind) -> st.SearchStrategy[Literal]:
    """Literals of a kind, as a list or a between bound may hold them."""
    match kind:
        case "number":
            return _lit(NUMBERS | AMOUNTS)
        case "text":
            return _lit(st.sampled_from(KINDS))
        case "bool":
            return _lit(st.booleans())
        case _:
            return _lit(DATES)


@st.composite
def values(draw: st.DrawFn, kind: Kind, depth: int = 2) -> Value:
    """A value of a kind: a field, a literal, as_of or duration arithmetic on one."""
    if kind in ("number", "text", "bool"):
        names = {"number": ("n", "amount"), "text": ("kind", "label"), "bool": ("flag",)}
        return draw(_fields(*names[kind]) | constants(kind))
    forms = ["field", "literal"] if kind == "date" else ["field", "as_of"]
    if depth:
        forms += ["shift", "shift"] + (["date_by_clock"] if kind == "instant" else [])
    form = draw(st.sampled_from(forms))
    if form == "field":
        return draw(_fields("ends_on", "starts_on") if kind == "date" else _fields("at", "at2"))
    if form == "literal":
        return draw(constants("date"))
    if form == "as_of":
        return AsOf()
    base_kind = "date" if form == "date_by_clock" else kind
    units = CLOCK_UNITS if form == "date_by_clock" else DATE_UNITS
    if kind == "instant" and form == "shift":
        units = units + CLOCK_UNITS
    base = draw(values(base_kind, depth - 1))
    op = draw(st.sampled_from(["+", "-"]))
    return Shift(base, op, draw(AMOUNTS_OF_TIME), draw(st.sampled_from(units)))


@st.composite
def predicates(draw: st.DrawFn) -> Expr:
    kind = draw(st.sampled_from(["temporal", "temporal", "temporal", "text", "number", "bool"]))

    def value() -> Value:
        return draw(
            values(draw(st.sampled_from(["date", "instant"])) if kind == "temporal" else kind)
        )

    shape = draw(st.sampled_from(["compare", "compare", "between", "in", "null", "bare"]))
    negated = draw(st.booleans())
    if shape == "compare":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return Compare(value(), op, value())
    if shape == "in":
        items = constants("date" if kind == "temporal" else kind)
        return InList(value(), tuple(draw(st.lists(items, min_size=1, max_size=3))), negated)
    if shape == "between":
        return Between(value(), value(), value(), negated)
    if shape == "null":
        return IsNull(value(), negated)
    return draw(_fields("flag") | _lit(st.booleans()))


CONDITIONS: st.SearchStrategy[Expr] = st.recursive(
    predicates(),
    lambda inner: (
        inner.map(Not)
        | st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs)))
        | st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
    ),
    max_leaves=4,
)


# ---------------------------------------------------------------- the property


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    if db_url.startswith("postgresql"):
        # Timestamp arithmetic must not depend on the session's zone: pick one with DST.
        db_url += "?options=-c%20TimeZone%3DAmerica/New_York"
    eng = connect(db_url)
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def _selected(engine: Engine, rows: list[dict[str, Any]], expr: Expr) -> tuple[set[int], Any]:
    with engine.begin() as conn:
        conn.execute(delete(things))
        if rows:
            conn.execute(insert(things), rows)
        where = to_sql(expr, things, AS_OF)
        ids = set(conn.scalars(select(things.c.id).where(where)))
        records = conn.execute(select(things)).mappings().all()
    return ids, records


def _matching(records: list[Mapping[str, Any]], expr: Expr) -> set[int]:
    return {r["id"] for r in records if evaluate(expr, r, AS_OF) is True}


def test_sql_selects_exactly_the_rows_evaluate_accepts(engine: Engine) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=ROWS, expr=CONDITIONS)
    def agree(rows: list[dict[str, Any]], expr: Expr) -> None:
        text = unparse(expr)
        assert parse(text) == expr, text
        assert check(expr, things) == [], text
        selected, records = _selected(engine, rows, expr)
        assert selected == _matching(records, expr), text

    agree()


MONTH_END_ROWS = [
    {"id": 1, "ends_on": date(2026, 1, 31), "at": datetime(2026, 1, 31, 22, 15, tzinfo=UTC)},
    {"id": 2, "ends_on": date(2024, 2, 29), "at": datetime(2024, 2, 29, 0, 0, tzinfo=UTC)},
    {"id": 3, "ends_on": date(2026, 3, 31), "at": datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)},
]


@pytest.mark.parametrize(
    ("condition", "ids"),
    [
        ("ends_on + 1 month == 2026-02-28", {1}),
        ("ends_on - 1 month == 2026-02-28", {3}),
        ("ends_on + 1 year == 2025-02-28", {2}),
        ("at + 1 month between 2026-02-28 and 2026-03-01", {1}),
        ("at + 1 year >= 2025-02-28 and at + 1 year < 2025-03-01", {2}),
        ("at - 1 month + 1 day > 2026-03-01", {3}),
        ("at + 2 hours between 2026-02-01 and 2026-02-02", {1}),
        ("ends_on + 90 minutes > at", {2}),
        ("at == 2024-02-29", {2}),
        ("ends_on < as_of", {2, 1}),
    ],
)
def test_months_clamp_to_month_end_and_dates_meet_timestamps_at_midnight_utc(
    engine: Engine, condition: str, ids: set[int]
) -> None:
    expr = parse(condition)
    rows = [{**dict.fromkeys(things.c.keys()), **row} for row in MONTH_END_ROWS]
    selected, records = _selected(engine, rows, expr)
    assert selected == ids
    assert _matching(records, expr) == ids


# ---------------------------------------------------------------- exact values on a grid
# Every edge day at several times of day: small enough to insert per test, dense enough
# that an off-by-a-day or off-by-an-hour anywhere changes the selected set.

GRID_TIMES = [time(0), time(3), time(5), time(12, 30), time(23, 59, 59)]
GRID = [datetime.combine(day, at, tzinfo=UTC) for day in EDGE_DATES for at in GRID_TIMES]
DURATIONS = {
    "minute": lambda n: timedelta(minutes=n),
    "hour": lambda n: timedelta(hours=n),
    "day": lambda n: timedelta(days=n),
    "week": lambda n: timedelta(weeks=n),
    "month": lambda n: relativedelta(months=n),
    "year": lambda n: relativedelta(years=n),
}


def _grid_rows(**columns: Any) -> list[dict[str, Any]]:
    empty = dict.fromkeys(things.c.keys())
    rows = []
    for i, at in enumerate(GRID, start=1):
        row = {**empty, "id": i, "at": at, "ends_on": at.date()}
        row.update({name: make(at) for name, make in columns.items()})
        rows.append(row)
    return rows


@pytest.mark.parametrize("amount", [1, -1, 13, 24])
@pytest.mark.parametrize("unit", list(DURATIONS))
def test_duration_arithmetic_on_columns_matches_calendar_arithmetic_in_utc(
    engine: Engine, unit: str, amount: int
) -> None:
    # The expected values come from timedelta/relativedelta, not from the engine's code.
    delta = DURATIONS[unit](amount)
    op, n = ("+" if amount > 0 else "-"), abs(amount)
    date_unit = unit not in ("minute", "hour")
    rows = _grid_rows(
        at2=lambda at: at + delta,
        starts_on=lambda at: at.date() + delta if date_unit else None,
    )
    everyone = {row["id"] for row in rows}
    conditions = [f"at {op} {n} {unit} == at2"]
    if date_unit:
        conditions.append(f"ends_on {op} {n} {unit} == starts_on")
    for condition in conditions:
        selected, records = _selected(engine, rows, parse(condition))
        assert selected == everyone, condition
        assert _matching(records, parse(condition)) == everyone, condition


@pytest.mark.parametrize(
    "condition",
    [
        "ends_on == at",
        "ends_on < at",
        "ends_on >= at - 1 minute",
        "at between ends_on and ends_on + 3 hours",
        "at in (2024-02-29, 2026-03-01)",
        "ends_on + 5 hours == at",
        "at2 > ends_on + 1 month",
        "at < as_of and ends_on >= as_of - 1 month",
        "kind < 'Zulu' or label >= 'b'",
        "kind between 'Zulu' and 'claim' and label not between 'Appeal' and 'appeal'",
    ],
)
def test_dates_meet_timestamps_at_midnight_utc_and_text_sorts_by_code_point(
    engine: Engine, condition: str
) -> None:
    rows = _grid_rows(
        at2=lambda at: at + timedelta(days=30, hours=7),
        kind=lambda at: KINDS[(at.day + at.hour) % len(KINDS)],
        label=lambda at: LABELS[(at.month + at.hour) % len(LABELS)],
    )
    expr = parse(condition)
    selected, records = _selected(engine, rows, expr)
    assert selected == _matching(records, expr)
    assert 0 < len(selected) < len(rows), "the grid should tell this condition apart"
