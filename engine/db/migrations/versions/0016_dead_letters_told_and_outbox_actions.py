"""customer letters that could not be emailed are handed to staff once; what people do to
the outbox is recorded

A dead customer letter (no address, a hard bounce) becomes a task for the roles in
`defaults.undeliverable` to phone or post it: `told_at` says it was handed over, so it is
handed over once, and a partial index finds the ones not yet told without reading every dead
letter of the past. `aftersales outbox --retry/--cancel` records who did what, when and why
in `outbox_actions`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNTOLD = sa.text("status = 'dead' AND recipient_role = 'customer' AND told_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "told_at",
                engine.db.types.UtcDateTime(timezone=True),
                nullable=True,
                comment=(
                    "For a customer letter that could not be emailed: when staff were asked "
                    "to phone or post it (defaults.undeliverable)"
                ),
            )
        )
    # Letters already dead count as told: the staff tasks start with what dies from now on.
    op.execute(
        "UPDATE notices SET told_at = created_at "
        "WHERE status = 'dead' AND recipient_role = 'customer'"
    )
    op.create_index(
        "ix_notices_untold",
        "notices",
        ["status", "recipient_role", "told_at", "id"],
        unique=False,
        sqlite_where=UNTOLD,
        postgresql_where=UNTOLD,
    )
    op.create_table(
        "outbox_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False, comment="Notice acted on"),
        sa.Column("action", sa.String(length=20), nullable=False, comment="retry or cancel"),
        sa.Column(
            "status_before",
            sa.String(length=20),
            nullable=False,
            comment="The notice's state before",
        ),
        sa.Column("error_before", sa.Text(), nullable=True, comment="Its last_error before"),
        sa.Column(
            "by",
            sa.String(length=200),
            nullable=False,
            comment="Who did it (--by, default the login name)",
        ),
        sa.Column("at", engine.db.types.UtcDateTime(timezone=True), nullable=False, comment="When"),
        sa.Column("reason", sa.Text(), nullable=True, comment="Why (required to cancel)"),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_outbox_actions_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_actions")),
    )
    op.create_index("ix_outbox_actions_notice_id", "outbox_actions", ["notice_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_actions_notice_id", table_name="outbox_actions")
    op.drop_table("outbox_actions")
    op.drop_index("ix_notices_untold", table_name="notices")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_column("told_at")
