"""The `aftersales` command: the composition root, where settings, database and policy meet.

Exit codes: 0 success (findings are not failures), 2 invalid policy or usage, 1 anything else,
3 another run holds the lock.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import AftersalesError, UsageError
from engine.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Rules-driven nightly batch for after-sales service departments.",
)
out = Console(soft_wrap=True)  # logs and pipes want whole lines
err = Console(stderr=True, soft_wrap=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: AFTERSALES_DB or sqlite:///aftersales.db)"),
]
RulesOpt = Annotated[Path | None, typer.Option("--rules", help="Policy folder (default rules/)")]
TemplatesOpt = Annotated[
    Path | None, typer.Option("--templates", help="Notice templates (default templates/notices)")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Evaluate at this instant, ISO 8601 with offset (default: now)"),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise UsageError(f"configuration: {exc}") from exc


def parse_as_of(text: str | None) -> datetime:
    """`--as-of`: an ISO 8601 instant with an offset; now when absent."""
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--as-of {text!r} is not an ISO 8601 timestamp") from exc
    if value.tzinfo is None:
        raise UsageError(f"--as-of {text!r} has no time zone; add Z or an offset such as +08:00")
    return value.astimezone(UTC)


@contextmanager
def _handled() -> Iterator[None]:
    try:
        yield
    except AftersalesError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _connect(settings: Settings) -> Any:
    from engine.db.session import connect

    return connect(settings.db)


@app.command()
def init(
    db: DbOpt = None,
    demo: Annotated[bool, typer.Option(help="Load the demo data set")] = False,
    as_of: AsOfOpt = None,
    scale: Annotated[int, typer.Option(min=1, help="Demo size multiplier")] = 1,
    seed: Annotated[int, typer.Option(help="Demo random seed")] = 7,
) -> None:
    """Create or upgrade the schema; --demo fills it with demo data built around --as-of."""
    from engine.db.schema import upgrade

    with _handled():
        settings = _settings(db=db)
        engine = _connect(settings)
        before, after = upgrade(engine)
        where = engine.url.render_as_string(hide_password=True)
        verb = "created" if before is None else ("is current" if before == after else "upgraded")
        out.print(f"schema {verb} at revision {after}: {where}")
        if demo:
            from engine.db.demo import load_demo

            try:
                counts = load_demo(engine, parse_as_of(as_of), scale=scale, seed=seed)
            except UsageError as exc:
                out.print(f"{exc}; nothing loaded")
            else:
                out.print("demo data loaded: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@app.command(name="import")
def import_(
    directory: Annotated[Path, typer.Argument(help="Folder with one <table>.csv per table")],
    db: DbOpt = None,
) -> None:
    """Load CSV files (header = column names) in one transaction; a bad row rejects all."""
    from engine.db.importer import import_dir
    from engine.db.schema import require_current

    with _handled():
        engine = _connect(_settings(db=db))
        require_current(engine)
        counts = import_dir(engine, directory)
        out.print("imported: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@app.command()
def validate(rules: RulesOpt = None, templates: TemplatesOpt = None) -> None:
    """Check the policy files and the templates they name; exit 2 on any problem."""
    from engine.run import load_checked_policy

    with _handled():
        settings = _settings(rules=rules, templates=templates)
        policy, _ = load_checked_policy(settings)
        ids = policy.rule_ids()
        out.print(
            f"policy OK: {len(ids)} rules in {len(policy.files)} files, version {policy.hash}"
        )


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout")] = None,
) -> None:
    """Print the JSON Schema of the policy files, for editor autocompletion."""
    from engine.policy.jsonschema import policy_json_schema

    text = json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
def run(
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Evaluate; write nothing")] = False,
    output: Annotated[Path | None, typer.Option("--out", help="Run artifact path")] = None,
    deliver: Annotated[bool, typer.Option(help="Send the outbox after evaluating")] = True,
) -> None:
    """Evaluate the policy once, record findings, queue notices, then deliver them."""
    from engine.run import run_night

    with _handled():
        settings = _settings(db=db, rules=rules, templates=templates)
        engine = _connect(settings)
        result = run_night(settings, engine, as_of=parse_as_of(as_of), dry_run=dry_run, out=output)
        c = result.counts
        out.print(
            f"run {result.run_id} at {result.as_of.isoformat()}: {result.outcome}; "
            f"{c['findings_new']} new of {c['findings_total']} findings, "
            f"{c['notices_queued']} notices queued"
            + (f", {c['notices_set_aside']} set aside" if c["notices_set_aside"] else "")
            + (" (dry run: nothing written)" if dry_run else "")
        )
        for rule in result.rules:
            if rule.error:
                err.print(f"rule {rule.rule_id} failed: {rule.error}", highlight=False)
        out.print(f"artifact: {result.artifact}")
        if deliver and not dry_run:
            _deliver(settings, engine)
        if result.outcome != "success":
            raise typer.Exit(1)


@app.command(name="deliver")
def deliver_(db: DbOpt = None) -> None:
    """Send what the outbox holds (SMTP when configured, else .eml files)."""
    with _handled():
        settings = _settings(db=db)
        _deliver(settings, _connect(settings))


def _deliver(settings: Settings, engine: Any) -> None:
    from engine.notices.delivery import deliver, sender_from_settings

    smtp = settings.smtp
    where = f"SMTP {smtp.host}:{smtp.port}" if smtp.host else f"{settings.outbox_dir}/ (.eml)"
    report = deliver(
        engine, sender_from_settings(settings), now=datetime.now(UTC), mail_from=settings.mail_from
    )
    out.print(
        f"delivery to {where}: {report.sent} sent, {report.failed} to retry, "
        f"{report.dead} dead, {report.unknown} unknown"
    )
    for item in report.needs_attention:
        err.print(f"notice {item.notice_id} {item.status}: {item.reason}", highlight=False)


@app.command()
def explain(
    rule: Annotated[str, typer.Argument(help="Rule id, or `warranty` for a unit's warranty")],
    entity_id: Annotated[str, typer.Argument(help="Primary key of the entity (or unit)")],
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
) -> None:
    """Show why a rule does or does not fire for one entity at --as-of.

    `explain warranty UNIT_ID` shows a unit's warranty instead: every part's window, the
    basis used, any promotion, and the contracts that cover the unit.
    """
    from engine.explain import explain_rule, explain_warranty
    from engine.policy.loader import RESERVED_ID

    with _handled():
        settings = _settings(db=db, rules=rules, templates=templates)
        engine, when = _connect(settings), parse_as_of(as_of)
        if rule == RESERVED_ID:
            lines = explain_warranty(settings, engine, entity_id, when)
        else:
            lines = explain_rule(settings, engine, rule, entity_id, when)
        table = Table(show_header=False, box=None)
        for label, value in lines:
            table.add_row(f"[bold]{label}[/bold]", value)
        out.print(table)


def main() -> None:
    """Console-script entry point."""
    app()
