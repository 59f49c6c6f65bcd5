"""Missing data is seen, not taken for compliance (issue 21 item 4): a complaint with no
acceptance time is never timed and a call without a promised time has no promised-time
deadline; each rule says how many open rows it could not judge and why, in the run artifact
and as a line in the branch's overdue summary, in the reader's language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Notice
from engine.run import run_night

# Monday 2026-11-23 18:00 UTC is 02:00 on Tuesday in Shanghai: the overdue summary is due.
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def summaries(db) -> list[Notice]:
    with Session(db, expire_on_commit=False) as session:
        query = select(Notice).where(Notice.template == "overdue_summary")
        return list(session.scalars(query.order_by(Notice.id)))


def test_rows_a_rule_cannot_time_are_counted_per_rule_and_told_to_the_branch(
    db, db_url, focused_settings_for, service_data
):
    customer = service_data.customer("Li Lei", locale="zh-CN")
    just_now = AS_OF - timedelta(minutes=30)  # nothing is late yet
    for _ in range(3):
        service_data.complaint(customer, None, received_at=just_now)
    service_data.complaint(customer, just_now)  # accepted: timed, not counted
    service_data.request(customer, just_now)  # no promised time
    service_data.request(customer, just_now, promised_at=AS_OF + timedelta(hours=4))
    done = just_now - timedelta(hours=1)
    service_data.request(customer, done, completed_at=just_now, arrived_at=done)  # finished

    result = run_night(focused_settings_for(db_url), db, as_of=AS_OF)

    unjudged = {outcome.rule_id: outcome.unjudged for outcome in result.rules}
    assert unjudged["complaint-first-reply"] == {"accepted_at is empty": 3}
    assert unjudged["repair-promised-time"] == {"promised_at is empty": 1}
    assert unjudged["dispatch-urban"] == {}
    [letter] = summaries(db)  # nothing is late: the summary goes for the missing data alone
    assert letter.subject == "上海服务中心因缺少数据未能判定的事项"  # not "超时 0 项"
    assert "因缺少数据未能判定" in letter.body_text and "附件" not in letter.body_text
    assert "受理投诉后24小时内答复客户：3 项投诉缺少受理时间" in letter.body_text
    assert "1 项报修单缺少承诺时间" in letter.body_text
    assert "1 项报修单缺少承诺时间" in letter.body_html


def test_a_rule_that_says_what_happens_to_them_counts_nothing(
    db, db_url, focused_settings_for, service_data
):
    settings = focused_settings_for(db_url)
    sla = settings.rules / "sla.yaml"
    head, rule = sla.read_text("utf-8").split("  - id: repair-promised-time\n")
    rule = rule.replace(
        "    when: kind == 'repair' and status != 'cancelled'\n",
        "    when: kind == 'repair' and status != 'cancelled' and promised_at is not null\n",
        1,
    )
    sla.write_text(f"{head}  - id: repair-promised-time\n{rule}", "utf-8")
    customer = service_data.customer("Li Lei", locale="zh-CN")
    service_data.request(customer, AS_OF - timedelta(minutes=30))

    result = run_night(settings, db, as_of=AS_OF)

    assert {o.rule_id: o.unjudged for o in result.rules}["repair-promised-time"] == {}
    assert summaries(db) == []  # nothing late and nothing missing: no summary at all
