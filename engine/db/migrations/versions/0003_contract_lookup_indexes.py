"""contract lookup indexes for warranty cover and renewals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00

The derived fields `under_contract` / `contract_ends_on` (a customer's covering contracts)
and `renewed` (a contract's successor) look contracts up by customer_id and renewal_of_id.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.create_index("ix_contracts_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_contracts_renewal_of_id", ["renewal_of_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_index("ix_contracts_renewal_of_id")
        batch_op.drop_index("ix_contracts_customer_id")
