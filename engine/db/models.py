"""The service database: what the department records, and the engine's own tables.

Every column carries a comment; `docs/tables.md` is generated from them and is also the CSV
import format (`aftersales import DIR`). Instants are stored in UTC; each branch has a time zone.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.db.types import (
    TYPE_ANNOTATION_MAP,
    choices,
    intpk,
    money,
    str20,
    str40,
    str200,
    str400,
)

REGIONS = ("urban", "suburban")
COMPLAINT_CAUSES = (
    "product",
    "workmanship",
    "inspection_not_done",
    "backup_not_done",
    "delivery",
    "attitude",
    "other",
)
LOCALES = ("zh-CN", "zh-TW", "en", "es")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the shared type map and constraint names Alembic can follow."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = TYPE_ANNOTATION_MAP


def _fk(target: str, doc: str, **kw: Any) -> Any:
    return mapped_column(ForeignKey(target), comment=doc, **kw)


def _col(doc: str, **kw: Any) -> Any:
    return mapped_column(comment=doc, **kw)


# ---------------------------------------------------------------- the service database


class RowVersioned:
    """A service table whose rows carry a change marker (see engine/db/changes.py)."""

    # Kept by the database's triggers, whoever writes the row; never imported. Last in the
    # table (sort_order), after the columns people fill.
    row_version: Mapped[int | None] = mapped_column(
        BigInteger,
        index=True,
        sort_order=1000,
        info={"kept_by": "triggers"},
        comment="Change marker kept by the database (triggers): leave it out when writing",
    )


class Branch(RowVersioned, Base):
    """A service centre or branch office."""

    __tablename__ = "branches"
    id: Mapped[intpk]
    code: Mapped[str40] = _col("Short unique code, e.g. SH-01", unique=True)
    name: Mapped[str200] = _col("Display name")
    timezone: Mapped[str40] = _col("IANA time zone, e.g. Asia/Shanghai or Europe/Madrid")
    country: Mapped[str20] = _col("ISO 3166 country code, e.g. CN, ES")
    calendar: Mapped[str40 | None] = _col("Business calendar name from the policy (empty: 24x7)")
    locale: Mapped[str20] = _col("Default locale of the branch", info=choices(*LOCALES))
    email: Mapped[str200 | None] = _col("Service desk address, used as Reply-To")


class Staff(RowVersioned, Base):
    """A person of the department; roles decide who is notified."""

    __tablename__ = "staff"
    id: Mapped[intpk]
    branch_id: Mapped[int | None] = _fk("branches.id", "Branch; empty for head office")
    name: Mapped[str200] = _col("Full name")
    email: Mapped[str200 | None] = _col("Work email")
    # Any role id: the policy declares the roles (rules/roles.yaml), `aftersales validate`
    # reports staff holding one it does not.
    role: Mapped[str40] = _col("Role")
    supervisor_id: Mapped[int | None] = _fk("staff.id", "Direct supervisor (staff id)")
    locale: Mapped[str20] = _col("Language of internal notices", info=choices(*LOCALES))
    active: Mapped[bool] = _col("Still employed and reachable", default=True)


class Customer(RowVersioned, Base):
    """Someone who bought a product or holds a contract."""

    __tablename__ = "customers"
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch that serves the customer")
    name: Mapped[str200] = _col("Person or company name as it appears on letters")
    email: Mapped[str200 | None] = _col("Email for notices; empty: no email notices")
    phone: Mapped[str40 | None] = _col("Phone number")
    locale: Mapped[str20] = _col("Language of customer letters", info=choices(*LOCALES))
    region: Mapped[str20] = _col("Where the customer is served", info=choices(*REGIONS))
    address: Mapped[str | None] = _col("Postal address")


class Product(RowVersioned, Base):
    """A product model the company sells and services."""

    __tablename__ = "products"
    id: Mapped[intpk]
    model: Mapped[str40] = _col("Model code, unique", unique=True)
    name: Mapped[str200] = _col("Display name")
    category: Mapped[str40] = _col("Product category, e.g. air_conditioner, instrument")


class Unit(RowVersioned, Base):
    """One sold item, identified by its serial number."""

    __tablename__ = "units"
    id: Mapped[intpk]
    product_id: Mapped[int] = _fk("products.id", "Product model")
    customer_id: Mapped[int] = _fk("customers.id", "Owner")
    branch_id: Mapped[int] = _fk("branches.id", "Branch that services the unit")
    serial_number: Mapped[str40] = _col("Serial number, unique", unique=True)
    purchased_on: Mapped[date | None] = _col("Purchase date")
    proof_of_purchase: Mapped[bool] = _col("Invoice or receipt seen", default=False)
    installed_on: Mapped[date | None] = _col("Installation date")
    manufactured_on: Mapped[date | None] = _col("Production date derived from the serial number")


class Contract(RowVersioned, Base):
    """A maintenance, free-maintenance or project contract with a customer."""

    __tablename__ = "contracts"
    __table_args__ = (
        Index("ix_contracts_ends_on", "ends_on"),
        # Warranty and renewal fields look contracts up by customer and by predecessor.
        Index("ix_contracts_customer_id", "customer_id"),
        Index("ix_contracts_renewal_of_id", "renewal_of_id"),
    )
    id: Mapped[intpk]
    number: Mapped[str40] = _col("Contract number, unique", unique=True)
    customer_id: Mapped[int] = _fk("customers.id", "Customer")
    branch_id: Mapped[int] = _fk("branches.id", "Branch in charge")
    unit_id: Mapped[int | None] = _fk("units.id", "Unit covered; empty: all the customer's units")
    kind: Mapped[str40] = _col(
        "Contract kind",
        info=choices("maintenance", "free_maintenance", "extended_warranty", "project"),
    )
    status: Mapped[str20] = _col(
        "Contract status", info=choices("active", "renewed", "lapsed", "cancelled")
    )
    starts_on: Mapped[date] = _col("First day covered")
    ends_on: Mapped[date] = _col("Last day covered")
    sales_rep_id: Mapped[int | None] = _fk("staff.id", "Sales rep in charge of renewal")
    renewal_of_id: Mapped[int | None] = _fk("contracts.id", "The contract this one renews")
    renewed_at: Mapped[datetime | None] = _col("When the renewal was signed")
    amount: Mapped[money | None] = _col("Contract value")
    currency: Mapped[str20 | None] = _col("ISO 4217 currency of amount")
    final_acceptance_on: Mapped[date | None] = _col("Project contracts: final acceptance date")


SERVICE_STATUSES = (
    "received",
    "dispatched",
    "on_site",
    "waiting_parts",
    "waiting_customer",
    "factory_return",
    "completed",
    "collected",
    "cancelled",
)


class ServiceRequest(RowVersioned, Base):
    """A repair call (or other service job) from receipt to collection."""

    __tablename__ = "service_requests"
    __table_args__ = (
        Index("ix_service_requests_received_at", "received_at"),
        # Repeat calls on a unit (first-time fix) are looked up by unit and time.
        Index("ix_service_requests_unit_received", "unit_id", "received_at"),
    )
    id: Mapped[intpk]
    number: Mapped[str40] = _col("Call number, unique", unique=True)
    branch_id: Mapped[int] = _fk("branches.id", "Branch handling the call")
    customer_id: Mapped[int] = _fk("customers.id", "Customer")
    unit_id: Mapped[int | None] = _fk("units.id", "Unit concerned")
    technician_id: Mapped[int | None] = _fk("staff.id", "Technician assigned")
    kind: Mapped[str20] = _col(
        "Kind of job", info=choices("repair", "installation", "maintenance", "inspection", "admin")
    )
    category: Mapped[str20 | None] = _col(
        "Service category as recorded", info=choices("paid", "contract", "free", "admin")
    )
    region: Mapped[str20] = _col("Where the job is", info=choices(*REGIONS))
    status: Mapped[str20] = _col("Current status", info=choices(*SERVICE_STATUSES))
    fault_part: Mapped[str40 | None] = _col("Faulty part, e.g. compressor, fan, board")
    description: Mapped[str | None] = _col("What the customer reported")
    human_damage: Mapped[bool] = _col("Damage caused by the user", default=False)
    unauthorised_repair: Mapped[bool] = _col("Opened or repaired by a third party", default=False)
    needs_parts: Mapped[bool] = _col("Repair waits for spare parts", default=False)
    factory_return: Mapped[bool] = _col("Sent back to the factory", default=False)
    repeat_of_id: Mapped[int | None] = _fk("service_requests.id", "Earlier call for same fault")
    received_at: Mapped[datetime] = _col("Call received")
    responded_at: Mapped[datetime | None] = _col(
        "The desk answered the customer's report (001 四.1 response time)"
    )
    dispatched_at: Mapped[datetime | None] = _col("Technician dispatched")
    contacted_at: Mapped[datetime | None] = _col(
        "The technician contacted the customer to agree the visit (001 四.1)"
    )
    arrived_at: Mapped[datetime | None] = _col("Technician on site")
    promised_at: Mapped[datetime | None] = _col("Completion time promised to the customer")
    expected_at: Mapped[datetime | None] = _col(
        "Completion now expected, set when a repair waits for parts or the factory and will "
        "overrun; the customer's delay letter gives it"
    )
    completed_at: Mapped[datetime | None] = _col("Repair finished")
    collected_at: Mapped[datetime | None] = _col("Customer collected the unit or signed off")


class StatusChange(RowVersioned, Base):
    """One status transition of a service request (pauses are derived from these)."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_changes_request", "service_request_id", "changed_at"),)
    id: Mapped[intpk]
    service_request_id: Mapped[int] = _fk("service_requests.id", "Service request")
    status: Mapped[str20] = _col("Status entered", info=choices(*SERVICE_STATUSES))
    changed_at: Mapped[datetime] = _col("When it changed")
    note: Mapped[str | None] = _col("Free text")


class Complaint(RowVersioned, Base):
    """A customer complaint: an appeal (rework/replace/return) or a claim (compensation)."""

    __tablename__ = "complaints"
    __table_args__ = (
        Index("ix_complaints_received_at", "received_at"),
        # Tallies and letters on complaints closed in a period.
        Index("ix_complaints_closed_at", "closed_at"),
    )
    id: Mapped[intpk]
    number: Mapped[str40] = _col("Complaint number, unique", unique=True)
    branch_id: Mapped[int] = _fk("branches.id", "Branch concerned")
    customer_id: Mapped[int] = _fk("customers.id", "Customer")
    service_request_id: Mapped[int | None] = _fk("service_requests.id", "Related call")
    kind: Mapped[str20] = _col("appeal or claim", info=choices("appeal", "claim"))
    severity: Mapped[str20] = _col("general or serious", info=choices("general", "serious"))
    status: Mapped[str20] = _col("Complaint status", info=choices("open", "replied", "closed"))
    received_at: Mapped[datetime] = _col("Complaint received")
    accepted_at: Mapped[datetime | None] = _col("Complaint accepted for handling")
    first_reply_at: Mapped[datetime | None] = _col("First reply to the customer")
    closed_at: Mapped[datetime | None] = _col("Complaint closed")
    visited_at: Mapped[datetime | None] = _col(
        "The service chief, or someone sent, visited the complaining customer (000 art.22)"
    )
    handling_due_at: Mapped[datetime | None] = _col(
        "Handling deadline set when the complaint is accepted, case by case (002 六)"
    )
    responsible_staff_id: Mapped[int | None] = _fk("staff.id", "Person found responsible")
    responsible_department: Mapped[str200 | None] = _col("Department found responsible")
    cause: Mapped[str40 | None] = _col(
        "Cause found when the case was traced back (000 part 2 §5: inspection or backup work "
        "not done properly doubles the fine)",
        info=choices(*COMPLAINT_CAUSES),
    )
    verified: Mapped[bool] = _col("Complaint verified as justified", default=False)
    repeat_of_id: Mapped[int | None] = _fk("complaints.id", "Earlier complaint, same problem")
    customer_satisfied: Mapped[bool | None] = _col("Customer satisfied with the outcome")
    outcome: Mapped[str | None] = _col("Outcome told to the customer")
    compensation: Mapped[money | None] = _col("Compensation paid (claims)")
    currency: Mapped[str20 | None] = _col("ISO 4217 currency of compensation")


class Survey(RowVersioned, Base):
    """The next-day satisfaction survey of a service request; each item rated 1 (poor) to 4."""

    __tablename__ = "surveys"
    __table_args__ = (
        Index("ix_surveys_surveyed_at", "surveyed_at"),
        Index("ix_surveys_service_request_id", "service_request_id"),  # survey coverage
    )
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch")
    service_request_id: Mapped[int] = _fk("service_requests.id", "Service request surveyed")
    technician_id: Mapped[int | None] = _fk("staff.id", "Technician rated")
    surveyed_at: Mapped[datetime] = _col("When the customer answered")
    attitude: Mapped[int | None] = _col("Service attitude, 1-4")
    skill: Mapped[int | None] = _col("Technical skill, 1-4")
    punctuality: Mapped[int | None] = _col("Punctuality, 1-4")
    promise_keeping: Mapped[int | None] = _col("Kept promises, 1-4")
    comment: Mapped[str | None] = _col("Customer's words")


class HotlineCall(RowVersioned, Base):
    """A call to the service hotline."""

    __tablename__ = "hotline_calls"
    __table_args__ = (Index("ix_hotline_calls_received_at", "received_at"),)
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch whose line rang")
    received_at: Mapped[datetime] = _col("When the phone rang")
    answered: Mapped[bool] = _col("Somebody picked up", default=False)
    on_duty_staff_id: Mapped[int | None] = _fk("staff.id", "Person on duty")
    caller_phone: Mapped[str40 | None] = _col("Caller's number")
    duration_s: Mapped[int | None] = _col("Call length in seconds")


class Inspection(RowVersioned, Base):
    """A periodic inspection report for a system under maintenance."""

    __tablename__ = "inspections"
    # Obligations count each contract's reports per month.
    __table_args__ = (Index("ix_inspections_contract_on", "contract_id", "inspected_on"),)
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch")
    contract_id: Mapped[int] = _fk("contracts.id", "Maintenance contract")
    technician_id: Mapped[int | None] = _fk("staff.id", "Inspector")
    inspected_on: Mapped[date] = _col("Day of the inspection")
    report_submitted_at: Mapped[datetime | None] = _col("Report handed in")
    falsified: Mapped[bool] = _col("Report found to be false", default=False)
    notes: Mapped[str | None] = _col("Findings of the inspection")


WORK_KINDS = (
    "visit",
    "optimisation_report",
    "project_join",
    "handover",
    "handbook_update",
    "daily_report",  # the technician's daily work report (000 art.10)
    "supervisor_report",  # the service supervisor's daily report (000 art.11-12)
    "work_log",  # the daily work log (000 part 2 §2(1))
    "annual_review",  # the year-end review of after-sales work (003-15 (五))
)


class WorkRecord(RowVersioned, Base):
    """Recurring after-sales work done and recorded: a customer visit, a report, a handover."""

    __tablename__ = "work_records"
    __table_args__ = (
        Index("ix_work_records_branch_done", "branch_id", "done_on"),
        Index("ix_work_records_contract_id", "contract_id"),
        # Obligations per person (a team lead's reports and visits in a month).
        Index("ix_work_records_staff_kind_done", "staff_id", "kind", "done_on"),
    )
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch (its after-sales team) that did it")
    kind: Mapped[str40] = _col("What was done", info=choices(*WORK_KINDS))
    contract_id: Mapped[int | None] = _fk("contracts.id", "Contract or project concerned")
    customer_id: Mapped[int | None] = _fk("customers.id", "Customer visited or concerned")
    staff_id: Mapped[int | None] = _fk("staff.id", "Who did it")
    done_on: Mapped[date] = _col("Day the work was done (the visit, the report's date)")
    submitted_at: Mapped[datetime | None] = _col("Written record handed in or uploaded")
    notes: Mapped[str | None] = _col("What the record says")


class Improvement(RowVersioned, Base):
    """An improvement proposed by after-sales staff; rewarded once approved and effective."""

    __tablename__ = "improvements"
    __table_args__ = (Index("ix_improvements_approved_at", "approved_at"),)
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch")
    staff_id: Mapped[int] = _fk("staff.id", "Who proposed it")
    title: Mapped[str200] = _col("What was improved")
    proposed_on: Mapped[date] = _col("Day the team lead submitted the reward request")
    approved_at: Mapped[datetime | None] = _col("Approved by the management committee")
    effective: Mapped[bool] = _col(
        "Brought a significant effect, as confirmed by the sales director", default=False
    )
    reward_amount: Mapped[money | None] = _col("Reward approved, in the ledger's currency")


class Target(RowVersioned, Base):
    """One person's target for one period and what they achieved (tasks, assessment scores)."""

    __tablename__ = "targets"
    __table_args__ = (Index("ix_targets_period_start", "period_start"),)
    id: Mapped[intpk]
    branch_id: Mapped[int] = _fk("branches.id", "Branch")
    staff_id: Mapped[int] = _fk("staff.id", "Person the target is for")
    period_start: Mapped[date] = _col("First day of the period, e.g. 2026-10-01 for 2026-Q4")
    item: Mapped[str40] = _col(
        "What is measured, e.g. task (output or sales), service_review, training"
    )
    target: Mapped[money | None] = _col("Value to reach; empty for assessment scores")
    actual: Mapped[money | None] = _col("Value reached, or the assessment score (0-100)")


SERVICE_TABLES: tuple[type[Base], ...] = (
    Branch,
    Staff,
    Customer,
    Product,
    Unit,
    Contract,
    ServiceRequest,
    StatusChange,
    Complaint,
    Survey,
    HotlineCall,
    Inspection,
    Improvement,
    Target,
    WorkRecord,
)
"""The tables operations import and rules read, in dependency order."""


# ---------------------------------------------------------------- change markers


class DeletedRow(Base):
    """A tombstone: a service row deleted, or the references a row left when one of its
    foreign keys changed; written by the table's triggers."""

    __tablename__ = "deleted_rows"
    id: Mapped[intpk]
    table_name: Mapped[str40] = _col("Table the row was deleted from")
    row_id: Mapped[int] = _col("Its id", type_=BigInteger)
    refs: Mapped[dict[str, Any]] = _col(
        'Its foreign keys at deletion, e.g. {"service_request_id": 42}'
    )
    row_version: Mapped[int] = _col("Change marker of the deletion", type_=BigInteger, index=True)
    deleted_at: Mapped[datetime] = _col("Wall-clock time of the deletion")


# Serialised by SQLite's single writer, so a marker taken by bumping it splits the writes
# exactly; PostgreSQL uses transaction ids instead and leaves this row alone.
change_clock = Table(
    "change_clock",
    Base.metadata,
    Column(
        "value",
        BigInteger,
        nullable=False,
        comment="SQLite: the row_version new writes take; a run's marker moves it on",
    ),
)


# ---------------------------------------------------------------- the engine's own tables


class Run(Base):
    """One evaluation of the policy against the database."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_as_of", "as_of"),)
    id: Mapped[str40] = mapped_column(primary_key=True, comment="Run id (UUID)")
    as_of: Mapped[datetime] = _col("The instant the run evaluated")
    started_at: Mapped[datetime] = _col("Wall-clock start")
    finished_at: Mapped[datetime | None] = _col("Wall-clock end")
    outcome: Mapped[str20] = _col("running, success or error")
    policy_hash: Mapped[str40] = _col("Content hash of rules/*.yaml")
    counts: Mapped[dict[str, Any]] = _col("Counters, e.g. findings_new", default=dict)
    timings: Mapped[dict[str, Any]] = _col("Seconds per step", default=dict)
    error: Mapped[str | None] = _col("What went wrong, when outcome is error")
    mode: Mapped[str20 | None] = _col("full or incremental (judged only what changed or came due)")
    change_marker: Mapped[int | None] = _col(
        "Change marker taken before the run read the data: the next run reads rows changed after",
        type_=BigInteger(),
    )
    software: Mapped[dict[str, Any] | None] = _col(
        "Versions of the engine and of the holidays data it judged with"
    )


class PolicyVersion(Base):
    """The text of a policy a run judged with, kept so `aftersales diff` can compare with it."""

    __tablename__ = "policy_versions"
    hash: Mapped[str40] = mapped_column(
        primary_key=True, comment="Content hash of rules/*.yaml, as runs.policy_hash"
    )
    files: Mapped[dict[str, Any]] = _col("Each policy file's text by its name in the folder")
    rules: Mapped[dict[str, Any] | None] = _col(
        "Each rule's digest by its id (engine.policy.digest)"
    )
    recorded_at: Mapped[datetime] = _col("When a run first judged with this version")


class Finding(Base):
    """Something a rule found: due, late, owed. Its key makes it exist once."""

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_findings_rule_entity", "rule_id", "entity", "entity_id"),
        Index("ix_findings_open", "closed_at", "rule_id"),
    )
    id: Mapped[intpk]
    key: Mapped[str400] = _col("rule|entity|entity_id|occurrence|state")
    rule_id: Mapped[str200] = _col("Policy rule id")
    family: Mapped[str20] = _col("Rule family, e.g. reminder")
    entity: Mapped[str40] = _col("Table name of the entity")
    entity_id: Mapped[str40] = _col("Primary key of the entity, as text")
    occurrence: Mapped[str40] = _col("Which occurrence, e.g. the date a reminder is anchored on")
    state: Mapped[str20] = _col("due, warning, breach, escalation:N, late_stop, charged, ...")
    due_at: Mapped[datetime | None] = _col("When it fell due")
    amount: Mapped[money | None] = _col("Money involved, if any")
    currency: Mapped[str20 | None] = _col("ISO 4217 currency of amount")
    recipients: Mapped[list[Any]] = _col("Roles notified", default=list)
    reason: Mapped[str] = _col("Why, in words")
    policy_hash: Mapped[str40] = _col("Policy version that decided it")
    rule_digest: Mapped[str40 | None] = _col(
        "Version of the rule that decided it (engine.policy.digest)"
    )
    run_id: Mapped[str40] = _col("Run that first recorded it")
    recorded_at: Mapped[datetime] = _col("as_of of that run")
    closed_at: Mapped[datetime | None] = _col(
        "as_of of the run that no longer found it (a clock's state), or recorded_at for an event"
    )


UNTOLD = text("status = 'dead' AND recipient_role = 'customer' AND told_at IS NULL")

# `held`: a staff item waiting, as data (`context`), to be bundled into the person's digest;
# `bundled`: an item that went out inside its digest (`digest_id`), never on its own.
# `render_failed`: its template could not be rendered (an error, or past the render limits);
# nothing was sent, `last_error` names the template line, and a person must look at it.
# `cancelled`: a person took it out of the outbox (`aftersales outbox --cancel`); never sent.
OUTBOX_STATES = (
    "pending",
    "sending",
    "sent",
    "failed",
    "dead",
    "unknown",
    "held",
    "bundled",
    "render_failed",
    "cancelled",
)


class Notice(Base):
    """One message to one recipient in the outbox; its dedup key makes it exist once."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        UniqueConstraint("message_id"),
        Index("ix_notices_status", "status", "next_attempt_at"),
        Index("ix_notices_digest_id", "digest_id"),
        Index("ix_notices_run_id", "run_id", "status"),
        Index("ix_notices_urgent", "urgent", "listed_in"),
        # Only the customer letters not yet handed to staff: a cycle finds them without
        # reading every dead letter of the past.
        Index(
            "ix_notices_untold",
            *("status", "recipient_role", "told_at", "id"),  # the query's terms: it is chosen
            sqlite_where=UNTOLD,
            postgresql_where=UNTOLD,
        ),
    )
    id: Mapped[intpk]
    dedup_key: Mapped[str400] = _col("finding key|recipient role|recipient")
    message_id: Mapped[str200] = _col("Stable Message-ID header")
    finding_key: Mapped[str400] = _col("Finding that caused it")
    template: Mapped[str40] = _col("Template folder under templates/notices/")
    recipient_role: Mapped[str40] = _col("Role the recipient was reached through")
    recipient_name: Mapped[str200] = _col("Display name")
    recipient_address: Mapped[str200 | None] = _col("Email address")
    recipient_ref: Mapped[str40 | None] = _col(
        "Who the reader is (staff:12, customer:7): digests group by it"
    )
    timezone: Mapped[str40 | None] = _col("Reader's time zone (IANA), for the send window")
    digest_id: Mapped[int | None] = _fk(
        "notices.id", "For a bundled item: the digest it went out in"
    )
    locale: Mapped[str20] = _col("Locale the letter was rendered in")
    subject: Mapped[str] = _col("Rendered subject")
    body_text: Mapped[str] = _col("Rendered plain-text part")
    body_html: Mapped[str | None] = _col("Rendered HTML part")
    status: Mapped[str20] = _col("Outbox state", info=choices(*OUTBOX_STATES))
    attempts: Mapped[int] = _col("Delivery attempts so far", default=0)
    next_attempt_at: Mapped[datetime | None] = _col("Not before this instant")
    last_error: Mapped[str | None] = _col("Why the last attempt failed or the row was set aside")
    created_at: Mapped[datetime] = _col("as_of of the run that queued it")
    sent_at: Mapped[datetime | None] = _col("When the server accepted it")
    run_id: Mapped[str40] = _col("Run that queued it")
    urgent: Mapped[bool] = _col(
        "Sent at once (policy `urgent: true`), not held for the digest", default=False
    )
    context: Mapped[str | None] = _col(
        "A held staff item's template context (JSON): rendered only when a digest shows it"
    )
    listed_in: Mapped[int | None] = _fk(
        "notices.id", "For an urgent staff item: the digest that listed it as already sent"
    )
    told_at: Mapped[datetime | None] = _col(
        "For a customer letter that could not be emailed: when staff were asked to phone or "
        "post it (defaults.undeliverable)"
    )


class OutboxAction(Base):
    """What a person did to a notice (`aftersales outbox --retry/--cancel`): who, when, why."""

    __tablename__ = "outbox_actions"
    __table_args__ = (Index("ix_outbox_actions_notice_id", "notice_id"),)
    id: Mapped[intpk]
    notice_id: Mapped[int] = _fk("notices.id", "Notice acted on")
    action: Mapped[str20] = _col("retry or cancel", info=choices("retry", "cancel"))
    status_before: Mapped[str20] = _col("The notice's state before")
    error_before: Mapped[str | None] = _col("Its last_error before")
    by: Mapped[str200] = _col("Who did it (--by, default the login name)")
    at: Mapped[datetime] = _col("When")
    reason: Mapped[str | None] = _col("Why (required to cancel)")


class NoticeAttachment(Base):
    """A file sent with a notice: a CSV report, or a chart shown inline in the HTML part."""

    __tablename__ = "notice_attachments"
    __table_args__ = (Index("ix_notice_attachments_notice_id", "notice_id"),)
    id: Mapped[intpk]
    notice_id: Mapped[int] = _fk("notices.id", "Notice it belongs to")
    filename: Mapped[str200] = _col("File name the reader sees")
    content_type: Mapped[str40] = _col("MIME type, e.g. text/csv or image/png")
    content_id: Mapped[str200 | None] = _col(
        "For an inline image: the cid the HTML part refers to; empty: an attachment"
    )
    data: Mapped[bytes] = _col("The file's bytes")


LEDGER_KINDS = ("original", "correction")


class LedgerEntry(Base):
    """A penalty or reward booked to a person: append-only; changes are new correcting entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_ledger_entries_period", "period", "party_id"),
        Index("ix_ledger_entries_rule", "rule_id", "period"),
    )
    id: Mapped[intpk]
    key: Mapped[str400] = _col("rule|staff|party|period|state, the key of the finding it books")
    period: Mapped[str20] = _col("Period booked: 2026-10 (a month) or 2026-Q4 (a quarter)")
    party_id: Mapped[int] = _fk("staff.id", "Person fined or rewarded (staff id)")
    branch_id: Mapped[int | None] = _fk("branches.id", "That person's branch; empty: head office")
    rule_id: Mapped[str200] = _col("Tally rule that booked it")
    kind: Mapped[str20] = _col(
        "original (booked at the close) or correction (booked later)",
        info=choices(*LEDGER_KINDS),
    )
    amount: Mapped[money] = _col("Signed amount: rewards positive, penalties negative")
    currency: Mapped[str20] = _col("ISO 4217 currency of amount")
    entity: Mapped[str40] = _col("Table of the source entities")
    entity_ids: Mapped[list[Any]] = _col("Source entities (ids) this entry is about", default=list)
    details: Mapped[dict[str, Any]] = _col(
        "How it was computed: amount per entity, measure, band, points", default=dict
    )
    reason: Mapped[str] = _col("Why, in words")
    policy_hash: Mapped[str40] = _col("Policy version that computed it")
    run_id: Mapped[str40] = _fk("runs.id", "Run that booked it")
    created_at: Mapped[datetime] = _col("as_of of that run")


class LedgerClose(Base):
    """A period closed by a run: entries booked for it later are corrections."""

    __tablename__ = "ledger_closes"
    __table_args__ = (UniqueConstraint("period"),)
    id: Mapped[intpk]
    period: Mapped[str20] = _col("Period closed: 2026-10 or 2026-Q4")
    closes_at: Mapped[datetime] = _col("When the policy closes it (close_on_day, 00:00)")
    run_id: Mapped[str40] = _fk("runs.id", "Run that closed it")
    policy_hash: Mapped[str40] = _col("Policy version of that run")
    created_at: Mapped[datetime] = _col("as_of of that run")


class LedgerApproval(Base):
    """Entries a run booked for one branch and closing month, held until someone approves
    them: their reward/penalty notices and copies go out only after (002 (七)2)."""

    __tablename__ = "ledger_approvals"
    __table_args__ = (Index("ix_ledger_approvals_period", "period", "branch_id"),)
    id: Mapped[intpk]
    period: Mapped[str20] = _col("Closing month of the entries: 2026-10 (with a quarter it ends)")
    branch_id: Mapped[int | None] = _fk("branches.id", "Branch of the entries; empty: head office")
    first_entry_id: Mapped[int] = _col("First ledger entry held (ledger_entries.id)")
    last_entry_id: Mapped[int] = _col("Last ledger entry held; the branch's entries between")
    entries: Mapped[int] = _col("How many entries are held")
    run_id: Mapped[str40] = _fk("runs.id", "Run that booked and held them")
    held_at: Mapped[datetime] = _col("as_of of that run")
    approved_by: Mapped[str200 | None] = _col("Who approved them (aftersales approve --by)")
    approved_at: Mapped[datetime | None] = _col("When they were approved")
    released_run_id: Mapped[str40 | None] = _fk(
        "runs.id", "Run that queued their notices after the approval"
    )


KPI_SCOPES = ("branch", "staff")


class KpiValue(Base):
    """One KPI of one branch or person for one month; recomputed each night while recent."""

    __tablename__ = "kpi_values"
    __table_args__ = (
        UniqueConstraint("metric_id", "period", "scope", "party_id"),
        Index("ix_kpi_values_period", "period", "branch_id"),
    )
    id: Mapped[intpk]
    metric_id: Mapped[str200] = _col("Metric rule")
    period: Mapped[str20] = _col("Month: 2026-10")
    scope: Mapped[str20] = _col("branch, or staff (a person)", info=choices(*KPI_SCOPES))
    party_id: Mapped[int] = _col("The branch id, or the staff id")
    branch_id: Mapped[int] = _fk("branches.id", "Branch")
    numerator: Mapped[Decimal] = _col("Above the line (a sum, for averages)", type_=Numeric(16, 4))
    denominator: Mapped[Decimal] = _col(
        "Below the line: rows (values, for averages)", type_=Numeric(16, 4)
    )
    value: Mapped[Decimal | None] = _col(
        "numerator / denominator x scale; empty when nothing was measured", type_=Numeric(16, 6)
    )
    policy_hash: Mapped[str40] = _col("Policy version that computed it")
    run_id: Mapped[str40] = _col("Run that computed it")
    computed_at: Mapped[datetime] = _col("as_of of that run")


class PartDone(Base):
    """A daily or periodic part of a cycle, done for a branch (or the company) and a period."""

    __tablename__ = "parts_done"
    # The key is the record: a part is done once per scope and period, whichever cycle did it.
    part: Mapped[str40] = mapped_column(
        primary_key=True, comment="digests, overdue_summary, obligations, tallies, ..."
    )
    scope: Mapped[str40] = mapped_column(
        primary_key=True, comment="Branch id as text, or company (the ledger's time zone)"
    )
    period: Mapped[str20] = mapped_column(
        primary_key=True, comment="Local day (2026-12-06), or the month closed (2026-11)"
    )
    run_id: Mapped[str40] = _col("Run that did it")
    done_at: Mapped[datetime] = _col("Wall-clock time it was recorded")


FOLLOWED_KEYS: tuple[tuple[str, str], ...] = (
    ("units", "product_id"),
    ("units", "customer_id"),
    ("contracts", "unit_id"),
    ("service_requests", "customer_id"),
    ("service_requests", "repeat_of_id"),
    ("complaints", "service_request_id"),
    ("complaints", "customer_id"),
    ("complaints", "repeat_of_id"),
    ("work_records", "customer_id"),
)
"""Foreign keys an incremental run follows from a changed row to the rows that refer to it
(engine.touched) that no other index leads with: indexed, so each step is a lookup."""

RANGE_READ_DATES: tuple[tuple[str, str], ...] = (
    ("service_requests", "completed_at"),
    ("service_requests", "collected_at"),
    ("complaints", "accepted_at"),
)
"""Dates an incremental run reads a range of (a reminder's date come due, a clock started
since the last run) that no other index leads with."""

for _table, _column in FOLLOWED_KEYS + RANGE_READ_DATES:
    Index(f"ix_{_table}_{_column}", Base.metadata.tables[_table].c[_column])


class Watch(Base):
    """The next instant a rule must look at an entity again though nothing in it changes:
    a clock's warning point, deadline or escalation. Incremental runs read those come due."""

    __tablename__ = "watches"
    __table_args__ = (Index("ix_watches_due", "rule_id", "due_at"),)
    rule_id: Mapped[str200] = mapped_column(primary_key=True, comment="Policy rule id")
    entity_id: Mapped[str40] = mapped_column(
        primary_key=True, comment="Primary key of the entity, as text"
    )
    due_at: Mapped[datetime] = _col("When the rule must judge the entity again")
