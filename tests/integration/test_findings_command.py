"""`aftersales findings`: the full list of findings, now that the run artifact lists changes only.

Rows are written straight into `findings` (a few open clock states, closed ones, events, a
charge) on a real SQLite file and PostgreSQL, and the command is read the way a user reads it.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Finding

runner = CliRunner()
NIGHT = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def invoke(*args: str):
    """Run the CLI in-process; stdout and stderr apart."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def _finding(
    rule: str,
    entity_id: str,
    state: str,
    due: datetime | None,
    *,
    family: str = "deadline",
    entity: str = "service_requests",
    occurrence: str = "1",
    recorded_at: datetime = NIGHT,
    closed_at: datetime | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    reason: str | None = None,
    run_id: str = "run-2",
) -> dict[str, Any]:
    """A findings row naming every column (a multi-row INSERT takes its columns from the first)."""
    return {
        "key": "|".join((rule, entity, entity_id, occurrence, state)),
        "rule_id": rule,
        "family": family,
        "entity": entity,
        "entity_id": entity_id,
        "occurrence": occurrence,
        "state": state,
        "due_at": due,
        "amount": amount,
        "currency": currency,
        "recipients": [],
        "reason": reason or f"{entity} {entity_id}: {state}",
        "policy_hash": "policy-1",
        "run_id": run_id,
        "recorded_at": recorded_at,
        "closed_at": closed_at,
    }


H = timedelta(hours=1)
ROWS = [
    # dispatch-urban: call 7 warned, then breached, then escalated, all still standing.
    _finding("dispatch-urban", "7", "warning", NIGHT - 6 * H, recorded_at=NIGHT - 12 * H,
             run_id="run-1"),
    _finding("dispatch-urban", "7", "breach", NIGHT - 4 * H),
    _finding("dispatch-urban", "7", "escalation:1", NIGHT - 2 * H),
    # call 8 breached and was done by the next run; call 9 is two levels up.
    _finding("dispatch-urban", "8", "breach", NIGHT - 5 * H, recorded_at=NIGHT - 12 * H,
             closed_at=NIGHT, run_id="run-1"),
    _finding("dispatch-urban", "9", "escalation:2", NIGHT - 3 * H),
    _finding("dispatch-urban", "8", "late_stop", NIGHT - 1 * H, closed_at=NIGHT,
             reason="[bold]late[/bold] stop"),
    # A penalty to a person: an event, closed when recorded; the reason looks like a formula.
    _finding("unanswered-hotline", "31", "charged", NIGHT - 8 * H, family="tally",
             entity="staff", occurrence="2026-10", amount=Decimal("-50.00"), currency="CNY",
             closed_at=NIGHT, reason='=HYPERLINK("http://attacker.test") 未接来电'),
    # A finding without a due instant sorts last.
    _finding("service-category", "7", "mismatch", None, family="classification",
             closed_at=NIGHT),
]  # fmt: skip


@pytest.fixture
def url(db: Engine, db_url: str) -> str:
    """A database of each kind holding ROWS."""
    with db.begin() as conn:
        conn.execute(insert(Finding), ROWS)
    return db_url


def listed(url: str, *args: str) -> list[tuple[str, str, str]]:
    """(rule, entity_id, state) of each finding `aftersales findings --format json` prints."""
    result = invoke("findings", "--db", url, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [(f["rule"], f["entity_id"], f["state"]) for f in json.loads(result.stdout)]


def test_each_filter_lists_the_findings_it_names_sorted_by_due_at(url):
    everything = listed(url)
    assert everything == [
        ("unanswered-hotline", "31", "charged"),
        ("dispatch-urban", "7", "warning"),
        ("dispatch-urban", "8", "breach"),
        ("dispatch-urban", "7", "breach"),
        ("dispatch-urban", "9", "escalation:2"),
        ("dispatch-urban", "7", "escalation:1"),
        ("dispatch-urban", "8", "late_stop"),
        ("service-category", "7", "mismatch"),
    ]
    assert listed(url, "--open") == [
        ("dispatch-urban", "7", "warning"),
        ("dispatch-urban", "7", "breach"),
        ("dispatch-urban", "9", "escalation:2"),
        ("dispatch-urban", "7", "escalation:1"),
    ]
    assert listed(url, "--state", "escalation") == [
        ("dispatch-urban", "9", "escalation:2"),
        ("dispatch-urban", "7", "escalation:1"),
    ]
    assert listed(url, "--state", "escalation:1") == [("dispatch-urban", "7", "escalation:1")]
    assert [s for _, _, s in listed(url, "--state", "breach", "--state", "warning")] == [
        "warning", "breach", "breach",
    ]  # fmt: skip
    assert listed(url, "--rule", "unanswered-hotline", "--rule", "service-category") == [
        ("unanswered-hotline", "31", "charged"),
        ("service-category", "7", "mismatch"),
    ]
    assert listed(url, "--entity", "staff") == [("unanswered-hotline", "31", "charged")]
    # 02:00 in Shanghai is 18:00 UTC, when the second run recorded everything but two rows.
    since = listed(url, "--since", "2026-11-24T02:00:00+08:00")
    assert len(since) == 6 and ("dispatch-urban", "7", "warning") not in since
    assert listed(url, "--limit", "2") == everything[:2]
    assert listed(url, "--open", "--rule", "dispatch-urban", "--state", "breach") == [
        ("dispatch-urban", "7", "breach")
    ]


def test_csv_has_the_header_and_spreadsheet_safe_values(url):
    chosen = ("--rule", "unanswered-hotline", "--rule", "dispatch-urban", "--state", "charged",
              "--state", "warning")  # fmt: skip
    result = invoke("findings", "--db", url, "--format", "csv", *chosen)
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.stdout, newline=""))
    assert reader.fieldnames == [
        "rule", "family", "entity", "entity_id", "occurrence", "state", "due_at", "recorded_at",
        "closed_at", "amount", "currency", "reason", "run_id", "policy_hash", "rule_digest",
    ]  # fmt: skip
    charge, warning = list(reader)
    assert charge["amount"] == "-50.00" and charge["currency"] == "CNY"  # a number, as it is
    assert charge["reason"] == """'=HYPERLINK("http://attacker.test") 未接来电"""
    assert charge["due_at"] == "2026-11-23T10:00:00+00:00"  # the run artifact's form
    assert charge["closed_at"] == charge["recorded_at"] == "2026-11-23T18:00:00+00:00"
    assert warning["closed_at"] == "" and warning["amount"] == "" and warning["run_id"] == "run-1"


def test_json_is_an_array_of_objects_with_every_column(url, db):
    # Past one fetch batch, so a server-side cursor's later batches are read too.
    many = [_finding("dispatch-suburban", str(n), "breach", NIGHT - n * H) for n in range(1, 2101)]
    with db.begin() as conn:
        conn.execute(insert(Finding), many)
    result = invoke("findings", "--db", url, "--format", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert len(found) == len(ROWS) + len(many)
    charge = next(f for f in found if f["rule"] == "unanswered-hotline")
    assert charge == {
        "rule": "unanswered-hotline",
        "family": "tally",
        "entity": "staff",
        "entity_id": "31",
        "occurrence": "2026-10",
        "state": "charged",
        "due_at": "2026-11-23T10:00:00+00:00",
        "recorded_at": "2026-11-23T18:00:00+00:00",
        "closed_at": "2026-11-23T18:00:00+00:00",
        "amount": "-50.00",
        "currency": "CNY",
        "reason": '=HYPERLINK("http://attacker.test") 未接来电',
        "run_id": "run-2",
        "policy_hash": "policy-1",
        "rule_digest": None,  # recorded before rules had digests
    }
    assert found[-1]["due_at"] is None and found[-1]["state"] == "mismatch"
    empty = invoke("findings", "--db", url, "--format", "json", "--entity", "units")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []


def test_text_is_a_table_ending_with_the_counts_and_hints_at_rule_ids(url):
    result = invoke("findings", "--db", url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "rule", "family", "entity", "entity_id", "occurrence", "state", "due_at", "recorded_at",
        "closed_at", "amount", "currency", "reason", "run_id", "policy_hash", "rule_digest",
    ]  # fmt: skip
    assert lines[-1] == "8 findings (4 open)"
    charge = next(line for line in lines if "unanswered-hotline" in line)
    assert "2026-11-23T10:00:00+00:00" in charge and "-50.00" in charge
    assert "[bold]late[/bold] stop" in result.stdout  # shown as written, not as markup
    limited = invoke("findings", "--db", url, "--open", "--limit", "1")
    assert limited.stdout.splitlines()[-1] == "1 finding (1 open), --limit reached"
    none = invoke("findings", "--db", url, "--entity", "units")
    assert none.exit_code == 0 and none.stdout == "0 findings (0 open)\n"
    # A rule id no finding has is named, with the recorded ones it resembles.
    typo = invoke("findings", "--db", url, "--rule", "dispatch-urbn", "--rule", "dispatch-urban")
    assert typo.exit_code == 0
    assert "no finding has rule id 'dispatch-urbn'; did you mean dispatch-urban?" in typo.stderr
    assert "'dispatch-urban'" not in typo.stderr
    assert typo.stdout.splitlines()[-1] == "6 findings (4 open)"


def test_since_without_an_offset_and_a_database_without_schema_are_refused(sqlite_url):
    naive = invoke("findings", "--db", sqlite_url, "--since", "2026-11-23T10:00:00")
    assert naive.exit_code == 2 and "--since" in naive.stderr and "no time zone" in naive.stderr
    bare = invoke("findings", "--db", sqlite_url)
    assert bare.exit_code == 1 and "aftersales init" in bare.stderr
