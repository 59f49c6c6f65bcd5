"""indexes for closed complaints and work per person

Tallies and letters look complaints up by the day they were closed, and the obligation rules
count a team lead's reports and visits per month: without these two indexes both scanned the
whole table once per period or per person (7.9 s for the monthly visits at 1M repair calls).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 05:37:43.582853
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.create_index("ix_complaints_closed_at", ["closed_at"], unique=False)
    with op.batch_alter_table("work_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_work_records_staff_kind_done", ["staff_id", "kind", "done_on"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("work_records", schema=None) as batch_op:
        batch_op.drop_index("ix_work_records_staff_kind_done")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_index("ix_complaints_closed_at")
