"""000 art.18-19: a survey card for every call of the day, sent the next day, no sampling.

The letter tells the customer where the call stands: finished, visited but not finished, or
not yet visited. It no longer says "finished yesterday" to every customer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Notice
from engine.run import run_night

# 10:00 in Shanghai on Monday 2026-11-23.
CALLED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _surveys(engine) -> dict[str, Notice]:
    with Session(engine) as session:
        query = select(Notice).where(Notice.template == "survey_request")
        return {n.subject.split()[-1]: n for n in session.scalars(query)}


def test_every_call_of_the_day_gets_one_survey_the_next_day(service_data, focused_settings_for):
    data = service_data
    ada = data.customer("Ada Wong")
    li = data.customer("Li Wei", locale="zh-CN")
    arrived, finished = CALLED + timedelta(hours=3), CALLED + timedelta(hours=4)
    data.request(
        ada, CALLED, number="SR-DONE", status="completed", arrived_at=arrived, completed_at=finished
    )
    data.request(li, CALLED, number="SR-VISITED", status="on_site", needs_parts=True,
                 arrived_at=CALLED + timedelta(hours=5))  # fmt: skip
    data.request(ada, CALLED + timedelta(hours=6), number="SR-WAITING")
    data.request(ada, CALLED, number="SR-CANCELLED", status="cancelled")
    data.request(ada, CALLED, number="SR-ADMIN", kind="admin")
    settings = focused_settings_for(str(data.engine.url))

    # The day of the call: nothing yet; the next day every call of that day, once.
    run_night(settings, data.engine, as_of=CALLED + timedelta(hours=8))
    assert _surveys(data.engine) == {}
    for hours in (30, 31, 48, 72):
        run_night(settings, data.engine, as_of=CALLED + timedelta(hours=hours))

    letters = _surveys(data.engine)
    assert sorted(letters) == ["SR-DONE", "SR-VISITED", "SR-WAITING"]
    done, visited, waiting = (letters[n].body_text for n in ("SR-DONE", "SR-VISITED", "SR-WAITING"))
    assert "Our technician finished the repair on November 23, 2026." in done
    assert "Thank you for calling us on November 23, 2026 about SR-DONE" in done
    assert "维修人员已于2026年11月23日上门，维修尚未完成" in visited
    assert "No technician has been to you yet" in waiting
    assert all("esterday" not in text for text in (done, waiting))
