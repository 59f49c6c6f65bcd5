"""`aftersales preview`: render every notice template in every locale before a customer sees it.

Sample data comes from a real night: the demo data set, as `init --demo` loads it, is loaded
into a scratch SQLite file and the policy is run over it at a fixed instant, and the context
each notice is rendered with is kept. A notice that night does not reach is given a row of
the table of a rule that sends it.
Each template is then rendered in each locale with its sample; any error (a missing variable,
a filter on an empty value, a sandbox violation, a syntax error, a rendering past the render
limits) is a problem with the template's file and line, so it fails preview instead of a letter.
Notices without a sample are still checked for what is runaway whatever the data.
"""

from __future__ import annotations

import html
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from sqlalchemy import Connection, Engine, select

from engine.db.demo import DEMO_SCALE, load_demo
from engine.db.models import LOCALES
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.db.types import UtcDateTime
from engine.errors import Location, Problem
from engine.expr import to_sql
from engine.findings import Finding
from engine.ledger.approval import approve, waiting
from engine.notices.outbox import finding_context
from engine.notices.recipients import Directory, Recipient
from engine.notices.templates import NoticeTemplates, RenderedNotice, RenderLimitExceeded
from engine.policy import Policy
from engine.policy.durations import Duration
from engine.policy.loader import CompiledRule
from engine.run import load_checked_policy, run_night
from engine.settings import Settings

SAMPLE_AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
# Notices the engine sends by itself, not from a rule: their context is fixed here.
ENGINE_SAMPLES: dict[str, dict[str, Any]] = {
    "policy_invalid": {
        "problems": ["rules/sla.yaml:12:5: unknown field 'withn'\n  hint: did you mean 'within'?"],
        "folder": "rules",
        "version": "0123456789abcdef",
        "as_of": SAMPLE_AS_OF,
        "recipient": {"name": "Operations", "role": "operations"},
    },
    "transport_failed": {
        "reason": "connection refused by mail.example.com:587",
        "since": SAMPLE_AS_OF,
        "server": "mail.example.com:587",
        "as_of": SAMPLE_AS_OF,
        "recipient": {"name": "Operations", "role": "operations"},
    },
    "render_failed": {
        "items": [
            "notice 42 (escalation) to Wang Fang: cannot render: UndefinedError: 'dict object' "
            "has no attribute 'number' (templates/notices/escalation/zh-CN.txt.j2:3)"
        ],
        "as_of": SAMPLE_AS_OF,
        "recipient": {"name": "Operations", "role": "operations"},
    },
    "undeliverable": {
        "customer": {
            "name": "Ana Muñoz",
            "phone": "+34 600 123 456",
            "address": "Calle de Alcalá 42, 28014 Madrid",
            "email": "ana.munoz@example.es",
        },
        "letter": {
            "id": 1042,
            "subject": "Su contrato de mantenimiento MC-MAD-0042 vence el 23 de diciembre de 2026",
            "template": "maintenance_expiry",
            "queued_at": SAMPLE_AS_OF,
            "text": "Estimada Ana Muñoz:\n\nsu contrato de mantenimiento vence pronto.\n",
        },
        "failure": {"kind": "refused", "server_reply": "550 5.1.1 mailbox unavailable"},
        "branch": {"code": "MAD-01", "name": "Madrid", "timezone": "Europe/Madrid"},
        "timezone": "Europe/Madrid",
        "as_of": SAMPLE_AS_OF,
        "recipient": {"name": "Lucía Pérez", "role": "hotline_operator"},
    },
    "outcome_unknown": {
        "notices": ["<0123456789abcdef@aftersales.example> to ana@example.es"],
        "server": "mail.example.com:587",
        "as_of": SAMPLE_AS_OF,
        "recipient": {"name": "Operations", "role": "operations"},
    },
}


@dataclass(frozen=True, slots=True)
class Rendering:
    """One notice rendered for a reader of `wanted`; `rendered.locale` is what was used."""

    name: str
    wanted: str
    rendered: RenderedNotice


@dataclass
class Preview:
    """What preview rendered, what failed, and what it had no sample for."""

    renderings: list[Rendering] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unsampled: list[str] = field(default_factory=list)
    sampled_from: dict[str, str] = field(default_factory=dict)  # name -> "demo night" / a rule

    @property
    def fallbacks(self) -> list[Rendering]:
        """Renderings that used another locale than the reader's (a missing translation)."""
        return [r for r in self.renderings if r.rendered.locale != r.wanted]


def preview(settings: Settings, as_of: datetime = SAMPLE_AS_OF) -> Preview:
    """Render every notice in every locale with sample data from a demo night at `as_of`."""
    policy, templates = load_checked_policy(settings)
    samples = collect_samples(settings, policy, as_of)
    result = Preview()
    failed: dict[tuple[str, str], tuple[Problem, list[str]]] = {}
    for name in sorted(templates.names()):
        sample = samples.get(name)
        if sample is None:
            result.unsampled.append(name)
            continue
        result.sampled_from[name] = sample[0]
        for locale in LOCALES:
            try:
                rendered = templates.render(name, locale, sample[1])
            except Exception as exc:  # every failure is reported, with its place
                problem = _problem(exc, name, templates.folder)
                key = (str(problem.location), problem.message)
                failed.setdefault(key, (problem, []))[1].append(locale)
                continue
            if not rendered.subject:
                where = Location(templates.folder / name / f"{rendered.locale}.subject.j2")
                result.problems.append(Problem("the subject renders empty", where))
            result.renderings.append(Rendering(name, locale, rendered))
    for problem, locales in failed.values():
        message = f"{problem.message} (for readers in {', '.join(locales)})"
        result.problems.append(Problem(message, problem.location, problem.hint))
    result.problems += templates.cost_problems(set(result.unsampled))
    return result


def collect_samples(
    settings: Settings, policy: Policy, as_of: datetime
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per notice: where its sample came from, and the context to render it with."""
    found: dict[str, tuple[str, dict[str, Any]]] = {
        name: ("engine notice", context) for name, context in ENGINE_SAMPLES.items()
    }
    with tempfile.TemporaryDirectory(prefix="aftersales-preview-") as scratch:
        folder = Path(scratch)
        url = f"sqlite:///{folder / 'preview.db'}"
        engine = connect(url)
        try:
            upgrade(engine)
            load_demo(engine, as_of, scale=DEMO_SCALE)  # the demo `init --demo` loads
            recording = NoticeTemplates(
                settings.templates, policy.defaults.locale, settings.rendering.limits()
            )
            recording.samples = {}
            night = settings.model_copy(
                update={"db": url, "artifacts_dir": folder / "runs", "outbox_dir": folder / "out"}
            )
            run_night(night, engine, as_of=as_of, templates=recording)
            if _approve_all(engine, as_of):  # the held reward/penalty notices render too
                run_night(night, engine, as_of=as_of, templates=recording)
            found.update({n: ("demo night", c) for n, c in recording.samples.items()})
            for name, context in _rule_samples(engine, policy, set(found), as_of):
                found[name] = context
        finally:
            engine.dispose()
    return found


def _approve_all(engine: Engine, as_of: datetime) -> bool:
    """Approve every month the demo night held for approval; False when none waited."""
    with engine.begin() as conn:
        months = sorted({w.period for w in waiting(conn)})
        for month in months:
            approve(conn, month, by="Preview", branch=None, at=as_of)
    return bool(months)


def _rule_samples(
    engine: Engine, policy: Policy, have: set[str], as_of: datetime
) -> Iterator[tuple[str, tuple[str, dict[str, Any]]]]:
    """For notices the night did not reach: a row of a rule's table that sends them."""
    with engine.connect() as conn:
        for compiled in policy.rules():
            names = set(_notice_names(compiled.rule.model_dump())) - have
            if not names:
                continue
            record = _sample_row(conn, compiled, as_of)
            if record is None:
                continue
            customers = [record["customer_id"]] if "customer_id" in record else []
            directory = Directory(conn, customers, policy.roles)
            finding = Finding(
                rule_id=compiled.rule.id,
                family="preview",
                entity=getattr(compiled.table, "name", "entity"),
                entity_id=str(record.get("id")),
                occurrence=as_of.date().isoformat(),
                state="due",
                reason="(a sample row for preview)",
                due_at=as_of,
                record=record,
            )
            reader = Recipient("preview", "staff", 0, "Preview Reader", None, "en")
            context = finding_context(finding, reader, directory, compiled.rule, as_of)
            for name in names:
                have.add(name)
                yield name, (f"a row of rule {compiled.rule.id}", context)


def _sample_row(
    conn: Connection, compiled: CompiledRule[Any], as_of: datetime
) -> dict[str, Any] | None:
    """A row the rule would send about, so the letter agrees with itself: one its condition
    holds for and, for a dated rule, whose date lies on the side of the sample night that its
    offset points to (a lapse letter about a contract that has ended, not one ending next
    month); any row of its table when none does."""
    table = compiled.table
    query = select(table)
    if compiled.condition is not None:
        query = query.where(to_sql(compiled.condition, table, as_of))
    name = getattr(compiled.rule, "date", None)
    offset = getattr(compiled.rule, "offset", None) or getattr(compiled.rule, "due", None)
    if isinstance(name, str) and name in table.c and isinstance(offset, Duration):
        column = table.c[name]
        night = as_of if isinstance(column.type, UtcDateTime) else as_of.date()
        if offset.is_negative:  # sent ahead of the date: the soonest still to come
            query = query.order_by((column > night).desc(), column)
        else:  # sent after it: the latest already past
            query = query.order_by((column < night).desc(), column.desc())
    for candidate in (query, select(table)):
        row = conn.execute(candidate.limit(1)).mappings().first()
        if row is not None:
            return dict(row)
    return None


def _notice_names(value: Any) -> Iterator[str]:
    """Every `notice: NAME` in a rule, however deeply nested (actions, recipients)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in ("notice", "summary") and isinstance(item, str):
                yield item
            else:
                yield from _notice_names(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _notice_names(item)


def _problem(exc: Exception, name: str, folder: Path) -> Problem:
    """The failure with the template file and line it happened on."""
    if isinstance(exc, TemplateSyntaxError):
        return Problem(exc.message or str(exc), Location(exc.filename or name, exc.lineno))
    if isinstance(exc, RenderLimitExceeded):
        hint = "a letter must render within [rendering] max_seconds and max_chars"
        return Problem(exc.message, exc.location, hint)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    place = Location(frames[-1].filename, frames[-1].lineno) if frames else Location(folder / name)
    hint = None
    if isinstance(exc, UndefinedError):
        hint = (
            "a finding's notice gets rule, finding, entity, customer, branch, recipient, "
            "as_of; test optional values with `is defined` or `is none`"
        )
    elif isinstance(exc, SecurityError):
        hint = "templates run sandboxed: no attributes starting with _ and no format tricks"
    return Problem(f"{type(exc).__name__}: {exc}", place, hint)


def write_pages(result: Preview, folder: Path) -> Path:
    """Write each rendering as a page, and an index linking them all; returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in result.renderings:
        page = folder / f"{item.name}.{item.wanted}.html"
        # A text-only letter wraps as a mail reader shows it, not one line across the page.
        text = html.escape(item.rendered.text)
        body = item.rendered.html or f'<pre style="white-space: pre-wrap;">{text}</pre>'
        page.write_text(body, encoding="utf-8")
        used = item.rendered.locale
        used = "" if used == item.wanted else f" (falls back to {used})"
        rows.append(
            f"<tr><td>{html.escape(item.name)}</td><td>{item.wanted}{used}</td>"
            f'<td><a href="{page.name}">{html.escape(item.rendered.subject)}</a></td></tr>'
        )
    problems = "".join(f"<li><pre>{html.escape(str(p))}</pre></li>" for p in result.problems)
    index = folder / "index.html"
    index.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Notice preview</title></head>'
        '<body style="font-family: sans-serif;"><h1>Notice preview</h1>'
        + (f"<h2>Problems</h2><ul>{problems}</ul>" if problems else "")
        + "<table><tr><th>notice</th><th>locale</th><th>subject</th></tr>"
        + "".join(rows)
        + "</table></body></html>",
        encoding="utf-8",
    )
    return index
