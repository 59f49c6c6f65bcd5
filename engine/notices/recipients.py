"""Who a role reaches for one entity: the customer, a named staff member, or a branch role
(at the entity's branch, else head office; or at head office only)."""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, func, inspect, select

from engine.db.catalogue import entity_table, role_routes
from engine.db.models import Branch, Customer, Staff
from engine.policy.models import NoticePlan
from engine.policy.roles_spec import RoleSpec

HEAD_OFFICE: Mapping[str, Any] = {
    "id": None, "code": "HQ", "name": "Head office", "email": None, "timezone": "UTC",
}  # fmt: skip
"""The branch that stands for head office where an entity, or a person charged, has none."""

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person a notice goes to."""

    role: str
    kind: str  # "customer", "staff", or "nobody" for a role nobody holds
    id: int
    name: str
    address: str | None
    locale: str
    phone: str | None = None
    role_title: str | None = None  # how a letter names the role, in the reader's language

    @property
    def ref(self) -> str:
        """Stable reference used in dedup keys: `customer:42`, `staff:7`."""
        return f"{self.kind}:{self.id}"

    @property
    def reader(self) -> dict[str, Any]:
        """The `recipient` variable of a template: who is reading."""
        title = self.role_title or self.role
        return {"name": self.name, "role": self.role, "role_title": title, "email": self.address}


class Directory:
    """Branches and staff, read once per run, and the customers of the batch at hand.

    `roles` are the policy's (titles for letters; the roles a department field may name);
    without them any role a staff row holds counts."""

    def __init__(
        self,
        conn: Connection,
        customer_ids: Iterable[int] = (),
        roles: Mapping[str, RoleSpec] | None = None,
    ):
        self.roles = roles
        self.branches = {r.id: dict(r._mapping) for r in conn.execute(select(Branch.__table__))}
        staff = [dict(r._mapping) for r in conn.execute(select(Staff.__table__))]
        self.staff = {s["id"]: s for s in staff}
        self.by_role: dict[tuple[int | None, str], list[dict[str, Any]]] = defaultdict(list)
        for person in staff:
            if person["active"]:
                self.by_role[(person["branch_id"], person["role"])].append(person)
        self.customers: dict[int, dict[str, Any]] = {}
        self.read_customers(conn, customer_ids)

    def read_customers(self, conn: Connection, customer_ids: Iterable[int]) -> None:
        """Hold these customers, and only these: a go-live's batches reach most of the
        customers, too many to keep for the whole run."""
        ids = set(customer_ids)
        self.customers = {i: c for i, c in self.customers.items() if i in ids}
        wanted = sorted(ids - self.customers.keys())
        table = Customer.__table__
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            for row in conn.execute(select(table).where(table.c.id.in_(chunk))):
                self.customers[row.id] = dict(row._mapping)

    def resolve(
        self, table: Table, role: str, record: Mapping[str, Any], *, head_office: bool = False
    ) -> list[Recipient]:
        """The people `role` reaches for `record` of `table` (possibly none); a staff role
        only at head office when `head_office`."""
        route = role_routes(table, (role,))[role]
        if route.kind == "customer":
            customer = self.customers.get(record.get("customer_id"))  # type: ignore[arg-type]
            return [self._person(role, "customer", customer)] if customer else []
        if route.kind == "staff_column":
            person = self.staff.get(record.get(route.column or ""))  # type: ignore[arg-type]
            return [self._person(role, "staff", person)] if person and person["active"] else []
        return self.holders(route.role or role, record.get("branch_id"), head_office=head_office)

    def holders(
        self, role: str, branch_id: int | None, *, head_office: bool = False
    ) -> list[Recipient]:
        """Who holds `role` at the branch, else at head office (only there if `head_office`)."""
        people = [] if head_office else self.by_role.get((branch_id, role), [])
        people = people or self.by_role.get((None, role), [])
        return [self._person(role, "staff", p) for p in people]

    def reach(
        self, table: Table, plan: NoticePlan, record: Mapping[str, Any]
    ) -> tuple[str, list[Recipient]]:
        """The role a notice plan comes to for `record`, and the people it reaches: its role,
        or the department the record names, else its `otherwise`."""
        role = plan.role
        if plan.department:
            role = self.named_role(record.get(plan.role))
            people = (
                self.holders(role, record.get("branch_id"), head_office=plan.head_office)
                if role
                else []
            )
        else:
            people = self.resolve(table, role, record, head_office=plan.head_office)
        if not people and plan.otherwise:
            role = plan.otherwise
            people = self.resolve(table, role, record)
        return role or plan.role, people

    def describe(self, table: Table, plan: NoticePlan, record: Mapping[str, Any]) -> str:
        """Who a notice plan reaches for `record`, and why, for `aftersales explain`."""
        role, people = self.reach(table, plan, record)
        first = plan.role
        if plan.department:
            named = record.get(plan.role)
            first = self.named_role(named)
            shown = repr(named) if named else "empty"
            why = f"{plan.role} = {shown}" + ("" if first or not named else " (not declared)")
        else:
            why = plan.role + (" at head office" if plan.head_office else "")
        if plan.otherwise and role == plan.otherwise != first:
            why += f", nobody there: otherwise {role}"
        elif plan.department and people:
            why += f": role {role}"
        who = ", ".join(
            f"{p.name} <{p.address or 'no address'}> ({self._where(p)})" for p in people
        )
        return f"{why} -> {who or f'nobody in role {role}'}"

    def _where(self, person: Recipient) -> str:
        if person.kind != "staff":
            return person.kind
        branch_id = self.staff.get(person.id, {}).get("branch_id")
        return self.branches[branch_id]["code"] if branch_id in self.branches else "head office"

    def named_role(self, value: Any) -> str:
        """The declared role a department field holds ('' when empty or not declared)."""
        role = value.strip() if isinstance(value, str) else ""
        return role if self.roles is None or role in self.roles else ""

    def _person(self, role: str, kind: str, row: Mapping[str, Any]) -> Recipient:
        locale = row.get("locale") or "en"
        spec = self.roles.get(role) if self.roles and kind == "staff" else None
        return Recipient(
            role=role,
            kind=kind,
            id=row["id"],
            name=row["name"],
            address=row.get("email"),
            locale=locale,
            phone=row.get("phone"),
            role_title=spec.title_in(locale) if spec else None,
        )


def undeclared_roles(
    conn: Connection, roles: Mapping[str, RoleSpec], fields: Iterable[tuple[Table, str]]
) -> list[str]:
    """A warning per value of a field holding role ids (`staff.role`, a `department` field
    that notices read) that the policy does not declare: nobody is reached through it."""
    warnings = []
    for table, name in fields:
        if not inspect(conn).has_table(table.name):
            continue
        column = table.c[name]
        held = conn.execute(
            select(column, func.count())
            .where(column.is_not(None), column != "", column.not_in(list(roles)))
            .group_by(column)
            .order_by(column)
        )
        for value, count in held:
            close = difflib.get_close_matches(value, list(roles), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "declare it under `roles:`"
            warnings.append(
                f"{count} {table.name} row(s) hold {name} {value!r}, which the policy does not "
                f"declare as a role: nobody is reached through it ({hint})"
            )
    return warnings


def role_fields(rules: Iterable[Any]) -> list[tuple[Table, str]]:
    """The fields holding role ids: staff.role, and each `department` field notices read."""
    found: dict[tuple[str, str], None] = {("staff", "role"): None}
    for rule in rules:
        for name in _departments(rule.model_dump()):
            found[(rule.entity, name)] = None
    return [(entity_table(table), name) for table, name in found]


def _departments(value: Any) -> Iterator[str]:
    """Every `department: FIELD` in a rule, however deeply nested (actions, escalations)."""
    if isinstance(value, Mapping):
        if isinstance(value.get("department"), str):
            yield value["department"]
        for item in value.values():
            yield from _departments(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _departments(item)
