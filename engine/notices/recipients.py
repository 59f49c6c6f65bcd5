"""Who a role reaches for one entity: the customer, a named staff member, or a branch role."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select

from engine.db.catalogue import role_routes
from engine.db.models import Branch, Customer, Staff

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

    @property
    def ref(self) -> str:
        """Stable reference used in dedup keys: `customer:42`, `staff:7`."""
        return f"{self.kind}:{self.id}"

    @property
    def reader(self) -> dict[str, Any]:
        """The `recipient` variable of a template: who is reading."""
        return {"name": self.name, "role": self.role, "email": self.address}


class Directory:
    """Branches and staff, read once per run, and the customers of the batch at hand."""

    def __init__(self, conn: Connection, customer_ids: Iterable[int] = ()):
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

    def resolve(self, table: Table, role: str, record: Mapping[str, Any]) -> list[Recipient]:
        """The people `role` reaches for `record` of `table` (possibly none)."""
        route = role_routes(table)[role]
        if route.kind == "customer":
            customer = self.customers.get(record.get("customer_id"))  # type: ignore[arg-type]
            return [_person(role, "customer", customer)] if customer else []
        if route.kind == "staff_column":
            person = self.staff.get(record.get(route.column or ""))  # type: ignore[arg-type]
            return [_person(role, "staff", person)] if person and person["active"] else []
        branch_id = record.get("branch_id")
        people = self.by_role.get((branch_id, route.role or role)) or self.by_role.get(
            (None, route.role or role), []
        )
        return [_person(role, "staff", p) for p in people]


def _person(role: str, kind: str, row: Mapping[str, Any]) -> Recipient:
    return Recipient(
        role=role,
        kind=kind,
        id=row["id"],
        name=row["name"],
        address=row.get("email"),
        locale=row.get("locale") or "en",
        phone=row.get("phone"),
    )
