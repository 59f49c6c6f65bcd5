"""Incremental runs find exactly what full runs find, on SQLite and PostgreSQL.

Twin databases get the same demo department and the same random batches of changes (new
calls, status changes, arrivals and closures, a received time edited, a complaint, a unit's
purchase date moved so its warranty ends soon, a holiday added to the policy); one is run as
the engine chooses (incremental when it may), the other
with `full=True`, at the same instants a few minutes to hours apart. After every step the
recorded findings (key, due time, open or closed) and the notices queued are the same.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ServiceData
from sqlalchemy import Connection, Engine, func, insert, select, update

from engine.db.demo import load_demo
from engine.db.models import Complaint, Finding, Notice, Run, ServiceRequest, StatusChange, Unit
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.incremental import software
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)  # the demo's night
OPEN = ("received", "dispatched", "in_progress", "waiting_customer")


def _change(conn, rng: random.Random, at: datetime, step: int) -> None:
    """One batch of what a feed brings between two cycles, the same on both twins."""
    calls = ServiceRequest.__table__
    open_ids = sorted(conn.scalars(select(calls.c.id).where(calls.c.status.in_(OPEN))))
    template = dict(conn.execute(select(calls).order_by(calls.c.id).limit(1)).mappings().one())
    for n in range(rng.randint(2, 6)):  # new calls, received in the last minutes
        row = {k: v for k, v in template.items() if k not in ("id", "row_version")}
        row.update(
            number=f"INC-{step}-{n}", status="received",
            received_at=at - timedelta(minutes=rng.randint(1, 50)),
            dispatched_at=None, arrived_at=None, completed_at=None, collected_at=None,
            promised_at=at + timedelta(hours=rng.randint(1, 30)),
            region=rng.choice(["urban", "suburban"]), kind="repair", repeat_of_id=None,
        )  # fmt: skip
        if n == 0 and step % 4 == 3:  # a completion booked ahead, after the promised time
            row.update(promised_at=at + timedelta(minutes=20), completed_at=at + timedelta(hours=2))
        new_id = conn.scalar(insert(calls).values(row).returning(calls.c.id))
        conn.execute(
            insert(StatusChange.__table__).values(
                service_request_id=new_id, status="received", changed_at=row["received_at"]
            )
        )
    for call in rng.sample(open_ids, min(len(open_ids), rng.randint(3, 8))):
        what = rng.choice(["arrived", "completed", "waiting", "received_edit", "dispatched"])
        when = at - timedelta(minutes=rng.randint(0, 10))
        values: dict[str, object] = {}
        if what == "arrived":
            values = {"arrived_at": when, "status": "in_progress"}
        elif what == "completed":
            values = {"completed_at": when, "status": "completed"}
        elif what == "dispatched":
            values = {"dispatched_at": when, "status": "dispatched"}
        elif what == "received_edit":  # a received time corrected by the desk
            received = conn.scalar(select(calls.c.received_at).where(calls.c.id == call))
            values = {"received_at": received - timedelta(hours=rng.randint(1, 9))}
        if what == "waiting":
            values = {"status": "waiting_customer"}
        conn.execute(update(calls).where(calls.c.id == call).values(values))
        if "status" in values:
            conn.execute(
                insert(StatusChange.__table__).values(
                    service_request_id=call, status=values["status"], changed_at=when
                )
            )
    if step % 4 == 1:  # a pause booked on the wrong call, moved to the right one
        changes = StatusChange.__table__
        waits = sorted(
            conn.scalars(select(changes.c.id).where(changes.c.status == "waiting_customer"))
        )
        if waits and len(open_ids) > 1:
            conn.execute(
                update(changes)
                .where(changes.c.id == rng.choice(waits))
                .values(service_request_id=rng.choice(open_ids))
            )
    if step % 3 == 2:  # units bought a year ago as of a month from now: warranty ending soon
        units = Unit.__table__
        for unit in rng.sample(sorted(conn.scalars(select(units.c.id))), 3):
            bought = (at + timedelta(days=rng.randint(28, 33))).date()
            conn.execute(
                update(units)
                .where(units.c.id == unit)
                .values(purchased_on=bought.replace(year=bought.year - 1), proof_of_purchase=True)
            )
    if step % 3 == 1:  # a complaint accepted now
        complaints = Complaint.__table__
        first = dict(
            conn.execute(select(complaints).order_by(complaints.c.id).limit(1)).mappings().one()
        )
        row = {k: v for k, v in first.items() if k not in ("id", "row_version")}
        row.update(
            number=f"CP-INC-{step}", received_at=at - timedelta(minutes=20),
            accepted_at=at - timedelta(minutes=10),
            first_reply_at=None, closed_at=None, status="open", repeat_of_id=None,
            severity=rng.choice(["serious", "general"]), customer_satisfied=None,
            # A deadline set days ago (a late acceptance) is overdue at once and urged again
            # every 2 working days: repeats that fall between cycles.
            handling_due_at=at - timedelta(days=rng.randint(0, 6), hours=rng.randint(0, 12)),
        )  # fmt: skip
        conn.execute(insert(complaints).values(row))


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def _state(engine: Engine) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    """What a person would see: findings (key, due, open) and notices (key, recipient)."""
    with engine.connect() as conn:
        found = {
            (key, due.isoformat() if due else None, closed is None)
            for key, due, closed in conn.execute(
                select(Finding.key, Finding.due_at, Finding.closed_at)
            )
        }
        # A digest is named after the run that bundled it: compare the items it carries.
        items = select(Notice.finding_key, Notice.template, Notice.recipient_address, Notice.status)
        notices = set(conn.execute(items.where(Notice.template != "digest")).all())
    return found, notices


@pytest.mark.slow
def test_incremental_runs_find_what_full_runs_find(db_url, twin_url, settings_for, tmp_path):
    engines = [connect(db_url), connect(twin_url)]
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    # A rule comes into effect at 00:00 UTC, an hour before the Shanghai overdue summary (a
    # full run): the runs in that hour must judge it whole.
    _replace(rules / "schedule.yaml", 'overdue_summary: "08:00"', 'overdue_summary: "09:00"')
    _replace(
        rules / "sla.yaml",
        "  - id: dispatch-suburban\n",
        "  - id: dispatch-suburban\n    effective_from: 2026-11-24\n",
    )
    settings = [
        settings_for(url, rules=rules, artifacts_dir=tmp_path / f"runs{i}")
        for i, url in enumerate((db_url, twin_url))
    ]
    for engine in engines:
        upgrade(engine)
        load_demo(engine, START)
    rng = random.Random(17)
    at, modes = START, []
    # 15 minutes, then hours; over the local morning (08:00 Shanghai is 00:00 UTC) and a
    # holiday added to the policy half-way.
    steps = [0, 15, 15, 40, 15, 90, 15, 180, 15, 15, 240, 15, 60, 15, 15]
    for step, minutes in enumerate(steps):
        at += timedelta(minutes=minutes)
        seed = rng.random()
        for engine in engines:
            with engine.begin() as conn:
                _change(conn, random.Random(seed), at, step)
        if step == 9:
            _replace(
                rules / "calendars.yaml",
                "    holidays: {country: CN}",
                "    holidays: {country: CN}\n    closed: [2026-11-25]",
            )
        incremental = run_night(settings[0], engines[0], as_of=at)
        full = run_night(settings[1], engines[1], as_of=at, full=True)
        assert incremental.outcome == full.outcome == "success"
        modes.append(incremental.mode["mode"])
        mine, theirs = _state(engines[0]), _state(engines[1])
        assert mine[0] ^ theirs[0] == set(), f"findings differ at step {step} ({at})"
        assert mine[1] ^ theirs[1] == set(), f"notices differ at step {step} ({at})"
    with engines[0].connect() as conn:
        later = select(Finding.rule_id, func.count()).where(Finding.recorded_at > START)
        found_later = dict(conn.execute(later.group_by(Finding.rule_id)).all())
    # The steps found things of every kind the engine judges incrementally, watches included.
    for rule in ("dispatch-urban", "warranty-ending", "serious-complaint", "service-category"):
        assert found_later.get(rule, 0) > 0, (rule, found_later)
    # Most steps ran incrementally: the test compares something.
    assert modes.count("incremental") >= 8, modes
    for engine in engines:
        engine.dispose()


@pytest.mark.slow
def test_the_80_percent_warning_reaches_the_team_lead_in_the_next_cycle(service_data, settings_for):
    shanghai = ZoneInfo("Asia/Shanghai")
    ada = service_data.customer("Ada Wong")
    # Received 09:00 Monday: 6 working hours (lunch 12:00-13:00) run out at 16:00; 80 % at 14:48.
    call = service_data.request(ada, datetime(2026, 11, 16, 9, 0, tzinfo=shanghai))
    settings = settings_for(str(service_data.engine.url))
    cycle = datetime(2026, 11, 16, 9, 0, tzinfo=shanghai)
    warned = None
    while cycle <= datetime(2026, 11, 16, 15, 30, tzinfo=shanghai):
        result = run_night(settings, service_data.engine, as_of=cycle.astimezone(UTC))
        new = [f for f in result.findings if f["rule"] == "dispatch-urban"]
        if new:
            assert warned is None and [f["state"] for f in new] == ["warning"]
            assert result.mode["mode"] == "incremental"
            warned = cycle
        cycle += timedelta(minutes=15)
    assert warned == datetime(2026, 11, 16, 15, 0, tzinfo=shanghai)
    with service_data.engine.connect() as conn:
        (role, status, urgent), *others = conn.execute(
            select(Notice.recipient_role, Notice.status, Notice.urgent).where(
                Notice.finding_key.like(f"dispatch-urban|service_requests|{call}|%|warning")
            )
        ).all()
    # Sent at once, not held for tomorrow's digest, an hour before the deadline.
    assert (role, status, urgent, others) == ("team_lead", "pending", True, [])


def _completion_booked_ahead(data: ServiceData) -> Callable[[Connection], None] | None:
    """A repair promised for 11:00 with its completion booked for 14:00 when it is received:
    the clock runs until then, and breaches at 11:00 with nothing written in between."""
    ada = data.customer("Ada Wong")
    data.request(ada, _sh(9), promised_at=_sh(11), completed_at=_sh(14), status="in_progress")
    return None


def _pause_moved(data: ServiceData) -> Callable[[Connection], None] | None:
    """A pause booked on the wrong call, moved to the right one at 14:15: the first call's
    clock loses its pause, and its warning comes at 14:48 instead of later."""
    ada, bob = data.customer("Ada Wong"), data.customer("Bob Li")
    wrong = data.request(ada, _sh(9))
    right = data.request(bob, _sh(9), region="suburban")
    data.status(wrong, "waiting_customer", _sh(9, 30))

    def move(conn: Connection) -> None:
        conn.execute(
            update(StatusChange)
            .where(StatusChange.service_request_id == wrong)
            .values(service_request_id=right)
        )

    return move


def _urged_again(data: ServiceData) -> Callable[[Connection], None] | None:
    """A complaint past its handling deadline (Thursday 11:00): the 催办单 is repeated every 2
    working days, the first repeat on Monday at 11:00 with nothing written in between."""
    li = data.customer("Li Wei", locale="zh-CN")
    accepted = datetime(2026, 11, 9, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    data.complaint(li, accepted, first_reply_at=accepted + timedelta(hours=2), status="replied",
                   handling_due_at=accepted + timedelta(days=3, hours=1))  # fmt: skip
    return None


def _sh(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 16, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize("case", [_completion_booked_ahead, _pause_moved, _urged_again])
@pytest.mark.slow
def test_what_no_row_of_the_entity_shows_is_seen_by_incremental_runs(
    case, db_url, twin_url, focused_settings_for
):
    engines = [connect(db_url), connect(twin_url)]
    changes = []
    for engine in engines:
        upgrade(engine)
        changes.append(case(ServiceData(engine)))
    cycles = [_sh(9, 30), _sh(11, 30), _sh(14), _sh(14, 15), _sh(15), _sh(16, 30)]
    if case is _urged_again:  # the first repeat is found by the cycle after it, by its watch
        cycles += [_sh(9, 30) + timedelta(days=2, hours=2)]
    for at in cycles:
        for engine, change in zip(engines, changes, strict=True):
            if change is not None and at == _sh(14, 15):
                with engine.begin() as conn:
                    change(conn)
        settings = [focused_settings_for(str(e.url)) for e in engines]
        mode = run_night(settings[0], engines[0], as_of=at.astimezone(UTC)).mode["mode"]
        run_night(settings[1], engines[1], as_of=at.astimezone(UTC), full=True)
        mine, theirs = _state(engines[0]), _state(engines[1])
        assert mine[0] ^ theirs[0] == set(), f"findings differ at {at:%H:%M} ({mode})"
        assert mine[1] ^ theirs[1] == set(), f"notices differ at {at:%H:%M} ({mode})"
    if case is _urged_again:
        with engines[0].connect() as conn:
            urged = conn.scalars(
                select(Finding.state)
                .where(Finding.rule_id == "complaint-handling")
                .order_by(Finding.id)
            )
            assert list(urged) == ["breach", "breach:repeat-1", "breach:repeat-2"]
    for engine in engines:
        engine.dispose()


def test_a_cycle_after_an_upgrade_of_the_holidays_data_judges_everything(
    service_data, settings_for
):
    # A holidays release moves public holidays without a byte of the policy changing: the
    # watches the runs before kept were worked out on the old calendar.
    settings = settings_for(str(service_data.engine.url))
    first = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
    run_night(settings, service_data.engine, as_of=first)
    same = run_night(settings, service_data.engine, as_of=first + timedelta(minutes=15))
    # (incremental, unless a writer elsewhere on the PostgreSQL server holds the marker back)
    assert "software" not in same.mode["why"]
    with service_data.engine.begin() as conn:
        recorded = conn.scalar(select(Run.software).where(Run.as_of == same.as_of))
        assert recorded == software() and recorded["holidays"] != "unknown"
        older = {**recorded, "holidays": "0.1"}
        conn.execute(update(Run).where(Run.as_of == same.as_of).values(software=older))

    after = run_night(settings, service_data.engine, as_of=first + timedelta(minutes=30))

    assert after.mode["mode"] == "full"
    assert "the software changed since the last run" in after.mode["why"]
    assert "holidays 0.1" in after.mode["why"]
