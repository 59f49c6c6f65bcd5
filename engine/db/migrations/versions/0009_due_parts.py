"""the record of daily and periodic parts done per branch and local day or period

`parts_done` holds one row per part (digests, overdue summary, obligations, tallies, month
close, KPI report), scope (a branch, or the company) and local day or month: a cycle does a
part when its local time has come and its row is missing, so the parts run once per local day
however often cycles run, and the first cycle after downtime does what was missed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 18:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parts_done",
        sa.Column(
            "part",
            sa.String(length=40),
            nullable=False,
            comment="digests, overdue_summary, obligations, tallies, ...",
        ),
        sa.Column(
            "scope",
            sa.String(length=40),
            nullable=False,
            comment="Branch id as text, or company (the ledger's time zone)",
        ),
        sa.Column(
            "period",
            sa.String(length=20),
            nullable=False,
            comment="Local day (2026-12-06), or the month closed (2026-11)",
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False, comment="Run that did it"),
        sa.Column(
            "done_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="Wall-clock time it was recorded",
        ),
        sa.PrimaryKeyConstraint("part", "scope", "period", name=op.f("pk_parts_done")),
    )


def downgrade() -> None:
    op.drop_table("parts_done")
