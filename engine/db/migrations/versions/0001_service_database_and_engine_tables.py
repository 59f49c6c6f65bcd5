"""service database and engine tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:09:05.335371
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "branches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "code", sa.String(length=40), nullable=False, comment="Short unique code, e.g. SH-01"
        ),
        sa.Column("name", sa.String(length=200), nullable=False, comment="Display name"),
        sa.Column(
            "timezone",
            sa.String(length=40),
            nullable=False,
            comment="IANA time zone, e.g. Asia/Shanghai or Europe/Madrid",
        ),
        sa.Column(
            "country",
            sa.String(length=20),
            nullable=False,
            comment="ISO 3166 country code, e.g. CN, ES",
        ),
        sa.Column(
            "calendar",
            sa.String(length=40),
            nullable=True,
            comment="Business calendar name from the policy (empty: 24x7)",
        ),
        sa.Column(
            "locale", sa.String(length=20), nullable=False, comment="Default locale of the branch"
        ),
        sa.Column(
            "email",
            sa.String(length=200),
            nullable=True,
            comment="Service desk address, used as Reply-To",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branches")),
        sa.UniqueConstraint("code", name=op.f("uq_branches_code")),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "key",
            sa.String(length=400),
            nullable=False,
            comment="rule|entity|entity_id|occurrence|state",
        ),
        sa.Column("rule_id", sa.String(length=200), nullable=False, comment="Policy rule id"),
        sa.Column(
            "family", sa.String(length=20), nullable=False, comment="Rule family, e.g. reminder"
        ),
        sa.Column(
            "entity", sa.String(length=40), nullable=False, comment="Table name of the entity"
        ),
        sa.Column(
            "entity_id",
            sa.String(length=40),
            nullable=False,
            comment="Primary key of the entity, as text",
        ),
        sa.Column(
            "occurrence",
            sa.String(length=40),
            nullable=False,
            comment="Which occurrence, e.g. the date a reminder is anchored on",
        ),
        sa.Column(
            "state",
            sa.String(length=20),
            nullable=False,
            comment="due, warning, breach, escalation:N, late_stop, charged, ...",
        ),
        sa.Column(
            "due_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="When it fell due",
        ),
        sa.Column(
            "amount",
            sa.Numeric(precision=12, scale=2),
            nullable=True,
            comment="Money involved, if any",
        ),
        sa.Column(
            "currency", sa.String(length=20), nullable=True, comment="ISO 4217 currency of amount"
        ),
        sa.Column("recipients", sa.JSON(), nullable=False, comment="Roles notified"),
        sa.Column("reason", sa.Text(), nullable=False, comment="Why, in words"),
        sa.Column(
            "policy_hash",
            sa.String(length=40),
            nullable=False,
            comment="Policy version that produced it",
        ),
        sa.Column(
            "run_id", sa.String(length=40), nullable=False, comment="Run that first recorded it"
        ),
        sa.Column(
            "recorded_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="as_of of that run",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("key", name=op.f("uq_findings_key")),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_findings_rule_entity", ["rule_id", "entity", "entity_id"], unique=False
        )

    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "dedup_key",
            sa.String(length=400),
            nullable=False,
            comment="finding key|recipient role|recipient",
        ),
        sa.Column(
            "message_id", sa.String(length=200), nullable=False, comment="Stable Message-ID header"
        ),
        sa.Column(
            "finding_key", sa.String(length=400), nullable=False, comment="Finding that caused it"
        ),
        sa.Column(
            "template",
            sa.String(length=40),
            nullable=False,
            comment="Template folder under templates/notices/",
        ),
        sa.Column(
            "recipient_role",
            sa.String(length=40),
            nullable=False,
            comment="Role the recipient was reached through",
        ),
        sa.Column("recipient_name", sa.String(length=200), nullable=False, comment="Display name"),
        sa.Column(
            "recipient_address", sa.String(length=200), nullable=True, comment="Email address"
        ),
        sa.Column(
            "locale",
            sa.String(length=20),
            nullable=False,
            comment="Locale the letter was rendered in",
        ),
        sa.Column("subject", sa.Text(), nullable=False, comment="Rendered subject"),
        sa.Column("body_text", sa.Text(), nullable=False, comment="Rendered plain-text part"),
        sa.Column("body_html", sa.Text(), nullable=True, comment="Rendered HTML part"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="Outbox state"),
        sa.Column("attempts", sa.Integer(), nullable=False, comment="Delivery attempts so far"),
        sa.Column(
            "next_attempt_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Not before this instant",
        ),
        sa.Column(
            "last_error",
            sa.Text(),
            nullable=True,
            comment="Why the last attempt failed or the row was set aside",
        ),
        sa.Column(
            "created_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="as_of of the run that queued it",
        ),
        sa.Column(
            "sent_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="When the server accepted it",
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False, comment="Run that queued it"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_notices_dedup_key")),
        sa.UniqueConstraint("message_id", name=op.f("uq_notices_message_id")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index("ix_notices_status", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=40), nullable=False, comment="Model code, unique"),
        sa.Column("name", sa.String(length=200), nullable=False, comment="Display name"),
        sa.Column(
            "category",
            sa.String(length=40),
            nullable=False,
            comment="Product category, e.g. air_conditioner, instrument",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("model", name=op.f("uq_products_model")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=40), nullable=False, comment="Run id (UUID)"),
        sa.Column(
            "as_of",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="The instant the run evaluated",
        ),
        sa.Column(
            "started_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="Wall-clock start",
        ),
        sa.Column(
            "finished_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Wall-clock end",
        ),
        sa.Column(
            "outcome", sa.String(length=20), nullable=False, comment="running, success or error"
        ),
        sa.Column(
            "policy_hash",
            sa.String(length=40),
            nullable=False,
            comment="Content hash of rules/*.yaml",
        ),
        sa.Column("counts", sa.JSON(), nullable=False, comment="Counters, e.g. findings_new"),
        sa.Column("timings", sa.JSON(), nullable=False, comment="Seconds per step"),
        sa.Column(
            "error", sa.Text(), nullable=True, comment="What went wrong, when outcome is error"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_as_of", ["as_of"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "branch_id", sa.Integer(), nullable=False, comment="Branch that serves the customer"
        ),
        sa.Column(
            "name",
            sa.String(length=200),
            nullable=False,
            comment="Person or company name as it appears on letters",
        ),
        sa.Column(
            "email",
            sa.String(length=200),
            nullable=True,
            comment="Email for notices; empty: no email notices",
        ),
        sa.Column("phone", sa.String(length=40), nullable=True, comment="Phone number"),
        sa.Column(
            "locale", sa.String(length=20), nullable=False, comment="Language of customer letters"
        ),
        sa.Column(
            "region", sa.String(length=20), nullable=False, comment="Where the customer is served"
        ),
        sa.Column("address", sa.Text(), nullable=True, comment="Postal address"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_customers_branch_id_branches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "branch_id", sa.Integer(), nullable=True, comment="Branch; empty for head office"
        ),
        sa.Column("name", sa.String(length=200), nullable=False, comment="Full name"),
        sa.Column("email", sa.String(length=200), nullable=True, comment="Work email"),
        sa.Column("role", sa.String(length=40), nullable=False, comment="Role"),
        sa.Column(
            "supervisor_id", sa.Integer(), nullable=True, comment="Direct supervisor (staff id)"
        ),
        sa.Column(
            "locale", sa.String(length=20), nullable=False, comment="Language of internal notices"
        ),
        sa.Column("active", sa.Boolean(), nullable=False, comment="Still employed and reachable"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_staff_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["supervisor_id"], ["staff.id"], name=op.f("fk_staff_supervisor_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
    )
    op.create_table(
        "hotline_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch whose line rang"),
        sa.Column(
            "received_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When the phone rang",
        ),
        sa.Column("answered", sa.Boolean(), nullable=False, comment="Somebody picked up"),
        sa.Column("on_duty_staff_id", sa.Integer(), nullable=True, comment="Person on duty"),
        sa.Column("caller_phone", sa.String(length=40), nullable=True, comment="Caller's number"),
        sa.Column("duration_s", sa.Integer(), nullable=True, comment="Call length in seconds"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_hotline_calls_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["on_duty_staff_id"], ["staff.id"], name=op.f("fk_hotline_calls_on_duty_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotline_calls")),
    )
    with op.batch_alter_table("hotline_calls", schema=None) as batch_op:
        batch_op.create_index("ix_hotline_calls_received_at", ["received_at"], unique=False)

    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False, comment="Product model"),
        sa.Column("customer_id", sa.Integer(), nullable=False, comment="Owner"),
        sa.Column(
            "branch_id", sa.Integer(), nullable=False, comment="Branch that services the unit"
        ),
        sa.Column(
            "serial_number", sa.String(length=40), nullable=False, comment="Serial number, unique"
        ),
        sa.Column("purchased_on", sa.Date(), nullable=True, comment="Purchase date"),
        sa.Column(
            "proof_of_purchase", sa.Boolean(), nullable=False, comment="Invoice or receipt seen"
        ),
        sa.Column("installed_on", sa.Date(), nullable=True, comment="Installation date"),
        sa.Column(
            "manufactured_on",
            sa.Date(),
            nullable=True,
            comment="Production date derived from the serial number",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_units_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_units_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_units_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("serial_number", name=op.f("uq_units_serial_number")),
    )
    op.create_table(
        "contracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "number", sa.String(length=40), nullable=False, comment="Contract number, unique"
        ),
        sa.Column("customer_id", sa.Integer(), nullable=False, comment="Customer"),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch in charge"),
        sa.Column(
            "unit_id",
            sa.Integer(),
            nullable=True,
            comment="Unit covered; empty: all the customer's units",
        ),
        sa.Column("kind", sa.String(length=40), nullable=False, comment="Contract kind"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="Contract status"),
        sa.Column("starts_on", sa.Date(), nullable=False, comment="First day covered"),
        sa.Column("ends_on", sa.Date(), nullable=False, comment="Last day covered"),
        sa.Column(
            "sales_rep_id", sa.Integer(), nullable=True, comment="Sales rep in charge of renewal"
        ),
        sa.Column(
            "renewal_of_id", sa.Integer(), nullable=True, comment="The contract this one renews"
        ),
        sa.Column(
            "renewed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="When the renewal was signed",
        ),
        sa.Column(
            "amount", sa.Numeric(precision=12, scale=2), nullable=True, comment="Contract value"
        ),
        sa.Column(
            "currency", sa.String(length=20), nullable=True, comment="ISO 4217 currency of amount"
        ),
        sa.Column(
            "final_acceptance_on",
            sa.Date(),
            nullable=True,
            comment="Project contracts: final acceptance date",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_contracts_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contracts_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["renewal_of_id"], ["contracts.id"], name=op.f("fk_contracts_renewal_of_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["sales_rep_id"], ["staff.id"], name=op.f("fk_contracts_sales_rep_id_staff")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_contracts_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
        sa.UniqueConstraint("number", name=op.f("uq_contracts_number")),
    )
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.create_index("ix_contracts_ends_on", ["ends_on"], unique=False)

    op.create_table(
        "service_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False, comment="Call number, unique"),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch handling the call"),
        sa.Column("customer_id", sa.Integer(), nullable=False, comment="Customer"),
        sa.Column("unit_id", sa.Integer(), nullable=True, comment="Unit concerned"),
        sa.Column("technician_id", sa.Integer(), nullable=True, comment="Technician assigned"),
        sa.Column("kind", sa.String(length=20), nullable=False, comment="Kind of job"),
        sa.Column(
            "category", sa.String(length=20), nullable=True, comment="Service category as recorded"
        ),
        sa.Column("region", sa.String(length=20), nullable=False, comment="Where the job is"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="Current status"),
        sa.Column(
            "fault_part",
            sa.String(length=40),
            nullable=True,
            comment="Faulty part, e.g. compressor, fan, board",
        ),
        sa.Column("description", sa.Text(), nullable=True, comment="What the customer reported"),
        sa.Column(
            "human_damage", sa.Boolean(), nullable=False, comment="Damage caused by the user"
        ),
        sa.Column(
            "unauthorised_repair",
            sa.Boolean(),
            nullable=False,
            comment="Opened or repaired by a third party",
        ),
        sa.Column(
            "needs_parts", sa.Boolean(), nullable=False, comment="Repair waits for spare parts"
        ),
        sa.Column(
            "factory_return", sa.Boolean(), nullable=False, comment="Sent back to the factory"
        ),
        sa.Column(
            "repeat_of_id", sa.Integer(), nullable=True, comment="Earlier call for same fault"
        ),
        sa.Column(
            "received_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="Call received",
        ),
        sa.Column(
            "dispatched_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Technician dispatched",
        ),
        sa.Column(
            "arrived_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Technician on site",
        ),
        sa.Column(
            "promised_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Completion time promised to the customer",
        ),
        sa.Column(
            "completed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Repair finished",
        ),
        sa.Column(
            "collected_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Customer collected the unit or signed off",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_service_requests_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_service_requests_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["repeat_of_id"],
            ["service_requests.id"],
            name=op.f("fk_service_requests_repeat_of_id_service_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"], ["staff.id"], name=op.f("fk_service_requests_technician_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_service_requests_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requests")),
        sa.UniqueConstraint("number", name=op.f("uq_service_requests_number")),
    )
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.create_index("ix_service_requests_received_at", ["received_at"], unique=False)

    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "number", sa.String(length=40), nullable=False, comment="Complaint number, unique"
        ),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch concerned"),
        sa.Column("customer_id", sa.Integer(), nullable=False, comment="Customer"),
        sa.Column("service_request_id", sa.Integer(), nullable=True, comment="Related call"),
        sa.Column("kind", sa.String(length=20), nullable=False, comment="appeal or claim"),
        sa.Column("severity", sa.String(length=20), nullable=False, comment="general or serious"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="Complaint status"),
        sa.Column(
            "received_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="Complaint received",
        ),
        sa.Column(
            "accepted_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Complaint accepted for handling",
        ),
        sa.Column(
            "first_reply_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="First reply to the customer",
        ),
        sa.Column(
            "closed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Complaint closed",
        ),
        sa.Column(
            "responsible_staff_id", sa.Integer(), nullable=True, comment="Person found responsible"
        ),
        sa.Column(
            "responsible_department",
            sa.String(length=200),
            nullable=True,
            comment="Department found responsible",
        ),
        sa.Column(
            "verified", sa.Boolean(), nullable=False, comment="Complaint verified as justified"
        ),
        sa.Column(
            "repeat_of_id", sa.Integer(), nullable=True, comment="Earlier complaint, same problem"
        ),
        sa.Column(
            "customer_satisfied",
            sa.Boolean(),
            nullable=True,
            comment="Customer satisfied with the outcome",
        ),
        sa.Column("outcome", sa.Text(), nullable=True, comment="Outcome told to the customer"),
        sa.Column(
            "compensation",
            sa.Numeric(precision=12, scale=2),
            nullable=True,
            comment="Compensation paid (claims)",
        ),
        sa.Column(
            "currency",
            sa.String(length=20),
            nullable=True,
            comment="ISO 4217 currency of compensation",
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_complaints_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_complaints_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["repeat_of_id"], ["complaints.id"], name=op.f("fk_complaints_repeat_of_id_complaints")
        ),
        sa.ForeignKeyConstraint(
            ["responsible_staff_id"],
            ["staff.id"],
            name=op.f("fk_complaints_responsible_staff_id_staff"),
        ),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_complaints_service_request_id_service_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("number", name=op.f("uq_complaints_number")),
    )
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.create_index("ix_complaints_received_at", ["received_at"], unique=False)

    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch"),
        sa.Column("contract_id", sa.Integer(), nullable=False, comment="Maintenance contract"),
        sa.Column("technician_id", sa.Integer(), nullable=True, comment="Inspector"),
        sa.Column("inspected_on", sa.Date(), nullable=False, comment="Day of the inspection"),
        sa.Column(
            "report_submitted_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=True,
            comment="Report handed in",
        ),
        sa.Column("falsified", sa.Boolean(), nullable=False, comment="Report found to be false"),
        sa.Column("notes", sa.Text(), nullable=True, comment="Findings of the inspection"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_inspections_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_inspections_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"], ["staff.id"], name=op.f("fk_inspections_technician_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
    )
    op.create_table(
        "status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_request_id", sa.Integer(), nullable=False, comment="Service request"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="Status entered"),
        sa.Column(
            "changed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When it changed",
        ),
        sa.Column("note", sa.Text(), nullable=True, comment="Free text"),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_status_changes_service_request_id_service_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    with op.batch_alter_table("status_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_changes_request", ["service_request_id", "changed_at"], unique=False
        )

    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False, comment="Branch"),
        sa.Column(
            "service_request_id", sa.Integer(), nullable=False, comment="Service request surveyed"
        ),
        sa.Column("technician_id", sa.Integer(), nullable=True, comment="Technician rated"),
        sa.Column(
            "surveyed_at",
            engine.db.types.UtcDateTime(timezone=True),
            nullable=False,
            comment="When the customer answered",
        ),
        sa.Column("attitude", sa.Integer(), nullable=True, comment="Service attitude, 1-4"),
        sa.Column("skill", sa.Integer(), nullable=True, comment="Technical skill, 1-4"),
        sa.Column("punctuality", sa.Integer(), nullable=True, comment="Punctuality, 1-4"),
        sa.Column("promise_keeping", sa.Integer(), nullable=True, comment="Kept promises, 1-4"),
        sa.Column("comment", sa.Text(), nullable=True, comment="Customer's words"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_surveys_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_surveys_service_request_id_service_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"], ["staff.id"], name=op.f("fk_surveys_technician_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
    )


def downgrade() -> None:
    op.drop_table("surveys")
    with op.batch_alter_table("status_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_status_changes_request")

    op.drop_table("status_changes")
    op.drop_table("inspections")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_index("ix_complaints_received_at")

    op.drop_table("complaints")
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_service_requests_received_at")

    op.drop_table("service_requests")
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_index("ix_contracts_ends_on")

    op.drop_table("contracts")
    op.drop_table("units")
    with op.batch_alter_table("hotline_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_hotline_calls_received_at")

    op.drop_table("hotline_calls")
    op.drop_table("staff")
    op.drop_table("customers")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_as_of")

    op.drop_table("runs")
    op.drop_table("products")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_status")

    op.drop_table("notices")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_rule_entity")

    op.drop_table("findings")
    op.drop_table("branches")
