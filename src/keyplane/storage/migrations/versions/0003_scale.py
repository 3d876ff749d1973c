"""scale-out: key change feed, per-key rate limits and quotas, usage counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keyplane.storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_window", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quota_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quota_refill", sa.String(length=10), nullable=True))
        batch_op.add_column(
            sa.Column("quota_used", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("quota_period", sa.String(length=10), server_default="", nullable=False)
        )
    op.create_table(
        "key_changes",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("changed_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_key_changes")),
    )
    with op.batch_alter_table("key_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_changes_changed_at"), ["changed_at"], unique=False)
    op.create_table(
        "key_usage",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("interval", sa.String(length=4), nullable=False),
        sa.Column("bucket", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=30), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_key_usage")),
        sa.UniqueConstraint(
            "key_id", "interval", "bucket", "outcome", name=op.f("uq_key_usage_key_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("key_usage")
    with op.batch_alter_table("key_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_changes_changed_at"))
    op.drop_table("key_changes")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("quota_period")
        batch_op.drop_column("quota_used")
        batch_op.drop_column("quota_refill")
        batch_op.drop_column("quota_limit")
        batch_op.drop_column("rate_limit_window")
        batch_op.drop_column("rate_limit")
