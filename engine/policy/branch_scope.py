"""Where a rule applies: its `branches:` as SQL, so entities of other branches are never
candidates (in a full run and in an incremental one alike, since both read the same query)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, or_, select

from engine.db.models import Branch
from engine.expr import to_sql
from engine.policy.models import Branches, BranchScope


def branch_column(table: FromClause) -> Any:
    """The column naming an entity's branch: `branch_id`, or `id` for the branches table."""
    if "branch_id" in table.c:
        return table.c.branch_id
    return table.c.id if table.name == Branch.__tablename__ else None


def _named(part: Branches) -> Any:
    branches = Branch.__table__
    named = [
        column.in_(values)
        for column, values in ((branches.c.country, part.country), (branches.c.code, part.code))
        if values
    ]
    return select(branches.c.id).where(or_(*named))


def in_branches(scope: BranchScope | None, table: FromClause) -> list[ColumnElement[bool]]:
    """SQL keeping an entity of `table` to the branches in `scope` (none: every branch)."""
    if scope is None:
        return []
    column = branch_column(table)  # the loader refuses a scope on a table without branches
    out = [column.in_(_named(scope))]
    if scope.except_ is not None:
        out.append(column.not_in(_named(scope.except_)))
    return out


def applies(compiled: Any, table: FromClause, as_of: datetime) -> list[ColumnElement[bool]]:
    """SQL for a compiled rule's condition and branch scope on `table` (the rule's or a view)."""
    out = in_branches(compiled.rule.branches, table)
    if compiled.condition is not None:
        out.append(to_sql(compiled.condition, table, as_of))
    return out


def branch_in_scope(scope: BranchScope | None, branch: dict[str, Any] | None) -> bool:
    """True when a branch row (country, code) lies in the scope, for explaining one entity."""
    if scope is None:
        return True
    if branch is None:
        return False

    def named(part: Branches) -> bool:
        return branch.get("country") in part.country or branch.get("code") in part.code

    return named(scope) and not (scope.except_ is not None and named(scope.except_))
