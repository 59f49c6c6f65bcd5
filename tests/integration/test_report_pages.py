"""The report pages a run writes, opened in headless Chromium as a manager's browser would.

The screenshots are kept in test-artifacts/ for a person to look at. Without Chromium on the
machine (Debian package `chromium`) the test skips; CI=true requires it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.reports import kpis, penalties
from engine.reports.charts import BLUE, GREEN, RED
from engine.rules.metric import Measured
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")
ARTIFACTS = ROOT / "test-artifacts"
AS_OF = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
BAR = (0xC0, 0x50, 0x4D)  # the charts' bar colour
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed")
    return found


def screenshot(page: Path, out: Path, profile: Path) -> Image.Image:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
         "--window-size=1000,1600", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return Image.open(out).convert("RGB")


def _colours(image: Image.Image) -> dict[tuple[int, ...], int]:
    return {colour: count for count, colour in image.getcolors(maxcolors=1 << 24) or []}


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(round(255 * c) for c in to_rgb(colour))


def test_overdue_page_shows_its_table_and_chart_in_chromium(
    db_url, settings_for, service_data, tmp_path
):
    chromium()
    customer = service_data.customer("Li Lei", locale="zh-CN")
    for i in range(3):
        received = datetime(2026, 11, 19, 1, 30, tzinfo=UTC) + timedelta(minutes=i)
        service_data.request(customer, received, number=f"SR-SH-{i + 1:03d}")
    settings = settings_for(db_url)

    result = run_night(settings, service_data.engine, as_of=AS_OF)

    # 02:00 on 24 November in Shanghai, the policy's home zone: the page is the 24th's.
    page = settings.artifacts_dir / "reports" / "overdue_2026-11-24.html"
    assert str(page) in result.ledger["reports"]
    html = page.read_text(encoding="utf-8")
    # One row per call, naming its customer and technician, with the three rules it is late for.
    assert html.count("SR-SH-00") == html.count("Li Lei") == html.count("technician sh") == 3
    assert html.count("working hours late") == 3 * 3
    image = screenshot(page, ARTIFACTS / "overdue_page.png", tmp_path / "profile")
    assert _colours(image).get(BAR, 0) > 2000, "the chart's bars did not show"


def test_kpi_page_shows_each_branch_its_panels_and_what_they_mean_in_chromium(tmp_path):
    chromium()
    metrics = [m.rule for m in load_policy(ROOT / "rules", TEMPLATES).metrics]
    months = ("2026-08", "2026-09", "2026-10")
    # Two branches, every KPI, each month a little better; the first months miss the targets.
    value = {"share": Decimal("0.85"), "average": Decimal("3.3"), "rate": Decimal("4")}
    step = {"share": Decimal("0.05"), "average": Decimal("0.2"), "rate": Decimal("-1.5")}
    measured = [
        Measured(m.id, month, "branch", branch, branch, Decimal(1), Decimal(1),
                 value[m.kind] + i * step[m.kind])
        for m in metrics for branch in (1, 2) for i, month in enumerate(months)
    ]  # fmt: skip
    branches = {1: {"code": "SH-01", "name": "上海服务中心"}, 2: {"code": "SH-SJ", "name": "松江"}}
    report = kpis.build_report(measured, metrics, months, branches, {})
    page = tmp_path / "kpi_2026-10.html"
    page.write_text(kpis.render_html(report, TEMPLATES, "zh-CN"), encoding="utf-8")

    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/png") == 2, "a chart in each branch's part"
    assert "每个小图是一项指标，编号与下表相同" in html and "未达标区间" in html
    assert f">{len(metrics)}</strong>&nbsp; " in html, "the table numbers its rows as the panels"
    image = screenshot(page, ARTIFACTS / "kpi_page.png", tmp_path / "profile")
    colours = _colours(image)
    assert colours.get(_rgb(RED), 0) > 100, "values missing their target are red"
    assert colours.get(_rgb(BLUE), 0) > 500, "values on target are blue"


def test_penalty_page_shows_penalties_below_zero_and_rewards_above_in_chromium(tmp_path):
    chromium()
    at = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)

    def line(rule: str, amount: int, currency: str) -> penalties.Line:
        direction = "penalty" if amount < 0 else "reward"
        title = {"unanswered-hotline": "热线未接", "survey-excellence": "满意度优秀"}[rule]
        return penalties.Line("2026-10", rule, title, direction, "original", Decimal(amount),
                              currency, "staff", ("7",), "", "run", at)  # fmt: skip

    shanghai = penalties.BranchPart(1, "SH-01", "上海服务中心", "Asia/Shanghai")
    shanghai.people.append(
        penalties.Person(7, "王工", "technician",
                         [line("unanswered-hotline", -200, "CNY"),
                          line("survey-excellence", 300, "CNY")])
    )  # fmt: skip
    summary = penalties.Summary("2026-10", ("2026-10",), at, [shanghai])
    page = tmp_path / "penalties_2026-10.html"
    page.write_text(penalties.render_html(summary, TEMPLATES, "zh-CN"), encoding="utf-8")

    html = page.read_text(encoding="utf-8")
    assert "<strong>1</strong> 热线未接" in html and "<strong>2</strong> 满意度优秀" in html
    image = screenshot(page, ARTIFACTS / "penalties_page.png", tmp_path / "profile")
    colours = _colours(image)
    assert colours.get(_rgb(RED), 0) > 500, "the penalty's bar is red"
    assert colours.get(_rgb(GREEN), 0) > 500, "the reward's bar is green"
