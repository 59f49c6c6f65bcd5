"""the versions of the engine and of the holidays data a run judged with

A run is incremental only when nothing that decides a verdict changed since the last one: the
policy (its hash), and also the software. A new release of the `holidays` package moves public
holidays, and so deadlines, without a byte of the policy changing; `runs.software` records the
versions, and a run after an upgrade judges everything.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "software",
                sa.JSON(),
                nullable=True,
                comment="Versions of the engine and of the holidays data it judged with",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("software")
