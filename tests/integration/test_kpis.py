"""Seed row 21 (001 七; 000 art.17-19): KPIs per branch and technician and month, and the
monthly KPI report to the service manager.

October 2026 in the Shanghai branch, by hand (all repair calls, urban, Mondays to Fridays after
the National Day holidays; T1 and T2 are the technicians):

    call  received (local)  on site           done              unit  tech  survey
    A     Mon 12 Oct 10:00  12 Oct 11:00      12 Oct 15:00      U1    T1    4 4 3 3
    B     Tue 13 Oct 10:00  Thu 15 Oct 10:00  15 Oct 15:00      U2    T1    -
    C     Tue 20 Oct 10:00  20 Oct 11:00      20 Oct 15:00      U1    T2    2 3 - 3
    D     Mon 26 Oct 10:00  26 Oct 11:00      26 Oct 15:00      U3    T2    -
    one complaint received on 27 Oct

- on-time dispatch (6 working hours): B is late -> 3 of 4 = 75%; T1 1 of 2 = 50%; T2 100%.
- first-time fix (001 四.4: the same problem not reported again): C is recorded as a repeat of
  A (same fault on U1) -> 3 of 4 = 75%; T1 1 of 2 = 50% (A was not fixed), T2 2 of 2. D, a
  later call on U3 for another fault, repeats nothing.
- complaint rate: 1 complaint per 4 calls received -> 25 per 100.
- satisfaction: (4+4+3+3 + 2+3+3) / 7 values = 22/7 = 3.142857 (target 3.5: missed);
  T1 14/4 = 3.5, T2 8/3 = 2.666667.
- survey coverage: 2 of the 4 calls received surveyed = 50%.
"""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from matplotlib.colors import to_rgb
from PIL import Image
from sqlalchemy import func, select

from engine.db.models import KpiValue, Notice, NoticeAttachment, Staff, Survey
from engine.reports.charts import BLUE, RED
from engine.run import run_night

# 02:00 on Tuesday 3 November in Shanghai: October is the last complete month.
AS_OF = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
LOCAL = timedelta(hours=8)


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC) - LOCAL


def _october(data) -> dict[str, int]:
    t1 = data.staff["technician"]
    t2 = data.add(
        Staff, branch_id=data.branch, name="technician two", email="t2@sh.example",
        role="technician", locale="zh-CN",
    )  # fmt: skip
    ada = data.customer("Ada Wong")
    u1, u2, u3 = (data.unit(ada) for _ in range(3))
    calls = {}
    for name, (day, arrive_day, unit, tech) in {
        "A": (12, 12, u1, t1), "B": (13, 15, u2, t1), "C": (20, 20, u1, t2), "D": (26, 26, u3, t2),
    }.items():  # fmt: skip
        calls[name] = data.request(
            ada, _at(day, 10), number=f"SR-{name}", unit_id=unit, technician_id=tech,
            status="completed", dispatched_at=_at(day, 10), arrived_at=_at(arrive_day, 11)
            if name != "B" else _at(arrive_day, 10), completed_at=_at(arrive_day, 15),
            repeat_of_id=calls["A"] if name == "C" else None,
        )  # fmt: skip
    for call, tech, marks in ((calls["A"], t1, (4, 4, 3, 3)), (calls["C"], t2, (2, 3, None, 3))):
        data.add(
            Survey, branch_id=data.branch, service_request_id=call, technician_id=tech,
            surveyed_at=_at(22, 9), attitude=marks[0], skill=marks[1], punctuality=marks[2],
            promise_keeping=marks[3],
        )  # fmt: skip
    data.complaint(ada, _at(27, 9), number="CP-1", status="closed", closed_at=_at(27, 12))
    return {"t1": t1, "t2": t2}


def _values(engine, period: str) -> dict[tuple[str, str, int], Decimal | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(KpiValue.metric_id, KpiValue.scope, KpiValue.party_id, KpiValue.value).where(
                KpiValue.period == period
            )
        )
        return {(m, s, p): v for m, s, p, v in rows}


def test_october_kpis_match_the_hand_computed_numbers(service_data, settings_for):
    people = _october(service_data)
    branch, t1, t2 = service_data.branch, people["t1"], people["t2"]
    settings = settings_for(str(service_data.engine.url))

    result = run_night(settings, service_data.engine, as_of=AS_OF)

    assert result.outcome == "success"
    with service_data.engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(KpiValue))
    assert result.counts["kpi_values"] == stored > 0
    got = _values(service_data.engine, "2026-10")
    expected = {
        ("on-time-dispatch", "branch", branch): Decimal("0.75"),
        ("on-time-dispatch", "staff", t1): Decimal("0.5"),
        ("on-time-dispatch", "staff", t2): Decimal("1"),
        ("first-time-fix", "branch", branch): Decimal("0.75"),
        ("first-time-fix", "staff", t1): Decimal("0.5"),
        ("first-time-fix", "staff", t2): Decimal("1"),
        ("complaint-rate", "branch", branch): Decimal("25"),
        ("satisfaction", "branch", branch): Decimal("3.142857"),
        ("satisfaction", "staff", t1): Decimal("3.5"),
        ("satisfaction", "staff", t2): Decimal("2.666667"),
        ("satisfaction-punctuality", "staff", t2): None,  # no value given: nothing to measure
        ("survey-coverage", "branch", branch): Decimal("0.5"),
    }
    assert {key: got.get(key, "absent") for key in expected} == expected
    assert ("satisfaction-punctuality", "staff", t2) in got


def test_the_monthly_report_reaches_the_service_manager_once(service_data, settings_for):
    _october(service_data)
    settings = settings_for(str(service_data.engine.url))

    for night in (AS_OF, AS_OF, AS_OF + timedelta(days=1)):
        run_night(settings, service_data.engine, as_of=night)

    with service_data.engine.connect() as conn:
        (report,) = conn.execute(
            select(Notice).where(Notice.dedup_key.startswith("kpi-report|2026-10|"))
        ).all()
    assert report.recipient_address == "service_manager@sh.example"
    assert report.subject.startswith("上海服务中心 2026-10 售后服务指标")
    assert "未达标" in report.subject  # satisfaction 3.14 < 3.5, dispatch 75% < 95%, ...
    assert "75%" in report.body_html and "3.14" in report.body_html
    page = settings.artifacts_dir / "reports" / "kpi_2026-10.html"
    csv = (settings.artifacts_dir / "reports" / "kpi_2026-10.csv").read_text(encoding="utf-8-sig")
    assert "2026-10" in page.read_text(encoding="utf-8")
    assert "2026-10,SH-01,branch,1,上海服务中心,complaint-rate," in csv
    assert ",1,4,25.000000,≤ 2,yes" in csv


def test_the_letter_shows_the_branch_chart_the_page_shows_with_its_key(service_data, settings_for):
    _october(service_data)
    settings = settings_for(str(service_data.engine.url))

    run_night(settings, service_data.engine, as_of=AS_OF)

    with service_data.engine.connect() as conn:
        html, cid, png = conn.execute(
            select(Notice.body_html, NoticeAttachment.content_id, NoticeAttachment.data)
            .join(NoticeAttachment, NoticeAttachment.notice_id == Notice.id)
            .where(Notice.dedup_key.startswith("kpi-report|2026-10|"))
            .where(NoticeAttachment.content_type == "image/png")
        ).one()
    assert f'src="cid:{cid}"' in html
    # The image has no words: the letter says, in Chinese, what its numbers and colours mean.
    assert "每个小图是一项指标，编号与下表相同" in html and "未达标" in html and "目标值" in html
    assert re.search(r">1</strong>&nbsp; 客户满意度", html), "row 1 of the table is panel 1"
    colours = {c: n for n, c in Image.open(io.BytesIO(png)).convert("RGB").getcolors(1 << 20)}
    red, blue = (tuple(round(255 * c) for c in to_rgb(x)) for x in (RED, BLUE))
    assert colours.get(red, 0) > 20 and colours.get(blue, 0) > 20  # dispatch 75% < 95%: red
    page = (settings.artifacts_dir / "reports" / "kpi_2026-10.html").read_text(encoding="utf-8")
    (shown,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(shown) == png, "the page shows the chart the letter carries"


def test_report_kpi_writes_the_month_on_demand(service_data, settings_for, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app

    _october(service_data)
    settings = settings_for(str(service_data.engine.url))
    run_night(settings, service_data.engine, as_of=AS_OF)  # records the breach of call B

    out = tmp_path / "kpi"
    policy = ("--rules", str(settings.rules), "--templates", str(settings.templates))
    result = CliRunner().invoke(
        app,
        ["report", "kpi", "--db", str(service_data.engine.url), *policy, "--period", "2026-10",
         "--as-of", AS_OF.isoformat(), "--out", str(out), "--locale", "es"],
        catch_exceptions=False,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "on-time-dispatch" in line)
    assert "75.0% !" in row and "≥ 95%" in row
    html = (out / "kpi_2026-10.html").read_text(encoding="utf-8")
    assert 'lang="es"' in html and "Indicadores de servicio 2026-10" in html and "75%" in html
    assert (out / "kpi_2026-10.csv").exists()


def test_a_month_keeps_its_values_once_it_is_older_than_the_reported_one(
    service_data, settings_for
):
    _october(service_data)
    data, branch = service_data, service_data.branch
    bo = data.customer("Bo Li")
    settings = settings_for(str(data.engine.url))
    rate = ("complaint-rate", "branch", branch)
    page = settings.artifacts_dir / "reports" / "kpi_2026-10.html"

    run_night(settings, data.engine, as_of=AS_OF)  # October's report goes out
    assert page.exists()
    page.unlink()
    data.complaint(bo, _at(28, 9), number="CP-LATE-1", status="closed", closed_at=_at(28, 12))
    run_night(settings, data.engine, as_of=AS_OF + timedelta(days=1))
    # October is still the reported month: measured again; its report went out already.
    assert _values(data.engine, "2026-10")[rate] == Decimal("50")
    assert not page.exists()

    data.complaint(bo, _at(29, 9), number="CP-LATE-2", status="closed", closed_at=_at(29, 12))
    run_night(settings, data.engine, as_of=datetime(2026, 12, 2, 18, 0, tzinfo=UTC))
    # November is reported now; October keeps what was stored while it was recent.
    assert _values(data.engine, "2026-10")[rate] == Decimal("50")
    assert (settings.artifacts_dir / "reports" / "kpi_2026-11.html").exists()


def test_first_time_fix_counts_the_same_problem_coming_back_not_any_later_call(
    service_data, settings_for
):
    """001 四.4: 质保期内不再出现相同问题. Another fault on the same unit is not a failed fix."""
    data = service_data
    ada = data.customer("Ada Wong")
    u1, u2 = data.unit(ada), data.unit(ada)
    done = {"status": "completed", "arrived_at": _at(1, 11)}
    data.request(ada, _at(5, 10), unit_id=u1, fault_part="fan", completed_at=_at(5, 15), **done)
    data.request(ada, _at(10, 10), unit_id=u1, fault_part="board", completed_at=_at(10, 15), **done)
    first = data.request(ada, _at(2, 10), unit_id=u2, completed_at=_at(2, 15), **done)
    data.request(ada, _at(30, 10), unit_id=u2, repeat_of_id=first, completed_at=_at(30, 15), **done)

    run_night(settings_for(str(data.engine.url)), data.engine, as_of=AS_OF)

    # The fan call stays fixed although the board failed five days later; `first` came back.
    assert _values(data.engine, "2026-10")[("first-time-fix", "branch", data.branch)] == Decimal(
        "0.75"
    )
