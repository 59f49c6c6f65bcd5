"""Derived fields: service tables as views with the fields the policy computes, in SQL.

Rules name derived fields in `when:` (and a reminder's `date:`) as if they were stored:

    service_requests  the call's unit and product, `received_on` (the day in the branch's
                      time zone), the warranty of its faulty part and its contract cover
    units             the product, the whole-unit warranty and `contract_ends_on`
    contracts         `renewed` and `renewal_number`

Each view is a subquery of the table: a few layers of CASE expressions compiled from the
warranty book (engine.warranty holds the same rules in Python, for explain), so a rule that
uses them is still one set-based statement. A rule that names no derived field reads the
plain table. Date shifts and local days come from engine.expr.sql, like every date shift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    FromClause,
    Select,
    String,
    Table,
    and_,
    case,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.types import TypeEngine

from engine.db.catalogue import entity_table
from engine.db.models import Branch, Contract, Product, ServiceRequest, Unit
from engine.expr import to_sql
from engine.expr.sql import local_date, shift_date
from engine.warranty import (
    BASIS_WORDS,
    PROVEN_BASES,
    UNIT_PART,
    Length,
    Selector,
    WarrantyBook,
    basis_field,
)

_NO_NIGHT = datetime(2000, 1, 1, tzinfo=UTC)  # void_when may not use as_of (the loader refuses it)

_UNIT_FIELDS = {
    "serial_number": "The unit's serial number",
    "purchased_on": "The unit's purchase date",
    "proof_of_purchase": "Whether an invoice or receipt was seen",
    "installed_on": "The unit's installation date",
    "manufactured_on": "The unit's production date (from the serial number)",
    "product_model": "products.model of the unit",
    "product_category": "products.category of the unit",
    "product_name": "products.name of the unit",
}
_WARRANTY_FIELDS = {
    "warranty_term": "Id of the warranty term for the product (empty: none)",
    "warranty_basis": "What the warranty starts from: " + ", ".join(BASIS_WORDS),
    "warranty_starts_on": "First day of the warranty (empty: not covered)",
    "warranty_promotion": "Id of the promotion that lengthens the term (empty: none)",
}
DERIVED_FIELDS: dict[str, dict[str, str]] = {
    "service_requests": {
        **_UNIT_FIELDS,
        "received_on": "The day the call was received, in the branch's time zone",
        **_WARRANTY_FIELDS,
        "warranty_part": "The part whose term covers the fault: fault_part's own, else `unit`",
        "warranty_ends_on": "Last day the faulty part is covered",
        "in_warranty_term": "received_on lies within the faulty part's warranty window",
        "warranty_void": "The term's void_when holds for the call (human damage, ...)",
        "in_warranty": "in_warranty_term and not warranty_void",
        "contract_number": "A contract of the customer covering the unit on received_on",
        "under_contract": "Such a contract exists (contract_number is not empty)",
    },
    "units": {
        **{k: v for k, v in _UNIT_FIELDS.items() if k.startswith("product_")},
        **_WARRANTY_FIELDS,
        "warranty_ends_on": "Last day of the whole-unit warranty",
        "contract_ends_on": "Last day of the latest contract covering the unit (not cancelled)",
    },
    "contracts": {
        "renewal_number": "Number of the contract that renews this one (renewal_of_id)",
        "renewed": "status is renewed, renewed_at is set, or a renewal contract names this one",
    },
}
"""Every derived field, per entity, with what it means (also in docs/policy.md)."""


Narrowing = Callable[[Table], ColumnElement[bool]]
"""A filter on an entity's stored columns, applied before any derived field is computed."""


@dataclass(frozen=True, slots=True)
class Views:
    """The derived views of one policy, by entity."""

    book: WarrantyBook
    by_entity: Mapping[str, FromClause]

    def full(self, entity: str) -> FromClause:
        """The entity's view with every derived field, or its table when it has none."""
        view = self.by_entity.get(entity)
        return entity_table(entity) if view is None else view

    def for_fields(self, entity: str, names: Iterable[str]) -> FromClause:
        """The view when `names` include a derived field, else the plain (faster) table."""
        if set(names) & set(DERIVED_FIELDS.get(entity, ())):
            return self.full(entity)
        return entity_table(entity)

    def narrowed(self, entity: str, where: Narrowing) -> FromClause:
        """The view computed only for the rows of the table where `where` holds."""
        build = _BUILDERS.get(entity)
        # No derived fields: the rule's own WHERE filters the plain table.
        return entity_table(entity) if build is None else build(self.book, where)


def build_views(book: WarrantyBook) -> Views:
    """The views of a warranty book: one subquery per entity with derived fields."""
    return Views(book, {entity: build(book, None) for entity, build in _BUILDERS.items()})


def call_scope() -> FromClause:
    """What a warranty's `void_when` may read: the call with its unit and product."""
    return _view(_call_base(WarrantyBook(), None), "service_requests")


def layer(stmt: Select[Any]) -> FromClause:
    """One layer of a view, computed once per row.

    OFFSET 0 keeps both databases from merging the layer into the next one: merged, every
    reference to a derived column repeats its expression (PostgreSQL took 60 times longer
    on 30,000 calls). The price is that filters of the outer query stay outside, which is
    why `Views.narrowed` puts a rule's filter on stored columns into the innermost layer.
    """
    return stmt.offset(0).subquery()


def _narrow(stmt: Select[Any], table: Table, where: Narrowing | None) -> Select[Any]:
    return stmt if where is None else stmt.where(where(table))


# ---------------------------------------------------------------- service_requests


def _call_base(book: WarrantyBook, where: Narrowing | None) -> Select[Any]:
    calls, units, products = ServiceRequest.__table__, Unit.__table__, Product.__table__
    branches = Branch.__table__
    joined = (
        calls.join(branches, branches.c.id == calls.c.branch_id)
        .outerjoin(units, units.c.id == calls.c.unit_id)
        .outerjoin(products, products.c.id == units.c.product_id)
    )
    stmt = select(
        calls,
        *_unit_columns(units, products),
        local_date(calls.c.received_at, branches.c.timezone).label("received_on"),
        _term(book, products.c.category, products.c.model).label("warranty_term"),
    ).select_from(joined)
    return _narrow(stmt, calls, where)


def _call_view(book: WarrantyBook, where: Narrowing | None = None) -> FromClause:
    base = layer(_call_base(book, where))
    term = base.c.warranty_term
    covering = Contract.__table__.alias("covering")
    contract = (
        select(func.min(covering.c.number))
        .where(
            covering.c.customer_id == base.c.customer_id,
            or_(covering.c.unit_id == base.c.unit_id, covering.c.unit_id.is_(None)),
            covering.c.kind.in_(book.contract_kinds),
            covering.c.status != "cancelled",
            covering.c.starts_on <= base.c.received_on,
            covering.c.ends_on >= base.c.received_on,
        )
        .scalar_subquery()
    )
    voids = [
        (and_(term == t.id, to_sql(t.void_when, base, _NO_NIGHT)), true())
        for t in book.terms
        if t.void_when is not None
    ]
    starts = layer(
        select(
            base,
            *_start_columns(book, base),
            _part(book, term, base.c.fault_part).label("warranty_part"),
            (case(*voids, else_=false()) if voids else false()).label("warranty_void"),
            contract.label("contract_number"),
        )
    )
    ends = layer(
        select(starts, _ends(book, starts, starts.c.warranty_part).label("warranty_ends_on"))
    )
    inside = and_(
        ends.c.received_on >= ends.c.warranty_starts_on,
        ends.c.received_on <= ends.c.warranty_ends_on,
    )
    stmt = select(
        ends,
        flag(inside).label("in_warranty_term"),
        flag(and_(inside, ends.c.warranty_void.is_not(true()))).label("in_warranty"),
        flag(ends.c.contract_number.is_not(None)).label("under_contract"),
    )
    return _view(stmt, "service_requests", book)


# ---------------------------------------------------------------- units


def _unit_view(book: WarrantyBook, where: Narrowing | None = None) -> FromClause:
    units, products = Unit.__table__, Product.__table__
    columns = [c for c in _unit_columns(units, products) if c.key.startswith("product_")]
    term = _term(book, products.c.category, products.c.model).label("warranty_term")
    base = layer(
        _narrow(
            select(units, *columns, term).select_from(
                units.join(products, products.c.id == units.c.product_id)
            ),
            units,
            where,
        )
    )
    covering = Contract.__table__.alias("covering")
    contract_end = (
        select(func.max(covering.c.ends_on))
        .where(
            covering.c.customer_id == base.c.customer_id,
            or_(covering.c.unit_id == base.c.id, covering.c.unit_id.is_(None)),
            covering.c.kind.in_(book.contract_kinds),
            covering.c.status != "cancelled",
        )
        .scalar_subquery()
    )
    starts = layer(
        select(base, *_start_columns(book, base), contract_end.label("contract_ends_on"))
    )
    stmt = select(starts, _ends(book, starts, None).label("warranty_ends_on"))
    return _view(stmt, "units", book)


# ---------------------------------------------------------------- contracts


def _contract_view(_book: WarrantyBook, where: Narrowing | None = None) -> FromClause:
    contracts = Contract.__table__
    successor = contracts.alias("successor")
    follows = and_(successor.c.renewal_of_id == contracts.c.id, successor.c.status != "cancelled")
    renewal = select(func.min(successor.c.number)).where(follows).scalar_subquery()
    renewed = or_(
        contracts.c.status == "renewed",
        contracts.c.renewed_at.is_not(None),
        select(successor.c.id).where(follows).exists(),
    )
    stmt = select(contracts, renewal.label("renewal_number"), flag(renewed).label("renewed"))
    return _view(_narrow(stmt, contracts, where), "contracts")


_BUILDERS: dict[str, Callable[[WarrantyBook, Narrowing | None], FromClause]] = {
    "service_requests": _call_view,
    "units": _unit_view,
    "contracts": _contract_view,
}


# ---------------------------------------------------------------- the warranty book as SQL


def _unit_columns(units: FromClause, products: FromClause) -> list[ColumnElement[Any]]:
    return [
        units.c.serial_number,
        units.c.purchased_on,
        units.c.proof_of_purchase,
        units.c.installed_on,
        units.c.manufactured_on,
        products.c.model.label("product_model"),
        products.c.category.label("product_category"),
        products.c.name.label("product_name"),
    ]


def _term(
    book: WarrantyBook, category: ColumnElement[Any], model: ColumnElement[Any]
) -> ColumnElement[Any]:
    """The id of the product's term; the book lists model terms before category terms."""
    return _typed(
        [(_fits(t.selector, category, model), literal(t.id)) for t in book.terms], String()
    )


def _start_columns(book: WarrantyBook, rows: FromClause) -> list[ColumnElement[Any]]:
    """warranty_basis, warranty_starts_on and warranty_promotion of each row's unit."""
    by_basis: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for term in book.terms:
        by_basis[term.basis].append(term.id)
    term = rows.c.warranty_term

    def first_present(value: Any, kind: TypeEngine[Any]) -> ColumnElement[Any]:
        return _typed(
            [
                (
                    term.in_(ids),
                    _typed([(_present(b, rows), value(b)) for b in basis], kind),
                )
                for basis, ids in by_basis.items()
            ],
            kind,
        )

    proven = and_(term.is_not(None), rows.c.proof_of_purchase.is_(true()))
    promotions = [
        (
            and_(
                proven,
                rows.c.purchased_on.between(p.first, p.last),
                _fits(p.selector, rows.c.product_category, rows.c.product_model),
            ),
            literal(p.id),
        )
        for p in book.promotions
    ]
    return [
        first_present(literal, String()).label("warranty_basis"),
        first_present(lambda b: rows.c[basis_field(b)], Date()).label("warranty_starts_on"),
        _typed(promotions, String()).label("warranty_promotion"),
    ]


def _present(basis: str, rows: FromClause) -> ColumnElement[bool]:
    has_date = rows.c[basis_field(basis)].is_not(None)
    if basis in PROVEN_BASES:
        return and_(rows.c.proof_of_purchase.is_(true()), has_date)
    return has_date


def _part(
    book: WarrantyBook, term: ColumnElement[Any], fault: ColumnElement[Any]
) -> ColumnElement[Any]:
    """The part whose term covers the fault: its own term, else the unit's."""
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    for t in book.terms:
        own = [name for name in t.parts if name != UNIT_PART]
        if own:
            whens.append((and_(term == t.id, fault.in_(own)), fault))
        if UNIT_PART in t.parts:
            whens.append((term == t.id, literal(UNIT_PART)))
    return _typed(whens, String())


def _ends(
    book: WarrantyBook, rows: FromClause, part: ColumnElement[Any] | None
) -> ColumnElement[Any]:
    """The last day covered: start + term (+ promotion) - 1 day; `part` None: the unit's."""
    extended: dict[Length, list[ColumnElement[bool]]] = defaultdict(list)
    plain: dict[Length, list[ColumnElement[bool]]] = defaultdict(list)
    for t in book.terms:
        for name, length in t.parts.items():
            if part is None and name != UNIT_PART:
                continue
            which = rows.c.warranty_term == t.id
            if part is not None:
                which = and_(which, part == name)
            for p in book.promotions:
                if name in p.extend:
                    extended[length + p.extend[name]].append(
                        and_(which, rows.c.warranty_promotion == p.id)
                    )
            plain[length].append(which)
    start = rows.c.warranty_starts_on
    # Windows lengthened by a promotion first: a row that fits one is decided there.
    whens = [
        (or_(*conditions), _last_day(start, length))
        for group in (extended, plain)
        for length, conditions in sorted(group.items())
    ]
    return _typed(whens, Date())


def _last_day(start: ColumnElement[Any], length: Length) -> ColumnElement[Any]:
    """Length.last_day in SQL, with the same shifts."""
    if not length.months:
        return shift_date(start, length.days - 1, "day")
    anniversary = shift_date(start, length.months, "month")
    clamped = shift_date(anniversary, -length.months, "month") != start
    end = _typed([(clamped, anniversary)], Date(), else_=shift_date(anniversary, -1, "day"))
    return shift_date(end, length.days, "day") if length.days else end


def _fits(
    selector: Selector, category: ColumnElement[Any], model: ColumnElement[Any]
) -> ColumnElement[bool]:
    parts = []
    if selector.category is not None:
        parts.append(category == selector.category)
    if selector.models:
        parts.append(model.in_(selector.models))
    return and_(*parts) if parts else true()


def _typed(
    whens: list[tuple[ColumnElement[bool], Any]],
    kind: TypeEngine[Any],
    else_: ColumnElement[Any] | None = None,
) -> ColumnElement[Any]:
    """A CASE of a known type (NULL when no row fits, or when there is nothing to choose)."""
    fallback = null() if else_ is None else else_
    return type_coerce(case(*whens, else_=fallback) if whens else fallback, kind)


def flag(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """A yes/no value that is never NULL: unknown counts as no."""
    return type_coerce(case((condition, true()), else_=false()), Boolean())


def _view(stmt: Select[Any], name: str, book: WarrantyBook | None = None) -> FromClause:
    """The statement as a named subquery whose columns keep the choices conditions check."""
    view = stmt.subquery(name)
    choices: dict[str, tuple[str, ...]] = {}
    if book is not None:
        choices = {
            "warranty_basis": tuple(BASIS_WORDS),
            "warranty_term": tuple(t.id for t in book.terms),
            "warranty_promotion": tuple(p.id for p in book.promotions),
            "warranty_part": tuple(book.part_names()),
        }
    table = entity_table(name)
    for column in view.c:
        if column.key in table.c:
            column.info.update(table.c[column.key].info)
        elif choices.get(column.key):
            # A labelled expression's column has no `info` of its own; the condition
            # checker reads one when it is there.
            column.info = {"choices": choices[column.key]}  # type: ignore[misc]
    return view
