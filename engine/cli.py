"""The `aftersales` command: the composition root, where settings, database and policy meet.

Exit codes: 0 success (findings are not failures), 2 invalid policy or usage, 1 anything else,
3 another run holds the lock, 4 the database stayed locked or unwritable (delivery keeps the
answers it had in runs/delivery-journal.jsonl and the next delivery records them first),
5 the mail server could not be used: connect, TLS or login failed (`deliver`, `deliver
--check`, and `run` when its delivery could not start; no letter was charged for it).
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.errors import AftersalesError, UsageError
from engine.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Rules-driven nightly batch for after-sales service departments.",
)
report_app = typer.Typer(no_args_is_help=True, help="Manager reports from the ledger.")
app.add_typer(report_app, name="report")
# Logs and pipes want whole lines. No markup: what is printed is the engine's text, and a policy
# line quoted in an error (`notify: [team_lead]`) must not lose its brackets to Rich.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: AFTERSALES_DB or sqlite:///aftersales.db)"),
]
RulesOpt = Annotated[Path | None, typer.Option("--rules", help="Policy folder (default rules/)")]
TemplatesOpt = Annotated[
    Path | None, typer.Option("--templates", help="Notice templates (default templates/notices)")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Folder for the files (default: runs/reports)")
]
LocaleOpt = Annotated[
    str | None, typer.Option("--locale", help="Language of the HTML (default: the policy's)")
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
    return parse_instant(text, "--as-of")


def parse_instant(text: str, option: str) -> datetime:
    """An ISO 8601 instant with an offset given to `option`, in UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 timestamp") from exc
    if value.tzinfo is None:
        raise UsageError(f"{option} {text!r} has no time zone; add Z or an offset such as +08:00")
    return value.astimezone(UTC)


@contextmanager
def _handled() -> Iterator[None]:
    try:
        yield
    except AftersalesError as exc:
        err.print(Text.assemble(("error:", "red"), f" {exc}"), highlight=False)
        raise typer.Exit(exc.exit_code) from None


def _connect(settings: Settings, *, create: bool = False) -> Any:
    """The database, opened once: a missing SQLite file (created only by `init`) or a server
    that refuses is one line and exit 1 (DatabaseUnavailable)."""
    from engine.db.session import open_database

    return open_database(settings.db, create=create)


@app.command()
def init(
    db: DbOpt = None,
    demo: Annotated[bool, typer.Option(help="Load the demo data set")] = False,
    as_of: AsOfOpt = None,
    scale: Annotated[
        int | None, typer.Option(min=1, help="Demo size: N x 300 calls (default 8)")
    ] = None,
    seed: Annotated[int, typer.Option(help="Demo random seed")] = 7,
) -> None:
    """Create or upgrade the schema; --demo fills it with demo data built around --as-of."""
    from engine.db.schema import upgrade

    with _handled():
        settings = _settings(db=db)
        engine = _connect(settings, create=True)
        before, after = upgrade(engine)
        where = engine.url.render_as_string(hide_password=True)
        verb = "created" if before is None else ("is current" if before == after else "upgraded")
        out.print(f"schema {verb} at revision {after}: {where}")
        if demo:
            from engine.db.demo import DEMO_SCALE, load_demo

            try:
                counts = load_demo(engine, parse_as_of(as_of), scale=scale or DEMO_SCALE, seed=seed)
            except UsageError as exc:
                out.print(f"{exc}; nothing loaded")
            else:
                out.print("demo data loaded: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@app.command(name="import")
def import_(
    directory: Annotated[Path, typer.Argument(help="Folder with one <table>.csv per table")],
    db: DbOpt = None,
    upsert: Annotated[
        bool,
        typer.Option(
            "--upsert",
            help="Update rows found by id or natural key, insert the others, delete those "
            "marked _delete (docs/feeding.md)",
        ),
    ] = False,
) -> None:
    """Load CSV files (header = column names) in one transaction; a bad row rejects all."""
    from engine.db.importer import import_dir, upsert_dir
    from engine.db.schema import require_current

    with _handled():
        engine = _connect(_settings(db=db))
        require_current(engine)
        if not upsert:
            counts = import_dir(engine, directory)
            out.print("imported: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
            return
        for table, done in upsert_dir(engine, directory).items():
            out.print(f"{table}: {done}")


TestsOpt = Annotated[
    bool, typer.Option("--tests", help="Also run the policy tests (DIR/tests/*.yaml)")
]


@app.command()
def validate(
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    db: DbOpt = None,
    tests: TestsOpt = False,
) -> None:
    """Check the policy files and the templates they name; exit 2 on any problem. With a
    database at hand, also refuse customer notices lacking a locale its customers or branches
    read, and warn of roles held by staff or named on rows that it does not declare; with
    --tests, run the policy tests too (exit 1 when one fails)."""
    from engine.run import load_checked_policy

    with _handled():
        settings = _settings(rules=rules, templates=templates, db=db)
        in_use, warnings = _read_locales(settings)
        policy, templates_found = load_checked_policy(settings, in_use)
        templates_found.check_costs()  # runaway whatever the data (engine/notices/templates.py)
        ids = policy.rule_ids()
        out.print(
            f"policy OK: {len(ids)} rules in {len(policy.files)} files, version {policy.hash}"
        )
        for item in policy.disabled:
            out.print(f"disabled: {item.rule.id}: {item.rule.disabled}")
        for warning in [*warnings, *_role_warnings(settings, policy)]:
            err.print(f"warning: {warning}", highlight=False)
    if tests:
        test_(rules=rules, templates=templates)


JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Cases run at once, each in a process of its own (default: one per CPU; 1: one "
        "after another, in this process)",
    ),
]


@app.command(name="test")
def test_(rules: RulesOpt = None, templates: TemplatesOpt = None, jobs: JobsOpt = None) -> None:
    """Run the policy tests kept beside the policy (DIR/tests/*.yaml), each in a throwaway
    SQLite database; end with `N passed, M failed`. Exit 1 on a failure, 2 on an invalid
    test file or policy."""
    from engine.policy_tests.pool import default_jobs
    from engine.policy_tests.report import run_policy_tests

    with _handled():
        settings = _settings(rules=rules, templates=templates)
        summary = run_policy_tests(
            settings,
            lambda text: out.print(text, highlight=False, markup=False),
            jobs or default_jobs(),
        )
        out.print(summary.line, highlight=False)
    if summary.failed:
        raise typer.Exit(1)


def _database_at_hand(settings: Settings) -> bool:
    """False for an SQLite file that does not exist: validating needs no database, and
    connecting would create one."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.db)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


def _read_locales(settings: Settings) -> tuple[dict[str, list[str]], list[str]]:
    """The locales the database's customers and branches read (none without a database),
    and a warning when it could not be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import DatabaseUnavailable
    from engine.notices.languages import database_locales

    if not _database_at_hand(settings):
        return {}, []
    try:
        with _connect(settings).connect() as conn:
            return database_locales(conn), []
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        return {}, [f"customers' locales not checked, the database could not be read: {exc}"]


def _role_warnings(settings: Settings, policy: Any) -> list[str]:
    """Roles held by staff, or named on rows notices read, that the policy does not declare;
    none when there is no database to read."""
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import DatabaseUnavailable
    from engine.notices.recipients import role_fields, undeclared_roles

    if not _database_at_hand(settings):
        return []
    try:
        with _connect(settings).connect() as conn:
            fields = role_fields(r.rule for r in policy.rules())
            return undeclared_roles(conn, policy.roles, fields)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        return [f"staff roles not checked, the database could not be read: {exc}"]


@app.command(name="preview")
def preview_(
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    as_of: Annotated[
        str | None, typer.Option(help="Instant of the sample night (default 2026-11-23T18:00Z)")
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Write every rendering as HTML and open the index")
    ] = False,
    output: Annotated[Path, typer.Option("--out", help="Folder for --open")] = Path("preview"),
) -> None:
    """Render every notice in every locale with sample data; exit 2 on any template error."""
    import webbrowser

    from engine.errors import PolicyError
    from engine.preview import SAMPLE_AS_OF, preview, write_pages

    with _handled():
        settings = _settings(rules=rules, templates=templates)
        result = preview(settings, parse_as_of(as_of) if as_of else SAMPLE_AS_OF)
        for name in result.unsampled:
            err.print(f"note: {name}: no rule sends it and the demo night does not reach it")
        for item in result.fallbacks:
            err.print(
                f"note: {item.name}: no {item.wanted} template, "
                f"{item.rendered.locale} is used instead",
                highlight=False,
            )
        if open_:
            index = write_pages(result, output)
            out.print(f"preview pages: {index}")
            webbrowser.open(index.resolve().as_uri())
        if result.problems:
            raise PolicyError(result.problems)
        notices = len({r.name for r in result.renderings})
        out.print(
            f"preview OK: {notices} notices rendered in {len(result.renderings)} "
            f"notice-locale pairs, {len(result.fallbacks)} by fallback"
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
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Judge every entity, not only what changed or came due since the last run",
        ),
    ] = False,
) -> None:
    """Do what is due: judge what changed or came due (everything when the policy changed),
    record findings, queue notices and the daily parts whose local time came, then deliver."""
    from engine.night import one_night

    with _handled():
        settings = _settings(db=db, rules=rules, templates=templates)
        when = parse_as_of(as_of)  # a usage error is told before the database is opened
        engine = _connect(settings)
        with _progress() as advance:
            night = one_night(
                settings,
                engine,
                as_of=when,
                dry_run=dry_run,
                send=deliver,
                out=output,
                progress=advance,
                full=full,
            )
        result = night.run
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
        for path in result.ledger.get("reports", ()):
            out.print(f"report: {path}")
        if "reports_error" in result.ledger:
            err.print(f"reports not written: {result.ledger['reports_error']}", highlight=False)
        if night.delivery is not None:
            _report_delivery(settings, night.delivery, engine)
        if result.outcome != "success":
            raise typer.Exit(1)


@app.command()
def diff(
    rules: RulesOpt = None,
    against: Annotated[
        str | None,
        typer.Option(help="Folder or git revision to compare with (default: the last run's)"),
    ] = None,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    templates: TemplatesOpt = None,
    format_: Annotated[Literal["text", "json"], typer.Option("--format")] = "text",
) -> None:
    """What a policy change would do, on the database as it is; writes nothing. Exit 0 with
    no difference, 1 with differences, 2 when either policy is invalid."""
    from engine.db.schema import require_current
    from engine.notices.templates import NoticeTemplates
    from engine.policy_diff import compare, render_text
    from engine.policy_versions import against_policy, load_side

    with _handled():
        settings = _settings(db=db, rules=rules, templates=templates)
        # A bad --as-of or policy is a usage error (2) whether or not the database is there.
        when = parse_as_of(as_of)
        shapes = NoticeTemplates(settings.templates)
        after = load_side(settings.rules, shapes, str(settings.rules))
        engine = _connect(settings)
        require_current(engine)
        before, name, folder = against_policy(engine, settings.rules, against, shapes)
        sides = {"before": folder, "after": settings.rules}
        found = compare(engine, before, after, when, shapes, against=name, explain_rules=sides)
        if format_ == "json":
            out.print_json(data=found.document())
        else:
            for line in render_text(found):
                out.print(line, highlight=False, markup=False)
    if found.differs:
        raise typer.Exit(1)


@app.command(name="deliver")
def deliver_(
    db: DbOpt = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Only try a session with the mail server (connect, EHLO, STARTTLS, AUTH), "
            "send nothing; exit 5 if it fails",
        ),
    ] = False,
) -> None:
    """Send what the outbox holds (SMTP when configured, else .eml files)."""
    from engine.night import deliver_locked
    from engine.notices.delivery import check_transport

    with _handled():
        settings = _settings(db=db)
        if check:
            for line in check_transport(settings):
                out.print(line, highlight=False)
            out.print("mail server OK")
            return
        engine = _connect(settings)
        _report_delivery(settings, deliver_locked(settings, engine), engine)


def _report_delivery(settings: Settings, report: Any, engine: Any) -> None:
    """Print what a delivery did and what the outbox holds after it (counted as `status`
    counts it); exit 5 when the mail server could not be used."""
    from engine.errors import MailTransportError
    from engine.notices.outbox_admin import describe_counts, outbox_counts

    smtp = settings.smtp
    where = f"SMTP {smtp.host}:{smtp.port}" if smtp.host else f"{settings.outbox_dir}/ (.eml)"
    out.print(
        f"delivery to {where}: {report.sent} sent, {report.failed} to retry, "
        f"{report.dead} dead, {report.unknown} unknown"
        + (f", {report.held} held for the customer send window" if report.held else "")
    )
    with engine.connect() as conn:
        out.print(describe_counts(outbox_counts(conn)), highlight=False)
    if report.from_journal:
        out.print(f"{report.from_journal} answers of an earlier delivery recorded from its journal")
    for item in report.needs_attention:
        err.print(f"notice {item.notice_id} {item.status}: {item.reason}", highlight=False)
    if report.transport_failure is not None:
        err.print(
            f"error: delivery stopped, {report.skipped} letters left as they were: "
            f"{report.transport_failure}",
            highlight=False,
        )
        raise typer.Exit(MailTransportError.exit_code)


@contextmanager
def _progress() -> Iterator[Callable[[str], None] | None]:
    """A progress bar over the rules when stderr is a terminal; nothing otherwise."""
    if not err.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
        transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("evaluating", total=None)
        yield lambda rule: bar.update(task, description=f"evaluating {rule}")


@app.command()
def status(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs to show")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The last runs, what waits in the outbox, and the next scheduled run."""
    from engine.notices.outbox_admin import describe_counts
    from engine.status import read_status

    with _handled():
        settings = _settings(db=db)
        report = read_status(settings, _connect(settings), limit=limit, now=datetime.now(UTC))
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
            return
        table = Table(title="Last runs", title_justify="left")
        for heading in ("started (UTC)", "as of (UTC)", "outcome", "took", "findings new/all",
                        "notices queued/sent/failed", "policy"):  # fmt: skip
            table.add_column(heading)
        for item in report["runs"]:
            table.add_row(*_run_cells(item))
        _wide().print(table)
        out.print(describe_counts(report["outbox"]), highlight=False)
        for item in report["awaiting_approval"]:
            out.print(_waits(item))
        out.print(f"next scheduled run: {report['next_run']}")


@app.command(name="outbox")
def outbox_(
    db: DbOpt = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only notices in this state (repeatable): dead, pending, ..."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first")] = 50,
    retry: Annotated[
        int | None,
        typer.Option("--retry", metavar="ID", help="Queue a dead, failed or unknown notice again"),
    ] = None,
    cancel: Annotated[
        int | None,
        typer.Option("--cancel", metavar="ID", help="Cancel a notice for good (needs --reason)"),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why it is cancelled")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who retries or cancels (default: your login name)")
    ] = None,
) -> None:
    """List the outbox's notices, or retry or cancel one (recorded with who, when and why)."""
    import getpass

    from engine.db.schema import require_current
    from engine.notices import outbox_admin

    with _handled():
        if retry is not None and cancel is not None:
            raise UsageError("--retry and --cancel: one at a time")
        if cancel is not None and not reason:
            raise UsageError("--cancel needs --reason: say why the notice is cancelled")
        engine = _connect(_settings(db=db))
        require_current(engine)
        now = datetime.now(UTC).replace(microsecond=0)
        who = by or getpass.getuser()
        if retry is not None or cancel is not None:
            with engine.begin() as conn:
                if retry is not None:
                    done = outbox_admin.retry(conn, retry, by=who, at=now)
                else:
                    assert cancel is not None and reason is not None
                    done = outbox_admin.cancel(conn, cancel, reason=reason, by=who, at=now)
            out.print(done, highlight=False)
            return
        with engine.connect() as conn:
            rows = outbox_admin.list_notices(conn, state or (), limit)
            counts = outbox_admin.outbox_counts(conn)
        table = Table(title="Outbox, newest first", title_justify="left")
        for heading in ("id", "created (UTC)", "template", "recipient", "state", "attempts",
                        "reason"):  # fmt: skip
            table.add_column(heading, overflow="fold")
        for row in rows:
            table.add_row(
                str(row.id), f"{row.created_at:%Y-%m-%d %H:%M}", row.template, row.recipient,
                row.state, str(row.attempts), row.reason,
            )  # fmt: skip
        _wide().print(table)
        out.print(outbox_admin.describe_counts(counts), highlight=False)


def _waits(item: dict[str, Any]) -> str:
    return (
        f"awaiting approval: {item['period']} {item['branch']}, {item['entries']} entries held "
        f"since {item['held_since'][:16]} "
        f"(aftersales approve {item['period']} --branch {item['branch']} --by NAME)"
    )


@app.command()
def approve(
    period: Annotated[
        str, typer.Argument(help="The closed month, 2026-10 (a quarter: the month it closes with)")
    ],
    by: Annotated[str, typer.Option("--by", help="Who approves, e.g. the general manager's name")],
    branch: Annotated[
        str | None,
        typer.Option("--branch", help="Only this branch (code; HQ: head office); default: all"),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Approve a closed month's rewards and penalties: the next run sends the held notices."""
    from engine.db.schema import require_current
    from engine.ledger.approval import approve as record_approval

    with _handled():
        settings = _settings(db=db)
        engine = _connect(settings)
        require_current(engine)
        with engine.begin() as conn:
            done = record_approval(conn, period, by=by, branch=branch, at=datetime.now(UTC))
        for item in done:
            out.print(f"approved {item.period} {item.branch}: {item.entries} entries, by {by}")
        out.print("the next run sends the reward/penalty notices and their copies")


def _wide() -> Console:
    """The console for tables: a pipe or a log gets whole rows, not 80 squeezed columns."""
    return out if out.is_terminal else Console(width=160, markup=False)


def _run_cells(run: dict[str, Any]) -> list[str]:
    def show(value: Any) -> str:
        return "-" if value is None else str(value)

    return [
        f"{run['started_at']:%Y-%m-%d %H:%M:%S}",
        f"{run['as_of']:%Y-%m-%d %H:%M}",
        run["outcome"],
        "-" if run["seconds"] is None else f"{run['seconds']:.1f}s",
        f"{show(run['findings_new'])}/{show(run['findings_total'])}",
        f"{show(run['notices_queued'])}/{show(run['notices_sent'])}/{run['notices_failed']}",
        run["policy_hash"][:8],
    ]


@app.command(name="findings")
def findings_(
    db: DbOpt = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Only this rule id (repeatable)")
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only this state (repeatable): breach, escalation:1; a state without its "
            "level, escalation, means every level",
        ),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Only open findings (closed_at empty)")
    ] = False,
    entity: Annotated[
        str | None, typer.Option("--entity", help="Only findings about this table's rows")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only findings recorded at or after this ISO 8601 instant"),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows")] = None,
    output_format: Annotated[
        Literal["text", "csv", "json"],
        typer.Option("--format", help="A table, CSV (header line) or a JSON array"),
    ] = "text",
) -> None:
    """List the recorded findings, sorted by due_at, rule and entity_id."""
    from engine.db.schema import require_current
    from engine.reports.findings_list import (
        FindingFilter,
        read_findings,
        unknown_rules,
        write_csv,
        write_json,
    )

    with _handled():
        wanted = FindingFilter(
            rules=tuple(rule or ()),
            states=tuple(state or ()),
            open_only=open_,
            entity=entity,
            since=parse_instant(since, "--since") if since is not None else None,
            limit=limit,
        )
        engine = _connect(_settings(db=db))
        require_current(engine)
        with engine.connect() as conn:
            for unknown, near in unknown_rules(conn, wanted.rules).items():
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                err.print(f"note: no finding has rule id {unknown!r}{hint}", highlight=False)
            rows = read_findings(conn, wanted)
            if output_format == "text":
                _print_findings(rows, limit)
            else:
                (write_csv if output_format == "csv" else write_json)(sys.stdout, rows)


def _print_findings(rows: Iterable[Any], limit: int | None) -> None:
    """The findings as a table, then how many and how many of them are open."""
    from rich import box
    from rich.text import Text

    from engine.reports.findings_list import COLUMNS, text_cells

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in COLUMNS:
        # The reason wraps on a terminal; identifiers and instants are read whole.
        table.add_column(name, no_wrap=name != "reason", min_width=20 if name == "reason" else None)
    shown = still_open = 0
    for row in rows:
        # Text, not str: a reason holding [brackets] must not be read as Rich markup.
        table.add_row(*(Text(cell) for cell in text_cells(row)))
        shown += 1
        still_open += row.closed_at is None
    if shown:
        # A pipe or a log gets one line per finding, whatever its length, for grep and less -S.
        (out if out.is_terminal else Console(width=100_000, markup=False)).print(table)
    noun = "finding" if shown == 1 else "findings"
    more = ", --limit reached" if shown == limit else ""
    out.print(f"{shown} {noun} ({still_open} open){more}", highlight=False)


@app.command(name="schedule")
def schedule_(
    db: DbOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    every: Annotated[
        str | None, typer.Option(help="How often a cycle runs: 15m, 5m, 1h [default: 15m]")
    ] = None,
    at: Annotated[str | None, typer.Option(hidden=True, help="Deprecated, ignored")] = None,
    timezone: Annotated[str | None, typer.Option(hidden=True, help="Deprecated, ignored")] = None,
) -> None:
    """Run a cycle now and then every --every until stopped (SIGTERM or Ctrl-C).

    Each cycle judges the clocks and does the daily parts whose local time has come.
    """
    import signal

    from engine.night import one_night
    from engine.scheduler import CycleLoop, parse_every

    with _handled():
        try:
            interval = parse_every(every) if every is not None else None
        except ValueError as exc:
            raise UsageError(f"--every {exc}") from None
        settings = _settings(db=db, rules=rules, templates=templates, schedule_every=interval)
        # Still accepted, so a service unit written for the nightly loop keeps running.
        if at is not None or timezone is not None:
            err.print("warning: --at and --timezone are ignored: the policy's schedule: gives "
                      "each daily part its local time", highlight=False)  # fmt: skip
        for warning in settings.deprecated():
            err.print(f"warning: {warning}", highlight=False)
        engine = _connect(settings)
        loop = CycleLoop(
            lambda as_of: one_night(settings, engine, as_of=as_of), every=settings.schedule_every
        )
        # The cycle in progress finishes (it is one transaction); the loop ends after it.
        signal.signal(signal.SIGTERM, lambda *_: loop.stop.set())
        signal.signal(signal.SIGINT, lambda *_: loop.stop.set())
        loop.serve()


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
            table.add_row(Text(label, style="bold"), value)
        _wide().print(table)


@app.callback()
def _options(
    log_json: Annotated[
        bool | None,
        typer.Option("--log-json/--log-text", help="Log format (default: JSON unless a terminal)"),
    ] = None,
) -> None:
    from engine.logs import configure

    configure(log_json)


@report_app.command("penalties")
def report_penalties(
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="A month, 2026-10 (with every period that closes with it), or one period: "
            "2026-10-07, 2026-W41, 2026-Q4, 2026-H2, 2026; default: the last closed month",
        ),
    ] = None,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    output: OutOpt = None,
    locale: LocaleOpt = None,
) -> None:
    """Penalties and rewards per branch and person from the ledger, as HTML and CSV."""
    from jinja2 import TemplateError

    from engine.ledger.approval import waiting
    from engine.ledger.periods import Period, last_closed_month
    from engine.reports.penalties import build_summary, write_reports

    with _handled():
        settings, policy, notice_templates, engine = _report_inputs(db, rules, templates, locale)
        ledger = policy.ledger
        chosen = Period.parse(period) if period else last_closed_month(parse_as_of(as_of), ledger)
        tallies = {t.rule.id: t.rule for t in policy.tallies}
        with engine.connect() as conn:
            summary = build_summary(conn, chosen, tallies)
            held = [w for w in waiting(conn) if w.period == chosen.closing_month.key]
        folder = output or settings.artifacts_dir / "reports"
        language = locale or policy.defaults.locale
        try:
            paths = write_reports([summary], folder, notice_templates, language, ledger.timezone)
        except TemplateError as exc:
            raise UsageError(f"the report template failed: {exc}") from exc
        _print_summary(summary)
        for item in held:
            out.print(_waits(item.artifact()))
        for path in paths:
            out.print(f"wrote {path}")


@report_app.command("kpi")
def report_kpi(
    period: Annotated[
        str | None,
        typer.Option("--period", help="A month, 2026-10; default: the last complete month"),
    ] = None,
    as_of: AsOfOpt = None,
    db: DbOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    output: OutOpt = None,
    locale: LocaleOpt = None,
) -> None:
    """Service KPIs per branch and technician for a month against the months before it."""
    from zoneinfo import ZoneInfo

    from jinja2 import TemplateError

    from engine.ledger.periods import Period
    from engine.reports.kpis import read_report, write_report
    from engine.rules.metric import measure, months_ending

    with _handled():
        settings, policy, notice_templates, engine = _report_inputs(db, rules, templates, locale)
        if not policy.metrics:
            raise UsageError("the policy has no `metrics:`; see docs/policy.md, Metrics")
        instant = parse_as_of(as_of)
        if period is not None:
            chosen = Period.parse(period)
            if chosen.kind != "month":
                raise UsageError(f"--period {period!r}: KPIs are monthly, write e.g. 2026-10")
        else:
            local = instant.astimezone(ZoneInfo(policy.ledger.timezone)).date()
            chosen = Period.containing("month", local).previous()
        months = months_ending(chosen, policy.kpi_report.history)
        with engine.connect() as conn:
            measured = [v for m in policy.metrics for v in measure(conn, m, months, instant)]
            report = read_report(
                conn, measured, [m.rule for m in policy.metrics], [m.key for m in months]
            )
        folder = output or settings.artifacts_dir / "reports"
        try:
            paths = write_report(report, folder, notice_templates, locale or policy.defaults.locale)
        except TemplateError as exc:
            raise UsageError(f"the report template failed: {exc}") from exc
        _print_kpis(report)
        for path in paths:
            out.print(f"wrote {path}")


def _report_inputs(
    db: str | None, rules: Path | None, templates: Path | None, locale: str | None
) -> tuple[Settings, Any, Any, Any]:
    """A report command's settings, checked policy and templates, and current database."""
    from engine.db.models import LOCALES
    from engine.db.schema import require_current
    from engine.run import load_checked_policy

    settings = _settings(db=db, rules=rules, templates=templates)
    policy, notice_templates = load_checked_policy(settings)
    if locale is not None and locale not in LOCALES:
        raise UsageError(f"--locale {locale!r}: one of {', '.join(LOCALES)}")
    engine = _connect(settings)
    require_current(engine)
    return settings, policy, notice_templates, engine


def _print_kpis(report: Any) -> None:
    table = Table(title=f"Service KPIs {report.period} (branches; ! target missed)")
    for name in ("branch", "kpi", *report.months, "target"):
        table.add_column(name, justify="left" if name in ("branch", "kpi", "target") else "right")
    for part in report.branches:
        for line in part.overall.lines:
            cells = [
                "-" if v is None else f"{v * 100:.1f}%" if line.kind == "share" else f"{v:.2f}"
                for v in line.values
            ]
            marked = [
                c + (" !" if miss else "") for c, miss in zip(cells, line.missed, strict=True)
            ]
            table.add_row(part.code, line.metric_id, *marked, line.target or "")
    Console(width=max(out.width, 120), markup=False).print(table)


def _print_summary(summary: Any) -> None:
    if not summary.entries:
        out.print(f"no ledger entries for {', '.join(summary.periods)}")
        return
    table = Table(title=f"Penalties and rewards {', '.join(summary.periods)}")
    for name in ("branch", "person", "role", "entries", "currency", "penalties", "rewards", "net"):
        numeric = name in ("entries", "penalties", "rewards", "net")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for part in summary.branches:
        for person in part.people:
            for sums in person.totals:
                row = (part.code, person.name, person.role, str(len(person.lines)))
                table.add_row(*row, *_sums(sums))
    for sums in summary.totals:
        table.add_row("total", "", "", str(summary.entries), *_sums(sums), style="bold")
    # A pipe gets 80 columns, too few for names and amounts: give the table what it needs.
    Console(width=max(out.width, 120), markup=False).print(table)


def _sums(sums: Any) -> tuple[str, str, str, str]:
    return sums.currency, f"{sums.penalties:.2f}", f"{sums.rewards:.2f}", f"{sums.net:.2f}"


def main() -> None:
    """Console-script entry point."""
    # A cycle every 15 minutes is mostly start and exit. The imported modules' objects live
    # as long as the process, so they are kept out of the collections, and on the way out so
    # is everything else: the final collections then have nothing to scan (0.25 s a cycle).
    gc.freeze()
    try:
        app()
    finally:
        session = sys.modules.get("engine.db.session")
        if session is not None:  # a command opened the database: say goodbye to the server
            session.close_all()
        gc.freeze()
