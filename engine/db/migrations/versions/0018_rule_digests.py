"""which version of a rule decided each finding

A rule changed in a policy judges the items closed before the change by the version they
closed under (engine.rule_versions): `policy_versions.rules` keeps each version's rule
digests, `findings.rule_digest` names the version of the rule that decided the finding
(`findings.policy_hash` then names the policy holding that version).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_versions") as batch:
        batch.add_column(
            sa.Column(
                "rules",
                sa.JSON(),
                nullable=True,
                comment="Each rule's digest by its id (engine.policy.digest)",
            )
        )
    with op.batch_alter_table("findings") as batch:
        batch.add_column(
            sa.Column(
                "rule_digest",
                sa.String(length=40),
                nullable=True,
                comment="Version of the rule that decided it (engine.policy.digest)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("rule_digest")
    with op.batch_alter_table("policy_versions") as batch:
        batch.drop_column("rules")
