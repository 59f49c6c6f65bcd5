"""`aftersales report penalties`: the demo's monthly close as the manager reads it."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.models import LedgerEntry
from engine.db.session import connect

ROOT = Path(__file__).resolve().parents[2]
POLICY = ("--rules", str(ROOT / "rules"), "--templates", str(ROOT / "templates" / "notices"))
runner = CliRunner()


def invoke(*args: str):
    """Run the CLI in-process."""
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_demo_close_and_its_summary_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    assert invoke("init", "--db", db, "--demo", "--as-of", "2026-11-23T18:00:00Z").exit_code == 0
    ran = invoke("run", "--db", db, *POLICY, "--as-of", "2026-11-23T18:00:00Z", "--no-deliver")
    assert ran.exit_code == 0, ran.output
    assert "report: runs/reports/penalties_2026-10.html" in ran.stdout

    out = tmp_path / "out"
    report = invoke("report", "penalties", "--db", db, *POLICY, "--period", "2026-10",
                    "--out", str(out), "--locale", "zh-CN")  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "Penalties and rewards 2026-10" in report.stdout and "total" in report.stdout
    html = (out / "penalties_2026-10.html").read_text(encoding="utf-8")
    assert 'lang="zh-CN"' in html and "上海市区服务中心" in html
    assert "奖罚汇总 2026年10月</h1>" in html
    assert "2026-10-01" not in html  # the month in words, not each day and week it closes
    with (out / "penalties_2026-10.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    engine = connect(db)
    with engine.connect() as conn:
        booked = conn.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.period == "2026-10")
        )
        count = conn.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.period == "2026-10")
        )
    assert len(rows) == count > 10
    assert sum(Decimal(r["amount"]) for r in rows) == booked
    assert {r["rule_id"] for r in rows} >= {"unanswered-hotline", "verified-complaint"}
    assert {r["branch"] for r in rows} == {"SH-01", "SH-SJ", "TPE-01", "MAD-01"}

    # The quarter closed in the same night belongs to September's close.
    quarter = invoke("report", "penalties", "--db", db, *POLICY, "--period", "2026-Q3")
    assert quarter.exit_code == 0 and (tmp_path / "runs/reports/penalties_2026-Q3.csv").exists()

    complaint = next(r for r in rows if r["rule_id"] == "verified-complaint")["entity_ids"]
    explained = invoke("explain", "verified-complaint", complaint.split()[0], "--db", db,
                       *POLICY, "--as-of", "2026-11-23T18:00:00Z")  # fmt: skip
    assert explained.exit_code == 0
    assert "2026-10: closes 2026-11-10T00:00:00+08:00, closed" in explained.stdout
    assert "original" in explained.stdout


def test_report_with_a_bad_period_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    assert invoke("init", "--db", db).exit_code == 0
    result = invoke("report", "penalties", "--db", db, *POLICY, "--period", "2026-13")
    assert result.exit_code == 2 and "2026-Q4" in result.stderr
    empty = invoke("report", "penalties", "--db", db, *POLICY, "--period", "2026-10")
    assert empty.exit_code == 0 and "no ledger entries for 2026-10" in empty.stdout
