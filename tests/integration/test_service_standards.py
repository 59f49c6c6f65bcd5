"""The service standards the seeds set: 003-9's 24-hour warranty resolution, judged; 001 四's,
whose numbers the seed leaves blank, shipped disabled until a department writes its own."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Notice
from engine.explain import explain_rule
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
# 10:00 in Shanghai on Monday 2026-11-23.
CALLED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_a_warranty_problem_unresolved_after_24_hours_is_a_breach(service_data, settings_for):
    """003-9 一: 三包服务……在接到用户电话后24小时内给予解决."""
    data = service_data
    ada = data.customer("Ada Wong")
    covered = data.unit(ada, purchased_on=date(2026, 6, 1), proof_of_purchase=True)
    expired = data.unit(ada, purchased_on=date(2020, 6, 1), proof_of_purchase=True)
    # Recorded free (三包) by the desk, as the warranty says; the expired unit's call is paid.
    late = data.request(ada, CALLED, unit_id=covered, fault_part="fan", status="on_site",
                        category="free", arrived_at=CALLED + timedelta(hours=2))  # fmt: skip
    in_time = data.request(ada, CALLED, unit_id=covered, fault_part="fan", status="completed",
                           category="free", arrived_at=CALLED + timedelta(hours=2),
                           completed_at=CALLED + timedelta(hours=20))  # fmt: skip
    paid = data.request(ada, CALLED, unit_id=expired, fault_part="fan", category="paid")
    settings = settings_for(str(data.engine.url))

    for hours in (12, 19, 25, 26):
        run_night(settings, data.engine, as_of=CALLED + timedelta(hours=hours))

    states = {(int(e), s) for e, _, s in data.findings("warranty-resolution-24h")}
    assert states == {(late, "warning"), (late, "breach"), (in_time, "warning")}
    assert paid not in {e for e, _ in states}


def test_a_standard_the_seed_leaves_blank_is_not_judged_until_enabled(
    service_data, settings_for, tmp_path
):
    """001 四.1: 应在[X]分钟内做出响应. Shipped disabled; deleting `disabled` turns it on."""
    data = service_data
    ada = data.customer("Ada Wong")
    silent = data.request(ada, CALLED)
    answered = data.request(ada, CALLED, responded_at=CALLED + timedelta(minutes=10))
    shipped = settings_for(str(data.engine.url))

    run_night(shipped, data.engine, as_of=CALLED + timedelta(hours=1))
    assert data.findings("desk-response") == []
    lines = dict(explain_rule(shipped, data.engine, "desk-response", str(silent), CALLED))
    assert lines["disabled"].startswith("not judged: 001 四.1 leaves the response time blank")

    rules = tmp_path / "enabled"
    shutil.copytree(ROOT / "rules", rules)
    sla = rules / "sla.yaml"
    sla.write_text(
        "\n".join(
            line
            for line in sla.read_text().splitlines()
            if not line.startswith('    disabled: "001 四.1 leaves the response time')
        )
    )
    enabled = settings_for(str(data.engine.url), rules=rules)
    run_night(enabled, data.engine, as_of=CALLED + timedelta(hours=2))
    assert [(int(e), s) for e, _, s in data.findings("desk-response")] == [(silent, "breach")]
    assert answered not in {int(e) for e, _, _ in data.findings("desk-response")}


def test_a_problem_not_resolved_the_same_day_gets_the_customer_a_definite_time(
    service_data, settings_for
):
    """000 part 2 §2(1): 当日问题应在当日处理完毕……给予客户明确的解决时间。并以书面方式……报备."""
    data = service_data
    li = data.customer("Li Wei", locale="zh-CN")
    ada = data.customer("Ada Wong")
    promised = CALLED + timedelta(days=1, hours=6)  # 16:00 on Tuesday in Shanghai
    data.request(li, CALLED, number="SR-PROMISED", promised_at=promised, status="on_site",
                 arrived_at=CALLED + timedelta(hours=2))  # fmt: skip
    data.request(ada, CALLED, number="SR-OPEN", status="on_site",
                 arrived_at=CALLED + timedelta(hours=2))  # fmt: skip
    settings = settings_for(str(data.engine.url))

    for hours in (4, 23, 24):  # the afternoon, then 09:00 and 10:00 next morning
        run_night(settings, data.engine, as_of=CALLED + timedelta(hours=hours))

    with Session(data.engine) as session:
        rows = session.scalars(
            select(Notice).where(Notice.finding_key.like("same-day-resolution|%"))
        )
        sent = {(n.template, n.recipient_address): n for n in rows}
    letters = {k: n for k, n in sent.items() if k[0] == "resolution_time"}
    assert sorted(a for _, a in letters) == ["ada.wong@example.com", "li.wei@example.com"]
    chinese = letters[("resolution_time", "li.wei@example.com")]
    assert "我们将在2026/11/24 16:00前为您解决" in chinese.body_text.replace("\u2009", " ")
    english = letters[("resolution_time", "ada.wong@example.com")]
    assert "Your technician will call you to agree a definite time" in english.body_text
    reports = {a for t, a in sent if t == "written_report"}
    assert "sales_director@hq.example" in reports and "technician@sh.example" in reports


def test_every_complaining_customer_is_visited_whatever_the_complaint(service_data, settings_for):
    """000 art.22: 对抱怨的客户,无论其情节大小,均应由服务主任亲自或专门派员前往处理."""
    data = service_data
    ada = data.customer("Ada Wong")
    data.complaint(ada, CALLED, visited_at=CALLED + timedelta(days=1))
    closed = data.complaint(ada, CALLED, status="closed", closed_at=CALLED + timedelta(hours=5))
    settings = settings_for(str(data.engine.url))

    # Received Monday 10:00 in Shanghai: three working days run to Thursday 10:00.
    run_night(settings, data.engine, as_of=CALLED + timedelta(days=2, hours=23))
    assert data.findings("complaint-visit") == []
    run_night(settings, data.engine, as_of=CALLED + timedelta(days=3, hours=1))

    # Closing the case is no visit; the visited customer's clock stopped in time.
    assert [(int(e), s) for e, _, s in data.findings("complaint-visit")] == [(closed, "breach")]
    with Session(data.engine) as session:
        (notice,) = session.scalars(
            select(Notice).where(Notice.finding_key.like("complaint-visit|%"))
        )
    assert notice.recipient_address == "service_supervisor@sh.example"
