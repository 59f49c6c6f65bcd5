"""ledger, improvements and targets

The append-only ledger (`ledger_entries`, refused UPDATE and DELETE by a trigger on both
databases), the periods closed (`ledger_closes`), and two service tables the tally rules read:
`improvements` (rewards for effective improvements) and `targets` (quarterly target bands),
and an index on `surveys.surveyed_at` for the monthly survey tally.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:18:48.217691
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_closes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "period",
            sa.String(length=20),
            nullable=False,
            comment="Period closed: 2026-10 or 2026-Q4",
        ),
        sa.Column(
            "closes_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When the policy closes it (close_on_day, 00:00)",
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False, comment="Run that closed it"),
        sa.Column(
            "policy_hash",
            sa.String(length=40),
            nullable=False,
            comment="Policy version of that run",
        ),
        sa.Column(
            "created_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="as_of of that run",
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_ledger_closes_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_closes")),
        sa.UniqueConstraint("period", name=op.f("uq_ledger_closes_period")),
    )
    op.create_table(
        "improvements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch"),
        sa.Column("staff_id", sa.Integer(), nullable=False, comment="Who proposed it"),
        sa.Column("title", sa.String(length=200), nullable=False, comment="What was improved"),
        sa.Column(
            "proposed_on",
            sa.Date(),
            nullable=False,
            comment="Day the team lead submitted the reward request",
        ),
        sa.Column(
            "approved_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Approved by the management committee",
        ),
        sa.Column(
            "effective",
            sa.Boolean(),
            nullable=False,
            comment="Brought a significant effect, as confirmed by the sales director",
        ),
        sa.Column(
            "reward_amount",
            sa.Numeric(precision=12, scale=2),
            nullable=True,
            comment="Reward approved, in the ledger's currency",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_improvements_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_improvements_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_improvements")),
    )
    with op.batch_alter_table("improvements", schema=None) as batch_op:
        batch_op.create_index("ix_improvements_approved_at", ["approved_at"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "key",
            sa.String(length=400),
            nullable=False,
            comment="rule|staff|party|period|state, the key of the finding it books",
        ),
        sa.Column(
            "period",
            sa.String(length=20),
            nullable=False,
            comment="Period booked: 2026-10 (a month) or 2026-Q4 (a quarter)",
        ),
        sa.Column(
            "party_id", sa.Integer(), nullable=False, comment="Person fined or rewarded (staff id)"
        ),
        sa.Column(
            "branch_id",
            sa.Integer(),
            nullable=True,
            comment="That person's branch; empty: head office",
        ),
        sa.Column(
            "rule_id", sa.String(length=200), nullable=False, comment="Tally rule that booked it"
        ),
        sa.Column(
            "kind",
            sa.String(length=20),
            nullable=False,
            comment="original (booked at the close) or correction (booked later)",
        ),
        sa.Column(
            "amount",
            sa.Numeric(precision=12, scale=2),
            nullable=False,
            comment="Signed amount: rewards positive, penalties negative",
        ),
        sa.Column(
            "currency", sa.String(length=20), nullable=False, comment="ISO 4217 currency of amount"
        ),
        sa.Column(
            "entity", sa.String(length=40), nullable=False, comment="Table of the source entities"
        ),
        sa.Column(
            "entity_ids",
            sa.JSON(),
            nullable=False,
            comment="Source entities (ids) this entry is about",
        ),
        sa.Column(
            "details",
            sa.JSON(),
            nullable=False,
            comment="How it was computed: amount per entity, measure, band, points",
        ),
        sa.Column("reason", sa.Text(), nullable=False, comment="Why, in words"),
        sa.Column(
            "policy_hash",
            sa.String(length=40),
            nullable=False,
            comment="Policy version that computed it",
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False, comment="Run that booked it"),
        sa.Column(
            "created_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="as_of of that run",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_ledger_entries_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["party_id"], ["staff.id"], name=op.f("fk_ledger_entries_party_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_ledger_entries_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_entries_key")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_period", ["period", "party_id"], unique=False)
        batch_op.create_index("ix_ledger_entries_rule", ["rule_id", "period"], unique=False)

    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch"),
        sa.Column("staff_id", sa.Integer(), nullable=False, comment="Person the target is for"),
        sa.Column(
            "period_start",
            sa.Date(),
            nullable=False,
            comment="First day of the period, e.g. 2026-10-01 for 2026-Q4",
        ),
        sa.Column(
            "item",
            sa.String(length=40),
            nullable=False,
            comment="What is measured, e.g. task (output or sales), service_review, training",
        ),
        sa.Column(
            "target",
            sa.Numeric(precision=12, scale=2),
            nullable=True,
            comment="Value to reach; empty for assessment scores",
        ),
        sa.Column(
            "actual",
            sa.Numeric(precision=12, scale=2),
            nullable=True,
            comment="Value reached, or the assessment score (0-100)",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_targets_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_targets_staff_id_staff")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
    )
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.create_index("ix_targets_period_start", ["period_start"], unique=False)

    # The monthly survey tally reads a month of surveys by surveyed_at every night.
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.create_index("ix_surveys_surveyed_at", ["surveyed_at"], unique=False)

    _append_only_ledger()


_REFUSAL = "ledger_entries is append-only: a change is booked as a correcting entry"


def _append_only_ledger() -> None:
    # History is never edited: the database itself refuses UPDATE and DELETE on the ledger.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entries_no_{event.lower()} BEFORE {event} ON ledger_entries "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
        )


def downgrade() -> None:
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.drop_index("ix_surveys_surveyed_at")

    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index("ix_targets_period_start")

    op.drop_table("targets")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_rule")
        batch_op.drop_index("ix_ledger_entries_period")

    op.drop_table("ledger_entries")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_entries_append_only()")
    with op.batch_alter_table("improvements", schema=None) as batch_op:
        batch_op.drop_index("ix_improvements_approved_at")

    op.drop_table("improvements")
    op.drop_table("ledger_closes")
