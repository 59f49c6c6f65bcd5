"""parts_done on SQLite and PostgreSQL: each part once per scope and local day, any cadence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from engine.db.models import Branch, PartDone
from engine.due_parts import COMPANY, DueParts, branch_zones, due_parts, mark_done
from engine.policy.schedule_spec import PARTS, ScheduleSpec

SCHEDULE = ScheduleSpec()
EVERY_PART = {"digests", "overdue_summary", "obligations", "tallies", "month_close", "kpi_report"}


def two_branches(engine: Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        ids = []
        for code, zone in (("SH", "Asia/Shanghai"), ("MAD", "Europe/Madrid")):
            row = {"code": code, "name": code, "timezone": zone, "country": "CN", "locale": "en"}
            ids.append(conn.scalar(Branch.__table__.insert().values(row).returning(Branch.id)))
    return ids[0], ids[1]


def due_at(engine: Engine, as_of: datetime) -> DueParts:
    with engine.connect() as conn:
        return due_parts(
            conn, SCHEDULE, branch_zones(conn), "Asia/Shanghai", as_of, close_on_day=10
        )


def done(engine: Engine, due: DueParts, run_id: str, parts: set[str] | tuple[str, ...]) -> int:
    with engine.begin() as conn:
        return mark_done(conn, due, run_id, parts)


def test_a_first_run_does_every_part_and_the_same_day_is_not_due_again(db):
    shanghai, madrid = two_branches(db)
    first = datetime(2026, 12, 6, 7, 30, tzinfo=UTC)  # 15:30 Shanghai, 08:30 Madrid
    due = due_at(db, first)
    assert {item.part for item in due.items} == EVERY_PART == set(PARTS)
    assert due.scopes("digests").branches == {shanghai, madrid} and due.scopes("digests").company
    assert done(db, due, "run-1", EVERY_PART) == 9
    # Fifteen minutes later (and the cycle after that): nothing daily is due.
    assert due_at(db, first + timedelta(minutes=15)).items == ()
    assert due_at(db, first + timedelta(minutes=30)).items == ()


def test_mark_done_is_idempotent_and_keeps_the_first_record(db):
    two_branches(db)
    due = due_at(db, datetime(2026, 12, 6, 7, 30, tzinfo=UTC))
    done(db, due, "run-1", EVERY_PART)
    done(db, due, "run-2", EVERY_PART)  # a repeated cycle, or one that raced the first
    with db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PartDone)) == 9
        assert set(conn.scalars(select(PartDone.run_id))) == {"run-1"}


def test_only_the_parts_done_are_recorded_the_rest_stay_due(db):
    two_branches(db)
    as_of = datetime(2026, 12, 6, 7, 30, tzinfo=UTC)
    done(db, due_at(db, as_of), "run-1", ("digests",))  # the cycle failed after the digests
    later = due_at(db, as_of + timedelta(minutes=15))
    assert not later.is_due("digests") and later.is_due("kpi_report")


def test_each_branch_comes_due_when_its_own_clocks_show_the_time(db):
    shanghai, madrid = two_branches(db)
    # A day fully done, then 08:00 in Shanghai (00:00 UTC): only Shanghai's digests and summary.
    done(db, due_at(db, datetime(2026, 12, 5, 7, 0, tzinfo=UTC)), "day-5", EVERY_PART)
    morning = due_at(db, datetime(2026, 12, 6, 0, 0, tzinfo=UTC))
    assert morning.scopes("digests").branches == {shanghai}
    assert morning.scopes("overdue_summary").branches == {shanghai}
    assert morning.scopes("digests").company  # head office: the ledger's zone, Shanghai
    assert {i.part for i in morning.items if i.scope == COMPANY} == {
        "digests", "obligations", "tallies", "kpi_report"
    }  # fmt: skip
    done(db, morning, "sh-morning", EVERY_PART)
    # Seven hours later it is 08:00 in Madrid.
    assert due_at(db, datetime(2026, 12, 6, 6, 59, tzinfo=UTC)).items == ()
    evening = due_at(db, datetime(2026, 12, 6, 7, 0, tzinfo=UTC))
    assert {(i.part, i.scope, i.period) for i in evening.items} == {
        ("digests", str(madrid), "2026-12-06"),
        ("overdue_summary", str(madrid), "2026-12-06"),
    }


def test_a_cycle_after_two_days_down_does_the_latest_day_once(db):
    _, madrid = two_branches(db)
    done(db, due_at(db, datetime(2026, 12, 5, 7, 0, tzinfo=UTC)), "day-5", EVERY_PART)
    back = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)  # 03:00 Madrid, 10:00 Shanghai
    due = due_at(db, back)
    madrid_digests = [i for i in due.items if i.part == "digests" and i.scope == str(madrid)]
    assert [i.period for i in madrid_digests] == ["2026-12-07"]  # yesterday's 08:00 missed
    done(db, due, "back", EVERY_PART)
    assert due_at(db, back + timedelta(minutes=15)).items == ()
