"""What rules may refer to: the service tables, their fields, and who a role reaches on each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from sqlalchemy import Table

from engine.db.models import SERVICE_TABLES

TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in SERVICE_TABLES}  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class RoleRoute:
    """How a recipient role is reached from one entity.

    `customer`: the entity's customer_id; `staff_column`: a staff id held in `column`
    (e.g. sales_rep → sales_rep_id); `branch_role`: staff holding `role` at the entity's
    branch, or at head office when the branch has nobody in that role.
    """

    kind: Literal["customer", "staff_column", "branch_role"]
    column: str | None = None
    role: str | None = None


def entity_table(name: str) -> Table:
    """The Table behind an entity name used in rules."""
    return TABLES[name]


def role_routes(table: Table, roles: Iterable[str]) -> dict[str, RoleRoute]:
    """Every role a rule on `table` may notify, given the staff `roles` the policy declares,
    and how each is reached."""
    return dict(_routes(table, tuple(roles)))


@lru_cache(maxsize=256)
def _routes(table: Table, roles: tuple[str, ...]) -> tuple[tuple[str, RoleRoute], ...]:
    # Asked once per notice queued: the answer for a table and its roles is kept.
    routes: dict[str, RoleRoute] = {}
    if "customer_id" in table.c:
        routes["customer"] = RoleRoute("customer", column="customer_id")
    if "branch_id" in table.c:
        for role in roles:  # `customer` stays the customer's
            routes.setdefault(role, RoleRoute("branch_role", role=role))
    for column in table.c:
        targets = {fk.column.table.name for fk in column.foreign_keys}
        if "staff" in targets and column.name.endswith("_id"):
            routes[column.name.removesuffix("_id")] = RoleRoute("staff_column", column=column.name)
    return tuple(routes.items())
