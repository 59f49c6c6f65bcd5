"""Warranty coverage, decided in Python: the book of terms and promotions, and its windows.

The nightly batch decides coverage in SQL (engine.derived compiles this same book into CASE
expressions); `explain` and the tests decide it here. Both follow these rules:

- the term of a product: a term naming its model, else a term for its category, else none;
- the start: the first date of the term's `basis` order the unit has, else not covered;
- the part: the faulty part's own term, else the `unit` term, else not covered;
- a promotion: the first (in file order) whose purchase window holds the purchase date of a
  unit bought with proof of purchase, and whose products fit; it lengthens the parts it names;
- the window: from the start to the day before the same day a term later (1 year from
  2025-11-01 covers up to 2026-10-31), or to the end of a month too short for that day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from engine.expr import Expr, evaluate
from engine.expr.temporal import shift

if TYPE_CHECKING:
    # Types only: the policy loader builds the book, so importing the policy package here
    # would import the loader back.
    from engine.policy.durations import Duration
    from engine.policy.warranty_spec import Products, WarrantySpec

_NO_NIGHT = datetime(2000, 1, 1, tzinfo=UTC)  # void_when may not use as_of (the loader refuses it)
UNIT_PART = "unit"
"""The whole unit: the part every fault without a term of its own falls back to."""
BASIS_WORDS = {
    "purchase_with_proof": "purchase date, with proof of purchase",
    "purchased_on": "purchase date",
    "installed_on": "installation date",
    "manufactured_on": "serial-number (production) date",
    "manufactured_with_proof": "serial-number (production) date, with proof of purchase",
}
"""Each start basis in words, for reasons and explain."""

_BASIS_FIELDS = {
    "purchase_with_proof": "purchased_on",
    "purchased_on": "purchased_on",
    "installed_on": "installed_on",
    "manufactured_on": "manufactured_on",
    "manufactured_with_proof": "manufactured_on",
}
PROVEN_BASES = frozenset({"purchase_with_proof", "manufactured_with_proof"})
"""Bases that count only when the unit's proof of purchase was seen."""


@dataclass(frozen=True, slots=True, order=True)
class Length:
    """A term length in whole months and days (years are 12 months, weeks 7 days)."""

    months: int = 0
    days: int = 0

    @classmethod
    def of(cls, span: Duration) -> Length:
        """The length of a policy duration (days, weeks, months or years)."""
        per = {"day": (0, 1), "week": (0, 7), "month": (1, 0), "year": (12, 0)}
        months, days = per[span.unit]
        return cls(months * span.amount, days * span.amount)

    def __add__(self, other: Length) -> Length:
        return Length(self.months + other.months, self.days + other.days)

    def __bool__(self) -> bool:
        return bool(self.months or self.days)

    def __str__(self) -> str:
        years, months = divmod(self.months, 12)
        words = [
            f"{n} {unit}{'' if n == 1 else 's'}"
            for n, unit in ((years, "year"), (months, "month"), (self.days, "day"))
            if n
        ]
        return " ".join(words) or "0 days"

    def last_day(self, start: date) -> date:
        """The last day covered by a window of this length starting on `start`.

        The day before the same day `months` later (1 year from 2025-11-01 covers up to
        2026-10-31); when that month has no such day, its last day (1 month from January 31
        covers up to February 28), as periods are reckoned in civil law. Days come after.
        """
        if not self.months:
            return shift(start, self.days - 1, "day")
        anniversary = shift(start, self.months, "month")
        clamped = shift(anniversary, -self.months, "month") != start
        end = anniversary if clamped else shift(anniversary, -1, "day")
        return shift(end, self.days, "day") if self.days else end


@dataclass(frozen=True, slots=True)
class Selector:
    """Which products a term or promotion is for."""

    category: str | None = None
    models: tuple[str, ...] = ()

    @classmethod
    def of(cls, products: Products | None) -> Selector:
        """The selector of a spec's `products` (None: every product)."""
        return cls() if products is None else cls(products.category, tuple(products.model))

    def __str__(self) -> str:
        parts = [f"category {self.category}"] if self.category else []
        if self.models:
            parts.append(f"model {', '.join(self.models)}")
        return " and ".join(parts) or "every product"

    def fits(self, category: str | None, model: str | None) -> bool:
        """True when a product of this category and model is meant."""
        if self.category is not None and category != self.category:
            return False
        return not self.models or model in self.models


@dataclass(frozen=True, slots=True)
class Term:
    """A warranty term, resolved: its own or the section's basis and exclusions."""

    id: str
    title: str | None
    selector: Selector
    parts: Mapping[str, Length]
    basis: tuple[str, ...]
    void_when: Expr | None = field(default=None, compare=False)
    void_text: str | None = None

    def part_for(self, fault_part: str | None) -> str | None:
        """The part whose term covers a fault in `fault_part`: its own, else the unit's."""
        if fault_part is not None and fault_part in self.parts:
            return fault_part
        return UNIT_PART if UNIT_PART in self.parts else None


@dataclass(frozen=True, slots=True)
class Promotion:
    """Longer terms for units bought with proof of purchase between two days."""

    id: str
    title: str | None
    first: date
    last: date
    selector: Selector
    extend: Mapping[str, Length]


@dataclass(frozen=True, slots=True)
class WarrantyBook:
    """Every term and promotion of the policy, in the order they are tried."""

    terms: tuple[Term, ...] = ()
    promotions: tuple[Promotion, ...] = ()
    contract_kinds: tuple[str, ...] = ("maintenance", "extended_warranty")

    def term_for(self, category: str | None, model: str | None) -> Term | None:
        """The term of a product: one naming its model first, else one for its category."""
        return next((t for t in self.terms if t.selector.fits(category, model)), None)

    def promotion_for(self, unit: Mapping[str, Any]) -> Promotion | None:
        """The first promotion whose window holds the unit's proven purchase date."""
        bought = unit.get("purchased_on")
        if bought is None or not unit.get("proof_of_purchase"):
            return None
        return next(
            (
                p
                for p in self.promotions
                if p.first <= bought <= p.last
                and p.selector.fits(unit.get("product_category"), unit.get("product_model"))
            ),
            None,
        )

    def part_names(self) -> list[str]:
        """Every part some term names, unit first."""
        names = {name for term in self.terms for name in term.parts}
        return sorted(names, key=lambda n: (n != UNIT_PART, n))


def build_book(spec: WarrantySpec | None, void_when: Mapping[str, Expr | None]) -> WarrantyBook:
    """The book of a validated spec; `void_when` holds each term's parsed exclusion by id."""
    if spec is None:
        return WarrantyBook()
    terms = [
        Term(
            id=t.id,
            title=t.title,
            selector=Selector.of(t.products),
            parts={name: Length.of(span) for name, span in t.parts.items()},
            basis=tuple(t.basis or spec.basis),
            void_when=void_when.get(t.id),
            void_text=t.void_when or spec.void_when,
        )
        for t in spec.terms
    ]
    # Terms naming models are tried first, so a model's own term beats its category's.
    terms.sort(key=lambda t: not t.selector.models)
    promotions = tuple(
        Promotion(
            id=p.id,
            title=p.title,
            first=p.bought_between[0],
            last=p.bought_between[1],
            selector=Selector.of(p.products),
            extend={name: Length.of(span) for name, span in p.extend.items()},
        )
        for p in spec.promotions
    )
    return WarrantyBook(tuple(terms), promotions, tuple(spec.contract_kinds))


def basis_present(basis: str, unit: Mapping[str, Any]) -> bool:
    """True when the unit has the date this basis needs (and the proof, for purchases)."""
    if basis in PROVEN_BASES and not unit.get("proof_of_purchase"):
        return False
    return unit.get(_BASIS_FIELDS[basis]) is not None


def basis_field(basis: str) -> str:
    """The units column a basis reads its date from."""
    return _BASIS_FIELDS[basis]


def start_of(term: Term, unit: Mapping[str, Any]) -> tuple[str, date] | None:
    """The basis used and the day the warranty starts, or None: not covered."""
    for basis in term.basis:
        if basis_present(basis, unit):
            return basis, unit[_BASIS_FIELDS[basis]]
    return None


@dataclass(frozen=True, slots=True)
class Window:
    """How long one part of one unit is covered, and why."""

    part: str
    term: Length
    extension: Length
    starts_on: date
    ends_on: date  # the last day covered


@dataclass(frozen=True, slots=True)
class UnitWarranty:
    """The warranty of one unit: term, start, promotion and a window per part."""

    term: Term | None
    basis: str | None
    starts_on: date | None
    promotion: Promotion | None
    windows: tuple[Window, ...]

    def window(self, part: str | None) -> Window | None:
        """The window of a part, if the term covers it."""
        return next((w for w in self.windows if w.part == part), None)


def unit_warranty(book: WarrantyBook, unit: Mapping[str, Any]) -> UnitWarranty:
    """Every part's window for a unit (`product_category`, `product_model` and its dates)."""
    term = book.term_for(unit.get("product_category"), unit.get("product_model"))
    if term is None:
        return UnitWarranty(None, None, None, None, ())
    start = start_of(term, unit)
    promotion = book.promotion_for(unit)
    if start is None:
        return UnitWarranty(term, None, None, promotion, ())
    basis, starts_on = start
    windows = []
    for part, length in term.parts.items():
        extra = promotion.extend.get(part, Length()) if promotion else Length()
        windows.append(Window(part, length, extra, starts_on, (length + extra).last_day(starts_on)))
    return UnitWarranty(term, basis, starts_on, promotion, tuple(windows))


@dataclass(frozen=True, slots=True)
class CallCoverage:
    """The warranty fields of one repair call, as the derived SQL columns hold them."""

    warranty_term: str | None
    warranty_basis: str | None
    warranty_starts_on: date | None
    warranty_part: str | None
    warranty_promotion: str | None
    warranty_ends_on: date | None
    in_warranty_term: bool
    warranty_void: bool
    in_warranty: bool


def call_coverage(book: WarrantyBook, call: Mapping[str, Any]) -> CallCoverage:
    """The warranty fields of a call (its fields, its unit's and product's, `received_on`)."""
    warranty = unit_warranty(book, call)
    term = warranty.term
    part = term.part_for(call.get("fault_part")) if term else None
    window = warranty.window(part)
    received_on = call["received_on"]
    inside = window is not None and window.starts_on <= received_on <= window.ends_on
    # Unknown (a NULL in the condition) does not void: the exclusion must be established.
    void = bool(term and term.void_when and evaluate(term.void_when, call, _NO_NIGHT) is True)
    promotion = warranty.promotion
    return CallCoverage(
        warranty_term=term.id if term else None,
        warranty_basis=warranty.basis,
        warranty_starts_on=warranty.starts_on,
        warranty_part=part,
        warranty_promotion=promotion.id if promotion else None,
        warranty_ends_on=window.ends_on if window else None,
        in_warranty_term=inside,
        warranty_void=void,
        in_warranty=inside and not void,
    )


def coverage_text(record: Mapping[str, Any]) -> str:
    """The warranty part of a decision's reason, in words, from a row of derived fields."""
    term, part = record.get("warranty_term"), record.get("warranty_part")
    product = record.get("product_model") or "no product"
    if "unit_id" in record and record["unit_id"] is None:
        return "no unit recorded: no warranty"
    if term is None:
        return f"no warranty term for {product} ({record.get('product_category') or '-'})"
    if record.get("warranty_basis") is None:
        return f"term {term}: no start date (no proof of purchase, installation or serial date)"
    if part is None:
        return f"term {term} covers neither {record.get('fault_part')} nor the whole unit"
    fault = record.get("fault_part")
    on = (
        f"{part} term" if part == fault or fault is None else f"{fault} falls under the {part} term"
    )
    words = BASIS_WORDS.get(str(record["warranty_basis"]), str(record["warranty_basis"]))
    text = (
        f"{on} of {term}: from {record['warranty_starts_on']} ({words}) "
        f"to {record['warranty_ends_on']}"
    )
    if record.get("warranty_promotion"):
        text += f", lengthened by promotion {record['warranty_promotion']}"
    received = record.get("received_on")
    if received is not None:
        inside = record.get("in_warranty_term")
        text += f"; received {received}, {'inside' if inside else 'outside'} the window"
    if record.get("warranty_void"):
        text += "; warranty void (exclusion holds)"
    return text
