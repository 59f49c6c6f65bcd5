"""urgent notices and staff items kept as data until a digest shows them

`urgent` staff notices go out in the cycle that finds them; the person's next digest lists
them as already sent (`listed_in`). A held staff item keeps its template `context` (JSON) and
is rendered only when a digest shows it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "urgent",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
                comment="Sent at once (policy `urgent: true`), not held for the digest",
            )
        )
        batch_op.add_column(
            sa.Column(
                "context",
                sa.Text(),
                nullable=True,
                comment=(
                    "A held staff item's template context (JSON): "
                    "rendered only when a digest shows it"
                ),
            )
        )
        batch_op.add_column(
            sa.Column(
                "listed_in",
                sa.Integer(),
                nullable=True,
                comment="For an urgent staff item: the digest that listed it as already sent",
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_notices_listed_in_notices"), "notices", ["listed_in"], ["id"]
        )
        batch_op.create_index("ix_notices_urgent", ["urgent", "listed_in"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_urgent")
        batch_op.drop_constraint(batch_op.f("fk_notices_listed_in_notices"), type_="foreignkey")
        batch_op.drop_column("listed_in")
        batch_op.drop_column("context")
        batch_op.drop_column("urgent")
