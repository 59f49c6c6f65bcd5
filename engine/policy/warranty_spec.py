"""The YAML shape of warranty coverage (`warranty:` in a policy file), validated.

    warranty:
      basis: [purchase_with_proof, installed_on, manufactured_on]
      void_when: human_damage or unauthorised_repair
      contract_kinds: [maintenance, extended_warranty]
      terms:
        - id: air-conditioners
          products: {category: air_conditioner}
          parts: {unit: 1 year, compressor: 3 years, labour: 1 year}
        - id: vrf-outdoor-units
          products: {model: AC-VRF160}
          parts: {unit: 2 years, compressor: 5 years}
      promotions:
        - id: winter-2025
          bought_between: [2025-12-01, 2025-12-31]
          products: {category: air_conditioner}
          extend: {unit: 6 months}

Field names in `void_when` are checked by the loader, which knows the database;
`engine.warranty` turns a spec into coverage windows and `engine.derived` compiles them to SQL.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from engine.db.models import Contract
from engine.policy.durations import Duration, parse_duration, span_pattern

BASES = (
    "purchase_with_proof",
    "purchased_on",
    "installed_on",
    "manufactured_on",
    "manufactured_with_proof",
)
"""Where a warranty may start: the purchase date with proof of purchase, the purchase date
taken on trust, the installation date, the production date read from the serial number, and
that date only when a proof of purchase was seen (003 1.1.1.1-1.1.1.3: no proof, no warranty;
the instrument number dates it)."""

DEFAULT_BASIS = ("purchase_with_proof", "installed_on", "manufactured_on")
"""The seeds' order (003, 004): proof of purchase, else installation, else the serial number."""

Basis = Literal[BASES]  # type: ignore[valid-type]
ContractKind = Literal[Contract.__table__.c.kind.info["choices"]]  # type: ignore[valid-type]
PartName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]*$"),
    Field(description="A part as service_requests.fault_part names it, or `unit`"),
]
# The same shape as a rule id (engine.policy.models.RuleId, which cannot be imported here
# because models.py imports this module for PolicyFile).
ItemId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$"),
    Field(description="Stable identifier: lower-case letters, digits, - and _"),
]


def _term_length(value: Any) -> Duration:
    span = value if isinstance(value, Duration) else parse_duration(value, signed=False)
    if span.working or span.unit in ("minute", "hour"):
        raise ValueError(
            f"'{span}': warranty terms are calendar days, weeks, months or years, "
            "e.g. '1 year' or '18 months'"
        )
    return span


TermLength = Annotated[
    Duration,
    PlainValidator(_term_length),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": span_pattern(("day", "week", "month", "year"), working=False),
            "description": "A term length: '90 days', '18 months', '3 years'",
        }
    ),
]


def _words(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Products(_Frozen):
    """Which products a term or promotion is for: a category, models, or both."""

    category: str | None = Field(
        None, min_length=1, description="products.category, e.g. air_conditioner"
    )
    model: Annotated[
        tuple[str, ...], BeforeValidator(_words, json_schema_input_type=str | tuple[str, ...])
    ] = Field(
        (), description="products.model codes; a term for models wins over one for the category"
    )

    @model_validator(mode="after")
    def _something(self) -> Products:
        if self.category is None and not self.model:
            raise ValueError("name a `category`, a `model` (or a list of models), or both")
        return self

    def __str__(self) -> str:
        parts = [f"category {self.category}"] if self.category else []
        if self.model:
            parts.append(f"model {', '.join(self.model)}")
        return " and ".join(parts)


class WarrantyTerm(_Frozen):
    """How long each part of some products is covered, and from which date."""

    id: ItemId
    title: str | None = Field(None, description="The term in words, for explain and letters")
    source: str | None = Field(None, description="The clause this term implements")
    products: Products = Field(description="The products this term covers")
    parts: dict[PartName, TermLength] = Field(
        min_length=1,
        description="Term per part; a faulty part without its own term falls back to `unit`",
    )
    basis: tuple[Basis, ...] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="Start-date order for this term; default: the section's"
    )
    void_when: str | None = Field(
        None,
        description="Condition on the repair call that voids the warranty; default: the section's",
    )


class Promotion(_Frozen):
    """Longer terms for units bought (with proof of purchase) within a date window."""

    id: ItemId
    title: str | None = Field(None, description="The promotion in words, for explain and letters")
    source: str | None = Field(None, description="Where the promotion was announced")
    bought_between: tuple[dt.date, dt.date] = Field(
        description="First and last purchase day of the promotion, both included"
    )
    products: Products | None = Field(None, description="Products it applies to; default: all")
    extend: dict[PartName, TermLength] = Field(
        min_length=1, description="Added to the term of each named part, e.g. {unit: 6 months}"
    )

    @model_validator(mode="after")
    def _window(self) -> Promotion:
        first, last = self.bought_between
        if last < first:
            raise ValueError(f"bought_between: {last} comes before {first}")
        return self


class WarrantySpec(_Frozen):
    """Warranty coverage: terms per product and part, their start, exclusions and promotions."""

    basis: tuple[Basis, ...] = Field(  # type: ignore[valid-type]
        DEFAULT_BASIS,
        min_length=1,
        description="Start-date order: the first date a unit has starts it; none: not covered",
    )
    void_when: str | None = Field(
        None, description="Condition on the repair call that voids the warranty (human damage...)"
    )
    contract_kinds: tuple[ContractKind, ...] = Field(  # type: ignore[valid-type]
        ("maintenance", "extended_warranty"),
        min_length=1,
        description="Contract kinds that cover repairs (the `under_contract` field)",
    )
    terms: tuple[WarrantyTerm, ...] = Field((), description="Terms, by product category or model")
    promotions: tuple[Promotion, ...] = Field(
        (), description="Extensions for units bought in a window; the first that fits applies"
    )

    @model_validator(mode="after")
    def _distinct(self) -> WarrantySpec:
        for name, items in (("term", self.terms), ("promotion", self.promotions)):
            twice = [key for key, n in Counter(i.id for i in items).items() if n > 1]
            if twice:
                raise ValueError(f"{name} id {twice[0]!r} is used twice")
        for basis in (self.basis, *(t.basis for t in self.terms if t.basis)):
            if len(set(basis)) != len(basis):
                raise ValueError(f"basis {list(basis)} names a date twice")
        seen: dict[str, str] = {}
        for term in self.terms:
            # Model terms are tried before category terms, so only a repeat within one kind
            # would make the order of the file decide.
            keys = [f"model {m}" for m in term.products.model] or [
                f"category {term.products.category}"
            ]
            for key in keys:
                if key in seen:
                    raise ValueError(
                        f"terms {seen[key]!r} and {term.id!r} are both for {key}: "
                        "which one applies would depend on their order"
                    )
                seen[key] = term.id
        return self
