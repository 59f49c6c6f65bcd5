"""Recipients from the row and at head office (002 八, 000 art.20), and roles as data: the
department named on a complaint gets its urge notice; a general complaint goes to the HQ
service department; a staff row may hold any role the policy declares."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from engine.cli import app
from engine.db.importer import import_dir
from engine.db.models import Notice, Staff
from engine.explain import explain_rule
from engine.run import run_night

ROOT = Path(__file__).resolve().parents[2]
POLICY = ("--rules", str(ROOT / "rules"), "--templates", str(ROOT / "templates" / "notices"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
ACCEPTED = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)
HANDLE_BY = datetime(2026, 11, 21, 10, 0, tzinfo=SHANGHAI)  # the handling deadline set
NIGHT = datetime(2026, 11, 21, 11, 0, tzinfo=SHANGHAI)  # an hour past it: the urge notice


def _head_office(data, role: str) -> int:
    return data.add(
        Staff, branch_id=None, name=f"{role} hq", email=f"{role}@hq.example", role=role,
        locale="zh-CN",
    )  # fmt: skip


def _sent(data, rule: str) -> dict[str, list[str]]:
    """Per complaint number, the addresses the rule's notices went to."""
    with Session(data.engine) as session:
        rows = session.execute(
            select(Notice.finding_key, Notice.recipient_address, Notice.status)
            .where(Notice.finding_key.like(f"{rule}|%"))
            .order_by(Notice.id)
        ).all()
    out: dict[str, list[str]] = {}
    for key, address, status in rows:
        out.setdefault(key.split("|")[2], []).append(address if status != "dead" else "dead")
    return out


def test_the_urge_notice_goes_to_the_department_named_on_the_complaint(service_data, settings_for):
    data = service_data
    data.staff["quality@sh"] = data.add(
        Staff, branch_id=data.branch, name="品质 上海", email="quality@sh.example",
        role="quality", locale="zh-CN",
    )  # fmt: skip
    for role in ("quality", "warehouse"):
        _head_office(data, role)
    li = data.customer("Li Wei", locale="zh-CN")
    ids = {
        department: str(
            data.complaint(
                li, ACCEPTED, responsible_department=department, handling_due_at=HANDLE_BY
            )
        )
        for department in ("quality", "warehouse", None, "售后服务部")
    }
    run_night(settings_for(str(data.engine.url)), data.engine, as_of=NIGHT)

    sent = _sent(data, "complaint-handling")
    # The branch has its own quality person; nobody in warehouse: head office's.
    assert sent[ids["quality"]] == ["quality@sh.example"]
    assert sent[ids["warehouse"]] == ["warehouse@hq.example"]
    # No department recorded, or one the policy does not declare: the `otherwise` role.
    assert sent[ids[None]] == ["responsible_department@sh.example"]
    assert sent[ids["售后服务部"]] == ["responsible_department@sh.example"]

    checked = CliRunner().invoke(
        app, ["validate", *POLICY, "--db", str(data.engine.url)], catch_exceptions=False
    )
    assert "1 complaints row(s) hold responsible_department '售后服务部'" in checked.stderr

    settings = settings_for(str(data.engine.url))
    lines = dict(explain_rule(settings, data.engine, "complaint-handling", ids["warehouse"], NIGHT))
    reach = lines["reaches (breach, urge_notice)"]
    assert "responsible_department = 'warehouse'" in reach
    assert "warehouse@hq.example" in reach and "head office" in reach


def test_a_general_complaint_goes_to_head_office_even_when_the_branch_has_a_manager(
    service_data, settings_for
):
    data = service_data
    _head_office(data, "service_manager")
    li = data.customer("Li Wei", locale="zh-CN")
    general = str(data.complaint(li, ACCEPTED))
    run_night(settings_for(str(data.engine.url)), data.engine, as_of=ACCEPTED)

    # 000 art.20: the (HQ) service department, not the branch's service manager.
    assert _sent(data, "general-complaint") == {general: ["service_manager@hq.example"]}
    lines = dict(
        explain_rule(
            settings_for(str(data.engine.url)), data.engine, "general-complaint", general, ACCEPTED
        )
    )
    assert lines["reaches (notice, escalation)"].startswith("service_manager at head office")


def test_a_staff_row_with_a_declared_new_role_imports_and_one_undeclared_is_reported(
    db, tmp_path: Path
):
    folder = tmp_path / "csv"
    folder.mkdir()
    with (folder / "staff.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "branch_id", "name", "email", "role", "locale"])
        writer.writerow([1, "", "周丽", "li.zhou@aftersales.example", "quality", "zh-CN"])
        writer.writerow([2, "", "赵敏", "min.zhao@aftersales.example", "qualty", "zh-CN"])
    assert import_dir(db, folder) == {"staff": 2}

    checked = CliRunner().invoke(
        app, ["validate", *POLICY, "--db", str(db.url)], catch_exceptions=False
    )
    assert checked.exit_code == 0  # the policy is valid: the staff data is the one to fix
    assert "1 staff row(s) hold role 'qualty'" in checked.stderr
    assert "did you mean 'quality'?" in checked.stderr
    assert "'quality'," not in checked.stderr  # the declared role is not reported
