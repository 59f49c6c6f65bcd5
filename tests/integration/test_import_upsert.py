"""`aftersales import DIR --upsert`: feeds sent again and again, deltas by natural key."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.db.importer import UpsertCounts, import_dir, upsert_dir
from engine.db.models import (
    SERVICE_TABLES,
    Complaint,
    HotlineCall,
    ServiceRequest,
    Staff,
    StatusChange,
)
from engine.db.session import connect
from engine.errors import ImportDataError

_FEED = {
    "branches": """
        id,code,name,timezone,country,calendar,locale
        1,SH-01,上海市区服务中心,Asia/Shanghai,CN,cn-office,zh-CN
    """,
    "staff": """
        id,branch_id,name,email,role,supervisor_id,locale
        1,1,王伟,wei.wang@aftersales.example,technician,2,zh-CN
        2,1,李娜,na.li@aftersales.example,team_lead,,zh-CN
    """,
    "customers": """
        id,branch_id,name,email,locale,region
        1,1,陈静,jing.chen@cn.example.com,zh-CN,urban
    """,
    "products": """
        id,model,name,category
        1,AC-KFR35,Split air conditioner 3.5 kW,air_conditioner
    """,
    "units": """
        id,product_id,customer_id,branch_id,serial_number
        1,1,1,1,ACKFR35250100000001
    """,
    "service_requests": """
        id,number,branch_id,customer_id,unit_id,technician_id,kind,region,status,received_at,repeat_of_id
        1,SR-1,1,1,1,1,repair,urban,dispatched,2026-11-23T09:30:00+08:00,
        2,SR-2,1,1,1,,repair,urban,received,2026-11-23T10:00:00+08:00,1
    """,
    "status_changes": """
        service_request_id,status,changed_at,note
        1,received,2026-11-23T01:30:00Z,
        1,dispatched,2026-11-23T02:00:00Z,派工
        2,received,2026-11-23T02:00:00Z,
    """,
    "complaints": """
        id,number,branch_id,customer_id,service_request_id,kind,severity,status,received_at
        1,CP-1,1,1,1,claim,serious,open,2026-11-22T08:00:00Z
    """,
    "hotline_calls": """
        branch_id,received_at,answered,caller_phone
        1,2026-11-23T10:05:00+08:00,false,+86 21 5555 0101
        1,2026-11-23T10:06:00+08:00,true,
    """,
    "surveys": """
        branch_id,service_request_id,surveyed_at,attitude
        1,1,2026-11-24T10:00:00+08:00,4
    """,
}  # fmt: skip
"""A first full feed: ids where other files point at the rows, none for the events."""


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(exist_ok=True)
    for name, body in files.items():
        (path / f"{name}.csv").write_text(textwrap.dedent(body).strip() + "\n", encoding="utf-8")
    return path


def _fed(db: Engine, tmp_path: Path) -> dict[str, UpsertCounts]:
    return upsert_dir(db, _folder(tmp_path / "full", _FEED))


def _count(db: Engine, model: type) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _snapshot(db: Engine) -> dict[str, list[tuple[object, ...]]]:
    with db.connect() as conn:
        return {
            m.__tablename__: [
                tuple(r) for r in conn.execute(select(m.__table__).order_by(m.__table__.c.id))
            ]
            for m in SERVICE_TABLES
        }


def _rejected(db: Engine, folder: Path) -> ImportDataError:
    before = _snapshot(db)
    with pytest.raises(ImportDataError) as caught:
        upsert_dir(db, folder)
    assert _snapshot(db) == before, "a rejected upsert must change nothing"
    return caught.value


def _said(counts: dict[str, UpsertCounts]) -> dict[str, str]:
    return {table: str(done) for table, done in counts.items()}


def test_first_feed_inserts_and_the_second_changes_nothing(db: Engine, tmp_path: Path) -> None:
    first = _fed(db, tmp_path)
    after_first = _snapshot(db)

    second = _fed(db, tmp_path)

    assert _said(first)["service_requests"] == "2 inserted, 0 updated, 0 unchanged, 0 deleted"
    assert _said(first)["status_changes"] == ("3 inserted, 0 updated, 0 already present, 0 deleted")
    assert _said(second)["service_requests"] == "0 inserted, 0 updated, 2 unchanged, 0 deleted"
    assert _said(second)["status_changes"] == (
        "0 inserted, 0 updated, 3 already present, 0 deleted"
    )
    assert _said(second)["hotline_calls"] == "0 inserted, 0 updated, 2 already present, 0 deleted"
    assert _snapshot(db) == after_first
    with db.connect() as conn:
        assert (
            conn.execute(
                select(ServiceRequest.repeat_of_id).where(ServiceRequest.id == 2)
            ).scalar_one()
            == 1
        )


def test_a_plain_import_of_the_same_feed_still_refuses_the_second_time(
    db: Engine, tmp_path: Path
) -> None:
    import_dir(db, _folder(tmp_path / "full", _FEED))

    with pytest.raises(ImportDataError, match="already exists"):
        import_dir(db, _folder(tmp_path / "full", _FEED))


def test_delta_by_natural_key_changes_only_the_columns_it_gives(db: Engine, tmp_path: Path) -> None:
    _fed(db, tmp_path)
    delta = _folder(
        tmp_path / "delta",
        {
            # SR-1 is closed, SR-3 is new; no ids anywhere, and not every column.
            "service_requests": """
                number,status,completed_at,branch_id,customer_id,kind,region,received_at
                SR-1,completed,2026-11-23T14:00:00+08:00,1,1,repair,urban,2026-11-23T09:30:00+08:00
                SR-3,received,,1,1,repair,urban,2026-11-23T15:00:00+08:00
            """,
            "status_changes": """
                service_request_id,status,changed_at
                1,dispatched,2026-11-23T02:00:00Z
                1,completed,2026-11-23T06:00:00Z
            """,
            "complaints": """
                number,status,first_reply_at
                CP-1,replied,2026-11-22T09:00:00Z
            """,
        },
    )

    counts = upsert_dir(db, delta)

    assert _said(counts) == {
        "service_requests": "1 inserted, 1 updated, 0 unchanged, 0 deleted",
        "status_changes": "1 inserted, 0 updated, 1 already present, 0 deleted",
        "complaints": "0 inserted, 1 updated, 0 unchanged, 0 deleted",
    }
    with db.connect() as conn:
        closed = conn.execute(select(ServiceRequest).where(ServiceRequest.number == "SR-1")).one()
        assert closed.status == "completed"
        assert closed.completed_at == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
        assert closed.technician_id == 1  # not in the delta: kept
        new = conn.execute(select(ServiceRequest).where(ServiceRequest.number == "SR-3")).one()
        assert new.id == 3
        complaint = conn.execute(select(Complaint).where(Complaint.number == "CP-1")).one()
        assert (complaint.status, complaint.severity, complaint.kind) == (
            "replied",
            "serious",
            "claim",
        )
    assert _count(db, StatusChange) == 4


def test_an_event_already_present_is_not_updated(db: Engine, tmp_path: Path) -> None:
    _fed(db, tmp_path)
    again = _folder(
        tmp_path / "again",
        {
            "status_changes": """
                service_request_id,status,changed_at,note
                1,dispatched,2026-11-23T10:00:00+08:00,a different note
            """,
        },
    )

    counts = upsert_dir(db, again)

    assert str(counts["status_changes"]) == "0 inserted, 0 updated, 1 already present, 0 deleted"
    with db.connect() as conn:
        assert (
            conn.execute(
                select(StatusChange.note).where(StatusChange.status == "dispatched")
            ).scalar_one()
            == "派工"
        )


def test_delete_removes_children_before_parents(db: Engine, tmp_path: Path) -> None:
    _fed(db, tmp_path)
    deletion = _folder(
        tmp_path / "deletion",
        {
            "service_requests": """
                number,_delete
                SR-2,true
            """,
            "status_changes": """
                service_request_id,status,changed_at,_delete
                2,received,2026-11-23T02:00:00Z,true
            """,
        },
    )

    counts = upsert_dir(db, deletion)
    again = upsert_dir(db, deletion)

    assert str(counts["service_requests"]) == "0 inserted, 0 updated, 0 unchanged, 1 deleted"
    assert str(counts["status_changes"]) == "0 inserted, 0 updated, 0 already present, 1 deleted"
    assert str(again["service_requests"]) == "0 inserted, 0 updated, 1 unchanged, 0 deleted"
    with db.connect() as conn:
        assert conn.execute(select(ServiceRequest.number)).scalars().all() == ["SR-1"]
    assert _count(db, StatusChange) == 2


def test_deleting_a_row_others_point_at_rolls_everything_back(db: Engine, tmp_path: Path) -> None:
    _fed(db, tmp_path)
    folder = _folder(
        tmp_path / "bad",
        {
            "branches": """
                code,name
                SH-01,上海
            """,
            "service_requests": """
                number,_delete
                SR-1,yes
            """,
        },
    )

    [problem] = _rejected(db, folder).problems

    assert str(problem.location) == f"{folder / 'service_requests.csv'}:2"
    assert "cannot delete service_requests id 1" in problem.message
    assert "2 status_changes rows (service_request_id)" in problem.message
    assert "1 service_requests row (repeat_of_id)" in problem.message
    assert problem.hint is not None
    assert "cancellation" in problem.hint


@pytest.mark.parametrize(
    ("files", "where", "words"),
    [
        (
            {"service_requests": "number,technician_id\nSR-1,42\n"},
            "service_requests.csv:2",
            ["column technician_id", "no staff row has id 42"],
        ),
        (
            {"service_requests": "number,received_at\nSR-1,tomorrow\n"},
            "service_requests.csv:2",
            ["column received_at", "not an ISO 8601 timestamp"],
        ),
        (
            {"service_requests": "number,status\nSR-1,dispatched\nSR-9,received\n"},
            "service_requests.csv:3",
            ["not in service_requests yet", "branch_id"],
        ),
        (
            {"customers": "name,branch_id,locale,region\nNew,1,en,urban\n"},
            "customers.csv:1",
            ["customers have no natural key"],
        ),
        (
            {"customers": "id,name\n1,Renamed\n,New\n"},
            "customers.csv:3",
            ["column id: empty", "no natural key"],
        ),
        (
            {"complaints": "number,status,row_version\nCP-1,closed,7\n"},
            "complaints.csv:1",
            ["'row_version' is kept by the database"],
        ),
        (
            {"units": "number,customer_id\nX,1\n"},
            "units.csv:1",
            ["unknown column 'number'"],
        ),
    ],
)
def test_a_bad_row_rejects_the_whole_upsert(
    db: Engine, tmp_path: Path, files: dict[str, str], where: str, words: list[str]
) -> None:
    _fed(db, tmp_path)
    folder = _folder(
        tmp_path / "delta",
        # A good change in a file imported first: it must be rolled back with the rest.
        {"branches": "code,name\nSH-01,上海\n", **files},
    )

    problems = _rejected(db, folder).problems

    [problem] = [p for p in problems if words[0] in p.message]
    assert str(problem.location).endswith(where)
    for word in words[1:]:
        assert word in problem.message
    assert problem.hint


def test_cli_prints_what_it_did_per_table(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", db_url]).exit_code == 0
    full = _folder(tmp_path / "full", _FEED)
    assert runner.invoke(app, ["import", str(full), "--db", db_url, "--upsert"]).exit_code == 0
    delta = _folder(
        tmp_path / "delta",
        {
            "hotline_calls": """
                branch_id,received_at,answered,caller_phone
                1,2026-11-23T10:05:00+08:00,false,+86 21 5555 0101
                1,2026-11-23T10:30:00+08:00,true,+86 21 5555 0103
            """,
        },
    )

    result = runner.invoke(app, ["import", str(delta), "--db", db_url, "--upsert"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "hotline_calls: 1 inserted, 0 updated, 1 already present, 0 deleted"
    )
    assert _count(connect(db_url), HotlineCall) == 3


def test_references_within_a_table_are_set_for_rows_found_by_key(
    db: Engine, tmp_path: Path
) -> None:
    _fed(db, tmp_path)
    staff = _folder(
        tmp_path / "staff",
        {
            # A new technician under the team lead; the old one reports to nobody now.
            "staff": """
                email,branch_id,name,role,locale,supervisor_id
                wei.wang@aftersales.example,1,王伟,technician,zh-CN,
                min.zhao@aftersales.example,1,赵敏,technician,zh-CN,2
            """,
        },
    )

    counts = upsert_dir(db, staff)

    assert str(counts["staff"]) == "1 inserted, 1 updated, 0 unchanged, 0 deleted"
    with db.connect() as conn:
        rows = conn.execute(select(Staff.email, Staff.supervisor_id).order_by(Staff.id)).all()
    assert [tuple(r) for r in rows] == [
        ("wei.wang@aftersales.example", None),
        ("na.li@aftersales.example", None),
        ("min.zhao@aftersales.example", 2),
    ]


def test_a_plain_import_says_deletions_take_upsert(db: Engine, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "plain", {"branches": "code,_delete\nSH-01,true\n"})

    with pytest.raises(ImportDataError) as caught:
        import_dir(db, folder)

    [problem] = [p for p in caught.value.problems if "_delete" in p.message]
    assert problem.hint is not None
    assert "--upsert" in problem.hint


def test_a_key_column_that_may_be_empty_may_be_left_out(db: Engine, tmp_path: Path) -> None:
    _fed(db, tmp_path)
    calls = _folder(
        tmp_path / "calls",
        {
            # No caller_phone column: the calls count as having none.
            "hotline_calls": """
                branch_id,received_at,answered
                1,2026-11-23T10:06:00+08:00,true
                1,2026-11-23T10:05:00+08:00,false
            """,
        },
    )

    counts = upsert_dir(db, calls)

    # The 10:06 call had no number: found; the 10:05 one had a number: another call.
    assert str(counts["hotline_calls"]) == "1 inserted, 0 updated, 1 already present, 0 deleted"


def test_a_feed_sets_a_complaints_handling_deadline_and_a_repairs_new_expected_date(
    db: Engine, tmp_path: Path
) -> None:
    _fed(db, tmp_path)
    delta = {
        "complaints": """
            number,accepted_at,handling_due_at
            CP-1,2026-11-22T09:00:00Z,2026-11-27T18:00:00+08:00
        """,
        "service_requests": """
            number,needs_parts,expected_at
            SR-1,true,2026-12-04T18:00:00+08:00
        """,
    }
    counts = upsert_dir(db, _folder(tmp_path / "delta", delta))

    assert _said(counts)["complaints"] == "0 inserted, 1 updated, 0 unchanged, 0 deleted"
    with db.connect() as conn:
        due = conn.scalar(select(Complaint.handling_due_at).where(Complaint.number == "CP-1"))
        expected = conn.scalar(
            select(ServiceRequest.expected_at).where(ServiceRequest.number == "SR-1")
        )
    assert due == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert expected == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
