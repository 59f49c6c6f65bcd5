"""The classification family: a decision table, first match wins, that classifies each entity.

The table's conditions read the entity's fields and its derived fields (engine.derived: for a
repair call, its warranty and contract cover), and the whole rule is one set-based statement:
the rows become one CASE over the entity's view, and the database returns only the entities
that make a finding, with the decision and the row that made it:

    mismatch  the value recorded in `recorded:` differs from the decision (a customer charged
              for a part still under warranty)
    outcome   the decision has an `on_outcome` action whose `when` holds (a quote for a call
              classified paid before work starts)

Each finding is keyed by rule, entity, the decided value and the state, so it is recorded and
notified once per entity however many nights it stays true.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Integer,
    Select,
    Table,
    and_,
    case,
    false,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
)

from engine.db.catalogue import entity_table
from engine.derived import Narrowing, flag, layer
from engine.expr import Expr, fields, parse, to_sql
from engine.expr.nodes import And
from engine.findings import Finding
from engine.policy import CompiledRule
from engine.policy.branch_scope import applies
from engine.policy.models import ClassificationRule
from engine.rules.scope import Scope
from engine.warranty import coverage_text

FAMILY = "classification"
Classification = CompiledRule[ClassificationRule]
DECISION = "_decision"
ROW = "_row"
MISMATCH = "_mismatch"
ACTING = "_acting"
_INTERNAL = (DECISION, ROW, MISMATCH, ACTING)


def is_effective(item: Classification, as_of: datetime) -> bool:
    """False while the rule's effective_from lies in the future."""
    start = item.rule.effective_from
    return start is None or as_of.date() >= start


def row_conditions(item: Classification) -> list[Expr | None]:
    """Each table row's parsed condition (None for `otherwise`); the loader has checked them."""
    return [parse(row.when) if row.when else None for row in item.rule.first_match]


def outcome_conditions(item: Classification) -> list[Expr]:
    """The parsed conditions of the rule's outcome actions (`on_outcome: {paid: {when: ...}}`)."""
    return [parse(action.when) for action in item.rule.on_outcome.values() if action.when]


def source(item: Classification, as_of: datetime, only: Narrowing | None = None) -> FromClause:
    """The rule's view, computed only for rows that pass the stored-field part of `when`.

    Derived fields cost work per row, and the view's layers keep the database from pushing
    the rule's filter down on its own (engine.derived): the conjuncts of `when` that read
    stored fields only (`received_at >= as_of - 90 days`) go into the innermost layer.
    """
    if item.views is None:
        return item.table
    table = entity_table(item.rule.entity)
    stored = [part for part in _conjuncts(item.condition) if fields(part) <= set(table.c.keys())]
    if not stored and only is None:
        return item.table

    def where(base: Table) -> ColumnElement[bool]:
        parts = [to_sql(part, base, as_of) for part in stored]
        return and_(*parts, *([only(base)] if only is not None else []))

    return item.views.narrowed(item.rule.entity, where)


def decisions(item: Classification, as_of: datetime, only: Narrowing | None = None) -> Select[Any]:
    """Every entity the rule classifies, with the decision (`_decision`) and its row (`_row`).

    `only` narrows it further, e.g. to one entity for explain.
    """
    view, rule = source(item, as_of, only), item.rule
    whens = [
        (to_sql(condition, view, as_of), index)
        for index, condition in enumerate(row_conditions(item))
        if condition is not None
    ]
    last = len(rule.first_match) - 1
    fallback = last if rule.first_match[last].otherwise is not None else None
    row = type_coerce(case(*whens, else_=fallback), Integer()) if whens else literal(fallback)
    ranked = select(view, row.label(ROW))
    ranked = ranked.where(*applies(item, view, as_of))
    # The table's conditions run once per row in their own layer; the outcome is read off
    # the row number.
    ranked_rows = layer(ranked)
    outcomes = {index: r.outcome for index, r in enumerate(rule.first_match)}
    outcome = case(outcomes, value=ranked_rows.c[ROW], else_=null())
    return select(ranked_rows, outcome.label(DECISION))


def statement(item: Classification, as_of: datetime, only: Narrowing | None = None) -> Select[Any]:
    """The one statement a night runs: the entities whose decision makes a finding (of
    those `only` lets through)."""
    rule = item.rule
    # Not a layer of its own: the outcome is a CASE on a row number, cheap to repeat.
    decided = decisions(item, as_of, only).subquery("decided")
    outcome = decided.c[DECISION]
    mismatch: ColumnElement[bool] = false()
    if rule.recorded is not None:
        recorded = decided.c[rule.recorded]
        mismatch = and_(recorded.is_not(None), outcome.is_not(None), recorded != outcome)
    acting = [
        and_(
            outcome == value,
            to_sql(parse(action.when), decided, as_of) if action.when else true(),
        )
        for value, action in rule.on_outcome.items()
    ]
    acts = or_(*acting) if acting else false()
    return (
        select(decided, flag(mismatch).label(MISMATCH), flag(acts).label(ACTING))
        .where(or_(mismatch, acts))
        .order_by(decided.c.id)
    )


def evaluate(
    item: Classification, rows: Iterable[Mapping[str, Any]], as_of: datetime
) -> Iterator[Finding]:
    """The findings of rows the statement returned, as they come (pure: the database has
    decided)."""
    rule = item.rule
    for row in rows:
        record = dict(row)
        outcome, index, mismatch, acting = (record.pop(key) for key in _INTERNAL)
        why = details(item, record, outcome, index)
        base = {
            "rule_id": rule.id,
            "family": FAMILY,
            "entity": item.table.name,
            "entity_id": str(record["id"]),
            "occurrence": outcome,
            "record": record,
            "details": why,
        }
        if mismatch:
            action = rule.on_mismatch
            yield (
                Finding(
                    **base,
                    state="mismatch",
                    reason=describe(item, record, why, mismatch=True),
                    recipients=tuple(r.label for r in action.notify) if action else (),
                    notices=action.notices() if action else (),
                )
            )
        action = rule.on_outcome.get(outcome)
        if action is not None and acting:
            yield (
                Finding(
                    **base,
                    state="outcome",
                    reason=describe(item, record, why, mismatch=False),
                    recipients=tuple(r.label for r in action.notify),
                    notices=action.notices(),
                )
            )


def judge(
    conn: Connection,
    item: Classification,
    calendars: Mapping[str, Any],
    as_of: datetime,
    scope: Scope | None = None,
) -> tuple[Iterator[Finding], dict[str, int]]:
    """Run the rule's one statement (on the entities in `scope`, if given) and stream the rows
    that make findings, and the findings: a first night at a large site finds tens of
    thousands of wrong categories."""
    only = None if scope is None or scope.full else scope.where
    # Streamed (a server-side cursor on PostgreSQL): a first night may find many old calls.
    query = statement(item, as_of, only)
    result = conn.execute(query, execution_options={"yield_per": 2000})
    keys = list(result.keys())  # plain dicts: much cheaper per row than RowMapping
    return evaluate(item, (dict(zip(keys, row, strict=True)) for row in result), as_of), {}


def details(
    item: Classification, record: Mapping[str, Any], outcome: str | None, index: int | None
) -> dict[str, Any]:
    """What templates get as `finding.details`: the decision, its row and the recorded value."""
    rule = item.rule
    row = rule.first_match[index] if index is not None else None
    return {
        "outcome": outcome,
        "recorded": record.get(rule.recorded) if rule.recorded else None,
        "row": index + 1 if index is not None else None,
        "row_when": (row.when or "otherwise") if row else None,
        "coverage": coverage_text(record) if "warranty_term" in record else None,
    }


def describe(
    item: Classification, record: Mapping[str, Any], why: Mapping[str, Any], *, mismatch: bool
) -> str:
    """The finding's reason: the decision, the row that made it, and the coverage behind it."""
    label = record.get("number") or f"#{record['id']}"
    row = f"row {why['row']}: {why['row_when']}" if why["row"] else "no row matched"
    said = f"policy says {why['outcome']} ({row})"
    if mismatch:
        said = f"recorded {why['recorded']}, {said}"
    parts = [f"{item.table.name} {label}: {said}"]
    if why["coverage"] is not None:
        number = record.get("contract_number")
        parts += [why["coverage"], f"contract {number} covers it" if number else "no contract"]
    return "; ".join(parts)


def _conjuncts(condition: Expr | None) -> tuple[Expr, ...]:
    if condition is None:
        return ()
    return condition.items if isinstance(condition, And) else (condition,)
