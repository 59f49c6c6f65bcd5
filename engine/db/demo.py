"""Demo data built around one instant, so that a nightly run at that instant always has work.

`load_demo(engine, as_of, scale=N, seed=S)` fills the twelve service tables: four branches
(Shanghai urban, Shanghai Songjiang suburban, Taipei, Madrid), staff in every role plus head
office, customers writing in zh-CN, zh-TW, es and en, units, contracts, service requests in every
status with their status history, complaints, surveys, hotline calls and inspections, and for
the penalty and reward tallies last month's improvements and last quarter's targets. The same
(as_of, scale, seed) gives the same rows on every database; nothing reads the wall clock.

Volume: scale 1 is exactly 300 service requests; each further unit adds 300 more with
customers, units, contracts, complaints, surveys, hotline calls and inspections in proportion
(`scale_for_requests(1_000_000)` is 3334). A branch takes at most BLOCKS_PER_BRANCH blocks;
beyond that the four branches open again ("SH-01-2", ...), so a team stays a team at any scale
and a notice to a branch role reaches as many people at 1M requests as at 15k. Every tenth block
of 300 requests also carries the fixed scenarios (calls near their deadline, contracts about to
end, overdue complaints, ...), so those grow with the data without drowning it. Rows are
generated block by block and written in chunks, so memory stays flat at any scale.

Times are generated as integer seconds (branch-local wall clock for the office-hours logic, UTC
epoch seconds in rows): about ten million instants at the benchmark scale make datetime objects
the bottleneck. The writers convert at the edge: SQLite formats them itself with
`datetime(?, 'unixepoch')` (the storage format of `UtcDateTime`), PostgreSQL gets COPY.
"""

from __future__ import annotations

import itertools
import math
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Engine,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    insert,
    select,
    text,
)

from engine.db.changes import current_version, drop_triggers_sql, install_triggers, tracked_tables
from engine.db.importer import after_bulk_load
from engine.db.models import SERVICE_TABLES
from engine.db.types import UtcDateTime
from engine.errors import UsageError

__all__ = ["DEMO_SCALE", "REQUESTS_PER_SCALE", "load_demo", "scale_for_requests"]

REQUESTS_PER_SCALE = 300
"""Service requests per unit of `scale`."""

SCENARIO_EVERY = 10
"""Every this-many-th block of 300 requests carries the fixed scenarios (block 0 always does)."""

BLOCKS_PER_BRANCH = 50
"""Blocks one branch takes (15,000 requests at the largest); beyond, another branch opens."""

CHUNK_ROWS = 40_000
"""Rows buffered (all tables together) before they are written."""

DEMO_SCALE = 8
"""The scale of `aftersales init --demo` and of preview's sample night: 2,400 calls, enough that
a branch's month has dozens of repair calls, so the scenarios' handful of complaints reads as a
few per 100 calls (scale 1 has about five repair calls per branch and month)."""

COMPLAINT_EVERY = 40
"""Calls per complaint in the bulk data (the scenarios add theirs): with them a branch sees a
few complaints per 100 repair calls, as a real department does."""

REPEAT_SHARE = 0.15
"""Completed calls whose fault comes back (a repeat call): first-time fix around 85-90 %."""

DAY = 86_400
HOUR = 3_600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Office time used to place scenario events "N working hours before as_of" (holidays ignored:
# the demo only needs to land near the policy's deadlines, not exactly on them).
_OFFICE_SPANS = ((9 * HOUR, 12 * HOUR), (13 * HOUR, 18 * HOUR))


def scale_for_requests(requests: int) -> int:
    """The smallest scale giving at least `requests` service requests (300 per unit)."""
    return max(1, math.ceil(requests / REQUESTS_PER_SCALE))


def load_demo(engine: Engine, as_of: datetime, *, scale: int = 1, seed: int = 7) -> dict[str, int]:
    """Fill an empty service database with demo data around `as_of`; returns rows per table."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise UsageError(f"as_of {as_of.isoformat()} has no time zone; give e.g. ...Z or +08:00")
    if scale < 1:
        raise UsageError(f"scale must be at least 1, not {scale}")
    with engine.begin() as conn:
        _refuse_non_empty(conn)
        foreign_keys = _suspend_foreign_keys(conn)  # a failure rolls these back with the rest
        version_indexes = _suspend_change_markers(conn)
        cache = _widen_sqlite_cache(conn)
        try:
            writer = _Writer(conn)
            _Demo(as_of, scale, seed, writer).generate()
            writer.close()
        finally:
            for statement in cache:  # the pooled connection outlives the load
                conn.exec_driver_sql(statement)
        for statement in foreign_keys:
            conn.exec_driver_sql(statement)
        for index in version_indexes:
            index.create(conn)
        install_triggers(conn)
        after_bulk_load(conn, list(_TABLES))
    return writer.counts


def _refuse_non_empty(conn: Connection) -> None:
    for model in SERVICE_TABLES:
        table = model.__table__
        if conn.execute(select(table.c.id).limit(1)).first() is not None:
            raise UsageError(
                f"demo data already present: table {table.name} is not empty; "
                "the demo loads only into an empty service database"
            )


def _suspend_foreign_keys(conn: Connection) -> list[str]:
    """PostgreSQL: drop the service tables' foreign keys; returns the statements to restore them.

    Row-by-row foreign key triggers cost PostgreSQL about twice as much as the COPY itself
    (scale 100: 12.7 s with them, 4.5 s + 0.25 s to add them back, checked in one pass each).
    DDL is transactional there, so a failed load rolls the constraints back too, and adding
    them back checks every row, so a bad reference still fails the load.
    """
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        text(
            "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname), "
            "format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, "
            "pg_get_constraintdef(oid)) "
            "FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = ANY(CAST(:tables AS regclass[])) ORDER BY conrelid, conname"
        ),
        {"tables": list(_TABLES)},
    ).all()
    for drop, _add in rows:
        conn.exec_driver_sql(drop)
    return [add for _drop, add in rows]


def _suspend_change_markers(conn: Connection) -> list[Index]:
    """Drop the change triggers and row_version indexes for the load; returns the indexes.

    The writer stamps every row itself. With the triggers in place the SQLite load at 100k
    requests took 11.3 s instead of 7.0 s, though their WHEN clause skips stamped rows; on
    PostgreSQL the fifteen indexes on one repeated value cost more to keep than to build once.
    In the load's transaction: no other writer slips a row in meanwhile, and a failed load
    gets them back with the rollback.
    """
    for statement in drop_triggers_sql(conn.dialect.name, tracked_tables()):
        conn.exec_driver_sql(statement)
    indexes = [i for t in _TABLES.values() for i in t.indexes if i.name in _VERSION_INDEXES]
    for index in indexes:
        index.drop(conn)
    return indexes


def _widen_sqlite_cache(conn: Connection) -> list[str]:
    """SQLite: a 128 MiB page cache for the load; returns the statement restoring the old one.

    The indexes on received_at are filled in random order; with the default 2 MiB cache the
    one big transaction spills the same pages to the WAL again and again (scale 334: 445 MB
    written instead of 196 MB, 19.0 s instead of 16.9 s).
    """
    if conn.dialect.name != "sqlite":
        return []
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql("PRAGMA cache_size=-131072")
    return [f"PRAGMA cache_size={int(previous)}"]


# ---------------------------------------------------------------- writing rows

# The columns each generator fills, in tuple order; columns added to the models later simply
# get their default.
_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(columns.split())
    for table, columns in {
        "branches": "id code name timezone country calendar locale email",
        "staff": "id branch_id name email role supervisor_id locale active",
        "customers": "id branch_id name email phone locale region address",
        "products": "id model name category",
        "units": "id product_id customer_id branch_id serial_number purchased_on "
        "proof_of_purchase installed_on manufactured_on",
        "contracts": "id number customer_id branch_id unit_id kind status starts_on ends_on "
        "sales_rep_id renewal_of_id renewed_at amount currency final_acceptance_on",
        "service_requests": "id number branch_id customer_id unit_id technician_id kind "
        "category region status fault_part description human_damage unauthorised_repair "
        "needs_parts factory_return repeat_of_id received_at dispatched_at arrived_at "
        "promised_at completed_at collected_at expected_at",
        "status_changes": "id service_request_id status changed_at note",
        "complaints": "id number branch_id customer_id service_request_id kind severity status "
        "received_at accepted_at first_reply_at closed_at visited_at handling_due_at "
        "responsible_staff_id responsible_department verified repeat_of_id customer_satisfied "
        "outcome compensation currency",
        "surveys": "id branch_id service_request_id technician_id surveyed_at attitude skill "
        "punctuality promise_keeping comment",
        "hotline_calls": "id branch_id received_at answered on_duty_staff_id caller_phone "
        "duration_s",
        "inspections": "id branch_id contract_id technician_id inspected_on report_submitted_at "
        "falsified notes",
        "improvements": "id branch_id staff_id title proposed_on approved_at effective "
        "reward_amount",
        "targets": "id branch_id staff_id period_start item target actual",
        "work_records": "id branch_id kind contract_id customer_id staff_id done_on submitted_at "
        "notes",
    }.items()
}

_TABLES = {m.__tablename__: m.__table__ for m in SERVICE_TABLES}
_ORDER = tuple(_TABLES)
_VERSION_INDEXES = frozenset(f"ix_{name}_row_version" for name in _TABLES)


def _positions(table: str, kind: type) -> tuple[int, ...]:
    cols = _TABLES[table].c
    if kind is UtcDateTime:
        return tuple(
            i for i, n in enumerate(_COLUMNS[table]) if isinstance(cols[n].type, UtcDateTime)
        )
    return tuple(
        i
        for i, n in enumerate(_COLUMNS[table])
        if not isinstance(cols[n].type, UtcDateTime) and cols[n].type.python_type is kind
    )


class _Writer:
    """Buffers rows per table and writes every table, in dependency order, once enough piled up.

    Flushing all tables together keeps foreign keys satisfied row by row (a row only points at
    rows generated before it), which SQLite checks per statement and PostgreSQL per row.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.counts = dict.fromkeys(_ORDER, 0)
        # Generators append to these lists directly; they are emptied in place on flush.
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in _ORDER}
        dialect = conn.dialect.name
        self._write: Callable[[str, list[tuple[Any, ...]]], None]
        if dialect == "sqlite":
            self._write = self._write_sqlite
        elif dialect == "postgresql" and conn.dialect.driver == "psycopg":
            self._write = self._write_copy
        else:
            self._write = self._write_core
        self._instants = {t: _positions(t, UtcDateTime) for t in _ORDER}
        self._dates = {t: _positions(t, date) for t in _ORDER}
        self._decimals = {t: _positions(t, Decimal) for t in _ORDER}
        # Rows are stamped here with the transaction's change marker, so the triggers skip them
        # (on PostgreSQL a per-row function call, about a fifth of the COPY time).
        self.version = current_version(conn)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Queue one row (columns as in `_COLUMNS[table]`, instants as UTC epoch seconds)."""
        self.rows[table].append(row)

    def maybe_flush(self) -> None:
        """Write everything if the buffers hold at least CHUNK_ROWS rows."""
        if sum(map(len, self.rows.values())) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row, parents before children."""
        for table in _ORDER:
            rows = self.rows[table]
            if rows:
                self._write(table, rows)
                self.counts[table] += len(rows)
                rows.clear()

    def close(self) -> None:
        """Write what is left."""
        self.flush()

    # SQLite: the DB-API cursor of the SQLAlchemy connection (same transaction), with SQLite
    # formatting instants itself (300k status_changes: Core executemany with the Python-side
    # UtcDateTime processing 6.6 s, this 3.3 s; it matters at ten million rows).
    def _write_sqlite(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        instants, dates, decimals = self._instants[table], self._dates[table], self._decimals[table]
        cols = _COLUMNS[table]
        marks = ", ".join(
            "datetime(?, 'unixepoch')" if i in instants else "?" for i in range(len(cols))
        )
        sql = (
            f'INSERT INTO "{table}" ({", ".join(cols)}, row_version) '
            f"VALUES ({marks}, {self.version:d})"
        )
        if dates or decimals:
            rows = [_sqlite_values(r, dates, decimals) for r in rows]
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    # PostgreSQL: binary COPY on the same connection and transaction. Measured on 300k rows:
    # executemany 13 s, text COPY 4.5 s, binary COPY with declared types 0.7 s.
    def _write_copy(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        instants, cols = self._instants[table], _COLUMNS[table]
        sql = f'COPY "{table}" ({", ".join(cols)}, row_version) FROM STDIN (FORMAT BINARY)'
        version = self.version
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(sql) as copy:
                copy.set_types([*(_pg_type(_TABLES[table].c[c]) for c in cols), "int8"])
                for row in rows:
                    copy.write_row(
                        (*(_with_datetimes(row, instants) if instants else row), version)
                    )
        finally:
            cursor.close()

    def _write_core(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        cols, instants = _COLUMNS[table], self._instants[table]
        params = [
            dict(zip(cols, _with_datetimes(r, instants), strict=True), row_version=self.version)
            for r in rows
        ]
        self.conn.execute(insert(_TABLES[table]), params)


def _sqlite_values(
    row: tuple[Any, ...], dates: tuple[int, ...], decimals: tuple[int, ...]
) -> list[Any]:
    values = list(row)
    for i in dates:
        if values[i] is not None:
            values[i] = values[i].isoformat()
    for i in decimals:
        if values[i] is not None:
            values[i] = float(values[i])  # what SQLAlchemy's Numeric stores on SQLite
    return values


def _pg_type(column: Column[Any]) -> str:
    """The PostgreSQL type name binary COPY must declare for a column (it must match exactly)."""
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return "timestamptz"
    for sa_type, name in (
        (Boolean, "bool"),
        (Date, "date"),
        (BigInteger, "int8"),
        (Integer, "int4"),
        (Numeric, "numeric"),
        (Text, "text"),
        (String, "varchar"),
    ):
        if isinstance(kind, sa_type):
            return name
    raise TypeError(f"no COPY type for {column} ({kind})")


def _with_datetimes(row: tuple[Any, ...], instants: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for i in instants:
        if values[i] is not None:
            values[i] = datetime.fromtimestamp(values[i], UTC)
    return values


# ---------------------------------------------------------------- reference data

# (hanzi, pinyin) pairs so Chinese names get ASCII email addresses.
_CN_SURNAMES = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin"),
)  # fmt: skip
_CN_GIVEN = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("涛", "tao"), ("明", "ming"), ("秀英", "xiuying"), ("建华", "jianhua"),
    ("志强", "zhiqiang"), ("海燕", "haiyan"), ("文博", "wenbo"), ("子涵", "zihan"),
)  # fmt: skip
_TW_SURNAMES = (
    ("陳", "chen"), ("林", "lin"), ("黃", "huang"), ("張", "chang"), ("李", "lee"), ("王", "wang"),
    ("吳", "wu"), ("劉", "liu"), ("蔡", "tsai"), ("楊", "yang"), ("許", "hsu"), ("鄭", "cheng"),
    ("謝", "hsieh"), ("郭", "kuo"), ("洪", "hung"), ("曾", "tseng"),
)  # fmt: skip
_TW_GIVEN = (
    ("怡君", "yichun"), ("雅婷", "yating"), ("家豪", "chiahao"), ("志明", "chihming"),
    ("俊傑", "chunchieh"), ("淑芬", "shufen"), ("美玲", "meiling"), ("建宏", "chienhung"),
    ("冠宇", "kuanyu"), ("宗翰", "tsunghan"), ("詩涵", "shihhan"), ("欣怡", "hsinyi"),
)  # fmt: skip
_ES_GIVEN = (
    "María", "José", "Antonio", "Carmen", "Manuel", "Ana", "Francisco", "Laura", "David",
    "Lucía", "Javier", "Marta", "Carlos", "Elena", "Pablo", "Sofía", "Álvaro", "Nuria",
)  # fmt: skip
_ES_SURNAMES = (
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
    "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
)  # fmt: skip
_EN_GIVEN = (
    "James", "Emma", "Oliver", "Sophie", "Daniel", "Hannah", "Michael", "Grace", "Thomas",
    "Olivia", "David", "Charlotte", "Ryan", "Amelia",
)  # fmt: skip
_EN_SURNAMES = (
    "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Clarke", "Walker", "Wright", "Hughes",
    "Evans", "Harris", "Lewis", "O'Neill", "Murphy",
)  # fmt: skip

_COMPANIES = {
    "zh-CN": (
        (("华强", "huaqiang"), ("东方", "dongfang"), ("金桥", "jinqiao"), ("瑞丰", "ruifeng"),
         ("宏达", "hongda"), ("恒通", "hengtong")),
        ("物业管理有限公司", "科技有限公司", "医疗器械有限公司", "酒店管理有限公司"),
    ),
    "zh-TW": (
        (("台灣大同", "tatung"), ("信義", "xinyi"), ("永豐", "yungfeng"), ("國泰", "cathay")),
        ("股份有限公司", "實業有限公司", "診所"),
    ),
    "es": (
        (("Hostal Sol", "hostalsol"), ("Clínica Retiro", "clinicaretiro"),
         ("Talleres Vallecas", "talleresvallecas"), ("Oficinas Castellana", "castellana")),
        ("S.L.", "S.A."),
    ),
    "en": (
        (("Brightside Dental", "brightside"), ("Harbour View Hotel", "harbourview"),
         ("Northwind Labs", "northwind")),
        ("Ltd", "Co."),
    ),
}  # fmt: skip

_CUSTOMER_DOMAINS = {
    "zh-CN": "cn.example.com",
    "zh-TW": "tw.example.com",
    "es": "es.example.com",
    "en": "example.com",
}

_DESCRIPTIONS = {
    "zh-CN": ("设备不工作", "有异响", "显示故障代码", "漏水", "开机后自动关机", "读数不准"),
    "zh-TW": ("設備無法運作", "有異音", "顯示錯誤代碼", "漏水", "開機後自動關機", "讀數不準"),
    "es": ("No funciona", "Hace ruido", "Muestra un código de error", "Pierde agua",
           "Se apaga solo", "Mide mal"),
    "en": ("Not working", "Makes a noise", "Shows an error code", "Leaking water",
           "Switches itself off", "Readings are off"),
}  # fmt: skip

_OUTCOMES = {
    "zh-CN": ("已上门返修并致歉", "已更换新机", "已按合同赔偿"),
    "zh-TW": ("已到府重修並致歉", "已更換新機", "已依合約賠償"),
    "es": ("Reparación repetida y disculpas", "Equipo sustituido", "Compensación según contrato"),
    "en": ("Repaired again with an apology", "Unit replaced", "Compensated under the contract"),
}

# The department a complaint is routed to when accepted: a role the policy declares
# (rules/roles.yaml), whose holders get its urge and inquiry notices (002 八).
_DEPARTMENTS = ("quality", "warehouse", "production", "marketing")
# Declared by the seeds, held at head office: the HQ service department (000 art.20) and the
# departments complaints are routed to; the first branch has its own quality person.
_HEAD_OFFICE_DEPARTMENTS = ("service_manager", "general_manager", "hr", *_DEPARTMENTS)

_SURVEY_COMMENTS = {
    "zh-CN": ("师傅很专业", "来得有点晚", "态度很好", "问题没有彻底解决"),
    "zh-TW": ("師傅很專業", "來得有點晚", "態度很好", "問題沒有完全解決"),
    "es": ("Muy profesional", "Llegó tarde", "Muy amable", "El problema sigue"),
    "en": ("Very professional", "Came a bit late", "Friendly", "Problem not fully fixed"),
}

# (model, name, category, fault parts, warranty-relevant fields are on units)
_PRODUCTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("AC-KFR35", "Split air conditioner 3.5 kW", "air_conditioner",
     ("compressor", "fan", "board", "refrigerant", "remote")),
    ("AC-KFR72", "Floor-standing air conditioner 7.2 kW", "air_conditioner",
     ("compressor", "fan", "board", "refrigerant")),
    ("AC-VRF160", "VRF outdoor unit 16 kW", "air_conditioner",
     ("compressor", "board", "valve", "refrigerant")),
    ("AC-CAS50", "Cassette air conditioner 5 kW", "air_conditioner",
     ("fan", "board", "drain_pump")),
    ("IN-PH200", "Laboratory pH meter", "instrument", ("sensor", "display", "board")),
    ("IN-SP700", "UV-Vis spectrophotometer", "instrument",
     ("lamp", "detector", "board", "calibration")),
    ("IN-BAL22", "Analytical balance", "instrument", ("load_cell", "display", "calibration")),
    ("IN-GC900", "Gas chromatograph", "instrument", ("column", "detector", "board", "valve")),
    ("FU-DSK14", "Height-adjustable desk", "furniture", ("motor", "frame", "control_panel")),
    ("FU-CHR08", "Ergonomic office chair", "furniture", ("gas_lift", "armrest", "frame")),
    ("FU-CAB30", "Filing cabinet", "furniture", ("lock", "rail", "frame")),
    ("FU-SOF03", "Three-seat sofa", "furniture", ("upholstery", "frame", "cushion")),
    ("WH-ELE60", "Electric water heater 60 L", "water_heater",
     ("heating_element", "thermostat", "valve")),
    ("WH-GAS16", "Gas water heater 16 L", "water_heater", ("igniter", "valve", "board")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _BranchSpec:
    code: str
    name: str
    timezone: str
    country: str
    calendar: str
    locale: str
    currency: str
    requests: int  # per block; the four add up to REQUESTS_PER_SCALE
    english_share: float  # customers writing in English
    urban_share: float
    technicians: int  # at scale 1
    urban_districts: tuple[str, ...]
    suburban_districts: tuple[str, ...]
    roads: tuple[str, ...]
    address: str  # format with district, road, number
    phone: str  # format with two random numbers


_BRANCHES = (
    _BranchSpec(
        "SH-01", "上海市区服务中心", "Asia/Shanghai", "CN", "cn-office", "zh-CN", "CNY",
        105, 0.2, 0.85, 8,
        ("黄浦区", "徐汇区", "静安区", "浦东新区", "长宁区"),
        ("闵行区", "宝山区"),
        ("南京西路", "淮海中路", "延安西路", "世纪大道", "漕溪北路"),
        "上海市{district}{road}{number}号", "+86 139 {a:04d} {b:04d}",
    ),
    _BranchSpec(
        "SH-SJ", "上海松江服务站", "Asia/Shanghai", "CN", "cn-office", "zh-CN", "CNY",
        60, 0.1, 0.2, 5,
        ("松江区",),
        ("松江区", "青浦区", "金山区", "奉贤区"),
        ("人民北路", "新松江路", "城鸿路", "沪松公路"),
        "上海市{district}{road}{number}号", "+86 137 {a:04d} {b:04d}",
    ),
    _BranchSpec(
        "TPE-01", "台北服務中心", "Asia/Taipei", "TW", "tw-office", "zh-TW", "TWD",
        75, 0.15, 0.7, 6,
        ("大安區", "信義區", "中山區", "松山區"),
        ("新北市淡水區", "新北市三峽區", "新北市汐止區"),
        ("忠孝東路", "仁愛路", "敦化南路", "民生東路"),
        "台北市{district}{road}{number}號", "+886 9{a:02d} {b:03d} 123",
    ),
    _BranchSpec(
        "MAD-01", "Servicio Técnico Madrid", "Europe/Madrid", "ES", "es-madrid", "es", "EUR",
        60, 0.15, 0.65, 5,
        ("Centro", "Salamanca", "Chamberí", "Retiro"),
        ("Alcalá de Henares", "Getafe", "Móstoles", "Alcobendas"),
        ("Calle de Alcalá", "Calle Mayor", "Paseo de la Castellana", "Calle de Atocha"),
        "{road} {number}, {district}, Madrid", "+34 6{a:02d} {b:03d} 412",
    ),
)  # fmt: skip
assert sum(b.requests for b in _BRANCHES) == REQUESTS_PER_SCALE

_IMPROVEMENTS = {
    "zh-CN": ("备件预约流程优化", "回访话术标准化", "工单自动派工规则"),
    "zh-TW": ("備件預約流程優化", "回訪話術標準化", "工單自動派工規則"),
    "es": ("Reserva de repuestos simplificada", "Guion de llamadas de seguimiento",
           "Asignación automática de avisos"),
    "en": ("Spare-part booking simplified", "Follow-up call script", "Automatic job dispatch"),
}  # fmt: skip
_TARGET_RATIOS = tuple(
    Decimal(r) for r in ("1.05", "1", "0.95", "0.9499", "0.97", "0.9", "0.85", "0.92")
)

# Request scenarios, placed backwards from as_of in office hours so they land near deadlines:
# (name, statuses, office hours between consecutive statuses, office hours spent in the last
#  status so far, flags). Flags: parts, factory, late_promise.
_Span = tuple[float, float]
_Scenario = tuple[str, tuple[str, ...], tuple[_Span, ...], _Span, frozenset[str]]
_R, _D, _O = "received", "dispatched", "on_site"
_SCENARIOS: tuple[_Scenario, ...] = (
    ("dispatch-warning", (_R,), (), (3.5, 5.5), frozenset()),
    ("dispatch-breach", (_R,), (), (8.0, 14.0), frozenset()),
    ("on-the-way", (_R, _D), ((0.5, 3.0),), (0.5, 2.0), frozenset()),
    ("promise-missed", (_R, _D, _O), ((0.5, 2.0), (1.0, 2.0)), (5.0, 9.0),
     frozenset({"late_promise"})),
    ("waiting-parts", (_R, _D, _O, "waiting_parts"), ((1.0, 3.0), (1.0, 2.0), (0.5, 2.0)),
     (40.0, 64.0), frozenset({"parts"})),
    ("waiting-customer", (_R, _D, _O, "waiting_customer"), ((1.0, 3.0), (1.0, 2.0), (0.5, 1.0)),
     (8.0, 24.0), frozenset()),
    ("factory-return", (_R, _D, _O, "factory_return"), ((1.0, 3.0), (1.0, 2.0), (1.0, 3.0)),
     (72.0, 120.0), frozenset({"parts", "factory"})),
    ("completed", (_R, _D, _O, "completed"), ((0.5, 3.0), (1.0, 2.0), (1.0, 4.0)),
     (2.0, 16.0), frozenset()),
    ("collected-yesterday", (_R, _D, _O, "completed", "collected"),
     ((0.5, 3.0), (1.0, 2.0), (1.0, 3.0), (0.5, 3.0)), (4.0, 10.0), frozenset()),
    ("collected-days-ago", (_R, _D, _O, "completed", "collected"),
     ((0.5, 3.0), (1.0, 2.0), (1.0, 3.0), (0.5, 3.0)), (24.0, 40.0), frozenset()),
    ("cancelled", (_R, "cancelled"), ((1.0, 6.0),), (8.0, 30.0), frozenset()),
    ("collected-after-parts", (_R, _D, _O, "waiting_parts", _O, "completed", "collected"),
     ((1.0, 3.0), (1.0, 2.0), (0.5, 2.0), (24.0, 56.0), (1.0, 3.0), (1.0, 8.0)), (8.0, 30.0),
     frozenset({"parts"})),
)  # fmt: skip


# ---------------------------------------------------------------- time helpers


def _office_back(t: int, seconds: float) -> int:
    """The local instant `seconds` of office time (Mon-Fri 09-12, 13-18) before local `t`."""
    remaining = int(seconds)
    day = t // DAY
    while True:
        if (day + 3) % 7 < 5:
            base = day * DAY
            for start, end in reversed(_OFFICE_SPANS):
                hi, lo = min(t, base + end), base + start
                if hi > lo:
                    if remaining <= hi - lo:
                        return hi - remaining
                    remaining -= hi - lo
        day -= 1


def _bump(t: int) -> int:
    """Move a local instant into field-service hours: 08:00-19:00, Monday to Saturday."""
    day, sec = divmod(t, DAY)
    if sec < 8 * HOUR:
        sec = 8 * HOUR + sec % HOUR
    elif sec >= 19 * HOUR:
        day += 1
        sec = 9 * HOUR + sec % HOUR
    if (day + 3) % 7 == 6:
        day += 1
    return day * DAY + sec


_NOTES = {"waiting_parts": "waiting for spare parts", "factory_return": "sent to the factory"}


def _rating(r: float) -> int:
    """A 1-4 rating from a number in [0, 1): mostly good, a few poor."""
    return 4 if r > 0.45 else 3 if r > 0.25 else 2 if r > 0.1 else 1


def _day(ordinal_day: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + ordinal_day)


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalnum() or c == ".")


@dataclass(slots=True)
class _Branch:
    """A branch while generating: its staff and a cache of UTC offsets per local day."""

    spec: _BranchSpec
    id: int
    code: str
    zone: ZoneInfo
    as_of_local: int
    blocks: int  # how many blocks of requests this branch takes
    technicians: list[int] = field(default_factory=list)
    operators: list[int] = field(default_factory=list)
    sales_reps: list[int] = field(default_factory=list)
    team_leads: list[int] = field(default_factory=list)
    supervisor: int | None = None
    projects: list[tuple[int, int, int]] = field(default_factory=list)  # contract, customer, day
    offsets: dict[int, int] = field(default_factory=dict)

    def utc(self, local: int) -> int:
        """UTC epoch seconds of a local wall-clock instant (offset taken at local noon)."""
        day = local // DAY
        off = self.offsets.get(day)
        if off is None:
            noon = datetime.fromtimestamp(day * DAY + 12 * HOUR, UTC).replace(tzinfo=None)
            delta = self.zone.utcoffset(noon)
            off = int(delta.total_seconds()) if delta is not None else 0
            self.offsets[day] = off
        return local - off


@dataclass(slots=True)
class _Customer:
    id: int
    locale: str
    region: str
    units: list[tuple[int, int, int | None, bool]]  # unit id, product index, purchase day, proof
    covered: list[tuple[int, int]] = field(default_factory=list)  # contract (first, last) days
    requests: list[int] = field(default_factory=list)


class _Demo:
    """Generates the rows block by block and hands them to the writer."""

    def __init__(self, as_of: datetime, scale: int, seed: int, writer: _Writer) -> None:
        self.as_of = int(as_of.astimezone(UTC).timestamp())
        self.scale = scale
        self.rng = random.Random(seed)
        self.out = writer
        self.ids = {t: itertools.count(1) for t in _ORDER}
        self.branches: list[_Branch] = []
        self.head_office: dict[str, int] = {}
        self.falsify_next = False
        self.block = 0  # the block being generated
        # Improvements and targets draw from their own stream, so adding them left every
        # other table exactly as it was for a given seed.
        self.tally_rng = random.Random(f"{seed}:tallies")
        self.work_rng = random.Random(f"{seed}:work")
        # The daily reports and the plans have theirs too, for the same reason.
        self.daily_rng = random.Random(f"{seed}:daily")

    def _next(self, table: str) -> int:
        return next(self.ids[table])

    def _between(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.rng.random()

    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.random() * len(seq))]

    # ------------------------------------------------------------ fixed parts

    def generate(self) -> None:
        """Write branches, staff and products, then `scale` blocks of customers and their work."""
        # A big operation has more branches, not thousand-strong teams: staff grows with a
        # branch's share of the data up to BLOCKS_PER_BRANCH, then the four open again.
        groups = math.ceil(self.scale / BLOCKS_PER_BRANCH)
        for group in range(groups):
            blocks = min(BLOCKS_PER_BRANCH, self.scale - group * BLOCKS_PER_BRANCH)
            for spec in _BRANCHES:
                self.branches.append(self._branch(spec, group, blocks))
        self._staff()
        for model, name, category, _parts in _PRODUCTS:
            self.out.add("products", (self._next("products"), model, name, category))
        for block in range(self.scale):
            self.block = block
            scenarios = block % SCENARIO_EVERY == 0
            group = self.branches[block // BLOCKS_PER_BRANCH * 4 :][:4]
            for branch in group:
                # One falsified inspection report per scenario block (the fine doubles).
                self.falsify_next = scenarios and branch is group[0]
                self._block(branch, scenarios)
            self.out.maybe_flush()
        for branch in self.branches:
            self._targets(branch)
            self._work_records(branch)
            self._daily_records(branch)
        self._departments()

    def _branch(self, spec: _BranchSpec, group: int, blocks: int) -> _Branch:
        zone = ZoneInfo(spec.timezone)
        offset = datetime.fromtimestamp(self.as_of, zone).utcoffset() or timedelta()
        local = self.as_of + int(offset.total_seconds())
        code = spec.code if group == 0 else f"{spec.code}-{group + 1}"
        name = spec.name if group == 0 else f"{spec.name} {group + 1}"
        branch = _Branch(spec, self._next("branches"), code, zone, local, blocks)
        email = f"service.{code.lower().replace('-', '')}@aftersales.example"
        self.out.add(
            "branches",
            (branch.id, code, name, spec.timezone, spec.country, spec.calendar, spec.locale, email),
        )
        return branch

    def _person(self, locale: str) -> tuple[str, str]:
        """A realistic name for the locale and the ASCII stem of an email address."""
        pick = self._pick
        if locale == "zh-CN":
            (sn, sp), (gn, gp) = pick(_CN_SURNAMES), pick(_CN_GIVEN)
            return sn + gn, f"{gp}.{sp}"
        if locale == "zh-TW":
            (sn, sp), (gn, gp) = pick(_TW_SURNAMES), pick(_TW_GIVEN)
            return sn + gn, f"{gp}.{sp}"
        if locale == "es":
            given, first, second = pick(_ES_GIVEN), pick(_ES_SURNAMES), pick(_ES_SURNAMES)
            return f"{given} {first} {second}", _ascii(f"{given}.{first}")
        given, last = pick(_EN_GIVEN), pick(_EN_SURNAMES)
        return f"{given} {last}", _ascii(f"{given}.{last}")

    def _add_staff(
        self,
        branch: _Branch | None,
        role: str,
        supervisor: int | None,
        locale: str,
        active: bool = True,
    ) -> int:
        staff_id = self._next("staff")
        name, stem = self._person(locale)
        self.out.add(
            "staff",
            (staff_id, branch.id if branch else None, name, f"{stem}.{staff_id}@aftersales.example",
             role, supervisor, locale, active),
        )  # fmt: skip
        return staff_id

    def _staff(self) -> None:
        """Head office, then each branch top-down so supervisors exist before their reports."""
        head = self.head_office
        head["vice_general_manager"] = self._add_staff(None, "vice_general_manager", None, "zh-CN")
        for role in ("sales_director", "operations", "accounting"):
            head[role] = self._add_staff(None, role, head["vice_general_manager"], "zh-CN")
        head["payroll"] = self._add_staff(None, "payroll", head["accounting"], "zh-CN")
        for branch in self.branches:
            spec, loc, extra = branch.spec, branch.spec.locale, branch.blocks - 1
            vgm = self._add_staff(branch, "vice_general_manager", head["vice_general_manager"], loc)
            director = self._add_staff(branch, "sales_director", head["sales_director"], loc)
            manager = self._add_staff(branch, "service_manager", vgm, loc)
            supervisor = self._add_staff(branch, "service_supervisor", manager, loc)
            branch.supervisor = supervisor
            self._add_staff(branch, "responsible_department", manager, loc)
            self._add_staff(branch, "case_management", manager, loc)
            self._add_staff(branch, "accounting", head["accounting"], loc)
            self._add_staff(branch, "payroll", head["payroll"], loc)
            self._add_staff(branch, "operations", head["operations"], loc)
            # Staff grows with the data: the base team of technicians again every 20 blocks.
            for _ in range(2 + extra // 50):
                branch.operators.append(
                    self._add_staff(branch, "hotline_operator", supervisor, loc)
                )
            for _ in range(2 + extra // 30):
                branch.sales_reps.append(self._add_staff(branch, "sales_rep", director, loc))
            technicians = spec.technicians + spec.technicians * extra // 20
            for _ in range(math.ceil(technicians / 6)):
                lead = self._add_staff(branch, "team_lead", supervisor, loc)
                branch.team_leads.append(lead)
                for _ in range(min(6, technicians - len(branch.technicians))):
                    branch.technicians.append(self._add_staff(branch, "technician", lead, loc))
            # Someone who left: recipients must skip inactive staff.
            self._add_staff(branch, "technician", lead, loc, active=False)

    def _departments(self) -> None:
        """Head office's departments, added last so the rest of the data stays as it was."""
        head = self.head_office
        for role in _HEAD_OFFICE_DEPARTMENTS:
            head[role] = self._add_staff(None, role, head["vice_general_manager"], "zh-CN")
        first = self.branches[0]
        self._add_staff(first, "quality", head["quality"], first.spec.locale)

    # ------------------------------------------------------------ one block

    def _block(self, branch: _Branch, scenarios: bool) -> None:
        customers = self._customers(branch)
        self._contracts(branch, customers, scenarios)
        self._requests(branch, customers, scenarios)
        self._complaints(branch, customers, scenarios)
        self._hotline(branch, scenarios)
        if scenarios:
            self._improvements(branch)

    def _customers(self, branch: _Branch) -> list[_Customer]:
        spec, rnd = branch.spec, self.rng.random
        today = branch.as_of_local // DAY
        result = []
        for index in range(spec.requests // 3):
            cid = self._next("customers")
            # The first two customers of each block write in the branch language and in
            # English and always have an email, so scenario letters exist in every locale.
            english = index == 1 or (index > 1 and rnd() < spec.english_share)
            locale = "en" if english else spec.locale
            region = "urban" if rnd() < spec.urban_share else "suburban"
            if rnd() < 0.15:
                words, kinds = _COMPANIES[locale]
                (word, stem), kind = self._pick(words), self._pick(kinds)
                name = f"{word}{kind}" if locale.startswith("zh") else f"{word} {kind}"
                stem = f"info.{stem}"
            else:
                name, stem = self._person(locale)
            email = (
                None if index > 1 and rnd() < 0.05 else f"{stem}{cid}@{_CUSTOMER_DOMAINS[locale]}"
            )
            districts = spec.urban_districts if region == "urban" else spec.suburban_districts
            address = spec.address.format(
                district=self._pick(districts),
                road=self._pick(spec.roads),
                number=1 + int(rnd() * 1500),
            )
            phone = spec.phone.format(a=int(rnd() * 100), b=int(rnd() * 1000))
            self.out.add(
                "customers",
                (cid, branch.id, name, email, phone, locale, region, address),
            )
            customer = _Customer(cid, locale, region, [])
            for _ in range(1 if rnd() < 0.6 else 2):
                customer.units.append(self._unit(branch, customer, today))
            result.append(customer)
        return result

    def _unit(
        self, branch: _Branch, customer: _Customer, today: int
    ) -> tuple[int, int, int | None, bool]:
        rnd = self.rng.random
        uid = self._next("units")
        product = int(rnd() * len(_PRODUCTS))
        model, _name, category, _parts = _PRODUCTS[product]
        bought = today - 20 - int(rnd() * 5 * 365)
        made = bought - 20 - int(rnd() * 220)
        known = rnd() > 0.05  # some purchases are only known through the serial number
        proof = known and rnd() < 0.8
        installed = None if category == "instrument" and rnd() < 0.5 else bought + int(rnd() * 14)
        serial = f"{model.replace('-', '')}{_day(made).strftime('%y%m')}{uid:08d}"
        self.out.add(
            "units",
            (uid, product + 1, customer.id, branch.id, serial, _day(bought) if known else None,
             proof, _day(installed) if installed is not None else None, _day(made)),
        )  # fmt: skip
        return uid, product, bought if known else None, proof

    # ------------------------------------------------------------ contracts

    def _contract(
        self,
        branch: _Branch,
        customer: _Customer,
        kind: str,
        status: str,
        starts: int,
        ends: int,
        *,
        renewal_of: int | None = None,
        renewed_at: int | None = None,
        acceptance: int | None = None,
    ) -> int:
        rnd = self.rng.random
        contract_id = self._next("contracts")
        prefix = {"maintenance": "MC", "free_maintenance": "FM", "project": "PJ"}.get(kind, "EW")
        unit = self._pick(customer.units)[0] if rnd() < 0.7 else None
        base = {"CNY": 1200, "TWD": 6000, "EUR": 150}[branch.spec.currency]
        amount = None
        if kind != "free_maintenance":
            factor = 20 if kind == "project" else 1
            amount = Decimal(base * factor * (100 + int(rnd() * 900))).scaleb(-2)
        self.out.add(
            "contracts",
            (contract_id, f"{prefix}-{branch.code}-{contract_id:07d}", customer.id, branch.id,
             unit, kind, status, _day(starts), _day(ends), self._pick(branch.sales_reps),
             renewal_of, renewed_at, amount, branch.spec.currency if amount is not None else None,
             _day(acceptance) if acceptance is not None else None),
        )  # fmt: skip
        if status != "cancelled" and kind != "project":
            customer.covered.append((starts, ends))
        if status == "active" and kind in ("maintenance", "free_maintenance"):
            self._inspections(branch, contract_id, starts, ends)
        if kind == "project" and status != "cancelled" and acceptance is not None:
            branch.projects.append((contract_id, customer.id, acceptance))
        return contract_id

    def _renewed_pair(self, branch: _Branch, customer: _Customer, ends: int) -> None:
        """A maintenance contract renewed before it ended, and its active successor."""
        today = branch.as_of_local // DAY
        signed = min(ends - 10 - int(self.rng.random() * 30), today - 1)
        signed_at = branch.utc(signed * DAY + 10 * HOUR + int(self.rng.random() * 7 * HOUR))
        old = self._contract(
            branch, customer, "maintenance", "renewed", ends - 364, ends, renewed_at=signed_at
        )
        self._contract(
            branch, customer, "maintenance", "active", ends + 1, ends + 365, renewal_of=old
        )

    def _contracts(self, branch: _Branch, customers: list[_Customer], scenarios: bool) -> None:
        rnd = self.rng.random
        today = branch.as_of_local // DAY
        if scenarios:
            # Renewal notices one month ahead: both first customers (two locales) are due.
            for customer in customers[:2]:
                ends = today + 3 + int(rnd() * 26)
                self._contract(branch, customer, "maintenance", "active", ends - 364, ends)
            c = customers[2 % len(customers)]
            ends = today + 35 + int(rnd() * 55)
            self._contract(branch, c, "maintenance", "active", ends - 364, ends)
            # Free maintenance ending in about three months: the team lead's written report.
            ends = today + 80 + int(rnd() * 14)
            self._contract(branch, customers[0], "free_maintenance", "active", ends - 729, ends)
            ends = today + 30 + int(rnd() * 40)
            self._contract(branch, customers[1], "free_maintenance", "active", ends - 364, ends)
            # Lapsed within the last weeks: the customer's lapse letter and the rep's task go out
            # tonight (and preview samples them from the night, with a date in the past).
            ends = today - 2 - int(rnd() * 20)
            self._contract(
                branch, customers[3 % len(customers)], "maintenance", "lapsed", ends - 364, ends
            )
            self._renewed_pair(branch, customers[4 % len(customers)], today - 20 + int(rnd() * 40))
            starts, ends = today - 200 - int(rnd() * 200), today + 60 + int(rnd() * 300)
            project_customer = customers[5 % len(customers)]
            self._contract(
                branch, project_customer, "project", "active", starts, ends, acceptance=starts + 120
            )
        for customer in customers[6:] if scenarios else customers:
            if rnd() >= 0.3:
                continue
            r = rnd()
            kind = (
                "maintenance" if r < 0.7 else "free_maintenance" if r < 0.85
                else "extended_warranty" if r < 0.9 else "project"
            )  # fmt: skip
            ends = today - 300 + int(rnd() * 665)
            length = 729 if kind in ("project", "extended_warranty") else 364
            if ends >= today:
                status = "cancelled" if rnd() < 0.05 else "active"
                acceptance = ends - length + 150 if kind == "project" and rnd() < 0.5 else None
                self._contract(
                    branch, customer, kind, status, ends - length, ends, acceptance=acceptance
                )
            elif kind == "maintenance" and rnd() < 0.4:
                self._renewed_pair(branch, customer, ends)
            else:
                self._contract(branch, customer, kind, "lapsed", ends - length, ends)

    def _inspections(self, branch: _Branch, contract_id: int, starts: int, ends: int) -> None:
        """Monthly inspection reports of the last three months the contract was in force."""
        rnd = self.rng.random
        today = branch.as_of_local // DAY
        for months_back in (3, 2, 1):
            day = today - 30 * months_back + int(rnd() * 20) - 10
            if not starts <= day <= min(ends, today - 1):
                continue
            submitted = branch.utc((day + int(rnd() * 3)) * DAY + 16 * HOUR + int(rnd() * 2 * HOUR))
            # The latest report (about a month ago) is the false one: the close finds it.
            falsified = self.falsify_next and months_back == 1
            self.falsify_next = self.falsify_next and not falsified
            self.out.add(
                "inspections",
                (self._next("inspections"), branch.id, contract_id, self._pick(branch.technicians),
                 _day(day), submitted if submitted <= self.as_of else None, falsified,
                 None if rnd() < 0.7 else "Filters cleaned, pressure normal"),
            )  # fmt: skip

    # ------------------------------------------------------------ service requests

    def _requests(self, branch: _Branch, customers: list[_Customer], scenarios: bool) -> None:
        rnd = self.rng.random
        made = 0
        if scenarios:
            for index, scenario in enumerate(_SCENARIOS):
                self._scenario_request(branch, customers[index % len(customers)], scenario)
                made += 1
        latest = self.as_of - 10 * 60
        while made < branch.spec.requests:
            customer = self._pick(customers)
            received = _bump(branch.as_of_local - 2 * HOUR - int(rnd() * 365 * DAY))
            if branch.utc(received) > latest:
                continue  # bumped past as_of: draw again
            timeline, flags, promised = self._bulk_timeline(received)
            request_id = self._request(branch, customer, timeline, flags, promised, None)
            made += 1
            # The same fault again within weeks: a repeat call (double fines, first-time fix).
            completed = next((t for s, t in timeline if s == "completed"), None)
            if completed is not None and made < branch.spec.requests and rnd() < REPEAT_SHARE:
                again = _bump(completed + 2 * DAY + int(rnd() * 19 * DAY))
                if branch.utc(again) <= latest:
                    timeline, flags, promised = self._bulk_timeline(again)
                    self._request(branch, customer, timeline, flags, promised, request_id)
                    made += 1

    def _bulk_timeline(self, received: int) -> tuple[list[tuple[str, int]], set[str], int]:
        """A request's whole life in local seconds (cut at as_of later), flags and promise."""
        rnd = self.rng.random
        events = [("received", received)]
        flags: set[str] = set()
        if rnd() < 0.03:
            events.append(("cancelled", _bump(received + HOUR + int(rnd() * 29 * HOUR))))
            return events, flags, _bump(received + DAY)
        late = rnd() < 0.15
        t = _bump(received + int((5 + rnd() * 15 if late else 0.3 + rnd() * 4.7) * HOUR))
        events.append(("dispatched", t))
        t = _bump(t + int((0.5 + rnd() * 2.5) * HOUR))
        events.append(("on_site", t))
        promised = _bump(t + DAY)
        path = rnd()
        if path < 0.12:
            flags.add("parts")
            t = _bump(t + int((0.5 + rnd() * 1.5) * HOUR))
            events.append(("waiting_parts", t))
            promised = t + 9 * DAY  # 7 working days
            t = _bump(t + int((1 + rnd() * 11) * DAY))
            events.append(("on_site", t))
        elif path < 0.16:
            flags.update(("parts", "factory"))
            t = _bump(t + int((1 + rnd() * 3) * HOUR))
            events.append(("factory_return", t))
            promised = t + 19 * DAY  # 15 working days
            t = _bump(t + int((12 + rnd() * 12) * DAY))
            events.append(("on_site", t))
        elif path < 0.21:
            t = _bump(t + int((0.5 + rnd()) * HOUR))
            events.append(("waiting_customer", t))
            t = _bump(t + int((1 + rnd() * 3) * DAY))
            events.append(("on_site", t))
        t = _bump(t + int((1 + rnd() * 4) * HOUR))
        events.append(("completed", t))
        events.append(("collected", _bump(t + int((0.2 + rnd() * 72) * HOUR))))
        return events, flags, promised

    def _scenario_request(self, branch: _Branch, customer: _Customer, scenario: _Scenario) -> None:
        """A request placed backwards from as_of in office hours, so it sits near a deadline."""
        _name, statuses, gaps, elapsed, flags = scenario
        t = _office_back(branch.as_of_local, self._between(*elapsed) * HOUR)
        times = [t]
        for lo, hi in reversed(gaps):
            t = _office_back(t, self._between(lo, hi) * HOUR)
            times.append(t)
        times.reverse()
        timeline = list(zip(statuses, times, strict=True))
        arrived = next((t for s, t in timeline if s == "on_site"), timeline[0][1])
        if "late_promise" in flags:
            promised = _office_back(branch.as_of_local, self._between(1.0, 3.0) * HOUR)
        elif "factory" in flags:
            promised = arrived + 21 * DAY
        elif "parts" in flags:
            promised = arrived + 9 * DAY
        else:
            promised = _bump(arrived + DAY)
        self._request(branch, customer, timeline, set(flags), promised, None)

    def _request(
        self,
        branch: _Branch,
        customer: _Customer,
        timeline: list[tuple[str, int]],
        flags: set[str],
        promised: int,
        repeat_of: int | None,
    ) -> int:
        """Write one request as it stands at as_of, its status history and its survey."""
        # The hottest path at a million requests: locals and bound methods on purpose.
        rnd, utc, as_of = self.rng.random, branch.utc, self.as_of
        request_id = next(self.ids["service_requests"])
        add_change, change_ids = self.out.rows["status_changes"].append, self.ids["status_changes"]
        first: dict[str, int] = {}
        status, done_local = "received", None
        for name, local in timeline:
            at = utc(local)
            if at > as_of:
                break
            status = name
            if name not in first:
                first[name] = at
                if name == "completed":
                    done_local = local
            add_change((next(change_ids), request_id, name, at, _NOTES.get(name)))
        units = customer.units
        unit_id, product, bought, proof = units[int(rnd() * len(units))]
        received_day = timeline[0][1] // DAY
        roll = rnd()
        kind = (
            "repair" if roll < 0.82 else "installation" if roll < 0.9
            else "maintenance" if roll < 0.95 else "inspection" if roll < 0.98 else "admin"
        )  # fmt: skip
        human_damage = kind == "repair" and rnd() < 0.04
        # The category as the desk recorded it; the warranty rules may classify differently.
        if kind == "admin":
            category, unit_id = "admin", None
        elif kind != "installation" and any(a <= received_day <= b for a, b in customer.covered):
            category = "contract"
        elif kind == "installation" or (
            proof and bought is not None and received_day - bought <= 365 and not human_damage
        ):
            category = "free"
        else:
            category = "paid"
        technicians = branch.technicians
        technician = technicians[int(rnd() * len(technicians))] if "dispatched" in first else None
        parts = _PRODUCTS[product][3]
        fault = parts[int(rnd() * len(parts))] if kind == "repair" else None
        texts = _DESCRIPTIONS[customer.locale]
        description = texts[int(rnd() * len(texts))] if rnd() < 0.8 else None
        get = first.get
        # Half the repairs still waiting for parts or the factory have a new expected date,
        # four days past the original one, which the customer's delay letter gives.
        waiting = status in ("waiting_parts", "factory_return") and request_id % 2 == 0
        expected = utc(promised) + 4 * DAY if waiting else None
        self.out.rows["service_requests"].append(
            (request_id, f"SR-{branch.code}-{request_id:08d}", branch.id, customer.id,
             unit_id, technician, kind, category if rnd() > 0.02 else None, customer.region,
             status, fault, description, human_damage, kind == "repair" and rnd() < 0.02,
             "parts" in flags, "factory" in flags, repeat_of, first["received"],
             get("dispatched"), get("on_site"), utc(promised), get("completed"), get("collected"),
             expected),
        )  # fmt: skip
        customer.requests.append(request_id)
        if done_local is not None and technician is not None and rnd() < 0.9:
            self._survey(branch, customer, request_id, technician, done_local)
        return request_id

    def _survey(
        self, branch: _Branch, customer: _Customer, request_id: int, technician: int, done: int
    ) -> None:
        """The next-day survey (ratings 1-4), if that day has already come."""
        rnd = self.rng.random
        at = branch.utc((done // DAY + 1) * DAY + 10 * HOUR + int(rnd() * 10 * HOUR))
        if at > self.as_of:
            return
        mood = rnd()  # one customer's mood colours all four ratings
        ratings = [_rating((mood + rnd()) / 2) for _ in range(4)]
        comment = self._pick(_SURVEY_COMMENTS[customer.locale]) if rnd() < 0.2 else None
        self.out.rows["surveys"].append(
            (next(self.ids["surveys"]), branch.id, request_id, technician, at, *ratings, comment)
        )

    # ------------------------------------------------------------ complaints

    def _complaint(
        self,
        branch: _Branch,
        customer: _Customer,
        kind: str,
        severity: str,
        received: int,
        reply_after: float | None,
        close_after: float | None,
        *,
        responsible: bool = True,
        verified: bool = False,
        repeat_of: int | None = None,
        satisfied: bool | None = True,
        due_days: float | None = None,
    ) -> int:
        """One complaint; times are UTC seconds and hours after receipt (None: not yet). The
        handling deadline is `due_days` after acceptance, by default 3 days for a claim (to be
        handled fast, 002 四) and 7 for an appeal; one complaint in 20 was accepted without
        one (the default clock of complaint-handling-default applies)."""
        rnd, as_of = self.rng.random, self.as_of
        complaint_id = self._next("complaints")
        accepted = received + int((0.1 + rnd()) * HOUR)
        replied = received + int(reply_after * HOUR) if reply_after is not None else None
        closed = received + int(close_after * HOUR) if close_after is not None else None
        if replied is not None and replied > as_of:
            replied = closed = None
        if closed is not None and closed > as_of:
            closed = None
        status = "closed" if closed else "replied" if replied else "open"
        # No draw from the generator here: the rows after it stay as they were for a seed.
        days = due_days if due_days is not None else 3 if kind == "claim" else 7
        handling_due = None if complaint_id % 20 == 0 else accepted + int(days * DAY)
        # Visited the next day (000 art.22), but for one complaint in twelve.
        visited = received + DAY if complaint_id % 12 and received + DAY <= as_of else None
        locale = customer.locale
        compensation = None
        if kind == "claim" and closed is not None:
            base = {"CNY": 200, "TWD": 1000, "EUR": 30}[branch.spec.currency]
            compensation = Decimal(base * (100 + int(rnd() * 900))).scaleb(-2)
        staff = self._pick(branch.technicians) if responsible and closed else None
        outcomes = _OUTCOMES[locale]  # two remedies for appeals, then compensation for claims
        outcome = outcomes[2] if kind == "claim" else self._pick(outcomes[:2])
        self.out.add(
            "complaints",
            (complaint_id, f"CP-{branch.code}-{complaint_id:07d}", branch.id, customer.id,
             self._pick(customer.requests) if customer.requests else None, kind, severity, status,
             received, min(accepted, as_of), replied, closed, visited, handling_due, staff,
             _DEPARTMENTS[complaint_id % len(_DEPARTMENTS)], verified and closed is not None,
             repeat_of,
             satisfied if closed else None, outcome if closed else None, compensation,
             branch.spec.currency if compensation is not None else None),
        )  # fmt: skip
        return complaint_id

    def _complaints(self, branch: _Branch, customers: list[_Customer], scenarios: bool) -> None:
        rnd, as_of, pick = self.rng.random, self.as_of, self._pick
        if scenarios:
            self._complaint_scenarios(branch, customers)
        # One complaint per COMPLAINT_EVERY calls over the year, on top of the scenarios, spread
        # evenly over the year: each of the branch's blocks takes its slot of it, and each
        # branch its quarter of the slot. Drawn independently, the department's month of a
        # few complaints swung between none and twice the usual.
        count = branch.spec.requests // COMPLAINT_EVERY
        slot = self.block % BLOCKS_PER_BRANCH + (_BRANCHES.index(branch.spec) + rnd()) / 4
        for index in range(count):
            share = (index + slot / branch.blocks) / count
            received = as_of - int((3 + share * 362) * DAY)
            self._complaint(
                branch, pick(customers), "claim" if rnd() < 0.25 else "appeal",
                "serious" if rnd() < 0.1 else "general", received,
                2 + rnd() * 40, 48 + rnd() * 500,
                responsible=rnd() < 0.85, verified=rnd() < 0.6, satisfied=rnd() < 0.85,
            )  # fmt: skip

    def _complaint_scenarios(self, branch: _Branch, customers: list[_Customer]) -> None:
        """The complaints the night and the monthly close must find.

        Every branch has its own overdue and fresh complaints (its language's letters); the
        cases of last month, or of last month early in a month, are shared out among the
        branches instead of repeated in each: a branch's month then has a few complaints per
        100 repair calls, not one per call.
        """
        rnd, as_of, pick = self.rng.random, self.as_of, self._pick
        c0, c1 = customers[0], customers[1]
        position = _BRANCHES.index(branch.spec)
        # Overdue: no reply 24 hours after acceptance, nobody found responsible yet.
        self._complaint(
            branch, c0, "appeal", "general", as_of - int((30 + rnd() * 30) * HOUR), None, None
        )
        self._complaint(
            branch, c1, "claim", "serious", as_of - int((26 + rnd() * 14) * HOUR), None, None
        )
        # Within the 24 hours still.
        self._complaint(
            branch, pick(customers), "appeal", "general", as_of - int((2 + rnd() * 8) * HOUR),
            None, None,
        )  # fmt: skip
        # Last month, for the review by the 10th, and the urged and closed cases, which fall
        # into last month early in a month: one branch each, the review's at the two Chinese
        # branches (the fines are theirs).
        month_start = branch.utc(self._previous_month_start(branch))
        if position == 0:
            # The same problem twice (double fine), and a claim closed late, customer unhappy.
            first = self._complaint(
                branch, c0, "appeal", "general", month_start + int((1 + rnd() * 6) * DAY),
                3 + rnd() * 15, 48 + rnd() * 48, verified=True,
            )  # fmt: skip
            self._complaint(
                branch, c0, "appeal", "general", month_start + int((14 + rnd() * 5) * DAY),
                4 + rnd() * 10, 24 + rnd() * 48, verified=True, repeat_of=first,
            )  # fmt: skip
            received = month_start + int((3 + rnd() * 5) * DAY)
            self._complaint(
                branch, pick(customers), "claim", "serious", received,
                20 + rnd() * 20, (20 + rnd() * 10) * 24, verified=True, satisfied=False,
            )  # fmt: skip
        elif position == 1:
            # Verified, and nobody was found responsible: the team lead pays.
            self._complaint(
                branch, c1, "appeal", "serious", month_start + int((8 + rnd() * 8) * DAY),
                5 + rnd() * 10, 72 + rnd() * 72, verified=True, responsible=False,
            )  # fmt: skip
        elif position == 2:
            # Replied late, not closed yet, and past its 3-day handling deadline: urged.
            self._complaint(
                branch, pick(customers), "appeal", "general",
                as_of - int((5 + rnd() * 4) * DAY), 30 + rnd() * 30, None, due_days=3,
            )  # fmt: skip
        else:
            # Received a week ago and closed on time in the last days, verified: the customer's
            # letter with the outcome goes out tonight.
            self._complaint(
                branch, pick(customers), "appeal", "general", as_of - int((7 + rnd()) * DAY),
                2 + rnd() * 18, 48 + rnd() * 72, verified=True,
            )  # fmt: skip

    def _previous_month_start(self, branch: _Branch) -> int:
        """Local seconds of midnight on the first day of the month before as_of."""
        today = _day(branch.as_of_local // DAY)
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        return (first.toordinal() - _EPOCH_ORDINAL) * DAY

    # ------------------------------------------------------------ hotline

    def _hotline(self, branch: _Branch, scenarios: bool) -> None:
        """Calls from the start of last month to as_of; the line is staffed 09:00-22:00."""
        rnd = self.rng.random
        start_local = self._previous_month_start(branch)
        span_days = (branch.as_of_local - start_local) // DAY
        operators = branch.operators
        calls = []
        if scenarios:
            # Last month, unanswered, once inside the staffed hours and once after them.
            day = start_local // DAY + 3 + int(rnd() * 20)
            calls.append((day * DAY + 10 * HOUR + int(rnd() * HOUR), False))
            calls.append((day * DAY + 23 * HOUR + int(rnd() * HOUR), False))
        for _ in range(branch.spec.requests * 4 // 3):
            day = start_local // DAY + int(rnd() * (span_days + 1))
            if rnd() < 0.88:
                sec = 9 * HOUR + int(rnd() * 13 * HOUR)
                answered = rnd() < 0.93
            else:
                sec = (22 * HOUR + int(rnd() * 11 * HOUR)) % DAY
                answered = rnd() < 0.3
            calls.append((day * DAY + sec, answered))
        for local, answered in calls:
            at = branch.utc(local)
            if at > self.as_of:
                continue
            staffed = 9 * HOUR <= local % DAY < 22 * HOUR
            on_duty = operators[(local // DAY) % len(operators)] if staffed else None
            phone = branch.spec.phone.format(a=int(rnd() * 100), b=int(rnd() * 1000))
            self.out.add(
                "hotline_calls",
                (self._next("hotline_calls"), branch.id, at, answered, on_duty, phone,
                 30 + int(rnd() * 870) if answered else None),
            )  # fmt: skip

    # ------------------------------------------------------------ improvements and targets

    def _improvements(self, branch: _Branch) -> None:
        """Last month: one effective improvement (rewarded), one without effect; one pending."""
        rnd = self.tally_rng.random
        month_start = self._previous_month_start(branch) // DAY
        titles = _IMPROVEMENTS[branch.spec.locale]
        base = Decimal(500)  # rewards are in the ledger's currency, whatever the branch's
        for index, (effective, approved) in enumerate(((True, True), (False, True), (True, False))):
            proposed = month_start + 2 + int(rnd() * 10)
            approved_at = None
            if approved:
                approved_at = branch.utc((proposed + 7) * DAY + 10 * HOUR + int(rnd() * 6 * HOUR))
            else:
                proposed = branch.as_of_local // DAY - 3
            technician = branch.technicians[int(rnd() * len(branch.technicians))]
            self.out.add(
                "improvements",
                (self._next("improvements"), branch.id, technician, titles[index], _day(proposed),
                 approved_at, effective, base * (1 + index) if effective else None),
            )  # fmt: skip

    def _work_records(self, branch: _Branch) -> None:
        """Each team's visits and optimisation reports of the last three months, and projects'
        join and handover records; a few late or missing, so the obligations find something."""
        rnd = self.work_rng.random
        today = branch.as_of_local // DAY
        first = _day(today).replace(day=1)
        for lead in branch.team_leads:
            month = first
            for _ in range(3):
                month = (month - timedelta(days=1)).replace(day=1)
                last = (month + timedelta(days=31)).replace(day=1) - timedelta(days=1)
                for _ in range(3 + int(rnd() * 3)):  # the quota is 4: some months fall short
                    day = month + timedelta(days=int(rnd() * last.day))
                    self._work(branch, "visit", lead, day.toordinal() - _EPOCH_ORDINAL)
                if rnd() < 0.9:
                    late = 6 if rnd() < 0.2 else int(rnd() * 3)
                    self._work(
                        branch, "optimisation_report", lead,
                        last.toordinal() - _EPOCH_ORDINAL, handed_in_after=late,
                    )  # fmt: skip
        lead = branch.team_leads[0]
        for contract_id, customer_id, acceptance in branch.projects:
            self._work(branch, "project_join", lead, acceptance - 30 - int(rnd() * 10), contract_id,
                       customer_id)  # fmt: skip
            self._work(branch, "handover", lead, acceptance + 3 + int(rnd() * 20), contract_id,
                       customer_id, handed_in_after=int(rnd() * 2))  # fmt: skip

    def _daily_records(self, branch: _Branch) -> None:
        """The last two weeks' daily reports and work logs, last year's review and this
        quarter's and the last two quarters' visit plans: nearly all in, a few missing or late,
        so the daily obligations find a handful, not one per person and day."""
        rnd = self.daily_rng.random
        today = branch.as_of_local // DAY
        supervisor = branch.supervisor or 0
        for day in range(today - 14, today):
            for who in (*branch.technicians, *branch.team_leads):
                kinds = ("daily_report", "work_log") if who in branch.technicians else ("work_log",)
                for kind in kinds:
                    if rnd() < 0.99:
                        self._work(branch, kind, who, day, handed_in_after=int(rnd() < 0.01))
            if rnd() < 0.99:
                self._work(branch, "supervisor_report", supervisor, day)
        year_end = _day(today).replace(month=1, day=1) - timedelta(days=1)
        self._work(branch, "annual_review", supervisor, year_end.toordinal() - _EPOCH_ORDINAL - 3)
        for lead in branch.team_leads:
            month = _day(today).replace(day=1)
            for back in (1, 32, 62):  # the last day of each of the last three months, or so
                if rnd() < 0.85:
                    end = (month - timedelta(days=back)).replace(day=28) + timedelta(days=4)
                    last = end - timedelta(days=end.day)
                    self._work(branch, "handbook_update", lead, last.toordinal() - _EPOCH_ORDINAL)
            start = month.replace(month=(month.month - 1) // 3 * 3 + 1)
            for _ in range(3):  # the visits' plan: 9 to 13 a quarter, 4 a month or so
                self.out.add(
                    "targets",
                    (self._next("targets"), branch.id, lead, start, "customer_visits",
                     Decimal(9 + int(rnd() * 5)), None),
                )  # fmt: skip
                start = (start - timedelta(days=1)).replace(day=1)
                start = start.replace(month=(start.month - 1) // 3 * 3 + 1)

    def _work(
        self,
        branch: _Branch,
        kind: str,
        staff: int,
        day: int,
        contract: int | None = None,
        customer: int | None = None,
        handed_in_after: int = 0,
    ) -> None:
        """One work record done on local `day`, handed in that many days later (if by now)."""
        if day >= branch.as_of_local // DAY:
            return
        submitted = branch.utc((day + handed_in_after) * DAY + 17 * HOUR)
        self.out.add(
            "work_records",
            (self._next("work_records"), branch.id, kind, contract, customer, staff, _day(day),
             submitted if submitted <= self.as_of else None, None),
        )  # fmt: skip

    def _targets(self, branch: _Branch) -> None:
        """Last complete quarter: each technician's task, service review, training score and
        attendance."""
        rnd = self.tally_rng.random
        today = _day(branch.as_of_local // DAY)
        this_quarter = today.replace(month=(today.month - 1) // 3 * 3 + 1, day=1)
        last_month = this_quarter - timedelta(days=1)
        start = last_month.replace(month=(last_month.month - 1) // 3 * 3 + 1, day=1)
        for index, technician in enumerate(branch.technicians):
            # Around the bands' edges: 100%, exactly 95%, just under 95%, below 90%.
            ratio = _TARGET_RATIOS[index % len(_TARGET_RATIOS)]
            target = Decimal(100_000 + 10_000 * int(rnd() * 10))
            for item, goal, actual in (
                ("task", target, (target * ratio).quantize(Decimal("0.01"))),
                ("service_review", None, Decimal(60 + int(rnd() * 40))),
                ("training", None, Decimal(55 + int(rnd() * 45))),
                # The quarter's attendance (%), with one in seven under the bonus's 94% gate.
                ("attendance", None, Decimal("92.5") if index % 7 == 6 else Decimal("97.5")),
            ):
                self.out.add(
                    "targets",
                    (self._next("targets"), branch.id, technician, start, item, goal, actual),
                )
