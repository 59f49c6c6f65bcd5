"""One run after days down gives the notices of the daily runs it replaces.

Twin databases on the shipped policy: one runs every day, the other is down for three days and
runs once after. Their outboxes must hold the same notices: the same finding (rule, entity,
start, state), role and recipient. Letters that belong to a run rather than to a finding are
left out: digests (one per reader and run) and the overdue summary (what is late on the night
it goes out, once per local day: a summary of three days ago helps nobody).
Every test runs on a real SQLite file and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import ServiceData
from sqlalchemy import Engine, insert, select
from test_nightly_operation import AS_OF, demo

from engine.db.models import Finding, Inspection, Notice
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.night import one_night

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_NIGHT = datetime(2026, 11, 16, 2, 0, tzinfo=SHANGHAI)  # Monday, 18:00 UTC on Sunday
NIGHTS = 4  # the daily twin runs on the four nights after the first; the other only on the last


def sh(*parts: int) -> datetime:
    """A Shanghai wall-clock instant."""
    return datetime(*parts, tzinfo=SHANGHAI)


def outbox(engine: Engine) -> set[str]:
    """The notices that answer a finding: finding key | role | recipient; a task to phone or
    post a dead letter is named by that letter's key, not its id, which differs between runs."""
    with engine.connect() as conn:
        rows = conn.execute(select(Notice.id, Notice.dedup_key).where(Notice.template != "digest"))
        keys = {str(notice): key for notice, key in rows}
    named = set()
    for key in keys.values():
        if key.startswith("undeliverable|"):
            _, letter, rest = key.split("|", 2)
            key = f"undeliverable|{keys[letter]}|{rest}"
        named.add(key)
    return {key for key in named if not key.startswith("overdue-summary|")}


def findings(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Finding.key)))


def nights(
    settings_for,
    engine: Engine,
    first: datetime,
    *,
    down: bool,
    before: Mapping[int, Callable[[Engine], None]] = {},
) -> None:
    """The first night, then one a day for NIGHTS days, or, when `down`, only the last;
    `before[n]` changes the data before night n."""
    settings = settings_for(engine.url.render_as_string(hide_password=False))
    for night in (0, NIGHTS) if down else range(NIGHTS + 1):
        if night in before:
            before[night](engine)
        as_of = (first + timedelta(days=night)).astimezone(UTC)
        assert one_night(settings, engine, as_of=as_of, send=False).run.outcome == "success"


def clocks_started_and_ended_while_down(data: ServiceData) -> dict[str, int]:
    """Clocks that pass through states on the nights the host is down (17-19 November)."""
    customer = data.customer("Ada Wong")
    lin = data.customer("Lin Hui", locale="zh-CN")
    ids = {
        # 24 hours to reply, until Tuesday 10:00; answered Wednesday 15:00. The Wednesday night
        # sends the urge notice, the Thursday night the inquiry.
        "complaint": data.complaint(
            lin, sh(2026, 11, 16, 10, 0), first_reply_at=sh(2026, 11, 18, 15, 0),
            status="replied",
        ),
        # 6 working hours: due Monday 17:00, escalated Tuesday 10:00, on site Wednesday 11:00.
        "late_visit": data.request(customer, sh(2026, 11, 16, 10, 0),
                                   arrived_at=sh(2026, 11, 18, 11, 0), status="in_progress"),
        # Parts needed: the customer is told at 5 working days (Tuesday 17 November 10:00),
        # the supervisor at 7 (Thursday 10:00); still open.
        "parts": data.request(customer, sh(2026, 11, 10, 10, 0), needs_parts=True),
        # Waiting for the customer from Monday 11:00 to Wednesday 14:00: due Thursday 10:00,
        # on site Wednesday 17:30, on time. Judged with what was known then, no night saw
        # it late.
        "paused": data.request(customer, sh(2026, 11, 16, 10, 0),
                               arrived_at=sh(2026, 11, 18, 17, 30), status="in_progress"),
    }  # fmt: skip
    data.status(ids["paused"], "waiting_customer", sh(2026, 11, 16, 11, 0))
    data.status(ids["paused"], "in_progress", sh(2026, 11, 18, 14, 0))
    return ids


@pytest.mark.slow
def test_three_days_down_then_one_run_queues_what_a_run_every_day_queues(
    db, twin_url, tmp_path, settings_for
):
    url = db.url.render_as_string(hide_password=False)
    twin = connect(twin_url)
    upgrade(twin)
    ids = clocks_started_and_ended_while_down(ServiceData(db))
    assert clocks_started_and_ended_while_down(ServiceData(twin)) == ids

    nights(settings_for, twin, FIRST_NIGHT, down=False)
    nights(settings_for, db, FIRST_NIGHT, down=True)

    assert outbox(db) == outbox(twin)
    assert findings(db) == findings(twin)
    states = {key.split("|")[0] + "|" + key.split("|")[4] for key in findings(db)
              if key.split("|")[2] in {str(i) for i in ids.values()}}  # fmt: skip
    assert {
        "complaint-first-reply|breach",
        "complaint-first-reply|late_stop",
        "dispatch-urban|breach",
        "dispatch-urban|escalation:1",
        "dispatch-urban|late_stop",
        "repair-with-parts|warning",
        "repair-with-parts|breach",
    } <= states
    # The late first reply of a complaint answered since: escalated once; the reply that came
    # late is recorded, without a letter (the inquiry notice is for cases closed late).
    urged = {key.split("|")[4] for key in outbox(db) if key.startswith("complaint-first-reply|")}
    assert urged == {"breach"}
    assert not any(key.startswith(f"dispatch-urban|service_requests|{ids['paused']}|")
                   for key in findings(db))  # fmt: skip

    # Re-running the catch-up night adds nothing.
    settings = settings_for(url)
    again = one_night(settings, db, as_of=(FIRST_NIGHT + timedelta(days=NIGHTS)).astimezone(UTC))
    assert again.run.counts["findings_new"] == 0 and again.run.counts["notices_queued"] == 0
    twin.dispose()


@pytest.mark.slow
def test_the_demo_department_three_days_down_matches_a_run_every_day(
    db_url, twin_url, tmp_path, settings_for
):
    # The demo's calls, complaints and contracts sit around AS_OF; the first night is four days
    # before, so many clocks start, run late and stop on the nights the host is down.
    engine = demo(db_url)
    twin = demo(twin_url)
    first = AS_OF - timedelta(days=NIGHTS)

    nights(settings_for, twin, first, down=False)
    nights(settings_for, engine, first, down=True)

    assert outbox(engine) == outbox(twin)
    assert findings(engine) == findings(twin)
    engine.dispose()
    twin.dispose()


@pytest.mark.slow
def test_an_inspection_report_handed_in_late_while_down_was_missing_first(
    db, twin_url, tmp_path, settings_for
):
    # October's report is due by 5 November; handed in on the 7th at 10:00. The nights of the
    # 6th and 7th (02:00) find it missing, the 8th late.
    twin = connect(twin_url)
    upgrade(twin)
    contracts = {}
    for engine in (db, twin):
        data = ServiceData(engine)
        customer = data.customer("Ada Wong")
        contracts[engine] = data.contract(customer, date(2027, 3, 31))
    assert contracts[db] == contracts[twin]

    def hand_in(engine: Engine) -> None:
        with engine.begin() as conn:
            conn.execute(insert(Inspection), {
                "id": 900, "branch_id": 1, "contract_id": contracts[engine],
                "inspected_on": date(2026, 10, 20), "report_submitted_at": sh(2026, 11, 7, 10, 0),
            })  # fmt: skip

    first = sh(2026, 11, 5, 2, 0)
    nights(settings_for, twin, first, down=False, before={3: hand_in})
    nights(settings_for, db, first, down=True, before={NIGHTS: hand_in})

    assert outbox(db) == outbox(twin)
    assert findings(db) == findings(twin)
    mine = f"monthly-inspection|contracts|{contracts[db]}|2026-10|"
    october = {key.split("|")[4] for key in findings(db) if key.startswith(mine)}
    assert october == {"missing", "late"}
    twin.dispose()
