"""a complaint's handling deadline and a delayed repair's new expected date

002 六 has the customer department set each complaint's handling deadline when it accepts it
(根据具体情况确定处理期限): the urge (催办单) and inquiry (洽办单) notices hang on it, so it is a
column the import fills, `complaints.handling_due_at`. 003-6 1.3.3 has the customer told the
*extended* completion date of a repair waiting for parts or the factory:
`service_requests.expected_at`, which the delay letter gives instead of the original deadline.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "handling_due_at",
                engine.db.types.UtcDateTime(timezone=True),
                nullable=True,
                comment="Handling deadline set when the complaint is accepted, case by case "
                "(002 六)",
            )
        )
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "expected_at",
                engine.db.types.UtcDateTime(timezone=True),
                nullable=True,
                comment="Completion now expected, set when a repair waits for parts or the "
                "factory and will overrun; the customer's delay letter gives it",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.drop_column("expected_at")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_column("handling_due_at")
