"""A monthly close missed by more than a month is caught up: every period that ended since the
last close is booked and closed, in order, with its notices, however long the host was down.

The shipped rules/penalties.yaml: an unanswered hotline call between 09:00 and 22:00 branch
time costs the person on duty 50 CNY; a month closes at 00:00 Shanghai on the 10th of the next.
Every test runs on a real SQLite file and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.db.models import HotlineCall, LedgerClose, LedgerEntry, Notice, Staff
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(*parts: int) -> datetime:
    """A Shanghai wall-clock instant, in UTC."""
    return datetime(*parts, tzinfo=SHANGHAI).astimezone(UTC)


def _night(data, settings_for, as_of: datetime):
    result = run_night(settings_for(str(data.engine.url)), data.engine, as_of=as_of)
    assert result.outcome == "success", [r.error for r in result.rules if r.error]
    return result


def _unanswered_call(data, at: datetime) -> None:
    data.add(
        HotlineCall, branch_id=data.branch, received_at=at, answered=False,
        on_duty_staff_id=data.staff["hotline_operator"],
    )  # fmt: skip


def _ledger(engine) -> tuple[list[tuple[str, str, Decimal]], list[str]]:
    """(period, kind, amount) of every entry, and the periods closed, in the order written."""
    entries, closes = LedgerEntry.__table__, LedgerClose.__table__
    with engine.connect() as conn:
        booked = conn.execute(
            select(entries.c.period, entries.c.kind, entries.c.amount).order_by(entries.c.id)
        )
        closed = conn.scalars(select(closes.c.period).order_by(closes.c.id))
        return [tuple(row) for row in booked], list(closed)


def _ledger_notices(engine) -> list[tuple[str, str]]:
    """(dedup key, template) of the reward/penalty notices and summaries queued."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Notice.dedup_key, Notice.template)
            .where(Notice.template.in_(["reward_penalty_notice", "penalty_summary"]))
            .order_by(Notice.id)
        )
        return [tuple(row) for row in rows]


def _office_staff(data) -> None:
    for role in ("accounting", "payroll"):
        data.add(
            Staff, branch_id=None, name=role.title(), email=f"{role}@hq.example", role=role,
            locale="zh-CN",
        )  # fmt: skip


def test_september_is_booked_when_its_closing_night_was_missed_by_a_month(
    service_data, unapproved_settings_for
):
    _unanswered_call(service_data, sh(2026, 9, 15, 10, 0))

    _night(service_data, unapproved_settings_for, sh(2026, 10, 9, 10, 0))  # before September closes
    assert _ledger(service_data.engine) == ([], ["2026-Q2", "2026-08"])
    # Down from 9 October to 11 November: September's close (10 October) has no run, and by
    # now its month of corrections is over too.
    late = _night(service_data, unapproved_settings_for, sh(2026, 11, 11, 10, 0))

    booked, closed = _ledger(service_data.engine)
    assert booked == [("2026-09", "original", Decimal("-50.00"))]
    assert closed == ["2026-Q2", "2026-08", "2026-09", "2026-Q3", "2026-10"]
    assert late.ledger["periods_closed"] == ["2026-09", "2026-Q3", "2026-10"]
    assert late.ledger["months_reported"] == ["2026-09", "2026-10"]
    templates = [template for _, template in _ledger_notices(service_data.engine)]
    assert templates == ["reward_penalty_notice", "penalty_summary"]


def test_five_months_down_closes_each_month_once_in_order_and_a_rerun_adds_nothing(
    service_data, unapproved_settings_for
):
    _office_staff(service_data)
    for month in (7, 8, 9, 10, 11):
        _unanswered_call(service_data, sh(2026, month, 14, 10, 0))
    _unanswered_call(service_data, sh(2026, 11, 20, 15, 0))
    _unanswered_call(service_data, sh(2026, 12, 1, 11, 0))  # December: not closed yet

    _night(service_data, unapproved_settings_for, sh(2026, 8, 5, 10, 0))
    assert _ledger(service_data.engine) == ([], ["2026-06", "2026-Q2"])
    caught_up = _night(service_data, unapproved_settings_for, sh(2026, 12, 12, 10, 0))

    booked, closed = _ledger(service_data.engine)
    months = ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert booked == [
        *((m, "original", Decimal("-50.00")) for m in months[:-1]),
        ("2026-11", "original", Decimal("-100.00")),
    ]
    assert closed[2:] == ["2026-07", "2026-08", "2026-09", "2026-Q3", "2026-10", "2026-11"]
    assert caught_up.ledger["months_reported"] == months
    notices = _ledger_notices(service_data.engine)
    keys = [key for key, _ in notices]
    assert len(keys) == len(set(keys))
    operator = service_data.staff["hotline_operator"]
    for month in months:
        mine = [t for key, t in notices if key.startswith(f"ledger|{month}|staff:{operator}|")]
        # The operator's notice, copied to accounting and payroll.
        assert mine == ["reward_penalty_notice"] * 3, month
        summary = [t for key, t in notices if key.startswith(f"ledger-summary|{month}|")]
        assert summary == ["penalty_summary"], month

    again = _night(service_data, unapproved_settings_for, sh(2026, 12, 12, 10, 0))
    assert again.ledger["entries_booked"] == 0 and again.ledger["periods_closed"] == []
    assert again.counts["notices_queued"] == 0
    assert _ledger(service_data.engine) == (booked, closed)
    assert _ledger_notices(service_data.engine) == notices


def test_a_call_found_after_the_late_close_is_a_correction(service_data, unapproved_settings_for):
    _unanswered_call(service_data, sh(2026, 9, 15, 10, 0))
    _night(service_data, unapproved_settings_for, sh(2026, 10, 9, 10, 0))
    _night(service_data, unapproved_settings_for, sh(2026, 11, 11, 10, 0))
    # A September call imported the next night: September is closed, its correction window
    # (until 10 November) is over, so it stays as closed; October's is open and corrected.
    _unanswered_call(service_data, sh(2026, 9, 20, 10, 0))
    _unanswered_call(service_data, sh(2026, 10, 20, 10, 0))

    _night(service_data, unapproved_settings_for, sh(2026, 11, 12, 10, 0))

    booked, _ = _ledger(service_data.engine)
    assert booked == [
        ("2026-09", "original", Decimal("-50.00")),
        ("2026-10", "correction", Decimal("-50.00")),
    ]
