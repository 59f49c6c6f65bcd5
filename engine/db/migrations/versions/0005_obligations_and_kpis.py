"""obligations and kpis

Recurring work the obligation rules look for: customer visits, optimisation reports, project
join and handover records (`work_records`); indexes to count each contract's inspection
reports per month, repeat calls per unit and surveys per call; and the KPI values of the
metric rules per branch, person and month (`kpi_values`), recomputed each night while recent.

Revision ID: 0005
Revises: 0004d
Create Date: 2026-12-04 02:39:23.980536
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0005"
down_revision: str | None = "0004d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kpi_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.String(length=200), nullable=False, comment="Metric rule"),
        sa.Column("period", sa.String(length=20), nullable=False, comment="Month: 2026-10"),
        sa.Column(
            "scope", sa.String(length=20), nullable=False, comment="branch, or staff (a person)"
        ),
        sa.Column(
            "party_id", sa.Integer(), nullable=False, comment="The branch id, or the staff id"
        ),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch"),
        sa.Column(
            "numerator",
            sa.Numeric(precision=16, scale=4),
            nullable=False,
            comment="Above the line (a sum, for averages)",
        ),
        sa.Column(
            "denominator",
            sa.Numeric(precision=16, scale=4),
            nullable=False,
            comment="Below the line: rows (values, for averages)",
        ),
        sa.Column(
            "value",
            sa.Numeric(precision=16, scale=6),
            nullable=True,
            comment="numerator / denominator x scale; empty when nothing was measured",
        ),
        sa.Column(
            "policy_hash",
            sa.String(length=40),
            nullable=False,
            comment="Policy version that computed it",
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False, comment="Run that computed it"),
        sa.Column(
            "computed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="as_of of that run",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_kpi_values_branch_id_branches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_values")),
        sa.UniqueConstraint(
            "metric_id", "period", "scope", "party_id", name=op.f("uq_kpi_values_metric_id")
        ),
    )
    with op.batch_alter_table("kpi_values", schema=None) as batch_op:
        batch_op.create_index("ix_kpi_values_period", ["period", "branch_id"], unique=False)

    op.create_table(
        "work_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "branch_id",
            sa.Integer(),
            nullable=False,
            comment="Branch (its after-sales team) that did it",
        ),
        sa.Column("kind", sa.String(length=40), nullable=False, comment="What was done"),
        sa.Column(
            "contract_id", sa.Integer(), nullable=True, comment="Contract or project concerned"
        ),
        sa.Column(
            "customer_id", sa.Integer(), nullable=True, comment="Customer visited or concerned"
        ),
        sa.Column("staff_id", sa.Integer(), nullable=True, comment="Who did it"),
        sa.Column(
            "done_on",
            sa.Date(),
            nullable=False,
            comment="Day the work was done (the visit, the report's date)",
        ),
        sa.Column(
            "submitted_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Written record handed in or uploaded",
        ),
        sa.Column("notes", sa.Text(), nullable=True, comment="What the record says"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_work_records_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_work_records_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_work_records_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_work_records_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_records")),
    )
    with op.batch_alter_table("work_records", schema=None) as batch_op:
        batch_op.create_index("ix_work_records_branch_done", ["branch_id", "done_on"], unique=False)
        batch_op.create_index("ix_work_records_contract_id", ["contract_id"], unique=False)

    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inspections_contract_on", ["contract_id", "inspected_on"], unique=False
        )

    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_service_requests_unit_received", ["unit_id", "received_at"], unique=False
        )

    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.create_index("ix_surveys_service_request_id", ["service_request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.drop_index("ix_surveys_service_request_id")

    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_service_requests_unit_received")

    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.drop_index("ix_inspections_contract_on")

    with op.batch_alter_table("work_records", schema=None) as batch_op:
        batch_op.drop_index("ix_work_records_contract_id")
        batch_op.drop_index("ix_work_records_branch_done")

    op.drop_table("work_records")
    with op.batch_alter_table("kpi_values", schema=None) as batch_op:
        batch_op.drop_index("ix_kpi_values_period")

    op.drop_table("kpi_values")
