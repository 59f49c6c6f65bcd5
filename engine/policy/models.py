"""The validated shape of the policy files: frozen models, unknown keys refused.

A file holds any of the top-level sections below; `rules/*.yaml` together make one `Policy`.
Cross-references (field names in conditions, roles, template names) are checked by the loader,
which knows the database schema and the templates.
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from engine.db.models import LOCALES, SERVICE_TABLES
from engine.policy.calendar_spec import CalendarSpec
from engine.policy.durations import (
    CLOCK_SPAN_PATTERN,
    ClockSpan,
    Duration,
    Every,
    Offset,
    Span,
    parse_duration,
)
from engine.policy.warranty_spec import WarrantySpec

EntityName = Literal[tuple(t.__tablename__ for t in SERVICE_TABLES)]  # type: ignore[valid-type]
RuleId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$"),
    Field(description="Stable identifier: lower-case letters, digits, - and _"),
]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
CalendarName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]
Locale = Literal[LOCALES]  # type: ignore[valid-type]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def exactly_one_of(*keys: str) -> dict[str, Any]:
    """JSON Schema of a model's "give exactly one of" check: one of `keys`, not null."""
    return {
        "oneOf": [
            {"required": [key], "properties": {key: {"not": {"type": "null"}}}} for key in keys
        ]
    }


OVERDUE_NOTICE = "overdue_summary"
"""The template of the nightly overdue summary (engine.reports.overdue)."""

UNDELIVERABLE_NOTICE = "undeliverable"
"""The staff task for a customer letter that could not be emailed (engine.notices.dead_letters)."""


class Undeliverable(_Frozen):
    """Who is asked to phone or post a customer letter that could not be emailed."""

    notify: tuple[Word, ...] = Field(
        ("hotline_operator",),
        description="Staff roles asked, at the customer's branch (else head office), to phone "
        "the customer or post the letter when it has no email address or was refused for good "
        "(a 5xx bounce, retries used up); [] for nobody",
    )


class Defaults(_Frozen):
    """Policy-wide defaults."""

    locale: Locale = Field("en", description="Language used when a reader's has no template")
    customer_fallback: dict[Locale, Locale] = Field(  # type: ignore[valid-type]
        {},
        description="Customer letters: the locale read instead when a notice has no template "
        "in the customer's own ({zh-TW: en}); undeclared, validate refuses the notice and the "
        "run sets such a letter aside",
    )
    overdue_summary_to: tuple[Word, ...] = Field(
        ("service_manager",),
        description="Staff roles that get each branch's nightly overdue summary; [] for none",
    )
    effective_from: dt.date | None = Field(
        None,
        description="Go-live day: every rule (but KPI metrics) without its own effective_from "
        "takes it; what fell due before it is recorded as history, without notices",
    )
    undeliverable: Undeliverable = Field(
        default_factory=Undeliverable,
        description="A customer letter that could not be emailed becomes a task for staff",
    )


class NoticePlan(NamedTuple):
    """One notice a finding sends: to whom, with which template, and how soon."""

    role: str  # a role, or with `department` the entity's field naming one
    template: str
    otherwise: str | None  # the role notified instead when nobody holds `role`
    urgent: bool = False  # sent to staff in the same cycle, not held for their digest
    department: bool = False  # `role` is a field of the entity whose value is the role
    head_office: bool = False  # only head office's holders, even when the branch has some


URGENT_HELP = (
    "Staff get it in the same cycle, on its own, not held for their digest (which still "
    "lists it); for hour-level clocks. Customers' notices always go at once"
)


class Recipient(_Frozen):
    """A role to notify, with its own notice if given: `{role: sales_rep, notice: renewal_task}`;
    or the department named on the entity: `{department: responsible_department}`."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("role", "department"))

    role: Word | None = Field(
        None, description="customer, a declared staff role, or a staff column such as sales_rep"
    )
    department: Word | None = Field(
        None,
        description="Instead of `role`: a text field of the entity holding a declared role id "
        "(e.g. responsible_department); its holders at the entity's branch, else head office",
    )
    at: Literal["head_office"] | None = Field(
        None,
        description="head_office: only head office's holders of the role (staff without a "
        "branch), even when the entity's branch has some",
    )
    notice: Word | None = Field(None, description="Template for this role; default: the rule's")
    otherwise: Word | None = Field(
        None,
        description="Role to notify instead when nobody holds `role` for the entity (or the "
        "`department` field is empty)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        return {"role": value} if isinstance(value, str) else value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A role word (`customer`) or the mapping, as `_from_word` reads them."""
        return {"anyOf": [TypeAdapter(Word).json_schema(), handler(core_schema)]}

    @model_validator(mode="after")
    def _one_source(self) -> Recipient:
        if (self.role is None) == (self.department is None):
            raise ValueError("give exactly one of `role` or `department`")
        return self

    @property
    def label(self) -> str:
        """How a finding lists this recipient: `team_lead`, `service_manager@head_office`,
        `department:responsible_department`."""
        where = "@head_office" if self.at == "head_office" else ""
        return f"{self.role}{where}" if self.role else f"department:{self.department}{where}"

    def plan(self, template: str, urgent: bool) -> NoticePlan:
        """This recipient's notice plan, with `template` and `urgent` from its action."""
        return NoticePlan(
            self.role or self.department or "",
            self.notice or template,
            self.otherwise,
            urgent,
            department=self.department is not None,
            head_office=self.at == "head_office",
        )


CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
BranchCode = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class Branches(_Frozen):
    """Branches named by country (ISO 3166 code, as in branches.country) or by branch code."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [key], "properties": {key: {"minItems": 1}}}
                for key in ("country", "code")
            ]
        }
    )

    country: tuple[CountryCode, ...] = Field((), description="e.g. [CN]")
    code: tuple[BranchCode, ...] = Field((), description="e.g. [SH-01, BJ-01]")

    @model_validator(mode="after")
    def _some(self) -> Branches:
        if not self.country and not self.code:
            raise ValueError("name branches by `country`, `code`, or both")
        return self


class BranchScope(Branches):
    """Where a rule applies: `{country: [CN]}`, `{code: [SH-01]}`, `except` some of them."""

    except_: Branches | None = Field(
        None, alias="except", description="Branches left out, e.g. {code: [SH-02]}"
    )

    def __str__(self) -> str:
        def named(part: Branches) -> str:
            return " or ".join(
                text
                for text in (
                    f"country {', '.join(part.country)}" if part.country else "",
                    f"code {', '.join(part.code)}" if part.code else "",
                )
                if text
            )

        out = f"branches of {named(self)}"
        return f"{out}, except {named(self.except_)}" if self.except_ else out


class Rule(_Frozen):
    """What every rule has: identity, the table it looks at, and an optional condition."""

    id: RuleId
    title: str = Field(min_length=1, description="What the rule does, for a manager")
    titles: dict[Locale, Annotated[str, StringConstraints(min_length=1)]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="The title in other languages, by locale ({zh-CN: ..., es: ...}); "
        "a reader whose locale has none reads `title`",
    )
    source: str | None = Field(None, description="The clause this rule implements")
    entity: EntityName = Field(description="Table the rule looks at")  # type: ignore[valid-type]
    when: str | None = Field(None, description="Condition on the entity's fields")
    branches: BranchScope | None = Field(
        None, description="Only entities of these branches are judged; default: every branch"
    )
    effective_from: dt.date | None = Field(
        None,
        description="Not evaluated before this day; what fell due before it is recorded as "
        "history, without notices",
    )
    disabled: str | None = Field(
        None,
        min_length=1,
        description="Why the rule is not judged yet (a standard whose number the regulation "
        "leaves blank, say): it is validated and explained, never evaluated",
    )

    def title_in(self, locale: str | None) -> str:
        """The title a reader of `locale` reads: theirs if given, else `title`."""
        return self.titles.get(locale, self.title) if locale else self.title

    def localized_titles(self) -> dict[str, str]:
        """The title for a reader of every locale, for a template to pick the one it renders."""
        return {locale: self.title_in(locale) for locale in LOCALES}


class Action(_Frozen):
    """Who is told, with which notice and how soon, when a rule finds something."""

    notice: Word = Field(description="Template folder under templates/notices/")
    notify: tuple[Recipient, ...] = Field(min_length=1, description="Who receives it")
    urgent: bool = Field(False, description=URGENT_HELP)

    def notices(self) -> tuple[NoticePlan, ...]:
        """Each notified role with its template, the role standing in for it, and urgency."""
        return tuple(r.plan(self.notice, self.urgent) for r in self.notify)


class ReminderRule(Rule, Action):
    """A notice at an offset from a date field, once per occurrence of that date."""

    date: Word = Field(description="Date or timestamp field the reminder hangs on")
    offset: Offset = Field(description="When, relative to the date: '1 month before'")
    send_until: Span | None = Field(
        None,
        description=(
            "How long after it falls due a late reminder may still go out. Default: until "
            "the date itself for reminders before it, 7 days for reminders after it."
        ),
    )


class RepeatingAction(Action):
    """A warning or breach action that can be repeated while the clock runs."""

    repeat: Every | None = Field(
        None,
        description=(
            "Send it again every so often until the clock stops (a warning until the "
            "deadline): 'every 2 working days'; each repeat is its own finding, sent once"
        ),
    )


class Escalation(Action):
    """A further level after the breach: `after` the deadline, more people are told."""

    after: ClockSpan = Field(description="How long after the breach, e.g. '2 working hours'")


END_OF_WORKING_DAY = "end of working day"


class WarnAt(_Frozen):
    """When to warn: a share of the allowed time (`80%`) or a span after the start."""

    share: float | None = None
    span: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            number = value.strip().removesuffix("%").strip()
            if not number.replace(".", "", 1).isdigit() or not 0 < float(number) < 100:
                raise ValueError(f"{value!r}: a warning share is between 0% and 100%")
            return {"share": float(number) / 100}
        if isinstance(value, str | int):
            return {"span": parse_duration(value, signed=False)}
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The two texts `_from_text` reads (its mapping form is internal)."""
        share = r"^\s*(0*[1-9]\d?(\.\d*)?|0*\.\d*[1-9]\d*)\s*%\s*$"  # above 0%, below 100%
        return {
            "anyOf": [
                {"type": "string", "pattern": share, "description": "A share: '80%'"},
                {"type": "string", "pattern": CLOCK_SPAN_PATTERN, "description": "'4 hours'"},
            ]
        }

    def __str__(self) -> str:
        return f"{self.share * 100:g}%" if self.share is not None else str(self.span)


class DeadlineRule(Rule):
    """A timer on an entity: from `start` until `stop`, warned before and escalated after."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("within", "by"))

    start: Word = Field(description="Timestamp field that starts the clock")
    stop: tuple[Word, ...] = Field(
        min_length=1,
        description="Timestamp field(s) that stop it; the first one filled stops the clock",
    )
    within: ClockSpan | None = Field(
        None, description="Allowed time: '6 working hours' (branch calendar) or '24 hours'"
    )
    by: str | None = Field(
        None,
        description=(
            "Instead of `within`: a timestamp field holding the deadline (e.g. promised_at), "
            f"or '{END_OF_WORKING_DAY}' (close of the working day the clock started on)"
        ),
    )
    calendar: CalendarName | None = Field(
        None, description="Business calendar for working time; default: the branch's calendar"
    )
    pause_while: tuple[Word, ...] = Field(
        (), description="Statuses (from status_changes) during which the clock stops"
    )
    warn_at: WarnAt | None = Field(None, description="'80%' of the allowed time, or a span")
    on_warning: RepeatingAction | None = Field(None, description="Who is told at the warning")
    on_breach: RepeatingAction | None = Field(
        None, description="Who is told when the deadline passes"
    )
    escalate: tuple[Escalation, ...] = Field((), description="Further levels after the breach")
    on_late_stop: Action | None = Field(
        None, description="Who is told when the stop came after the deadline"
    )

    @field_validator(
        "stop",
        mode="before",
        json_schema_input_type=Word | Annotated[tuple[Word, ...], Field(min_length=1)],
    )
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_target(self) -> DeadlineRule:
        spans = [self.within, self.warn_at.span if self.warn_at else None]
        for span in [*spans, *(e.after for e in self.escalate)]:
            if span is not None and span.unit in ("month", "year"):
                raise ValueError(f"'{span}': deadlines count minutes, hours, days or weeks")
        if (self.within is None) == (self.by is None):
            raise ValueError("give exactly one of `within` (a duration) or `by` (a field)")
        if self.by is not None and self.pause_while:
            raise ValueError("`pause_while` needs `within`: a fixed `by` deadline does not move")
        if self.on_warning and self.on_warning.repeat and self.warn_at is None:
            raise ValueError("`on_warning.repeat` needs `warn_at`: there is no warning to repeat")
        afters = [e.after for e in self.escalate]
        if any(a.working != afters[0].working for a in afters) or any(
            a.rough_days() > b.rough_days() for a, b in pairwise(afters)
        ):
            raise ValueError("escalation levels must come in order, all in the same kind of time")
        return self

    def actions(self) -> dict[str, Action]:
        """Each state and what happens when it is reached."""
        out: dict[str, Action] = {}
        for state, action in (
            ("warning", self.on_warning),
            ("breach", self.on_breach),
            ("late_stop", self.on_late_stop),
        ):
            if action is not None:
                out[state] = action
        for level, escalation in enumerate(self.escalate, start=1):
            out[f"escalation:{level}"] = escalation
        return out

    def repeats(self) -> dict[str, Duration]:
        """The states repeated while the clock runs, each with its interval."""
        return {
            state: action.repeat
            for state, action in (("warning", self.on_warning), ("breach", self.on_breach))
            if action is not None and action.repeat is not None
        }


class DecisionRow(_Frozen):
    """One row of a decision table: `{when: in_warranty, then: free}` or `{otherwise: paid}`."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["when", "then"],
                    "properties": {
                        "when": {"type": "string"},
                        "then": {"type": "string"},
                        "otherwise": {"type": "null"},
                    },
                },
                {
                    "required": ["otherwise"],
                    "properties": {
                        "when": {"type": "null"},
                        "then": {"type": "null"},
                        "otherwise": {"type": "string"},
                    },
                },
            ]
        }
    )

    when: str | None = Field(None, description="Condition; the first row that holds decides")
    then: Word | None = Field(None, description="The outcome when `when` holds")
    otherwise: Word | None = Field(None, description="The outcome when no row above holds")

    @model_validator(mode="after")
    def _one_form(self) -> DecisionRow:
        if self.otherwise is not None:
            if self.when is not None or self.then is not None:
                raise ValueError("a row is either {when: ..., then: ...} or {otherwise: ...}")
        elif self.when is None or self.then is None:
            raise ValueError("give both `when` and `then`, or only `otherwise`")
        return self

    @property
    def outcome(self) -> str:
        """The value this row decides."""
        return self.otherwise or self.then or ""


class OutcomeAction(Action):
    """Who is told when an entity is classified one way, e.g. a quote for paid calls."""

    when: str | None = Field(None, description="Further condition, e.g. work has not started")


class ClassificationRule(Rule):
    """A decision table, first match wins, that classifies each entity (rows 1, 9, 13)."""

    first_match: tuple[DecisionRow, ...] = Field(
        min_length=1, description="Rows tried in order; the first whose `when` holds decides"
    )
    recorded: Word | None = Field(
        None, description="Field holding the value as recorded; a disagreement is a `mismatch`"
    )
    on_mismatch: Action | None = Field(None, description="Who is told about a mismatch")
    on_outcome: dict[Word, OutcomeAction] = Field(
        default_factory=dict, description="Per outcome, who is told (once per entity)"
    )

    @model_validator(mode="after")
    def _table(self) -> ClassificationRule:
        rows = self.first_match
        if any(row.otherwise is not None for row in rows[:-1]):
            raise ValueError("`otherwise` must be the last row: rows after it are never reached")
        outcomes = sorted({row.outcome for row in rows})
        for outcome in self.on_outcome:
            if outcome not in outcomes:
                raise ValueError(
                    f"on_outcome: {outcome!r} is not an outcome of the table "
                    f"({', '.join(outcomes)})"
                )
        if self.recorded is None and not self.on_outcome:
            raise ValueError(
                "give `recorded` (to find mismatches), `on_outcome` (to notify), or both: "
                "otherwise the table finds nothing"
            )
        if self.on_mismatch is not None and self.recorded is None:
            raise ValueError(
                "`on_mismatch` needs `recorded`: the field the decision is compared with"
            )
        return self


# Tallies, obligations and metrics build on the pieces above (Rule, Action, Word, _Frozen), so
# they are imported only here.
from engine.policy.metric_spec import KpiReport, MetricRule  # noqa: E402
from engine.policy.obligation_spec import ObligationRule  # noqa: E402
from engine.policy.roles_spec import RoleSpec  # noqa: E402
from engine.policy.schedule_spec import ScheduleSpec  # noqa: E402
from engine.policy.tally_spec import LedgerSettings, TallyRule  # noqa: E402


class PolicyFile(_Frozen):
    """One file of `rules/`: every section is optional."""

    defaults: Defaults | None = None
    roles: dict[Word, RoleSpec] = Field(
        default_factory=dict,
        description="Staff roles by id, with their titles; rules may name only these",
    )
    calendars: dict[CalendarName, CalendarSpec] = Field(
        default_factory=dict, description="Business calendars by name"
    )
    reminders: tuple[ReminderRule, ...] = ()
    deadlines: tuple[DeadlineRule, ...] = ()
    warranty: WarrantySpec | None = Field(None, description="Warranty terms and promotions")
    classifications: tuple[ClassificationRule, ...] = ()
    ledger: LedgerSettings | None = Field(None, description="The ledger and the monthly close")
    tallies: tuple[TallyRule, ...] = ()
    obligations: tuple[ObligationRule, ...] = ()
    metrics: tuple[MetricRule, ...] = ()
    kpi_report: KpiReport | None = Field(None, description="The monthly KPI report")
    schedule: ScheduleSpec | None = Field(
        None, description="Local times of the daily and periodic parts"
    )


SECTIONS = tuple(PolicyFile.model_fields)
