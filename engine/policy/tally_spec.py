"""The tally family's policy shape: penalties and rewards per person and period, and the ledger.

    ledger: {currency: CNY, timezone: Asia/Shanghai, close_on_day: 10}
    tallies:
      - id: unanswered-hotline
        title: Unanswered service-line call between 09:00 and 22:00 local time
        entity: hotline_calls
        when: not answered
        at: received_at                    # places each call in a period, in local time
        local_hours: ['09:00', '22:00']
        period: month
        charge: on_duty_staff, else team_lead
        penalty: 50 each

How much is owed takes one of four forms, written under `penalty:` or `reward:`:
`50 each` (per matching entity, times any `multiply` factors), `10% of compensation` (a share
of a money field), `{bands: [...]}` on a `measure` (count, sum, average or ratio per person),
and `8 per point` on a weighted `score`. Money is Decimal, never float: YAML numbers are read
back through their shortest text, so `3.5` is exactly 3.5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import list_currencies
from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from engine.policy.calendar_spec import time_zone_schema
from engine.policy.durations import PeriodKind, Span
from engine.policy.models import BranchScope, Locale, Rule, Word, _Frozen
from engine.policy.schema_parts import LazySchema

ONE_HUNDRED_PERCENT = Decimal(1)

# ---------------------------------------------------------------- scalar types


def _decimal(value: Any, what: str = "a number") -> Decimal:
    """A Decimal from a YAML int, float (through its shortest text) or numeric string."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {what}, not {value!r}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not {what}") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not {what}")
    return number


def _money(value: Any) -> Decimal:
    amount = _decimal(value, "an amount such as 50 or 12.50")
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{value!r}: amounts are positive with at most two decimals")
    return amount


def _percent(value: Any) -> Decimal:
    if not isinstance(value, str) or not value.strip().endswith("%"):
        raise ValueError(f"{value!r}: write a percentage such as '40%'")
    share = _decimal(value.strip().removesuffix("%"), "a percentage") / 100
    if share <= 0:
        raise ValueError(f"{value!r}: a percentage must be above 0%")
    return share


def _threshold(value: Any) -> Decimal:
    """`95%` (for ratios) or a plain number such as `3.5`."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return _decimal(value.strip().removesuffix("%"), "a percentage") / 100
    return _decimal(value)


def _factor(value: Any) -> Decimal:
    factor = _decimal(value, "a factor such as 2 or 1.5")
    if factor <= 0:
        raise ValueError(f"{value!r}: a factor must be above 0")
    return factor


def _percent_text(share: Decimal) -> str:
    return f"{(share * 100).normalize():f}%"


_DECIMAL = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
"""The numbers _decimal reads from text, as an ECMA-262 pattern (digit separators aside)."""

Money = Annotated[
    Decimal,
    PlainValidator(_money),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\+?(\d+(\.\d{0,2})?|\.\d{1,2})0*\s*$"},
            ],
            "description": "An amount, e.g. 50 or 12.50",
        }
    ),
]
"""A non-negative amount with at most two decimals, in the rule's currency."""

Share = Annotated[
    Decimal,
    PlainValidator(_percent),
    PlainSerializer(_percent_text),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\s*\+?(0*[1-9]\d*(\.\d*)?|0*\.\d*[1-9]\d*)\s*%\s*$"}
    ),
]
"""A percentage written with its sign (`40%`), held as a fraction (0.4)."""

Threshold = Annotated[
    Decimal,
    PlainValidator(_threshold),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": rf"^\s*{_DECIMAL}\s*%?\s*$"},
            ],
            "description": "A value such as 3.5, or 95% for ratios",
        }
    ),
]
"""A band's lower edge: a number, or a percentage (a fraction) for ratios."""

Factor = Annotated[
    Decimal,
    PlainValidator(_factor),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*\+?(0*[1-9]\d*(\.\d*)?|0*\.\d*[1-9]\d*)\s*$"},
            ],
            "description": "A factor, e.g. 2",
        }
    ),
]


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def _currency(value: Any) -> str:
    if not isinstance(value, str) or value not in _currencies():
        raise ValueError(f"{value!r} is not an ISO 4217 currency code such as CNY, EUR, TWD")
    return value


Currency = Annotated[
    str,
    PlainValidator(_currency),
    LazySchema(lambda: {"type": "string", "enum": sorted(_currencies())}),
]


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Asia/Shanghai") from None
    return str(value)


TimeZone = Annotated[str, PlainValidator(_timezone), LazySchema(time_zone_schema)]

# ---------------------------------------------------------------- phrases


def _ecma(*patterns: re.Pattern[str]) -> str:
    """Python patterns as one JSON Schema (ECMA-262) pattern: no named groups."""
    return "|".join(re.sub(r"\(\?P<\w+>", "(", p.pattern) for p in patterns)


_WORD = r"[a-z][a-z0-9_]*"
_NUMBER = r"\d+(?:\.\d+)?"
_EACH = re.compile(rf"^\s*(?P<amount>{_NUMBER})\s+each\s*$")
_SHARE = re.compile(rf"^\s*(?P<share>{_NUMBER}\s*%)\s+of\s+(?P<field>{_WORD})\s*$")
_PER_POINT = re.compile(rf"^\s*(?P<amount>{_NUMBER})\s+per\s+point\s*$")
_AMOUNT_FORMS = "'50 each', '10% of compensation', '8 per point' or {bands: [...]}"


def _charge(value: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, str):
        raise ValueError("write who pays, e.g. 'responsible_staff, else team_lead'")
    parts = [p.strip() for p in value.split(",")]
    roles = [parts[0], *(p.removeprefix("else").strip() for p in parts[1:])]
    if any(not p.startswith("else ") for p in parts[1:]) or not all(
        re.fullmatch(_WORD, r) for r in roles
    ):
        raise ValueError(
            f"{value!r}: write a role, then stand-ins: 'responsible_staff, else team_lead'"
        )
    return tuple(roles)


Charge = Annotated[
    tuple[str, ...],
    PlainValidator(_charge),
    PlainSerializer(lambda roles: ", else ".join(roles)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^\s*{_WORD}(\s*,\s*else\s+{_WORD})*\s*$",
            "description": "Who the entry is booked to: a staff column or a branch role, "
            "then stand-ins: 'responsible_staff, else team_lead'",
        }
    ),
]
"""Who is fined or rewarded: the first role that names somebody for the entity."""

_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-4]):(?P<m>[0-5]\d)$")
_CLOCK_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"  # _CLOCK as _local_hours reads it


def _local_hours(value: Any) -> tuple[str, str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("write two quoted times of day: ['09:00', '22:00']")
    out = []
    for item in value:
        match = _CLOCK.match(item) if isinstance(item, str) else None
        if match is None or (match["h"] == "24" and match["m"] != "00"):
            raise ValueError(f"{item!r} is not a time of day: write it quoted, e.g. '09:00'")
        out.append(item)
    if out[0] == out[1]:
        raise ValueError("the hours begin and end at the same time; leave local_hours out")
    return out[0], out[1]


LocalHours = Annotated[
    tuple[str, str],
    PlainValidator(_local_hours),
    PlainSerializer(list),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": _CLOCK_PATTERN},
            "minItems": 2,
            "maxItems": 2,
            "description": "From and until (not included), local time of the branch",
        }
    ),
]
"""Local times of day [from, until) in the branch's time zone; may run past midnight."""

MeasureKind = Literal["count", "sum", "average", "ratio"]
_MEASURES = {
    "count": re.compile(r"^\s*count\s*$"),
    "sum": re.compile(rf"^\s*sum\s+of\s+(?P<fields>{_WORD})\s*$"),
    "average": re.compile(rf"^\s*average\s+of\s+(?P<fields>{_WORD}(?:\s*,\s*{_WORD})*)\s*$"),
    "ratio": re.compile(rf"^\s*ratio\s+of\s+(?P<a>{_WORD})\s+to\s+(?P<b>{_WORD})\s*$"),
}


class Measure(_Frozen):
    """What is measured per person and period: `count`, `sum of F`, `average of F, G`, ..."""

    kind: MeasureKind
    fields: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for kind, pattern in _MEASURES.items():
            match = pattern.match(value)
            if match is None:
                continue
            if kind == "ratio":
                return {"kind": kind, "fields": (match["a"], match["b"])}
            fields = match.groupdict().get("fields")
            split = tuple(f.strip() for f in fields.split(",")) if fields else ()
            return {"kind": kind, "fields": split}
        raise ValueError(
            f"{value!r}: write 'count', 'sum of F', 'average of F, G' or 'ratio of F to G'"
        )

    def __str__(self) -> str:
        if self.kind == "ratio":
            return f"ratio of {self.fields[0]} to {self.fields[1]}"
        return self.kind if self.kind == "count" else f"{self.kind} of {', '.join(self.fields)}"


def _or_phrase(pattern: str, example: str) -> Callable[[dict[str, Any]], None]:
    """JSON Schema hook: a field that takes the model or its one-line phrase (`50 each`)."""
    phrase = {"type": "string", "pattern": pattern, "description": f"e.g. {example}"}

    def extend(schema: dict[str, Any]) -> None:
        if "$ref" in schema:
            schema["anyOf"] = [{"$ref": schema.pop("$ref")}]
        schema["anyOf"].insert(0, phrase)

    return extend


_MEASURE_PHRASE = _or_phrase(_ecma(*_MEASURES.values()), "'average of attitude, skill'")
# The phrases' numbers as the amount and share checks take them: at most two decimals (trailing
# zeros aside), a share above 0%.
_CENTS = r"\d+(\.\d{1,2}0*)?"
_ABOVE_ZERO = r"(0*[1-9]\d*(\.\d+)?|0+\.\d*[1-9]\d*)"
_AMOUNT_PHRASE = _or_phrase(
    rf"^\s*{_CENTS}\s+each\s*$|^\s*{_ABOVE_ZERO}\s*%\s+of\s+{_WORD}\s*$"
    rf"|^\s*{_CENTS}\s+per\s+point\s*$",
    "'50 each' or '8 per point'",
)


def _amounts_phrase(schema: dict[str, Any]) -> None:
    """JSON Schema hook: a mapping whose values are amounts or their phrases."""
    for value in schema["patternProperties"].values():  # keys are role words
        _AMOUNT_PHRASE(value)


# ---------------------------------------------------------------- rule parts


class MoneyBand(_Frozen):
    """From this measured value up (to the next band), this amount."""

    at_least: Threshold = Field(description="Lower edge, included: 3.5, or 95% for ratios")
    amount: Money = Field(description="Amount for a measure in this band")


class PointsBand(_Frozen):
    """From this measured value up (to the next band), these points."""

    at_least: Threshold = Field(description="Lower edge, included: 80, or 95% for ratios")
    points: Annotated[
        Decimal,
        PlainValidator(_decimal),
        WithJsonSchema(
            {"anyOf": [{"type": "number"}, {"type": "string", "pattern": rf"^\s*{_DECIMAL}\s*$"}]}
        ),
    ] = Field(description="Points for a measure in this band")


def _check_bands(bands: tuple[Any, ...]) -> None:
    edges = [band.at_least for band in bands]
    if edges != sorted(set(edges), reverse=True):
        raise ValueError("bands go from the highest `at_least` down, each edge once")


class Amount(_Frozen):
    """How much one person owes or earns in a period; `50 each` is short for {each: 50}."""

    each: Money | None = Field(None, description="Per matching entity: '50 each'")
    share: Share | None = Field(None, description="Share of a money field: '10% of compensation'")
    of: Word | None = Field(None, description="The money field `share` is taken of")
    per_point: Money | None = Field(None, description="Per point of the `score`: '8 per point'")
    bands: tuple[MoneyBand, ...] = Field((), description="Amount by the `measure`, highest first")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, int | float):  # bool is an int too
            raise ValueError(f"{value!r}: write {_AMOUNT_FORMS}")
        if not isinstance(value, str):
            return value
        if match := _EACH.match(value):
            return {"each": match["amount"]}
        if match := _SHARE.match(value):
            return {"share": match["share"], "of": match["field"]}
        if match := _PER_POINT.match(value):
            return {"per_point": match["amount"]}
        raise ValueError(f"{value!r}: write {_AMOUNT_FORMS}")

    @model_validator(mode="after")
    def _one_form(self) -> Amount:
        forms = [self.each, self.share, self.per_point, self.bands or None]
        if sum(f is not None for f in forms) != 1:
            raise ValueError(f"give exactly one of: {_AMOUNT_FORMS}")
        if (self.share is None) != (self.of is None):
            raise ValueError("a share needs its field: '10% of compensation'")
        _check_bands(self.bands)
        return self

    @property
    def form(self) -> Literal["each", "share", "per_point", "bands"]:
        """Which of the four forms this is."""
        if self.each is not None:
            return "each"
        if self.share is not None:
            return "share"
        return "per_point" if self.per_point is not None else "bands"

    def __str__(self) -> str:
        if self.each is not None:
            return f"{self.each} each"
        if self.share is not None:
            return f"{_percent_text(self.share)} of {self.of}"
        if self.per_point is not None:
            return f"{self.per_point} per point"
        return "; ".join(f"from {b.at_least}: {b.amount}" for b in self.bands)


class Multiplier(_Frozen):
    """A factor on an entity's amount when its condition holds (always, without `when`)."""

    when: str | None = Field(None, description="Condition on the entity; empty: always")
    by: Factor = Field(description="Factor, e.g. 2 for double")
    why: dict[Locale, Annotated[str, StringConstraints(min_length=1)]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Why the factor applies, in words per locale ({en: repeated, zh-CN: 重复}), "
        "for the reward/penalty notices; without it they show the factor alone",
    )


class Gate(_Frozen):
    """The least a measure must reach: `{at_least: 94}`, or `{at_least: 94%}` for a ratio."""

    at_least: Threshold = Field(description="Lower edge, included")


class ScoreItem(_Frozen):
    """One weighted part of a score: a measure over some entities, turned into points; or a
    gate (`gate: {at_least: 94}`) the measure must reach for any amount, worth no points."""

    name: str = Field(min_length=1, description="What the part is, for reasons and notices")
    names: dict[Locale, Annotated[str, StringConstraints(min_length=1)]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="The name in other languages, by locale ({zh-CN: ..., es: ...}), for the "
        "reward/penalty notices; a reader whose locale has none reads `name`",
    )
    weight: Share | None = Field(None, description="Share of the score, e.g. 40%")
    when: str | None = Field(None, description="Which entities this part measures")
    measure: Measure = Field(
        description="'ratio of actual to target', 'average of actual', ...",
        json_schema_extra=_MEASURE_PHRASE,
    )
    bands: tuple[PointsBand, ...] = Field((), description="Points, highest band first")
    required: bool = Field(
        False, description="Below the lowest band (or nothing measured): no amount at all"
    )
    gate: Gate | None = Field(
        None, description="Instead of weight and bands: below this (or nothing measured), no amount"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScoreItem:
        if self.gate is not None:
            if self.weight is not None or self.bands or self.required:
                raise ValueError("a `gate` part has no `weight`, `bands` or `required`")
            return self
        if self.weight is None or not self.bands:
            raise ValueError("a score part needs a `weight` and `bands` (or is a `gate`)")
        _check_bands(self.bands)
        return self


class TallyRule(Rule):
    """Penalties or rewards per person and period, written to the append-only ledger."""

    at: Word = Field(
        description="Date or timestamp field that places an entity in a period (branch time)"
    )
    period: PeriodKind = Field(
        description="day, week (ISO, Monday first), month, quarter, half-year or year; "
        "each closes with the month its last day falls in"
    )
    local_hours: LocalHours | None = Field(
        None, description="Only entities whose `at` falls in these local hours: ['09:00', '22:00']"
    )
    charge: Charge = Field(
        description="Who is fined or rewarded: 'responsible_staff, else team_lead'"
    )
    penalty: Amount | None = Field(
        None, description="What a person pays", json_schema_extra=_AMOUNT_PHRASE
    )
    reward: Amount | None = Field(
        None, description="What a person earns", json_schema_extra=_AMOUNT_PHRASE
    )
    currency: Currency | None = Field(None, description="Default: the ledger's currency")
    multiply: tuple[Multiplier, ...] = Field(
        (), description="Factors per entity: [{when: repeat_of_id is not null, by: 2}]"
    )
    measure: Measure | None = Field(
        None,
        description="For bands: count, 'sum of F', 'average of F, G', 'ratio of F to G'",
        json_schema_extra=_MEASURE_PHRASE,
    )
    min_count: int | None = Field(
        None, ge=1, description="Fewer entities than this in a period: nothing is booked"
    )
    cap: Money | None = Field(None, description="At most this much per person and period")
    score: tuple[ScoreItem, ...] = Field((), description="Weighted parts, for 'N per point'")
    by_role: dict[Word, Amount] = Field(
        {},
        description="The amount for people of these roles, in the same form as the rule's: "
        "{service_manager: 25 per point}",
        json_schema_extra=_amounts_phrase,
    )

    @model_validator(mode="after")
    def _consistent(self) -> TallyRule:
        if (self.penalty is None) == (self.reward is None):
            raise ValueError("give exactly one of `penalty` or `reward`")
        form = self.amount.form
        if (form == "bands") != (self.measure is not None):
            raise ValueError("bands need a `measure`, and a `measure` needs bands")
        if (form == "per_point") != bool(self.score):
            raise ValueError("'N per point' needs a `score`, and a `score` needs 'N per point'")
        if self.multiply and form not in ("each", "share"):
            raise ValueError("`multiply` works on amounts per entity ('50 each', '10% of F')")
        if self.min_count is not None and form in ("each", "share"):
            raise ValueError("`min_count` works with a `measure` or a `score`")
        weights = sum(item.weight for item in self.score if item.weight is not None)
        if self.score and weights != ONE_HUNDRED_PERCENT:
            raise ValueError(f"the score's weights add up to {_percent_text(weights)}, not 100%")
        for role, amount in self.by_role.items():
            if amount.form != form:
                raise ValueError(
                    f"by_role: {role}'s amount '{amount}' is not in the form of '{self.amount}'"
                )
        return self

    def amount_for(self, role: str | None) -> Amount:
        """The amount for a person of `role`: their role's, else the rule's."""
        return self.by_role.get(role or "", self.amount)

    @property
    def amount(self) -> Amount:
        """The penalty or the reward, whichever is given."""
        return self.penalty or self.reward  # type: ignore[return-value]

    @property
    def sign(self) -> int:
        """-1 for penalties (deducted), +1 for rewards (paid out), as booked in the ledger."""
        return -1 if self.penalty is not None else 1


CurrencyKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class Approval(_Frozen):
    """Who must approve a closed month before its reward/penalty notices go out (002 (七)2)."""

    by: Word = Field(description="Staff role told that a month waits, e.g. general_manager")
    notice: Word = Field(
        "approval_request", description="Notice telling `by` that a month waits for approval"
    )
    branches: BranchScope | None = Field(
        None, description="Only these branches' notices wait; default: every branch"
    )


class LedgerSettings(_Frozen):
    """The ledger and the monthly close, once per policy."""

    currency: Currency | dict[CurrencyKey, Currency] | None = Field(
        None,
        description="Currency of the tallies' amounts: one code, or one per country or branch "
        "code ({CN: CNY, ES: EUR}; a branch's code wins over its country)",
    )
    approval: Approval | None = Field(
        None,
        description="Hold each person's notice and its copies until `aftersales approve` "
        "records the approval; default: they go out at the close",
    )
    timezone: TimeZone = Field("UTC", description="Time zone the close day is counted in")
    close_on_day: int = Field(
        10,
        ge=1,
        le=28,
        description="The previous month closes at 00:00 on this day, with every period whose "
        "last day falls in it (its days and weeks; a quarter, half-year or year it ends)",
    )
    corrections_for: Span | None = Field(
        None,
        description="How long after its close a period is recomputed, differences booked as "
        "corrections. Default: one period, at least a month (a month for days and weeks)",
    )
    notice: Word = Field("reward_penalty_notice", description="Notice to each person booked")
    copy_to: tuple[Word, ...] = Field(
        ("accounting", "payroll"), description="Who also receives each person's notice"
    )
    summary: Word = Field("penalty_summary", description="Summary per branch at each close")
    summary_to: tuple[Word, ...] = Field(
        ("service_manager",), description="Who receives the branch summary"
    )

    def currency_for(self, branch: Mapping[str, Any] | None) -> str | None:
        """The currency of a branch's amounts (a row with `code` and `country`), if any."""
        if not isinstance(self.currency, dict):
            return self.currency
        branch = branch or {}
        return self.currency.get(branch.get("code") or "") or self.currency.get(
            branch.get("country") or ""
        )

    @model_validator(mode="after")
    def _calendar_time(self) -> LedgerSettings:
        span = self.corrections_for
        if span is not None and (span.working or span.unit in ("minute", "hour")):
            raise ValueError("corrections_for counts calendar days, weeks, months or years")
        return self
