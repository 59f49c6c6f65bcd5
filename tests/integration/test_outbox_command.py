"""`aftersales outbox`: a person lists the outbox, sends a letter again or cancels one, and
`status` and `deliver` tell the same counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import Notice, OutboxAction

runner = CliRunner()
QUEUED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def letter(db: Engine, key: str, **values: Any) -> int:
    """A rendered customer letter in the outbox; its id."""
    row = {
        "dedup_key": key, "message_id": f"<{key}@aftersales.example>", "finding_key": key,
        "template": "maintenance_expiry", "recipient_role": "customer",
        "recipient_name": f"Customer {key}", "recipient_address": f"{key}@example.com",
        "locale": "en", "subject": f"Letter {key}", "body_text": "Dear customer,\n",
        "status": "pending", "attempts": 0, "created_at": QUEUED, "run_id": "run-1",
        **values,
    }  # fmt: skip
    with db.begin() as conn:
        return conn.execute(insert(Notice).returning(Notice.id), row).scalar_one()


def state(db: Engine, notice_id: int) -> tuple[str, int, str | None]:
    with db.connect() as conn:
        row = conn.execute(
            select(Notice.status, Notice.attempts, Notice.last_error).where(Notice.id == notice_id)
        ).one()
        return tuple(row)  # type: ignore[return-value]


def smtp_env(port: int, tmp_path) -> dict[str, str]:
    return {
        "AFTERSALES_SMTP__HOST": "127.0.0.1",
        "AFTERSALES_SMTP__PORT": str(port),
        "AFTERSALES_SMTP__SECURITY": "none",
        "AFTERSALES_ARTIFACTS_DIR": str(tmp_path / "runs"),
    }


def test_outbox_lists_retries_and_cancels_and_a_cancelled_letter_is_never_sent(
    db, db_url, smtp_server, tmp_path
):
    handler, port = smtp_server
    kept = letter(db, "ana")
    bounced = letter(
        db, "bo", status="dead", attempts=1, last_error="mail server refused it: 550 no such user"
    )
    changed_mind = letter(db, "cy")

    listed = invoke("outbox", "--db", db_url, "--state", "dead")
    assert listed.exit_code == 0
    assert "550 no such user" in listed.stdout and "bo@example.com" in listed.stdout
    assert "ana@example.com" not in listed.stdout

    cancelled = invoke(
        "outbox", "--db", db_url, "--cancel", str(changed_mind),
        "--reason", "customer asked by phone not to write", "--by", "李娜",
    )  # fmt: skip
    assert cancelled.exit_code == 0, cancelled.output
    retried = invoke("outbox", "--db", db_url, "--retry", str(bounced), "--by", "李娜")
    assert retried.exit_code == 0, retried.output
    assert invoke("outbox", "--db", db_url, "--retry", str(kept)).exit_code == 1  # not dead

    delivered = invoke("deliver", "--db", db_url, env=smtp_env(port, tmp_path))
    assert delivered.exit_code == 0, delivered.output

    assert sorted(to for _, [to], _ in handler.accepted) == ["ana@example.com", "bo@example.com"]
    status, _, why = state(db, changed_mind)
    assert status == "cancelled"
    assert why is not None and "李娜" in why and "customer asked by phone" in why
    assert state(db, bounced)[:2] == ("sent", 1)  # a fresh schedule of attempts, then sent
    with db.connect() as conn:
        actions = conn.execute(
            select(OutboxAction.notice_id, OutboxAction.action, OutboxAction.status_before,
                   OutboxAction.by).order_by(OutboxAction.id)
        ).all()  # fmt: skip
    assert [tuple(a) for a in actions] == [
        (changed_mind, "cancel", "pending", "李娜"),
        (bounced, "retry", "dead", "李娜"),
    ]
    assert invoke("outbox", "--db", db_url, "--cancel", str(kept), "--reason", "x").exit_code == 1


def test_status_and_deliver_tell_the_same_outbox_counts(db, db_url, smtp_server, tmp_path):
    _, port = smtp_server
    letter(db, "ana")
    letter(db, "bo", recipient_address=None, status="dead", last_error="no email address")
    letter(db, "cy", recipient_role="team_lead", status="held")

    delivered = invoke("deliver", "--db", db_url, env=smtp_env(port, tmp_path))
    status = invoke("status", "--db", db_url)

    def outbox_line(output: str) -> str:
        [line] = [line for line in output.splitlines() if line.startswith("outbox:")]
        return line

    assert outbox_line(delivered.stdout) == "outbox: 1 sent, 1 dead, 1 held"
    assert outbox_line(status.stdout) == outbox_line(delivered.stdout)


def test_a_retry_needs_an_address_and_asks_staff_again_should_it_die_again(db, db_url):
    nowhere = letter(db, "nowhere", status="dead", recipient_address=None, told_at=QUEUED)
    bounced = letter(db, "bounced", status="dead", told_at=QUEUED)

    refused = runner.invoke(app, ["outbox", "--db", db_url, "--retry", str(nowhere)])
    retried = invoke("outbox", "--db", db_url, "--retry", str(bounced), "--by", "ops")

    assert refused.exit_code == 1 and "no address" in refused.output
    assert state(db, nowhere)[0] == "dead"
    assert retried.exit_code == 0 and state(db, bounced)[0] == "pending"
    with db.connect() as conn:
        told = conn.scalar(select(Notice.told_at).where(Notice.id == bounced))
    assert told is None  # a second death makes a second task to phone or post it
