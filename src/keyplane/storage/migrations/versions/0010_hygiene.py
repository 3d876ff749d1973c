"""key hygiene: events, webhooks, key policies, canary keys, callers

Events are written in the transaction of the change (``events``) and fanned out
once to webhook deliveries and mail. ``key_notices`` makes each one-time notice
(expiring, quota at 80 %, ...) once, whichever instance raises it.

Revision ID: 0010_hygiene
Revises: 0009_accounts
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keyplane.storage.types

revision = "0010_hygiene"
down_revision = "0009_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_callers",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column(
            "first_seen_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_seen_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("key_id", "kind", "value", name=op.f("pk_key_callers")),
    )
    op.create_table(
        "key_notices",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("bucket", sa.String(length=40), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "kind", "bucket", name=op.f("pk_key_notices")),
    )
    op.create_table(
        "events",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("occurred_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column(
            "dispatched_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    op.create_index("ix_events_dispatched_at", "events", ["dispatched_at"], unique=False)
    op.create_index(
        "ix_events_organization_id_pk", "events", ["organization_id", "pk"], unique=False
    )
    op.create_table(
        "notification_mutes",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_mutes_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_mutes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "organization_id", "event_type", name=op.f("pk_notification_mutes")
        ),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=200), server_default="", nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=20), nullable=True),
        sa.Column("disabled_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("updated_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "failing_since", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_endpoints_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("id", name=op.f("uq_webhook_endpoints_id")),
    )
    op.create_index(
        "ix_webhook_endpoints_organization_id_pk",
        "webhook_endpoints",
        ["organization_id", "pk"],
        unique=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("replay", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column(
            "claimed_until", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("delivered_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_webhook_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_deliveries_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "endpoint_id", "event_id", "replay", name=op.f("uq_webhook_deliveries_endpoint_id")
        ),
        sa.UniqueConstraint("id", name=op.f("uq_webhook_deliveries_id")),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_pk",
        "webhook_deliveries",
        ["endpoint_id", "pk"],
        unique=False,
    )
    op.create_index(
        op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"], unique=False
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_secrets_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webhook_secrets")),
    )
    op.create_index(
        op.f("ix_webhook_secrets_endpoint_id"), "webhook_secrets", ["endpoint_id"], unique=False
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column(
            "attempted_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_delivery_id_pk",
        "webhook_attempts",
        ["delivery_id", "pk"],
        unique=False,
    )
    op.add_column(
        "api_keys", sa.Column("canary", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column(
        "api_keys",
        sa.Column("disabled_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("api_keys", sa.Column("disabled_reason", sa.String(length=20), nullable=True))
    op.create_index("ix_api_keys_expires_at", "api_keys", ["expires_at"], unique=False)
    op.create_index(
        "ix_api_keys_organization_id_last_used_at",
        "api_keys",
        ["organization_id", "last_used_at"],
        unique=False,
    )
    op.add_column("organizations", sa.Column("key_max_lifetime", sa.Integer(), nullable=True))
    op.add_column("organizations", sa.Column("key_default_expiry", sa.Integer(), nullable=True))
    op.add_column("organizations", sa.Column("stale_key_days", sa.Integer(), nullable=True))
    op.add_column(
        "organizations",
        sa.Column("stale_key_disable", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("organizations", sa.Column("stale_key_revoke_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("organizations", "stale_key_revoke_days")
    op.drop_column("organizations", "stale_key_disable")
    op.drop_column("organizations", "stale_key_days")
    op.drop_column("organizations", "key_default_expiry")
    op.drop_column("organizations", "key_max_lifetime")
    op.drop_index("ix_api_keys_organization_id_last_used_at", table_name="api_keys")
    op.drop_index("ix_api_keys_expires_at", table_name="api_keys")
    op.drop_column("api_keys", "disabled_reason")
    op.drop_column("api_keys", "disabled_at")
    op.drop_column("api_keys", "canary")
    op.drop_index("ix_webhook_attempts_delivery_id_pk", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(op.f("ix_webhook_secrets_endpoint_id"), table_name="webhook_secrets")
    op.drop_table("webhook_secrets")
    op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_event_id"), table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_endpoint_id_pk", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_endpoints_organization_id_pk", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_table("notification_mutes")
    op.drop_index("ix_events_organization_id_pk", table_name="events")
    op.drop_index("ix_events_dispatched_at", table_name="events")
    op.drop_table("events")
    op.drop_table("key_notices")
    op.drop_table("key_callers")
