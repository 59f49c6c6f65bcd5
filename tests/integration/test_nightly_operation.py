"""Unattended nights: one run at a time, crashes, missed nights, the schedule, bad policies."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from engine.db.demo import load_demo
from engine.db.lock import run_lock
from engine.db.models import Finding, Notice, Run
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.night import one_night
from engine.scheduler import CycleLoop, parse_every

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
EXE = str(Path(sys.executable).with_name("aftersales"))


def demo(url: str, scale: int = 1) -> Engine:
    """A database with the demo department built around AS_OF."""
    engine = connect(url)
    upgrade(engine)
    load_demo(engine, AS_OF, scale=scale)
    return engine


def cli_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
    env.update(
        {
            "AFTERSALES_DB": url,
            "AFTERSALES_RULES": str(ROOT / "rules"),
            "AFTERSALES_TEMPLATES": str(ROOT / "templates" / "notices"),
            "AFTERSALES_ARTIFACTS_DIR": str(tmp_path / "runs"),
            "AFTERSALES_OUTBOX_DIR": str(tmp_path / "outbox"),
            **extra,
        }
    )
    return env


def keys(engine: Engine) -> tuple[set[str], set[str]]:
    with engine.connect() as conn:
        findings = set(conn.scalars(select(Finding.key)))
        notices = set(conn.scalars(select(Notice.dedup_key)))
    # A digest belongs to the run that bundled it; its recipient is what must match.
    return findings, {re.sub(r"^digest\|[^|]+\|", "digest|", key) for key in notices}


@pytest.mark.slow
def test_second_run_exits_with_its_own_code_while_one_holds_the_lock(db_url, tmp_path):
    engine = demo(db_url)
    with run_lock(engine):
        second = subprocess.run(
            [EXE, "run", "--as-of", AS_OF.isoformat()],
            env=cli_env(db_url, tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert second.returncode == 3
    assert "another aftersales run" in second.stderr
    assert keys(engine) == (set(), set())
    after = subprocess.run(
        [EXE, "run", "--as-of", AS_OF.isoformat()],
        env=cli_env(db_url, tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert after.returncode == 0, after.stderr


def _wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.slow
def test_run_killed_mid_evaluation_then_rerun_matches_an_uninterrupted_night(
    db_url, twin_url, tmp_path, settings_for
):
    # SQLite cannot lock one table, so there the night is simply made long enough (ten times
    # the demo: seconds of evaluation) to be killed while it runs.
    scale = 1 if db_url.startswith("postgresql") else 10
    engine = demo(db_url, scale)
    twin = demo(twin_url, scale)
    one_night(settings_for(str(twin.url.render_as_string(False))), twin, as_of=AS_OF, send=False)

    blocker = engine.connect()
    if engine.dialect.name == "postgresql":
        # Evaluation reads freely but cannot record findings: the run is held mid-way.
        blocker.execute(text("LOCK TABLE findings IN EXCLUSIVE MODE"))
    process = subprocess.Popen(
        [EXE, "run", "--no-deliver", "--as-of", AS_OF.isoformat()],
        env=cli_env(db_url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_until(lambda: _run_outcome(engine) == "running")
    if engine.dialect.name == "postgresql":
        _wait_until(lambda: _waiting_on_lock(engine))
    else:
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    blocker.rollback()
    blocker.close()
    assert keys(engine) == (set(), set())  # nothing half-written

    rerun = subprocess.run(
        [EXE, "run", "--no-deliver", "--as-of", AS_OF.isoformat()],
        env=cli_env(db_url, tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert keys(engine) == keys(twin)
    with engine.connect() as conn:
        outcomes = sorted(conn.scalars(select(Run.outcome)))
    assert outcomes == ["abandoned", "success"]


def _run_outcome(engine: Engine) -> str | None:
    with engine.connect() as conn:  # a fresh snapshot each time
        return conn.scalar(select(Run.outcome).limit(1))


def _waiting_on_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                text(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                    "and datname = current_database()"
                )
            )
        )


@pytest.mark.slow
def test_run_killed_mid_delivery_sends_nothing_twice_and_loses_nothing(
    db_url, tmp_path, smtp_server
):
    handler, port = smtp_server
    engine = demo(db_url)
    env = cli_env(
        db_url, tmp_path, AFTERSALES_SMTP__HOST="127.0.0.1",
        AFTERSALES_SMTP__PORT=str(port), AFTERSALES_SMTP__SECURITY="none",
    )  # fmt: skip
    process = subprocess.Popen(
        [EXE, "run", "--as-of", AS_OF.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    received = 0

    def kill_after_third(_server, _msg):
        nonlocal received
        received += 1
        if received == 3:
            process.send_signal(signal.SIGKILL)  # the server keeps it; the client never knows
        return None

    handler.on_data = kill_after_third
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    handler.on_data = lambda _server, _msg: None

    rerun = subprocess.run(
        [EXE, "run", "--as-of", AS_OF.isoformat()], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    ids = handler.ids()
    assert ids and max(ids.values()) == 1  # nobody got a letter twice
    with Session(engine) as session:
        rows = list(session.scalars(select(Notice)))
    states = {n.message_id: n.status for n in rows if n.status != "bundled"}
    # Every letter is either confirmed sent, or set aside as unknown for a person to check
    # (the crash came between handing it over and writing that down); none is pending.
    assert set(states.values()) <= {"sent", "unknown", "dead"}
    # Staff items travel inside their digest, which is itself one of those letters.
    by_id = {n.id: n for n in rows}
    bundled = [n for n in rows if n.status == "bundled"]
    assert bundled and all(by_id[n.digest_id].message_id in states for n in bundled)
    assert {m for m, s in states.items() if s == "sent"} <= set(ids)
    assert sum(1 for s in states.values() if s == "unknown") >= 1


@pytest.mark.slow
def test_three_missed_nights_then_one_run_send_what_fell_due_exactly_once(
    db_url, twin_url, tmp_path, settings_for
):
    engine = demo(db_url)
    twin = demo(twin_url)
    url = engine.url.render_as_string(hide_password=False)
    one_night(settings_for(url), engine, as_of=AS_OF, send=False)
    one_night(settings_for(twin_url), twin, as_of=AS_OF, send=False)
    for night in range(1, 5):  # the twin never missed a night
        one_night(settings_for(twin_url), twin, as_of=AS_OF + timedelta(days=night), send=False)
    late = one_night(settings_for(url), engine, as_of=AS_OF + timedelta(days=4), send=False)

    def reminders(e: Engine) -> set[str]:
        with e.connect() as conn:
            return set(conn.scalars(select(Finding.key).where(Finding.state == "due")))

    gap = reminders(engine) - {f["rule"] for f in late.run.findings}
    assert gap
    assert reminders(engine) == reminders(twin)
    with engine.connect() as conn:
        per_key = conn.execute(
            text("select dedup_key, count(*) from notices group by dedup_key having count(*) > 1")
        ).all()
    assert per_key == []


def test_schedule_runs_three_cycles_at_15_minute_steps_the_first_at_once(sqlite_url):
    engine = connect(sqlite_url)
    upgrade(engine)
    fired: list[datetime] = []
    start = AS_OF - timedelta(hours=1)
    with freeze_time(start) as frozen:  # the loop's own clock, moved on by its naps

        def nap(seconds: float) -> None:
            frozen.tick(seconds)
            if datetime.now(UTC) > start + timedelta(minutes=30):
                loop.stop.set()

        loop = CycleLoop(fired.append, every=parse_every("15m"), wait=nap)
        loop.serve()
    assert fired == [start, start + timedelta(minutes=15), start + timedelta(minutes=30)]


def test_a_failing_cycle_does_not_end_the_loop_and_a_gap_is_covered_at_once(
    sqlite_url, settings_for
):
    engine = connect(sqlite_url)
    upgrade(engine)
    settings = settings_for(sqlite_url)
    calls: list[datetime] = []
    failures = iter([RuntimeError("disk full")])

    def cycle(as_of: datetime) -> None:
        calls.append(as_of)
        failure = next(failures, None)
        if failure is not None:
            raise failure
        one_night(settings, engine, as_of=as_of)

    # The host was down for a day: the first cycle runs at start, fails; the next does the work.
    with freeze_time(AS_OF) as frozen:

        def nap(seconds: float) -> None:
            frozen.tick(seconds)
            if len(calls) == 2:
                loop.stop.set()

        loop = CycleLoop(cycle, every=timedelta(minutes=15), wait=nap)
        loop.serve()
    assert calls == [AS_OF, AS_OF + timedelta(minutes=15)]
    with Session(engine) as session:
        assert [r.outcome for r in session.scalars(select(Run))] == ["success"]


def test_policy_that_no_longer_validates_fails_loudly_once_per_version(
    db_url, tmp_path, settings_for
):
    engine = demo(db_url)
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "sla.yaml").write_text("deadlines:\n  - id: broken\n    id: twice\n")
    env = cli_env(db_url, tmp_path, AFTERSALES_RULES=str(rules))
    for _ in range(2):
        night = subprocess.run(
            [EXE, "run", "--as-of", AS_OF.isoformat()], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert night.returncode == 2 and "sla.yaml:3" in night.stderr
    with Session(engine) as session:
        runs = list(session.scalars(select(Run)))
        notices = list(session.scalars(select(Notice)))
    assert [r.outcome for r in runs] == ["invalid_policy", "invalid_policy"]
    assert session.scalar(select(Finding).limit(1)) is None
    assert notices and {n.template for n in notices} == {"policy_invalid"}
    assert {n.recipient_role for n in notices} == {"operations"}
    assert len({n.recipient_address for n in notices}) == len(notices)  # once each
    assert "sla.yaml:3" in notices[0].body_text
