"""incremental runs: watches, each run's mode and change marker, findings open and closed

`watches` holds, per rule and entity, the next instant the rule must judge the entity again
although nothing in it changes (a clock's warning point, deadline, escalation): an incremental
run reads those come due with a range read. A run records its mode (full or incremental) and
the change marker it took before reading, so the next run reads what changed after it.
`findings.closed_at` says when a clock's state stopped holding; events (a late stop, a
reminder, an outcome, a charge) are closed when recorded, as existing ones are here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STANDING = "('warning', 'breach')"
# engine.db.models.FOLLOWED_KEYS and RANGE_READ_DATES as of this revision.
_INDEXED = (
    ("units", "product_id"),
    ("units", "customer_id"),
    ("contracts", "unit_id"),
    ("service_requests", "customer_id"),
    ("service_requests", "repeat_of_id"),
    ("complaints", "service_request_id"),
    ("complaints", "customer_id"),
    ("complaints", "repeat_of_id"),
    ("work_records", "customer_id"),
    ("service_requests", "completed_at"),
    ("service_requests", "collected_at"),
    ("complaints", "accepted_at"),
)


def upgrade() -> None:
    op.create_table(
        "watches",
        sa.Column("rule_id", sa.String(length=200), nullable=False, comment="Policy rule id"),
        sa.Column(
            "entity_id",
            sa.String(length=40),
            nullable=False,
            comment="Primary key of the entity, as text",
        ),
        sa.Column(
            "due_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When the rule must judge the entity again",
        ),
        sa.PrimaryKeyConstraint("rule_id", "entity_id", name=op.f("pk_watches")),
    )
    op.create_index("ix_watches_due", "watches", ["rule_id", "due_at"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "mode",
                sa.String(length=20),
                nullable=True,
                comment="full or incremental (judged only what changed or came due)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "change_marker",
                sa.BigInteger(),
                nullable=True,
                comment=(
                    "Change marker taken before the run read the data: "
                    "the next run reads rows changed after"
                ),
            )
        )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "closed_at",
                engine.db.types.UtcDateTime(timezone=True),
                nullable=True,
                comment=(
                    "as_of of the run that no longer found it (a clock's state), "
                    "or recorded_at for an event"
                ),
            )
        )
        batch_op.create_index("ix_findings_open", ["closed_at", "rule_id"], unique=False)
    for table, column in _INDEXED:
        op.create_index(f"ix_{table}_{column}", table, [column], unique=False)
    # Only a running clock's states stand; everything recorded so far that is not one is done.
    op.execute(
        "UPDATE findings SET closed_at = recorded_at WHERE NOT (family = 'deadline' AND "
        f"(state IN {_STANDING} OR state LIKE 'escalation:%'))"
    )


def downgrade() -> None:
    for table, column in _INDEXED:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_open")
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("change_marker")
        batch_op.drop_column("mode")
    op.drop_index("ix_watches_due", table_name="watches")
    op.drop_table("watches")
