"""row versions on every service row, kept by triggers; tombstones for deleted rows

Each service table gets `row_version` (indexed), stamped by triggers on insert and update, and
a delete trigger writing a tombstone to `deleted_rows`; SQLite gets the one-row `change_clock`
the stamps are read from (engine/db/changes.py explains the markers). Rows already present keep
`row_version` empty, meaning "unchanged since the triggers exist": stamping them would rewrite
the whole history (every table, every row) for nothing a run could use.

The trigger SQL comes from engine.db.changes, fed with the tables and foreign keys as they are
at this revision (TRACKED below, frozen), so the migration builds the same triggers whatever
the models become; `aftersales init` recreates them from the current models after upgrading.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 18:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types
from engine.db.changes import create_triggers_sql, drop_triggers_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The service tables at this revision, each with its foreign-key columns (kept by tombstones).
TRACKED: dict[str, tuple[str, ...]] = {
    "branches": (),
    "staff": ("branch_id", "supervisor_id"),
    "customers": ("branch_id",),
    "products": (),
    "units": ("product_id", "customer_id", "branch_id"),
    "contracts": ("customer_id", "branch_id", "unit_id", "sales_rep_id", "renewal_of_id"),
    "service_requests": (
        "branch_id",
        "customer_id",
        "unit_id",
        "technician_id",
        "repeat_of_id",
    ),
    "status_changes": ("service_request_id",),
    "complaints": (
        "branch_id",
        "customer_id",
        "service_request_id",
        "responsible_staff_id",
        "repeat_of_id",
    ),
    "surveys": ("branch_id", "service_request_id", "technician_id"),
    "hotline_calls": ("branch_id", "on_duty_staff_id"),
    "inspections": ("branch_id", "contract_id", "technician_id"),
    "improvements": ("branch_id", "staff_id"),
    "targets": ("branch_id", "staff_id"),
    "work_records": ("branch_id", "contract_id", "customer_id", "staff_id"),
}


def upgrade() -> None:
    for table in TRACKED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "row_version",
                    sa.BigInteger(),
                    nullable=True,
                    comment="Change marker kept by the database (triggers): "
                    "leave it out when writing",
                )
            )
            batch_op.create_index(f"ix_{table}_row_version", ["row_version"], unique=False)
    op.create_table(
        "deleted_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "table_name",
            sa.String(length=40),
            nullable=False,
            comment="Table the row was deleted from",
        ),
        sa.Column("row_id", sa.BigInteger(), nullable=False, comment="Its id"),
        sa.Column(
            "refs",
            sa.JSON(),
            nullable=False,
            comment='Its foreign keys at deletion, e.g. {"service_request_id": 42}',
        ),
        sa.Column(
            "row_version",
            sa.BigInteger(),
            nullable=False,
            comment="Change marker of the deletion",
        ),
        sa.Column(
            "deleted_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="Wall-clock time of the deletion",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deleted_rows")),
    )
    op.create_index("ix_deleted_rows_row_version", "deleted_rows", ["row_version"], unique=False)
    clock = op.create_table(
        "change_clock",
        sa.Column(
            "value",
            sa.BigInteger(),
            nullable=False,
            comment="SQLite: the row_version new writes take; a run's marker moves it on",
        ),
    )
    op.bulk_insert(clock, [{"value": 1}])
    # After the table operations: on SQLite, a batch that rebuilds a table drops its triggers.
    for statement in create_triggers_sql(op.get_bind().dialect.name, TRACKED):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_triggers_sql(op.get_bind().dialect.name, TRACKED):
        op.execute(statement)
    op.drop_table("change_clock")
    op.drop_index("ix_deleted_rows_row_version", table_name="deleted_rows")
    op.drop_table("deleted_rows")
    for table in reversed(TRACKED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_row_version")
            batch_op.drop_column("row_version")
