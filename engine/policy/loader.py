"""Load `rules/*.yaml` into one validated `Policy`, or fail once with every problem found."""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Date, DateTime, Table

from engine.db.catalogue import entity_table, role_routes
from engine.errors import Location, PolicyError, Problem
from engine.expr import Expr, ExprSyntaxError, check, parse
from engine.notices.templates import NoticeTemplates
from engine.policy.models import Defaults, PolicyFile, ReminderRule
from engine.policy.source import Path_, SourceFile, read_policy_file


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder rule with its condition parsed and its table resolved."""

    rule: ReminderRule
    table: Table
    condition: Expr | None
    location: Location


@dataclass(frozen=True, slots=True)
class Policy:
    """Every rule of the department, validated; `hash` identifies this exact version."""

    folder: Path
    files: tuple[Path, ...]
    hash: str
    defaults: Defaults
    reminders: tuple[Reminder, ...]

    def rule_ids(self) -> list[str]:
        """Every rule id, in file order."""
        return [r.rule.id for r in self.reminders]


def policy_hash(files: list[Path]) -> str:
    """Content hash of the policy files (names and bytes), 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def load_policy(folder: Path, templates: NoticeTemplates | None = None) -> Policy:
    """Read, validate and cross-check every policy file in `folder`."""
    problems: list[Problem] = []
    if not folder.is_dir():
        raise PolicyError([Problem("no such policy folder", Location(folder), "pass --rules DIR")])
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise PolicyError([Problem("no *.yaml policy files", Location(folder))])

    parsed: list[tuple[SourceFile, PolicyFile]] = []
    for path in files:
        source = read_policy_file(path, problems)
        if source is not None:
            parsed.append((source, _validate_shape(source, problems)))

    defaults = _defaults(parsed, problems)
    templates = templates or NoticeTemplates(Path("templates/notices"), defaults.locale)
    reminders = _reminders(parsed, templates, problems)
    if problems:
        raise PolicyError(problems)
    return Policy(folder, tuple(files), policy_hash(files), defaults, tuple(reminders))


def _validate_shape(source: SourceFile, problems: list[Problem]) -> PolicyFile:
    """Validate section by section and rule by rule, so one bad rule hides no other problem."""
    if not isinstance(source.data, dict):
        problems.append(
            Problem(
                "a policy file must be a mapping of sections",
                source.location(()),
                f"start with one of: {', '.join(PolicyFile.model_fields)}",
            )
        )
        return PolicyFile()
    sections: dict[str, Any] = {}
    for name, value in source.data.items():
        field = PolicyFile.model_fields.get(name)
        item_model = _inner_model(field.annotation) if field else None
        if field and typing.get_origin(field.annotation) is tuple and isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(item_model.model_validate(item))  # type: ignore[union-attr]
                except ValidationError as exc:
                    _add_shape_problems(source, exc, (name, index), problems)
            sections[name] = tuple(items)
            continue
        try:
            sections[name] = getattr(PolicyFile.model_validate({name: value}), name)
        except ValidationError as exc:
            _add_shape_problems(source, exc, (), problems)
    return PolicyFile.model_construct(**sections)


def _add_shape_problems(
    source: SourceFile, exc: ValidationError, prefix: Path_, problems: list[Problem]
) -> None:
    for error in exc.errors():
        error["loc"] = (*prefix, *error["loc"])
        problems.append(_shape_problem(source, error))


def _shape_problem(source: SourceFile, error: Any) -> Problem:
    where: Path_ = tuple(p for p in error["loc"] if isinstance(p, str | int))
    if error["type"] == "extra_forbidden":
        known = _known_keys(where[:-1])
        close = difflib.get_close_matches(str(where[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return Problem(f"unknown key {where[-1]!r}", source.location(where, key=True), hint)
    if error["type"] == "missing":
        return Problem(
            f"missing required key {where[-1]!r}",
            source.location(where[:-1]),
            f"add `{where[-1]}:` to this block",
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in where) or "file"
    return Problem(f"{field}: {message}", source.location(where))


def _known_keys(where: Path_) -> list[str]:
    model: Any = PolicyFile
    for part in where:
        if isinstance(part, int):
            continue
        model = _inner_model(model.model_fields[part].annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (tuple, list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _defaults(parsed: list[tuple[SourceFile, PolicyFile]], problems: list[Problem]) -> Defaults:
    given = [(src, model.defaults) for src, model in parsed if model.defaults is not None]
    for src, _ in given[1:]:
        problems.append(
            Problem(
                "`defaults` is given in more than one file",
                src.location(("defaults",), key=True),
                f"keep one, e.g. in {given[0][0].path.name}",
            )
        )
    return given[0][1] if given else Defaults()


def _reminders(
    parsed: list[tuple[SourceFile, PolicyFile]],
    templates: NoticeTemplates,
    problems: list[Problem],
) -> list[Reminder]:
    seen: dict[str, Location] = {}
    checked: set[str] = set()  # templates whose syntax was already checked
    out: list[Reminder] = []
    for source, model in parsed:
        for index, rule in enumerate(model.reminders):
            where: Path_ = ("reminders", index)
            here = source.location(where)
            if rule.id in seen:
                problems.append(
                    Problem(
                        f"rule id {rule.id!r} is already used at {seen[rule.id]}",
                        source.location((*where, "id")),
                        "every rule needs its own id; findings are keyed by it",
                    )
                )
            seen.setdefault(rule.id, here)
            table = entity_table(rule.entity)
            condition = _condition(source, (*where, "when"), rule.when, table, problems)
            _check_date_field(source, where, rule, table, problems)
            _check_roles(source, (*where, "notify"), rule, table, problems)
            _check_notice(source, (*where, "notice"), rule.notice, templates, problems, checked)
            for index, recipient in enumerate(rule.notify):
                if recipient.notice:
                    at = (*where, "notify", index, "notice")
                    _check_notice(source, at, recipient.notice, templates, problems, checked)
            if rule.offset.working:
                problems.append(
                    Problem(
                        "reminder offsets are calendar time",
                        source.location((*where, "offset")),
                        f"write '{abs(rule.offset.amount)} {rule.offset.unit}s' without 'working'",
                    )
                )
            out.append(Reminder(rule, table, condition, here))
    return out


def _condition(
    source: SourceFile, where: Path_, text: str | None, table: Table, problems: list[Problem]
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
    return Problem(f"in `when`: {message}", loc, hint, source.excerpt(loc.line or 1, loc.column))


def _check_date_field(
    source: SourceFile, where: Path_, rule: ReminderRule, table: Table, problems: list[Problem]
) -> None:
    column = table.c.get(rule.date)
    if column is not None and isinstance(column.type, Date | DateTime):
        return
    dated = [c.name for c in table.c if isinstance(c.type, Date | DateTime)]
    what = "is not a date field" if column is not None else "is not a field"
    close = difflib.get_close_matches(rule.date, dated, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"date fields: {', '.join(dated)}"
    problems.append(
        Problem(f"{rule.date!r} {what} of {table.name}", source.location((*where, "date")), hint)
    )


def _check_roles(
    source: SourceFile, where: Path_, rule: ReminderRule, table: Table, problems: list[Problem]
) -> None:
    known = role_routes(table)
    for index, role in enumerate(r.role for r in rule.notify):
        if role not in known:
            close = difflib.get_close_matches(role, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"roles: {', '.join(known)}"
            problems.append(
                Problem(
                    f"unknown role {role!r} for {table.name}",
                    source.location((*where, index)),
                    hint,
                )
            )


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
