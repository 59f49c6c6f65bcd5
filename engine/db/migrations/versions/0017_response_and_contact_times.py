"""when the desk answered a call and when the technician contacted the customer

001 四.1 sets three standards on a call: the desk responds within X minutes, the work order
reaches a technician within X hours (dispatched_at), the technician contacts the customer within
X hours. The first and the last need their instants.

Revision ID: 0017
Revises: 0012
Create Date: 2026-12-07 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0017"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "responded_at": "The desk answered the customer's report (001 四.1 response time)",
    "contacted_at": "The technician contacted the customer to agree the visit (001 四.1)",
}


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


def downgrade() -> None:
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)
