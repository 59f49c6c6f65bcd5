"""The metric family's policy shape: KPIs per branch and technician and month.

    metrics:
      - id: on-time-dispatch
        title: Technician on site within the dispatch deadline
        entity: service_requests           # the denominator: rows of this table ...
        at: received_at                    # ... placed in a month by this field (branch time)
        when: kind == 'repair' and arrived_at is not null     # ... that match this filter
        numerator: {on_time: [dispatch-urban, dispatch-suburban]}   # of those, the ones on time
        per: [branch, technician_id]
        target: {at_least: 95%}

The numerator narrows the denominator's rows (`when`, `on_time`, `no_repeat`, `has`), or counts
rows of another table (`entity` and `at`: complaints per 100 calls, with `scale: 100`).
`average: [fields]` instead of a numerator gives the mean of those fields over the rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from engine.policy.durations import Span
from engine.policy.models import EntityName, Rule, RuleId, Word, _Frozen, exactly_one_of
from engine.policy.tally_spec import Threshold


class Repeat(_Frozen):
    """A later row on the same thing within a span: a repeat call on the same unit."""

    same: Word = Field(description="Field the two rows share, e.g. unit_id")
    at: Word = Field(description="Timestamp of the later row, e.g. received_at")
    within: Span = Field(description="How long after this row's `at`, e.g. '30 days'")


class Related(_Frozen):
    """Rows of another table that point at this one: a call's surveys."""

    entity: EntityName = Field(description="The other table")  # type: ignore[valid-type]
    link: Word = Field(description="Its field holding this row's id, e.g. service_request_id")


class Numerator(_Frozen):
    """What counts above the line: the denominator's rows that also satisfy this, or others."""

    when: str | None = Field(None, description="A further condition on the rows")
    on_time: tuple[RuleId, ...] = Field(
        (), description="Deadline rules the row never breached nor stopped late"
    )
    no_repeat: Repeat | None = Field(None, description="No repeat row within a span")
    has: Related | None = Field(None, description="At least one related row exists")
    lacks: Related | None = Field(
        None, description="No related row exists: no later call recorded as the same fault"
    )
    entity: EntityName | None = Field(  # type: ignore[valid-type]
        None, description="Count rows of another table instead (with `at`)"
    )
    at: Word | None = Field(None, description="With `entity`: the field placing its rows")

    @model_validator(mode="after")
    def _one_source(self) -> Numerator:
        if (self.entity is None) != (self.at is None):
            raise ValueError("`entity` and `at` go together: the other table and its date")
        if self.entity is not None and (self.on_time or self.no_repeat or self.related):
            raise ValueError("rows of another table take only `when`")
        if self.has is not None and self.lacks is not None:
            raise ValueError("give `has` or `lacks`, not both")
        return self

    @property
    def related(self) -> Related | None:
        """The other table's rows the numerator asks about (`has` or `lacks`)."""
        return self.has or self.lacks


class Target(_Frozen):
    """The value a KPI should reach: `{at_least: 95%}` or `{at_most: 2}`."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("at_least", "at_most"))

    at_least: Threshold | None = None
    at_most: Threshold | None = None

    @model_validator(mode="after")
    def _one_side(self) -> Target:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give one of `at_least` or `at_most`")
        return self

    def missed(self, value: Decimal | None) -> bool:
        """True when `value` is on the wrong side of the target (nothing measured: not missed)."""
        if value is None:
            return False
        if self.at_least is not None:
            return value < self.at_least
        return value > (self.at_most or 0)


class MetricRule(Rule):
    """A KPI: numerator over denominator (or an average) per branch, person and month."""

    at: Word = Field(description="Date or timestamp placing a row in a month (branch time)")
    numerator: Numerator | None = Field(None, description="What counts above the line")
    average: tuple[Word, ...] = Field(
        (), description="Instead of a numerator: the mean of these number fields"
    )
    scale: int = Field(1, ge=1, description="Multiply the ratio, e.g. 100 for 'per 100 calls'")
    per: tuple[Word, ...] = Field(
        ("branch",), description="branch, and staff fields of the entity, e.g. technician_id"
    )
    target: Target | None = Field(None, description="{at_least: 95%} or {at_most: 2}")

    @model_validator(mode="after")
    def _one_value(self) -> MetricRule:
        if (self.numerator is None) == (not self.average):
            raise ValueError("give a `numerator` (a share or rate) or `average` (a mean)")
        if "branch" not in self.per:
            raise ValueError("`per` starts with branch: every KPI is reported per branch")
        if self.numerator is not None and self.numerator.entity and len(self.per) > 1:
            raise ValueError("a numerator from another table is counted per branch only")
        return self

    @property
    def kind(self) -> Literal["share", "average", "rate"]:
        """How the value reads: a share (%), a mean, or a rate per `scale` rows."""
        if self.average:
            return "average"
        if self.scale != 1 or (self.numerator is not None and self.numerator.entity):
            return "rate"
        return "share"


class KpiReport(_Frozen):
    """The monthly KPI report: who gets it and how many months it compares."""

    notice: Word = Field("kpi_report", description="Template of the report letter")
    to: tuple[Word, ...] = Field(
        ("service_manager",), description="Staff roles that get each branch's report; [] for none"
    )
    history: int = Field(3, ge=1, le=12, description="Months shown before the reported one")
