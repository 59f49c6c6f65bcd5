"""Seed row 7, the renewal flow: a notice a month before, a second reminder two weeks before
if nothing happened, a lapse notice once after the contract ends, and silence once renewed.

A contract counts as renewed when its status is `renewed`, its renewal date is recorded, or
another (not cancelled) contract names it in renewal_of_id.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from engine.db.models import Contract, Finding, Notice
from engine.run import run_night

ENDS = date(2026, 12, 23)
FLOW = ("maintenance-renewal", "maintenance-renewal-second", "maintenance-lapsed")


def _night(day: date) -> datetime:
    """10:00 in Shanghai on `day`."""
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)


def _flow(engine, contract: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(Finding.rule_id)
                .where(Finding.entity == "contracts", Finding.entity_id == str(contract))
                .where(Finding.rule_id.in_(FLOW))
                .order_by(Finding.id)
            )
        )


def _letters(engine, template: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Notice.recipient_address, Notice.subject).where(Notice.template == template)
        )
        return sorted(tuple(r) for r in rows)


@pytest.mark.slow
def test_unrenewed_contract_gets_both_reminders_and_exactly_one_lapse_notice(
    service_data, settings_for
):
    data = service_data
    ada = data.customer("Ada Wong")
    contract = data.contract(ada, ENDS, number="MC-LAPSE")
    settings = settings_for(str(data.engine.url))
    nights = [date(2026, 11, 22), date(2026, 11, 23), date(2026, 12, 8), date(2026, 12, 9),
              date(2026, 12, 23), date(2026, 12, 24), date(2026, 12, 25), date(2027, 1, 5),
              date(2027, 1, 30)]  # fmt: skip

    new_by_night = {}
    for day in nights:
        if day == date(2026, 12, 25):  # the desk marks it lapsed: still one notice
            with data.engine.begin() as conn:
                conn.execute(
                    update(Contract).where(Contract.id == contract).values(status="lapsed")
                )
        result = run_night(settings, data.engine, as_of=_night(day))
        new_by_night[day] = [f["rule"] for f in result.findings if f["new"] and f["rule"] in FLOW]

    assert new_by_night == {
        date(2026, 11, 22): [],
        date(2026, 11, 23): ["maintenance-renewal"],
        date(2026, 12, 8): [],
        date(2026, 12, 9): ["maintenance-renewal-second"],
        date(2026, 12, 23): [],
        date(2026, 12, 24): ["maintenance-lapsed"],
        date(2026, 12, 25): [],
        date(2027, 1, 5): [],
        date(2027, 1, 30): [],
    }
    assert _letters(data.engine, "contract_lapsed") == [
        ("ada.wong@example.com", "Your maintenance contract MC-LAPSE ended on December 23, 2026")
    ]
    (task,) = _letters(data.engine, "lapse_task")
    assert task[0] == "sales_rep@sh.example" and "MC-LAPSE" in task[1]
    assert _letters(data.engine, "renewal_reminder") == [
        ("ada.wong@example.com",
         "Reminder: your maintenance contract MC-LAPSE ends on December 23, 2026"),
    ]  # fmt: skip


def test_renewed_contract_is_silent_however_the_renewal_is_recorded(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    by_status = data.contract(ada, ENDS, number="MC-STATUS")
    by_successor = data.contract(ada, ENDS, number="MC-SUCCESSOR")
    by_date = data.contract(ada, ENDS, number="MC-DATE")
    cancelled_successor = data.contract(ada, ENDS, number="MC-NOT-RENEWED")
    settings = settings_for(str(data.engine.url))

    run_night(settings, data.engine, as_of=_night(date(2026, 11, 23)))
    # Between the first reminder and the second, each is renewed in its own way.
    with data.engine.begin() as conn:
        conn.execute(update(Contract).where(Contract.id == by_status).values(status="renewed"))
        conn.execute(
            update(Contract)
            .where(Contract.id == by_date)
            .values(renewed_at=_night(date(2026, 12, 1)))
        )
    data.contract(ada, ENDS + timedelta(days=365), number="MC-NEXT", renewal_of_id=by_successor,
                  starts_on=ENDS + timedelta(days=1))  # fmt: skip
    data.contract(ada, ENDS + timedelta(days=365), number="MC-VOID", status="cancelled",
                  renewal_of_id=cancelled_successor,
                  starts_on=ENDS + timedelta(days=1))  # fmt: skip
    for day in (date(2026, 12, 9), date(2026, 12, 24), date(2026, 12, 25)):
        run_night(settings, data.engine, as_of=_night(day))

    for renewed in (by_status, by_successor, by_date):
        assert _flow(data.engine, renewed) == ["maintenance-renewal"], renewed
    assert _flow(data.engine, cancelled_successor) == list(FLOW)


def test_a_renewal_before_the_first_notice_means_no_notice_at_all(service_data, settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    early = data.contract(ada, ENDS, number="MC-EARLY")
    data.contract(ada, ENDS + timedelta(days=365), number="MC-EARLY-2", renewal_of_id=early,
                  starts_on=ENDS + timedelta(days=1))  # fmt: skip
    settings = settings_for(str(data.engine.url))

    for day in (date(2026, 11, 23), date(2026, 12, 9), date(2026, 12, 24)):
        run_night(settings, data.engine, as_of=_night(day))

    assert _flow(data.engine, early) == []
    assert _letters(data.engine, "maintenance_expiry") == []
