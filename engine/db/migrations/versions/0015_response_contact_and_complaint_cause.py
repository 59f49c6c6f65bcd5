"""when the desk answered a call, when the technician contacted the customer, the cause a
complaint was traced back to, and when the complaining customer was visited

001 四.1 sets three standards on a call: the desk responds within X minutes, the work order
reaches a technician within X hours (dispatched_at), the technician contacts the customer within
X hours. The first and the last need their instants. 000 part 2 §5 doubles the fine when a
complaint is traced back to inspection or backup work not done properly. 000 art.22 has every
complaining customer visited.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "responded_at": "The desk answered the customer's report (001 四.1 response time)",
    "contacted_at": "The technician contacted the customer to agree the visit (001 四.1)",
}
VISITED_COMMENT = (
    "The service chief, or someone sent, visited the complaining customer (000 art.22)"
)
CAUSE_COMMENT = (
    "Cause found when the case was traced back (000 part 2 §5: inspection or backup work "
    "not done properly doubles the fine)"
)


def upgrade() -> None:
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        for name, comment in COLUMNS.items():
            batch_op.add_column(
                sa.Column(
                    name,
                    engine.db.types.UtcDateTime(timezone=True),
                    nullable=True,
                    comment=comment,
                )
            )

    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cause", sa.String(length=40), nullable=True, comment=CAUSE_COMMENT)
        )
        batch_op.add_column(
            sa.Column(
                "visited_at",
                engine.db.types.UtcDateTime(timezone=True),
                nullable=True,
                comment=VISITED_COMMENT,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_column("visited_at")
        batch_op.drop_column("cause")
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)
