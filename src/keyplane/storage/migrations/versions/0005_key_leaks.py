"""security: reports of leaked keys (GitHub secret scanning)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keyplane.storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_leaks",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("reporter", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=60), nullable=True),
        sa.Column("reported_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_key_leaks_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_key_leaks_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_key_leaks")),
        sa.UniqueConstraint("id", name=op.f("uq_key_leaks_id")),
    )
    op.create_index(op.f("ix_key_leaks_key_id"), "key_leaks", ["key_id"], unique=False)
    op.create_index(
        "ix_key_leaks_organization_id_pk", "key_leaks", ["organization_id", "pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_key_leaks_organization_id_pk", table_name="key_leaks")
    op.drop_index(op.f("ix_key_leaks_key_id"), table_name="key_leaks")
    op.drop_table("key_leaks")
