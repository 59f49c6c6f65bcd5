"""The obligation family's policy shape: work that must recur, or be done by a date.

    obligations:
      - id: monthly-inspection
        title: A monthly inspection report for every system under maintenance
        entity: contracts                  # for every contract ...
        when: kind == 'maintenance' and status != 'cancelled'
        active: [starts_on, ends_on]       # ... in force in a month ...
        every: month
        partial_periods: exempt            # (a contract that starts mid-month is not due)
        record:                            # ... an inspection report must exist ...
          entity: inspections
          link: contract_id                # inspections.contract_id = contracts.id
          at: inspected_on                 # done in that month
          submitted: report_submitted_at   # and handed in ...
        due: 5 days after                  # ... by the 5th day after the month ends
        notice: obligation_notice
        notify: [team_lead]

`every` is a day, an ISO week (Monday to Sunday), a month, a quarter, a half-year or a year,
in the branch's time zone. How many records a period needs (`count`) is a number, a field of
the entity (`count: visits_planned`), or the person's plan in the targets table, split into
the periods it spans: `count: {plan: customer_visits, per: quarter, split: evenly}`. A
period that needs none is not due; with `working_days: true`, nor a day the branch's
calendar has off.

Instead of `every`, `date: final_acceptance_on` with `due: 2 weeks after` asks for one record
by a day that hangs on the entity (a project handover). A record is on time when it was done
(and, with `submitted`, handed in) by the due day, in the branch's time zone.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema, model_validator

from engine.policy.durations import Duration, Offset, PeriodKind, Span, fits_in
from engine.policy.models import Action, EntityName, Rule, Word, _Frozen

_WORD = r"[a-z][a-z0-9_]*"
_LINK = re.compile(rf"^\s*(?P<record>{_WORD})\s*(?:=\s*(?P<entity>{_WORD}))?\s*$")


def _link(value: Any) -> tuple[str, str]:
    if isinstance(value, tuple):
        return value
    match = _LINK.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{value!r}: name the record's field that points at the entity ('contract_id'), "
            "or pair two fields ('branch_id = branch_id')"
        )
    return match["record"], match["entity"] or "id"


Link = Annotated[
    tuple[str, str],
    PlainValidator(_link),
    PlainSerializer(lambda pair: pair[0] if pair[1] == "id" else f"{pair[0]} = {pair[1]}"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^\s*{_WORD}\s*(=\s*{_WORD})?\s*$",
            "description": "The record's field equal to the entity's id ('contract_id'), or "
            "'record_field = entity_field'",
        }
    ),
]
"""(record field, entity field): a record belongs to the entity when the two are equal."""


class RecordSpec(_Frozen):
    """The records that fulfil an obligation: which table, which rows, which day they count."""

    entity: EntityName = Field(description="Table of the records")  # type: ignore[valid-type]
    link: Link = Field(description="How a record belongs to the entity: 'contract_id'")
    when: str | None = Field(None, description="Which rows count, e.g. kind == 'visit'")
    at: Word = Field(description="Date field: the day the work was done")
    submitted: Word | None = Field(
        None, description="Timestamp field: when the written record was handed in (required)"
    )


class PlanCount(_Frozen):
    """A count from the plan: each person's target for an item in the targets table."""

    plan: str = Field(
        min_length=1, max_length=40, description="The targets' item, e.g. customer_visits"
    )
    per: PeriodKind = Field(
        description="The plan's period; a target's period_start is its first day (quarter)"
    )
    split: Literal["evenly"] | None = Field(
        None,
        description="evenly: the target shared among the periods of `every` in the plan's "
        "period, what is left over going to the first ones (10 a quarter: 4, 3, 3)",
    )
    link: Link = Field(
        ("staff_id", "id"), description="How a target belongs to the entity: 'staff_id'"
    )

    def spoken(self) -> str:
        """`the customer_visits plan per quarter, split evenly`."""
        return f"the {self.plan} plan per {self.per}" + (
            f", split {self.split}" if self.split else ""
        )


Count = Annotated[int, Field(ge=1)] | Word | PlanCount
"""Records a period needs: a number, a field of the entity, or the plan."""


class ObligationRule(Rule, Action):
    """For every entity active in a period (or with a date), records must exist by a day."""

    every: PeriodKind | None = Field(
        None,
        description="The period the work recurs in: day, week (ISO, Monday first), month, "
        "quarter, half-year or year, in the branch's time zone",
    )
    working_days: bool = Field(
        False,
        description="With `every: day`: only the working days of the branch's calendar are "
        "due, not its weekends and public holidays",
    )
    active: tuple[Word, Word] | None = Field(
        None,
        description="The entity's first and last day in force: [starts_on, ends_on]; "
        "without: always, while `when` holds",
    )
    partial_periods: Literal["exempt", "due"] = Field(
        "exempt", description="exempt: a period the entity is in force only part of is not due"
    )
    date: Word | None = Field(None, description="Instead of `every`: the date the work hangs on")
    due: Offset = Field(
        description="With `every`: how long after the period's last day ('5 days after'); "
        "with `date`: relative to it ('2 weeks after', '1 month before')"
    )
    count: Count = Field(
        1,
        description="Records needed per period: a number, a field of the entity "
        "(visits_planned), or {plan: item, per: quarter, split: evenly} from the targets; "
        "a period that needs 0 is not due",
    )
    record: RecordSpec
    look_back: Span = Field(
        default_factory=lambda: Duration(60, "day"),
        description="How long after the due day a missing or late record is still reported",
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> ObligationRule:
        if (self.every is None) == (self.date is None):
            raise ValueError("give exactly one of `every` (day ... year) or `date` (a field)")
        if self.every is not None and self.due.is_negative:
            raise ValueError("with `every`, `due` counts after the period: e.g. '5 days after'")
        if self.date is not None and (self.active is not None or self.count != 1):
            raise ValueError("`active` and `count` go with `every`; a `date` asks for one record")
        if self.working_days and self.every != "day":
            raise ValueError("`working_days` goes with `every: day`")
        if self.working_days and isinstance(self.count, PlanCount) and self.count.split:
            # The plan would be shared among every day, and the days off's shares lost.
            raise ValueError("a plan split evenly over days cannot spare the days off")
        if isinstance(self.count, PlanCount) and self.every is not None:
            self._fits(self.count, self.every)
        for span in (self.due, self.look_back):
            if span.working or span.unit in ("minute", "hour"):
                raise ValueError(f"'{span}': obligations count calendar days, weeks or months")
        return self

    @staticmethod
    def _fits(plan: PlanCount, every: PeriodKind) -> None:
        if not fits_in(every, plan.per):
            raise ValueError(
                f"a {plan.per} is not made of whole {every}s: plan per {every}, or per a "
                f"longer period made of {every}s (weeks straddle months)"
            )
        if plan.per != every and plan.split is None:
            raise ValueError(
                f"the plan is per {plan.per}, the work every {every}: say how it is shared "
                "with `split: evenly`"
            )
