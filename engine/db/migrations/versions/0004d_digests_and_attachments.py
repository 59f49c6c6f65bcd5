"""digests and attachments

A staff member's notices of one run go out as one digest: items point at it (`digest_id`).
Reports travel as attachments (`notice_attachments`: CSV files, inline chart images).
`recipient_ref` groups a person's items; `timezone` lets delivery keep to a send window.

Revision ID: 0004d
Revises: 0003
Create Date: 2026-11-23 19:08:45.711972
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004d"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False, comment="Notice it belongs to"),
        sa.Column(
            "filename", sa.String(length=200), nullable=False, comment="File name the reader sees"
        ),
        sa.Column(
            "content_type",
            sa.String(length=40),
            nullable=False,
            comment="MIME type, e.g. text/csv or image/png",
        ),
        sa.Column(
            "content_id",
            sa.String(length=200),
            nullable=True,
            comment="For an inline image: the cid the HTML part refers to; empty: an attachment",
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False, comment="The file's bytes"),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_notice_attachments_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_attachments")),
    )
    with op.batch_alter_table("notice_attachments", schema=None) as batch_op:
        batch_op.create_index("ix_notice_attachments_notice_id", ["notice_id"], unique=False)

    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "recipient_ref",
                sa.String(length=40),
                nullable=True,
                comment="Who the reader is (staff:12, customer:7): digests group by it",
            )
        )
        batch_op.add_column(
            sa.Column(
                "timezone",
                sa.String(length=40),
                nullable=True,
                comment="Reader's time zone (IANA), for the send window",
            )
        )
        batch_op.add_column(
            sa.Column(
                "digest_id",
                sa.Integer(),
                nullable=True,
                comment="For a bundled item: the digest it went out in",
            )
        )
        batch_op.create_index("ix_notices_digest_id", ["digest_id"], unique=False)
        batch_op.create_index("ix_notices_run_id", ["run_id", "status"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_notices_digest_id_notices"), "notices", ["digest_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_notices_digest_id_notices"), type_="foreignkey")
        batch_op.drop_index("ix_notices_run_id")
        batch_op.drop_index("ix_notices_digest_id")
        batch_op.drop_column("digest_id")
        batch_op.drop_column("timezone")
        batch_op.drop_column("recipient_ref")

    with op.batch_alter_table("notice_attachments", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_attachments_notice_id")

    op.drop_table("notice_attachments")
