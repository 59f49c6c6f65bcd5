"""Load `rules/*.yaml` into one validated `Policy`, or fail once with every problem found."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError
from sqlalchemy import Column, Date, DateTime, FromClause, Integer, Numeric, String, Table

from engine.calendar import BusinessCalendar, build_calendar
from engine.db.catalogue import entity_table, role_routes
from engine.db.models import StatusChange
from engine.derived import Views, build_views, call_scope
from engine.errors import Location, PolicyError, Problem
from engine.expr import Expr, ExprSyntaxError, check, fields, parse
from engine.expr.nodes import AsOf, walk
from engine.notices.languages import locales_in_use, missing_locale_problems
from engine.notices.templates import NoticeTemplates
from engine.policy.branch_scope import branch_column
from engine.policy.digest import dump, rule_digests
from engine.policy.models import (
    END_OF_WORKING_DAY,
    OVERDUE_NOTICE,
    UNDELIVERABLE_NOTICE,
    Action,
    ClassificationRule,
    DeadlineRule,
    Defaults,
    KpiReport,
    MetricRule,
    PolicyFile,
    ReminderRule,
    Rule,
)
from engine.policy.obligation_spec import ObligationRule, PlanCount
from engine.policy.roles_spec import STANDARD_ROLES, RoleSpec, declared_roles, standard_roles
from engine.policy.schedule_spec import ScheduleSpec
from engine.policy.shape import empty_problem, inner_model, known_keys, shape_problems
from engine.policy.source import Path_, SourceFile, read_policy_file
from engine.policy.tally_spec import LedgerSettings, TallyRule
from engine.policy.warranty_spec import WarrantySpec
from engine.warranty import WarrantyBook, build_book

R = TypeVar("R", bound=Rule)
RESERVED_ID = "warranty"
"""Not a rule id: `aftersales explain warranty UNIT_ID` explains a unit's warranty."""


@dataclass(frozen=True, slots=True)
class CompiledRule(Generic[R]):
    """A rule with its condition parsed and its table (or derived view) resolved."""

    rule: R
    table: FromClause  # the entity's table, or its view when the rule names derived fields
    condition: Expr | None
    location: Location
    views: Views | None = None  # set when `table` is a view, to narrow it (engine.derived)


@dataclass(frozen=True, slots=True)
class CompiledTally(CompiledRule[TallyRule]):
    """A tally rule with the ledger settings it books under (currency, close day)."""

    ledger: LedgerSettings = field(default_factory=LedgerSettings)

    def currency(self, branch: Mapping[str, Any] | None = None) -> str:
        """The currency of a branch's amounts (a row with `code` and `country`): the rule's,
        else the ledger's for the branch; "" when the ledger names none for it."""
        return self.rule.currency or self.ledger.currency_for(branch) or ""


@dataclass(frozen=True, slots=True)
class CompiledObligation(CompiledRule[ObligationRule]):
    """An obligation with the table of its records and their condition resolved."""

    record_table: Table | None = None
    record_condition: Expr | None = None


@dataclass(frozen=True, slots=True)
class CompiledMetric(CompiledRule[MetricRule]):
    """A KPI with the other table its numerator reads (complaints, surveys), if any."""

    related: Table | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Every rule of the department, validated; `hash` identifies this exact version."""

    folder: Path
    files: tuple[Path, ...]
    hash: str
    defaults: Defaults
    calendars: Mapping[str, BusinessCalendar]
    reminders: tuple[CompiledRule[ReminderRule], ...]
    deadlines: tuple[CompiledRule[DeadlineRule], ...]
    classifications: tuple[CompiledRule[ClassificationRule], ...] = ()
    views: Views = field(default_factory=lambda: build_views(WarrantyBook()))
    tallies: tuple[CompiledTally, ...] = ()
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    obligations: tuple[CompiledObligation, ...] = ()
    metrics: tuple[CompiledMetric, ...] = ()
    kpi_report: KpiReport = field(default_factory=KpiReport)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    disabled: tuple[CompiledRule[Any], ...] = ()  # validated, explained, never judged
    roles: Mapping[str, RoleSpec] = field(default_factory=standard_roles)
    digests: Mapping[str, str] = field(default_factory=dict)  # rule id -> engine.policy.digest

    @property
    def warranty(self) -> WarrantyBook:
        """The warranty terms and promotions (empty when no file has a `warranty` section)."""
        return self.views.book

    def by_family(self) -> dict[str, tuple[CompiledRule[Any], ...]]:
        """The rules of each family, in file order."""
        return {
            "reminder": self.reminders,
            "deadline": self.deadlines,
            "classification": self.classifications,
            "tally": self.tallies,
            "obligation": self.obligations,
        }

    def live_from(self, rule: Rule) -> datetime | None:
        """The instant a rule went live: the start of its effective_from day in the ledger's
        time zone (the company's); what fell due before it is history, kept without notices."""
        day = rule.effective_from
        if day is None:
            return None
        return datetime.combine(day, time(), ZoneInfo(self.ledger.timezone))

    def rules(self) -> list[CompiledRule[Any]]:
        """Every rule, family by family, in file order."""
        return [rule for rules in self.by_family().values() for rule in rules]

    def rule_ids(self) -> list[str]:
        """Every rule id."""
        return [r.rule.id for r in self.rules()]

    def rule(self, rule_id: str) -> CompiledRule[Any] | None:
        """The rule with this id, if any, disabled ones included."""
        return next((r for r in (*self.rules(), *self.disabled) if r.rule.id == rule_id), None)


def policy_hash(files: list[Path]) -> str:
    """Content hash of the policy files (names and bytes), 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def load_policy(
    folder: Path,
    templates: NoticeTemplates | None = None,
    in_use: Mapping[str, list[str]] | None = None,
) -> Policy:
    """Read, validate and cross-check every policy file in `folder`; `in_use` adds locales
    read in the database (engine.notices.languages) to those customer notices must have."""
    problems: list[Problem] = []
    if not folder.is_dir():
        raise PolicyError([Problem("no such policy folder", Location(folder), "pass --rules DIR")])
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise PolicyError(
            [
                Problem(
                    "no *.yaml policy files",
                    Location(folder),
                    "pass --rules DIR, the folder of rules/*.yaml",
                )
            ]
        )

    parsed: list[_Parsed] = []
    lost = _Lost()
    for path in files:
        source = read_policy_file(path, problems)
        if source is None:
            lost.everything = True  # whatever the file defines is unknown
        else:
            parsed.append(_validate_shape(source, problems, lost))

    defaults = _defaults(parsed, problems)
    templates = templates or NoticeTemplates(Path("templates/notices"), defaults.locale)
    calendars = _calendars(parsed, problems)
    views = build_views(_warranty(parsed, problems))
    ledger = _single(parsed, "ledger", problems)
    settings = ledger[1] if ledger else LedgerSettings()
    roles = declared_roles(((p.source, p.model.roles) for p in parsed), problems)
    checks = _RuleChecks(templates, calendars, problems, views, settings, tuple(roles), lost)
    live = defaults.effective_from
    reminders = checks.family(parsed, "reminders", checks.reminder, live)
    deadlines = checks.family(parsed, "deadlines", checks.deadline, live)
    classifications = checks.family(parsed, "classifications", checks.classification, live)
    tallies = checks.family(parsed, "tallies", checks.tally, live)
    obligations = checks.family(parsed, "obligations", checks.obligation, live)
    checks.deadline_entities = {d.rule.id: d.rule.entity for d in deadlines}
    # The KPIs measure the history too: the first report compares with months before go-live.
    metrics = checks.family(parsed, "metrics", checks.metric)
    kpi_report = _single(parsed, "kpi_report", problems)
    if metrics:
        checks.kpi_report(parsed, kpi_report)
    if tallies:
        checks.ledger(parsed, ledger)
    checks.defaults(_single(parsed, "defaults", []))
    countries = {
        n: c.holidays.country for p in parsed for n, c in p.model.calendars.items() if c.holidays
    }
    locales = locales_in_use(countries, defaults.locale, in_use or {})
    problems += missing_locale_problems(
        checks.customer_notices, templates, locales, defaults.customer_fallback, defaults.locale
    )
    schedule = _single(parsed, "schedule", problems)
    if problems:
        raise PolicyError(problems)
    warranty_spec = _single(parsed, "warranty", [])
    digests = rule_digests(
        (
            *reminders,
            *deadlines,
            *classifications,
            *tallies,
            *obligations,
            *metrics,
            *checks.disabled,
        ),
        {n: dump(spec) for p in parsed for n, spec in p.model.calendars.items()},
        dump(settings),
        dump(warranty_spec[1]) if warranty_spec else None,
    )
    return Policy(
        folder,
        tuple(files),
        policy_hash(files),
        defaults,
        calendars,
        reminders,
        deadlines,
        classifications,
        views,
        tuple(CompiledTally(*_fields(t), views=t.views, ledger=settings) for t in tallies),
        settings,
        tuple(_obligation(o) for o in obligations),
        tuple(_metric(m) for m in metrics),
        kpi_report[1] if kpi_report else KpiReport(),
        schedule=schedule[1] if schedule else ScheduleSpec(),
        disabled=tuple(checks.disabled),
        roles=roles,
        digests=digests,
    )


def _metric(compiled: CompiledRule[MetricRule]) -> CompiledMetric:
    numerator = compiled.rule.numerator
    other = numerator and (numerator.entity or (numerator.related and numerator.related.entity))
    return CompiledMetric(
        *_fields(compiled), compiled.views, entity_table(other) if other else None
    )


def _obligation(compiled: CompiledRule[ObligationRule]) -> CompiledObligation:
    record = compiled.rule.record
    condition = parse(record.when) if record.when else None  # checked by _RuleChecks
    return CompiledObligation(
        *_fields(compiled), compiled.views, entity_table(record.entity), condition
    )


def _fields(compiled: CompiledRule[Any]) -> tuple[Any, ...]:
    return (compiled.rule, compiled.table, compiled.condition, compiled.location)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One file's validated content, and where each kept rule stood in the file."""

    source: SourceFile
    model: PolicyFile
    positions: dict[str, list[int]]  # section -> original index of each kept rule


@dataclass
class _Lost:
    """What the policy meant to define but could not be read: a file that does not parse, a
    rule or section with a problem of its own. A reference to it elsewhere is not reported, it
    would only repeat that problem and point away from it (its suggestions naming other rules)."""

    everything: bool = False
    sections: set[str] = field(default_factory=set)
    rule_ids: set[str] = field(default_factory=set)

    def lost(self, section: str, raw: Any) -> None:
        """Section `section` (with `raw`, a rule as written, when it is one rule) is broken."""
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rule_id, str):
            self.rule_ids.add(rule_id)
        else:
            self.sections.add(section)

    def hides(self, section: str, name: str | None = None) -> bool:
        """Whether `name` (a rule id), or anything that `section` defines, may be among the lost."""
        return self.everything or section in self.sections or name in self.rule_ids


def _validate_shape(source: SourceFile, problems: list[Problem], lost: _Lost) -> _Parsed:
    """Validate section by section and rule by rule, so one bad rule hides no other problem."""
    if not isinstance(source.data, dict):
        lost.everything = True
        problems.append(
            Problem(
                "a policy file must be a mapping of sections",
                source.location(()),
                f"start with one of: {', '.join(PolicyFile.model_fields)}",
            )
        )
        return _Parsed(source, PolicyFile(), {})
    sections: dict[str, Any] = {}
    positions: dict[str, list[int]] = {}
    empty, told = None, False  # the last section with nothing under it; said so
    for name, value in source.data.items():
        field = PolicyFile.model_fields.get(name)
        if empty is not None and (field is None or name in known_keys((empty,))):
            # A line of the empty section above, indented too little (`tallies:` is a
            # section and a key of `schedule:` too).
            if not told:
                problems.append(empty_problem(source, (empty,)))
            lost.sections.add(empty)
            told = True
            continue
        # Only the keys right after an empty section are taken for its lines.
        empty, told = (name, False) if value is None else (None, told)
        item_model = inner_model(field.annotation) if field else None
        if field and typing.get_origin(field.annotation) is tuple and isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(item_model.model_validate(item))  # type: ignore[union-attr]
                    positions.setdefault(name, []).append(index)
                except ValidationError as exc:
                    problems += shape_problems(source, exc, (name, index))
                    lost.lost(name, item)
            sections[name] = tuple(items)
            continue
        try:
            sections[name] = getattr(PolicyFile.model_validate({name: value}), name)
        except ValidationError as exc:
            problems += shape_problems(source, exc, ())
            lost.lost(name, None)
            told = told or value is None
    return _Parsed(source, PolicyFile.model_construct(**sections), positions)


def _defaults(parsed: list[_Parsed], problems: list[Problem]) -> Defaults:
    given = _single(parsed, "defaults", problems)
    return given[1] if given else Defaults()


def _single(
    parsed: list[_Parsed], section: str, problems: list[Problem]
) -> tuple[SourceFile, Any] | None:
    """A section that only one file may give (`defaults`, `ledger`), with the file giving it."""
    given = [(p.source, getattr(p.model, section)) for p in parsed]
    given = [(src, value) for src, value in given if value is not None]
    for src, _ in given[1:]:
        problems.append(
            Problem(
                f"`{section}` is given in more than one file",
                src.location((section,), key=True),
                f"keep one, e.g. in {given[0][0].path.name}",
            )
        )
    return given[0] if given else None


def _warranty(parsed: list[_Parsed], problems: list[Problem]) -> WarrantyBook:
    """The warranty book, with every exclusion checked against the repair call's fields."""
    given = _single(parsed, "warranty", problems)
    if given is None:
        return build_book(None, {})
    source, spec = given
    spec = typing.cast(WarrantySpec, spec)
    scope = call_scope()

    def void(where: Path_, text: str | None) -> Expr | None:
        before = len(problems)
        expr = _condition(source, where, text, scope, problems)
        if expr is not None and any(isinstance(node, AsOf) for node in walk(expr)):
            problems.append(
                Problem(
                    "void_when describes the repair call; it cannot use as_of",
                    source.location(where),
                    "compare the call's own dates, e.g. received_at",
                )
            )
        return expr if len(problems) == before else None  # a broken one is not compiled

    section_void = void(("warranty", "void_when"), spec.void_when)
    voids = {
        term.id: void(("warranty", "terms", i, "void_when"), term.void_when)
        if term.void_when is not None
        else section_void
        for i, term in enumerate(spec.terms)
    }
    parts = {name for term in spec.terms for name in term.parts}
    for i, promotion in enumerate(spec.promotions):
        for name in promotion.extend:
            if name not in parts:
                close = difflib.get_close_matches(name, sorted(parts), n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"parts: {', '.join(sorted(parts))}"
                )
                problems.append(
                    Problem(
                        f"promotion {promotion.id!r} extends {name!r}, which no term covers",
                        source.location(("warranty", "promotions", i, "extend", name), key=True),
                        hint,
                    )
                )
    return build_book(spec, voids)


def _calendars(parsed: list[_Parsed], problems: list[Problem]) -> dict[str, BusinessCalendar]:
    out: dict[str, BusinessCalendar] = {}
    for source, model in ((p.source, p.model) for p in parsed):
        for name, spec in model.calendars.items():
            if name in out:
                problems.append(
                    Problem(
                        f"calendar {name!r} is defined twice",
                        source.location(("calendars", name), key=True),
                        "keep one definition",
                    )
                )
                continue
            out[name] = build_calendar(name, spec)
    return out


class _RuleChecks:
    """Cross-checks of rules against the schema, the templates and the calendars."""

    def __init__(
        self,
        templates: NoticeTemplates,
        calendars: Mapping[str, BusinessCalendar],
        problems: list[Problem],
        views: Views,
        ledger: LedgerSettings | None = None,
        roles: tuple[str, ...] = STANDARD_ROLES,
        lost: _Lost | None = None,
    ):
        self.roles = roles  # the staff roles the policy declares
        self.lost = lost or _Lost()  # what could not be read: references to it are not judged
        self.templates = templates
        self.calendars = calendars
        self.problems = problems
        self.views = views
        self.ledger_settings = ledger or LedgerSettings()
        self.seen: dict[str, Location] = {}
        self.deadline_entities: dict[str, str] = {}  # deadline rule id -> its entity
        self.checked: set[str] = set()  # templates whose syntax was already checked
        self.customer_notices: dict[str, Location] = {}  # notice -> where first sent to one
        self.disabled: list[CompiledRule[Any]] = []  # checked like the others, set aside

    def family(
        self,
        parsed: list[_Parsed],
        section: str,
        specific: Callable[[SourceFile, Path_, Any, FromClause], None],
        live: date | None = None,
    ) -> tuple[CompiledRule[Any], ...]:
        """Check and compile every rule of one section, in every file; a rule without an
        effective_from of its own takes `live` (the policy's go-live day)."""
        out: list[CompiledRule[Any]] = []
        for file in parsed:
            source, indices = file.source, file.positions.get(section, [])
            for index, rule in zip(indices, getattr(file.model, section), strict=True):
                if rule.effective_from is None and live is not None:
                    rule = rule.model_copy(update={"effective_from": live})
                where: Path_ = (section, index)
                table = self.source(rule)
                condition = self.common(source, where, rule, table)
                specific(source, where, rule, table)
                views = self.views if table is not entity_table(rule.entity) else None
                compiled = CompiledRule(rule, table, condition, source.location(where), views)
                (self.disabled if rule.disabled else out).append(compiled)
        return tuple(out)

    def source(self, rule: Rule) -> FromClause:
        """What a rule reads: its table, or the table's view when it names derived fields."""
        if isinstance(rule, ClassificationRule):
            return self.views.full(rule.entity)
        named: set[Any] = set()
        for key in ("date", "start", "stop", "by"):
            value = getattr(rule, key, None)
            named |= set(value) if isinstance(value, tuple) else {value}
        with contextlib.suppress(ExprSyntaxError):  # reported by `common`
            named |= fields(parse(rule.when)) if rule.when else set()
        return self.views.for_fields(rule.entity, {n for n in named if isinstance(n, str)})

    def common(
        self, source: SourceFile, where: Path_, rule: Rule, table: FromClause
    ) -> Expr | None:
        """Checks every rule needs: a unique id and a condition on known fields."""
        if rule.id == RESERVED_ID:
            self.problems.append(
                Problem(
                    f"the rule id {RESERVED_ID!r} is reserved",
                    source.location((*where, "id")),
                    f"`aftersales explain {RESERVED_ID} UNIT_ID` explains a unit's warranty; "
                    "choose another id",
                )
            )
        if rule.id in self.seen:
            self.problems.append(
                Problem(
                    f"rule id {rule.id!r} is already used at {self.seen[rule.id]}",
                    source.location((*where, "id")),
                    "every rule needs its own id; findings are keyed by it",
                )
            )
        self.seen.setdefault(rule.id, source.location(where))
        if rule.branches is not None and branch_column(table) is None:
            self.problems.append(
                Problem(
                    f"{rule.entity} rows belong to no branch: `branches` cannot limit this rule",
                    source.location((*where, "branches"), key=True),
                    "remove `branches`, or write the rule on a table with a branch_id",
                )
            )
        return _condition(source, (*where, "when"), rule.when, table, self.problems)

    def reminder(
        self, source: SourceFile, where: Path_, rule: ReminderRule, table: FromClause
    ) -> None:
        """A reminder hangs on a date field, in calendar time."""
        self.field(source, (*where, "date"), rule.date, table, (Date, DateTime))
        self.action(source, where, rule, table)
        column = table.c.get(rule.date)
        if column is not None and _is_a(column, (Date,)) and rule.offset.unit in ("minute", "hour"):
            self.problems.append(
                Problem(
                    f"{rule.date} is a date without a time: offsets on it count days or more",
                    source.location((*where, "offset")),
                    "write e.g. '1 day before', or hang the reminder on a timestamp field",
                )
            )
        if rule.offset.working:
            self.problems.append(
                Problem(
                    "reminder offsets are calendar time",
                    source.location((*where, "offset")),
                    f"write '{abs(rule.offset.amount)} {rule.offset.unit}s' without 'working'",
                )
            )

    def deadline(
        self, source: SourceFile, where: Path_, rule: DeadlineRule, table: FromClause
    ) -> None:
        """A deadline runs between two timestamps, on a calendar that must exist."""
        self.field(source, (*where, "start"), rule.start, table, (DateTime,))
        for index, stop in enumerate(rule.stop):
            at: Path_ = (*where, "stop", index) if len(rule.stop) > 1 else (*where, "stop")
            self.field(source, at, stop, table, (DateTime,))
        if rule.by is not None and rule.by != END_OF_WORKING_DAY:
            self.field(source, (*where, "by"), rule.by, table, (DateTime,))
        if (
            rule.calendar is not None
            and rule.calendar not in self.calendars
            and not self.lost.hides("calendars")
        ):
            close = difflib.get_close_matches(rule.calendar, list(self.calendars), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "define it under `calendars:`"
            self.problems.append(
                Problem(
                    f"no calendar {rule.calendar!r}", source.location((*where, "calendar")), hint
                )
            )
        if rule.pause_while:
            self.pauses(source, (*where, "pause_while"), rule, table)
        for state, action in rule.actions().items():
            key = state.replace("escalation:", "escalate.") if ":" in state else f"on_{state}"
            self.action(source, (*where, *_action_path(key)), action, table)

    def classification(
        self, source: SourceFile, where: Path_, rule: ClassificationRule, table: FromClause
    ) -> None:
        """Each row's condition reads the view; outcomes are values the recorded field holds."""
        choices: tuple[str, ...] = ()
        if rule.recorded is not None:
            column = table.c.get(rule.recorded)
            if column is None or not _is_a(column, (String,)):
                texts = [c.name for c in table.c if _is_a(c, (String,))]
                close = difflib.get_close_matches(rule.recorded, texts, n=1)
                what = "is not a field" if column is None else "is not a text field"
                self.problems.append(
                    Problem(
                        f"{rule.recorded!r} {what} of {table.name}",
                        source.location((*where, "recorded")),
                        f"did you mean {close[0]!r}?"
                        if close
                        else "name the field holding the value as recorded, e.g. category",
                    )
                )
            else:
                choices = tuple(getattr(column, "info", {}).get("choices") or ())
        for index, row in enumerate(rule.first_match):
            at: Path_ = (*where, "first_match", index)
            _condition(source, (*at, "when"), row.when, table, self.problems)
            if choices and row.outcome not in choices:
                close = difflib.get_close_matches(row.outcome, choices, n=1)
                key = "then" if row.otherwise is None else "otherwise"
                self.problems.append(
                    Problem(
                        f"{row.outcome!r} is not a value of {rule.recorded}",
                        source.location((*at, key)),
                        f"did you mean {close[0]!r}?" if close else f"one of {', '.join(choices)}",
                    )
                )
        if rule.on_mismatch is not None:
            self.action(source, (*where, "on_mismatch"), rule.on_mismatch, table)
        for outcome, action in rule.on_outcome.items():
            at = (*where, "on_outcome", outcome)
            _condition(source, (*at, "when"), action.when, table, self.problems)
            self.action(source, at, action, table)

    def pauses(
        self, source: SourceFile, where: Path_, rule: DeadlineRule, table: FromClause
    ) -> None:
        """Pauses come from status_changes, which only service requests have."""
        if table.name != "service_requests":
            self.problems.append(
                Problem(
                    f"{table.name} has no status history to pause on",
                    source.location(where),
                    "pause_while works on service_requests (table status_changes)",
                )
            )
            return
        statuses = StatusChange.__table__.c.status.info["choices"]
        for index, status in enumerate(rule.pause_while):
            if status not in statuses:
                close = difflib.get_close_matches(status, statuses, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"statuses: {', '.join(statuses)}"
                )
                self.problems.append(
                    Problem(f"unknown status {status!r}", source.location((*where, index)), hint)
                )

    def field(
        self,
        source: SourceFile,
        where: Path_,
        name: str,
        table: FromClause,
        kinds: tuple[type, ...],
    ) -> None:
        """`name` must be a column of `table` of one of the given types."""
        column = table.c.get(name)
        if column is not None and _is_a(column, kinds):
            return
        fitting = [c.name for c in table.c if _is_a(c, kinds)]
        kind = _KIND_NAMES.get(kinds, "date")
        what = f"is not a {kind} field" if column is not None else "is not a field"
        close = difflib.get_close_matches(name, fitting, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"{kind} fields: {', '.join(fitting)}"
        self.problems.append(
            Problem(f"{name!r} {what} of {table.name}", source.location(where), hint)
        )

    def action(
        self, source: SourceFile, where: Path_, action: ReminderRule | Action, table: FromClause
    ) -> None:
        """Every notified role is declared and reachable from `table`, a department is a text
        field of it, and every notice has templates."""
        known = role_routes(entity_table(table.name), self.roles)
        for index, recipient in enumerate(action.notify):
            at: Path_ = (*where, "notify", index)
            for key, role in (("role", recipient.role), ("otherwise", recipient.otherwise)):
                if role is None or role in known or self.lost.hides("roles"):
                    continue
                close = difflib.get_close_matches(role, list(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"roles: {', '.join(known)}"
                self.problems.append(
                    Problem(
                        f"unknown role {role!r} for {table.name}",
                        source.location((*at, key)),
                        hint + " (staff roles are declared under `roles:`)",
                    )
                )
            if recipient.department is not None:
                self.field(source, (*at, "department"), recipient.department, table, (String,))
            route = known.get(recipient.role or "")
            if recipient.at and route is not None and route.kind != "branch_role":
                self.problems.append(
                    Problem(
                        f"`at: {recipient.at}` needs a staff role; {recipient.role!r} is "
                        f"the {table.name} row's own {route.column}",
                        source.location((*at, "at")),
                        "remove `at`, or name a role held at head office",
                    )
                )
            if recipient.notice:
                self.notice(source, (*where, "notify", index, "notice"), recipient.notice)
            if "customer" in known and "customer" in (recipient.role, recipient.otherwise):
                named = (*at, "notice") if recipient.notice else (*where, "notice")
                name = recipient.notice or action.notice
                self.customer_notices.setdefault(name, source.location(named))
        self.notice(source, (*where, "notice"), action.notice)
        roles = {role for r in action.notify for role in (r.label, r.otherwise) if role}
        if action.urgent and roles <= {"customer"}:
            # Only staff notices wait for a digest: `urgent` here would promise nothing.
            self.problems.append(
                Problem(
                    "`urgent` changes nothing here: customers' notices always go at once",
                    source.location((*where, "urgent")),
                    "remove `urgent`, or notify a staff role that must hear of it at once",
                )
            )

    def notice(self, source: SourceFile, where: Path_, name: str) -> None:
        """The notice has templates, and they parse."""
        _check_notice(source, where, name, self.templates, self.problems, self.checked)

    def tally(self, source: SourceFile, where: Path_, rule: TallyRule, table: Table) -> None:
        """A tally places entities in periods by a date, charges staff, measures numbers."""
        at_kinds = (DateTime,) if rule.local_hours else (Date, DateTime)
        self.field(source, (*where, "at"), rule.at, table, at_kinds)
        self.charge(source, (*where, "charge"), rule.charge, table)
        for index, multiplier in enumerate(rule.multiply):
            _condition(
                source, (*where, "multiply", index, "when"), multiplier.when, table, self.problems
            )
        key = "penalty" if rule.penalty is not None else "reward"
        if rule.amount.of is not None:
            self.field(source, (*where, key, "of"), rule.amount.of, table, (Integer, Numeric))
        for role, amount in rule.by_role.items():
            at_role: Path_ = (*where, "by_role", role)
            if role not in self.roles and not self.lost.hides("roles"):
                close = difflib.get_close_matches(role, list(self.roles), n=1)
                self.problems.append(
                    Problem(
                        f"by_role: {role!r} is not a role the policy declares",
                        source.location(at_role, key=True),
                        f"did you mean {close[0]!r}?" if close else "declare it under `roles:`",
                    )
                )
            if amount.of is not None:
                self.field(source, (*at_role, "of"), amount.of, table, (Integer, Numeric))
        for name in rule.measure.fields if rule.measure else ():
            self.field(source, (*where, "measure"), name, table, (Integer, Numeric))
        for index, item in enumerate(rule.score):
            at: Path_ = (*where, "score", index)
            _condition(source, (*at, "when"), item.when, table, self.problems)
            for name in item.measure.fields:
                self.field(source, (*at, "measure"), name, table, (Integer, Numeric))
        if (
            rule.currency is None
            and self.ledger_settings.currency is None
            and not self.lost.hides("ledger")
        ):
            self.problems.append(
                Problem(
                    "no currency for this tally's amounts",
                    source.location(where),
                    "add `currency: CNY` to the rule, or `ledger: {currency: CNY}` to the policy",
                )
            )

    def charge(
        self,
        source: SourceFile,
        where: Path_,
        roles: tuple[str, ...],
        table: Table,
        verb: str = "charge",
    ) -> None:
        """Entries are booked to staff: a staff column of the entity or a role at its branch."""
        routes = role_routes(table, self.roles)
        staff = [name for name, route in routes.items() if route.kind != "customer"]
        text = source.values[where].value if where in source.values else ""
        for role in roles:
            if role in staff or self.lost.hides("roles"):
                continue
            close = difflib.get_close_matches(role, staff, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"staff roles: {', '.join(staff)}"
            why = "is not a person of staff" if role in routes else "is not a role"
            offset = max(str(text).find(role), 0)
            self.problems.append(
                Problem(
                    f"cannot {verb} {role!r}: it {why} for {table.name}",
                    source.scalar_column(where, offset),
                    hint,
                )
            )

    def obligation(
        self, source: SourceFile, where: Path_, rule: ObligationRule, table: FromClause
    ) -> None:
        """The entity's dates and count, and the records' link, day, hand-in time and
        condition."""
        for index, name in enumerate(rule.active or ()):
            self.field(source, (*where, "active", index), name, table, (Date,))
        if isinstance(rule.count, str):
            self.field(source, (*where, "count"), rule.count, table, (Integer, Numeric))
        if isinstance(rule.count, PlanCount):
            mine, theirs = rule.count.link
            self.field(source, (*where, "count", "link"), mine, entity_table("targets"), (Integer,))
            self.field(source, (*where, "count", "link"), theirs, table, (Integer,))
        if rule.date is not None:
            self.field(source, (*where, "date"), rule.date, table, (Date,))
        spec, at = rule.record, (*where, "record")
        records = entity_table(spec.entity)
        mine, theirs = spec.link
        self.field(source, (*at, "link"), mine, records, (Integer,))
        self.field(source, (*at, "link"), theirs, table, (Integer,))
        self.field(source, (*at, "at"), spec.at, records, (Date,))
        if spec.submitted is not None:
            self.field(source, (*at, "submitted"), spec.submitted, records, (DateTime,))
        _condition(source, (*at, "when"), spec.when, records, self.problems)
        self.action(source, where, rule, table)

    def metric(self, source: SourceFile, where: Path_, rule: MetricRule, table: FromClause) -> None:
        """A KPI is per branch and month; its fields, rules and other tables must exist."""
        if "branch_id" not in table.c:
            self.problems.append(
                Problem(
                    f"{table.name} has no branch_id: a KPI is measured per branch",
                    source.location((*where, "entity")),
                    "measure a table whose rows belong to a branch",
                )
            )
            return
        self.field(source, (*where, "at"), rule.at, table, (Date, DateTime))
        staff = [
            n
            for n, r in role_routes(entity_table(table.name), ()).items()
            if r.kind == "staff_column"
        ]
        for index, name in enumerate(rule.per):
            if name != "branch" and name.removesuffix("_id") not in staff:
                self.problems.append(
                    Problem(
                        f"{name!r} is not a staff field of {table.name}",
                        source.location((*where, "per", index)),
                        f"branch, or one of: {', '.join(f'{s}_id' for s in staff) or 'none'}",
                    )
                )
        for index, name in enumerate(rule.average):
            self.field(source, (*where, "average", index), name, table, (Integer, Numeric))
        if rule.numerator is not None:
            self.numerator(source, (*where, "numerator"), rule, table)

    def numerator(
        self, source: SourceFile, where: Path_, rule: MetricRule, table: FromClause
    ) -> None:
        """The numerator's condition, deadline rules, repeat fields and related table."""
        numerator = rule.numerator
        assert numerator is not None
        rows = entity_table(numerator.entity) if numerator.entity else table
        if numerator.entity is not None:
            self.field(source, (*where, "at"), numerator.at or "", rows, (Date, DateTime))
            if "branch_id" not in rows.c:
                self.problems.append(
                    Problem(
                        f"{rows.name} has no branch_id",
                        source.location((*where, "entity")),
                        "count a table whose rows belong to a branch",
                    )
                )
        _condition(source, (*where, "when"), numerator.when, rows, self.problems)
        for index, rule_id in enumerate(numerator.on_time):
            if self.deadline_entities.get(rule_id) == table.name:
                continue
            if rule_id not in self.deadline_entities and self.lost.hides("deadlines", rule_id):
                continue  # the rule has a problem of its own, reported where it stands
            known = [r for r, e in self.deadline_entities.items() if e == table.name]
            close = difflib.get_close_matches(rule_id, known, n=1)
            self.problems.append(
                Problem(
                    f"{rule_id!r} is not a deadline rule on {table.name}",
                    source.location((*where, "on_time", index)),
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"deadlines on {table.name}: {', '.join(known)}"
                    if known
                    else f"write a deadline rule on {table.name} first (`deadlines:`)",
                )
            )
        if numerator.no_repeat is not None:
            repeat, at = numerator.no_repeat, (*where, "no_repeat")
            self.field(source, (*at, "same"), repeat.same, table, (Integer, String))
            self.field(source, (*at, "at"), repeat.at, table, (DateTime,))
            self.field(source, (*where[:-1], "at"), rule.at, table, (DateTime,))
            if repeat.within.working or repeat.within.unit in ("month", "year", "minute"):
                self.problems.append(
                    Problem(
                        f"'{repeat.within}': a repeat window counts hours, days or weeks",
                        source.location((*at, "within")),
                        "write e.g. '30 days'",
                    )
                )
        if numerator.related is not None:
            key = "has" if numerator.has is not None else "lacks"
            related = entity_table(numerator.related.entity)
            self.field(source, (*where, key, "link"), numerator.related.link, related, (Integer,))

    def kpi_report(self, parsed: list[_Parsed], given: tuple[SourceFile, KpiReport] | None) -> None:
        """The KPI report's template exists and goes to staff roles."""
        if given is None:
            source = next(p.source for p in parsed if p.model.metrics)
            settings, where = KpiReport(), ("metrics",)
        else:
            (source, settings), where = given, ("kpi_report",)
        self.notice(source, (*where, "notice") if given else where, settings.notice)
        staff = entity_table("staff")
        for index, role in enumerate(settings.to):
            at = (*where, "to", index) if given else where
            self.charge(source, at, (role,), staff, "send the KPI report to")

    def defaults(self, given: tuple[SourceFile, Defaults] | None) -> None:
        """The overdue summary and the undeliverable-letter task go to staff roles, and their
        templates exist."""
        if given is None:
            return
        source, defaults = given
        staff = entity_table("staff")
        # The undeliverable roles as written: a policy that declares its own roles and leaves
        # the key out is not faulted for the default role.
        undeliverable = defaults.undeliverable
        told = undeliverable.notify if "undeliverable" in defaults.model_fields_set else ()
        sent = (
            (("defaults", "overdue_summary_to"), defaults.overdue_summary_to, OVERDUE_NOTICE,
             "send the overdue summary to"),
            (("defaults", "undeliverable", "notify"), told,
             UNDELIVERABLE_NOTICE, "ask to phone or post an undeliverable letter"),
        )  # fmt: skip
        for where, roles, notice, what in sent:
            for index, role in enumerate(roles):
                self.charge(source, (*where, index), (role,), staff, what)
            if roles:
                self.notice(source, where, notice)

    def ledger(
        self,
        parsed: list[_Parsed],
        given: tuple[SourceFile, LedgerSettings] | None,
    ) -> None:
        """The close's notices have templates, and their recipients are staff roles."""
        if given is None:  # the defaults apply: report against the first file with tallies
            source = next(p.source for p in parsed if p.model.tallies)
            settings, where = LedgerSettings(), ("tallies",)
        else:
            (source, settings), where = given, ("ledger",)
        staff = entity_table("staff")
        for key in ("notice", "summary"):
            self.notice(source, (*where, key) if given else where, getattr(settings, key))
        for key in ("copy_to", "summary_to"):
            for index, role in enumerate(getattr(settings, key)):
                at = (*where, key, index) if given else where
                self.charge(source, at, (role,), staff, "send the close's notices to")
        if settings.approval is not None:
            at = (*where, "approval")
            self.notice(source, (*at, "notice"), settings.approval.notice)
            self.charge(source, (*at, "by"), (settings.approval.by,), staff, "ask for approval")


_KIND_NAMES = {
    (DateTime,): "timestamp",
    (Integer, Numeric): "number",
    (Integer,): "whole-number",
    (String,): "text",
}


def _is_a(column: Column[Any], kinds: tuple[type, ...]) -> bool:
    # UtcDateTime is a TypeDecorator: its storage type tells what it holds.
    return isinstance(getattr(column.type, "impl", column.type), kinds)


def _action_path(key: str) -> Path_:
    if key.startswith("escalate."):
        return ("escalate", int(key.split(".")[1]) - 1)
    return (key,)


def _condition(
    source: SourceFile, where: Path_, text: str | None, table: FromClause, problems: list[Problem]
) -> Expr | None:
    if text is None:
        return None
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        problems.append(_expr_problem(source, where, exc.message, exc.offset, exc.hint))
        return None
    for found in check(expr, table):
        problems.append(_expr_problem(source, where, found.message, found.offset, found.hint))
    return expr


def _expr_problem(
    source: SourceFile, where: Path_, message: str, offset: int, hint: str | None
) -> Problem:
    loc = source.scalar_column(where, offset)
    hint = hint or "see docs/policy.md, Conditions (`when`)"
    return Problem(f"in `when`: {message}", loc, hint, source.excerpt(loc.line or 1, loc.column))


def _check_notice(
    source: SourceFile,
    where: Path_,
    name: str,
    templates: NoticeTemplates,
    problems: list[Problem],
    checked: set[str],
) -> None:
    available = templates.names()
    if name not in available:
        close = difflib.get_close_matches(name, sorted(available), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"create {templates.folder}/{name}/en.subject.j2 and en.txt.j2"
        )
        problems.append(
            Problem(
                f"no notice template {name!r} in {templates.folder}", source.location(where), hint
            )
        )
        return
    if name in checked:
        return
    checked.add(name)
    for locale in sorted(templates.locales(name)):
        for path in templates.paths(name, locale).values():
            try:
                templates.env.get_template(path)
            except TemplateSyntaxError as exc:
                problems.append(
                    Problem(
                        f"template syntax error: {exc.message}",
                        Location(templates.folder / path, exc.lineno),
                        "see the Jinja documentation on template syntax",
                    )
                )
