"""the text of each policy version a run judged with

`aftersales diff` compares a policy being edited with the one the last successful run used;
`runs.policy_hash` names that version, and `policy_versions` keeps its files' text, written
by the run that first judges with it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 07:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column(
            "hash",
            sa.String(length=40),
            nullable=False,
            comment="Content hash of rules/*.yaml, as runs.policy_hash",
        ),
        sa.Column(
            "files",
            sa.JSON(),
            nullable=False,
            comment="Each policy file's text by its name in the folder",
        ),
        sa.Column(
            "recorded_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When a run first judged with this version",
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_policy_versions")),
    )


def downgrade() -> None:
    op.drop_table("policy_versions")
