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

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Integer,
    Select,
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

from engine.expr import Expr, parse, to_sql
from engine.findings import Finding
from engine.policy import CompiledRule
from engine.policy.models import ClassificationRule
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


def decisions(item: Classification, as_of: datetime) -> Select[Any]:
    """Every entity the rule classifies, with the decision (`_decision`) and its row (`_row`)."""
    view, rule = item.table, item.rule
    whens = [
        (to_sql(condition, view, as_of), index)
        for index, condition in enumerate(row_conditions(item))
        if condition is not None
    ]
    last = len(rule.first_match) - 1
    fallback = last if rule.first_match[last].otherwise is not None else None
    row = type_coerce(case(*whens, else_=fallback), Integer()) if whens else literal(fallback)
    # The outcome is read off the row number, so the table's conditions are written once.
    outcome = case(
        *((row == index, literal(r.outcome)) for index, r in enumerate(rule.first_match)),
        else_=null(),
    )
    stmt = select(view, outcome.label(DECISION), row.label(ROW))
    if item.condition is not None:
        stmt = stmt.where(to_sql(item.condition, view, as_of))
    return stmt.order_by(view.c.id)


def statement(item: Classification, as_of: datetime) -> Select[Any]:
    """The one statement a night runs: the entities whose decision makes a finding."""
    rule = item.rule
    decided = decisions(item, as_of).subquery("decided")
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
        select(decided, _flag(mismatch).label(MISMATCH), _flag(acts).label(ACTING))
        .where(or_(mismatch, acts))
        .order_by(decided.c.id)
    )


def evaluate(
    item: Classification, rows: Iterable[Mapping[str, Any]], as_of: datetime
) -> list[Finding]:
    """The findings of rows the statement returned (pure: the database has decided)."""
    rule = item.rule
    out: list[Finding] = []
    for row in rows:
        record = {k: v for k, v in row.items() if k not in _INTERNAL}
        outcome, index = row[DECISION], row[ROW]
        base = {
            "rule_id": rule.id,
            "family": FAMILY,
            "entity": item.table.name,
            "entity_id": str(record["id"]),
            "occurrence": outcome,
            "record": record,
            "details": details(item, record, outcome, index),
        }
        if row[MISMATCH]:
            action = rule.on_mismatch
            out.append(
                Finding(
                    **base,
                    state="mismatch",
                    reason=describe(item, record, outcome, index, mismatch=True),
                    recipients=tuple(r.role for r in action.notify) if action else (),
                    notices=action.notices() if action else (),
                )
            )
        action = rule.on_outcome.get(outcome)
        if action is not None and row[ACTING]:
            out.append(
                Finding(
                    **base,
                    state="outcome",
                    reason=describe(item, record, outcome, index, mismatch=False),
                    recipients=tuple(r.role for r in action.notify),
                    notices=action.notices(),
                )
            )
    return out


def judge(
    conn: Connection, item: Classification, calendars: Mapping[str, Any], as_of: datetime
) -> tuple[list[Finding], dict[str, int]]:
    """Run the rule's one statement and stream the rows that make findings."""
    # Streamed (a server-side cursor on PostgreSQL): a first night may find many old calls.
    result = conn.execute(statement(item, as_of), execution_options={"yield_per": 2000})
    return evaluate(item, result.mappings(), as_of), {}


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
    item: Classification,
    record: Mapping[str, Any],
    outcome: str | None,
    index: int | None,
    *,
    mismatch: bool,
) -> str:
    """The finding's reason: the decision, the row that made it, and the coverage behind it."""
    rule = item.rule
    label = record.get("number") or f"#{record['id']}"
    row = rule.first_match[index] if index is not None else None
    why = f"row {index + 1}: {row.when or 'otherwise'}" if row else "no row matched"
    said = f"policy says {outcome} ({why})"
    if mismatch and rule.recorded:
        said = f"recorded {record[rule.recorded]}, {said}"
    parts = [f"{item.table.name} {label}: {said}"]
    if "warranty_term" in record:
        parts.append(coverage_text(record))
        number = record.get("contract_number")
        parts.append(f"contract {number} covers it" if number else "no contract covers it")
    return "; ".join(parts)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    # Never NULL: an unknown comparison (a NULL field) is no.
    return type_coerce(case((condition, true()), else_=false()), Boolean())
