"""ledger approvals

A close can require approval before the reward/penalty notices (奖罚通知单) go out (002 (七)2:
呈总经理核准后). Each run that books entries for a branch and closing month under such a policy
records them here as held; `aftersales approve` records who approved them and when, and the
next run queues their notices and copies (`released_run_id`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant(name: str, nullable: bool, comment: str) -> sa.Column:
    return sa.Column(
        name, engine.db.types.UtcDateTime(timezone=True), nullable=nullable, comment=comment
    )


def upgrade() -> None:
    op.create_table(
        "ledger_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "period",
            sa.String(length=20),
            nullable=False,
            comment="Closing month of the entries: 2026-10 (with a quarter it ends)",
        ),
        sa.Column(
            "branch_id",
            sa.Integer(),
            nullable=True,
            comment="Branch of the entries; empty: head office",
        ),
        sa.Column(
            "first_entry_id",
            sa.Integer(),
            nullable=False,
            comment="First ledger entry held (ledger_entries.id)",
        ),
        sa.Column(
            "last_entry_id",
            sa.Integer(),
            nullable=False,
            comment="Last ledger entry held; the branch's entries between",
        ),
        sa.Column("entries", sa.Integer(), nullable=False, comment="How many entries are held"),
        sa.Column(
            "run_id", sa.String(length=40), nullable=False, comment="Run that booked and held them"
        ),
        _instant("held_at", False, "as_of of that run"),
        sa.Column(
            "approved_by",
            sa.String(length=200),
            nullable=True,
            comment="Who approved them (aftersales approve --by)",
        ),
        _instant("approved_at", True, "When they were approved"),
        sa.Column(
            "released_run_id",
            sa.String(length=40),
            nullable=True,
            comment="Run that queued their notices after the approval",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_ledger_approvals_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_ledger_approvals_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["released_run_id"],
            ["runs.id"],
            name=op.f("fk_ledger_approvals_released_run_id_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_approvals")),
    )
    with op.batch_alter_table("ledger_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_approvals_period", ["period", "branch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_approvals_period")
    op.drop_table("ledger_approvals")
