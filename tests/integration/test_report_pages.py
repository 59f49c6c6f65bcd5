"""The report pages a run writes, opened in headless Chromium as a manager's browser would.

The screenshots are kept in test-artifacts/ for a person to look at. Without Chromium on the
machine (Debian package `chromium`) the test skips; CI=true requires it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
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
    colours = {colour: count for count, colour in image.getcolors(maxcolors=1 << 24) or []}
    assert colours.get(BAR, 0) > 2000, "the chart's bars did not show"
