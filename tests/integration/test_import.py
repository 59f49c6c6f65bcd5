"""`aftersales import DIR`: one CSV per table, converted by column type, all or nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from engine.db.importer import MAX_PROBLEMS, import_dir
from engine.db.models import SERVICE_TABLES, Branch, Contract, ServiceRequest, Staff
from engine.errors import ImportDataError, UsageError

Table = tuple[list[str], list[list[str]]]


_GOOD = {
    "branches": """
id,code,name,timezone,country,calendar,locale,email
1,SH-01,上海市区服务中心,Asia/Shanghai,CN,cn-office,zh-CN,sh@aftersales.example
2,MAD-01,Servicio Técnico Madrid,Europe/Madrid,ES,es-madrid,es,
""",
    # The technician comes before the team lead they report to.
    "staff": """
id,branch_id,name,email,role,supervisor_id,locale,active
1,1,王伟,wei.wang@aftersales.example,technician,2,zh-CN,
2,1,李娜,na.li@aftersales.example,team_lead,,zh-CN,yes
3,2,Ana López,,sales_rep,,es,true
""",
    "customers": """
id,branch_id,name,email,phone,locale,region,address
1,1,陈静,jing.chen@cn.example.com,,zh-CN,urban,上海市
2,2,"Hostal Sol, S.L.",,+34 600 000 000,es,suburban,
""",
    "products": """
id,model,name,category
1,AC-KFR35,Split air conditioner 3.5 kW,air_conditioner
""",
    "units": """
id,product_id,customer_id,branch_id,serial_number,purchased_on,proof_of_purchase,installed_on,manufactured_on
1,1,1,1,ACKFR35250100000001,2025-06-01,1,2025-06-03,
2,1,2,2,ACKFR35250100000002,,no,,2025-01-15
""",
    "contracts": """
id,number,customer_id,branch_id,unit_id,kind,status,starts_on,ends_on,sales_rep_id,renewal_of_id,renewed_at,amount,currency
1,MC-1,2,2,2,maintenance,renewed,2025-01-01,2025-12-31,3,,2025-12-01T10:00:00+01:00,1200.50,EUR
2,MC-2,2,2,2,maintenance,active,2026-01-01,2026-12-31,3,1,,1250,EUR
""",
    "service_requests": """
id,number,branch_id,customer_id,unit_id,technician_id,kind,category,region,status,received_at,dispatched_at,promised_at,needs_parts,repeat_of_id
1,SR-1,1,1,1,1,repair,free,urban,dispatched,2026-11-23T09:30:00+08:00,2026-11-23T02:00:00Z,2026-11-24T09:30:00+08:00,false,
2,SR-2,1,1,1,,repair,,urban,received,2026-11-23T10:00:00+08:00,,,,1
""",
    "status_changes": """
service_request_id,status,changed_at,note
1,received,2026-11-23T01:30:00Z,
1,dispatched,2026-11-23T02:00:00Z,派工
2,received,2026-11-23T02:00:00Z,
""",
    "complaints": """
id,number,branch_id,customer_id,service_request_id,kind,severity,status,received_at,verified,compensation,currency
1,CP-1,1,1,1,claim,serious,open,2026-11-22T08:00:00Z,0,,
""",
    "surveys": """
branch_id,service_request_id,technician_id,surveyed_at,attitude
1,1,1,2026-11-24T10:00:00+08:00,4
""",
    "hotline_calls": """
branch_id,received_at,answered,on_duty_staff_id,duration_s
1,2026-10-14T10:05:00+08:00,false,1,

2,2026-10-14T23:10:00+02:00,true,,95
""",
    "inspections": """
branch_id,contract_id,technician_id,inspected_on,falsified
2,2,3,2026-10-15,no
""",
}  # fmt: skip
"""A small, valid data set touching all twelve tables, as the files would read."""


def _good() -> dict[str, Table]:
    tables = {}
    for name, body in _GOOD.items():
        header, *rows = csv.reader(io.StringIO(body.strip()))
        tables[name] = (header, rows)
    return tables


def _write(directory: Path, tables: dict[str, Table], *, bom: bool = True) -> Path:
    directory.mkdir(exist_ok=True)
    for index, (name, (header, rows)) in enumerate(tables.items()):
        encoding = "utf-8-sig" if bom and index == 0 else "utf-8"
        with (directory / f"{name}.csv").open("w", encoding=encoding, newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return directory


def _set(tables: dict[str, Table], table: str, row: int, column: str, value: str) -> None:
    header, rows = tables[table]
    rows[row][header.index(column)] = value


def _total_rows(db: Engine) -> int:
    with db.connect() as conn:
        return sum(
            conn.execute(select(func.count()).select_from(m.__table__)).scalar_one()
            for m in SERVICE_TABLES
        )


def test_good_directory_imports_every_table(db: Engine, tmp_path: Path) -> None:
    counts = import_dir(db, _write(tmp_path / "csv", _good()))

    # (the blank line in hotline_calls.csv is not a row)
    assert counts == {name: len([r for r in rows if r]) for name, (_h, rows) in _good().items()}
    with db.connect() as conn:
        request = conn.execute(select(ServiceRequest).where(ServiceRequest.id == 1)).one()
        assert request.received_at == datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
        assert request.needs_parts is False
        assert request.category == "free"
        repeat = conn.execute(select(ServiceRequest).where(ServiceRequest.id == 2)).one()
        assert repeat.repeat_of_id == 1
        assert repeat.human_damage is False  # empty cell: the column's default
        tech = conn.execute(select(Staff).where(Staff.id == 1)).one()
        assert tech.supervisor_id == 2  # linked although the lead came later in the file
        assert tech.active is True
        contract = conn.execute(select(Contract).where(Contract.id == 1)).one()
        assert contract.amount == Decimal("1200.50")
        assert contract.renewed_at == datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
        assert contract.starts_on == date(2025, 1, 1)
        branch = conn.execute(select(Branch).where(Branch.id == 1)).one()
        assert branch.name == "上海市区服务中心"  # the BOM did not end up in the header


def test_rows_added_after_an_import_get_fresh_ids(db: Engine, tmp_path: Path) -> None:
    import_dir(db, _write(tmp_path / "csv", _good()))
    with db.begin() as conn:
        new_id = conn.execute(
            insert(Branch.__table__)
            .values(code="TPE-01", name="台北", timezone="Asia/Taipei", country="TW", locale="en")
            .returning(Branch.__table__.c.id)
        ).scalar_one()
    assert new_id == 3


def _rejected(db: Engine, tmp_path: Path, tables: dict[str, Table]) -> ImportDataError:
    with pytest.raises(ImportDataError) as caught:
        import_dir(db, _write(tmp_path / "csv", tables))
    assert _total_rows(db) == 0, "a rejected import must leave nothing behind"
    return caught.value


@pytest.mark.parametrize(
    ("table", "row", "column", "value", "line", "words"),
    [
        ("service_requests", 1, "received_at", "2026-11-23 10:00:00", 3, ["no UTC offset"]),
        ("service_requests", 0, "status", "done", 2, ["'done' is not allowed"]),
        ("customers", 1, "name", "", 3, ["a value is required"]),
        ("units", 1, "customer_id", "99", 3, ["no customers row has id 99"]),
        ("staff", 0, "supervisor_id", "42", 2, ["no staff row has id 42"]),
        ("branches", 1, "code", "SH-01", 3, ["'SH-01' already exists"]),
        ("units", 0, "purchased_on", "01/06/2025", 2, ["not a date"]),
        ("hotline_calls", 0, "answered", "maybe", 2, ["not a boolean"]),
        ("contracts", 0, "amount", "1200.505", 2, ["more than 2 decimals"]),
        ("products", 0, "model", "X" * 41, 2, ["at most 40"]),
    ],
)
def test_bad_cell_rejects_the_whole_import(
    db: Engine,
    tmp_path: Path,
    table: str,
    row: int,
    column: str,
    value: str,
    line: int,
    words: list[str],
) -> None:
    tables = _good()
    _set(tables, table, row, column, value)

    error = _rejected(db, tmp_path, tables)

    [problem] = error.problems
    assert Path(problem.location.file).name == f"{table}.csv"
    assert problem.location.line == line
    assert f"column {column}" in problem.message
    for word in words:
        assert word in problem.message
    assert f"{table}.csv:{line}" in str(error)


def test_naive_timestamp_hint_says_how_to_add_the_offset(db: Engine, tmp_path: Path) -> None:
    tables = _good()
    _set(tables, "complaints", 0, "received_at", "2026-11-22T08:00:00")

    [problem] = _rejected(db, tmp_path, tables).problems

    assert problem.hint is not None
    assert "Z" in problem.hint
    assert "+08:00" in problem.hint


def test_unknown_and_missing_header_columns(db: Engine, tmp_path: Path) -> None:
    tables = _good()
    header, rows = tables["products"]
    tables["products"] = ([*header, "colour"], [[*r, "white"] for r in rows])
    header, rows = tables["customers"]
    keep = [i for i, name in enumerate(header) if name != "region"]
    tables["customers"] = ([header[i] for i in keep], [[r[i] for i in keep] for r in rows])

    problems = _rejected(db, tmp_path, tables).problems

    by_file = {Path(p.location.file).name: p for p in problems}
    assert "unknown column 'colour'" in by_file["products.csv"].message
    assert by_file["products.csv"].location.line == 1
    assert by_file["products.csv"].hint is not None
    assert "category" in by_file["products.csv"].hint
    assert "region" in by_file["customers.csv"].message
    assert by_file["customers.csv"].location.line == 1


def test_unknown_file_name_lists_the_tables(db: Engine, tmp_path: Path) -> None:
    tables = _good()
    tables["branch"] = tables.pop("branches")

    [problem] = _rejected(db, tmp_path, tables).problems

    assert Path(problem.location.file).name == "branch.csv"
    assert problem.hint is not None
    assert "branches.csv" in problem.hint
    assert "inspections.csv" in problem.hint


def test_every_bad_row_is_reported_once(db: Engine, tmp_path: Path) -> None:
    tables = _good()
    _set(tables, "service_requests", 0, "region", "downtown")
    _set(tables, "service_requests", 1, "received_at", "yesterday")
    _set(tables, "hotline_calls", 2, "duration_s", "1.5")  # after the blank line

    problems = _rejected(db, tmp_path, tables).problems

    assert [(Path(p.location.file).name, p.location.line) for p in problems] == [
        ("service_requests.csv", 2),
        ("service_requests.csv", 3),
        ("hotline_calls.csv", 4),
    ]


def test_directory_without_csv_files_is_a_usage_error(db: Engine, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"branches\.csv"):
        import_dir(db, tmp_path)


def test_a_hopeless_file_stops_after_max_problems(db: Engine, tmp_path: Path) -> None:
    tables = _good()
    header = tables["hotline_calls"][0]
    tables["hotline_calls"] = (header, [["1", "yesterday", "no", "", ""]] * (MAX_PROBLEMS + 10))

    problems = _rejected(db, tmp_path, tables).problems

    assert len(problems) == MAX_PROBLEMS + 1
    assert f"stopped after {MAX_PROBLEMS} problems" in problems[-1].message
