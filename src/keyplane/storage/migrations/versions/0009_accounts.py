"""accounts: verified e-mail, an outbox, second factors, passkeys, SSO, sudo mode

A session's ``authenticated_at`` starts as its ``created_at`` (it was signed in
then). Booleans default to false on both databases (``sa.false()``, not ``0``,
which PostgreSQL refuses for a boolean).

Revision ID: 0009_accounts
Revises: 0008_races
Create Date: 2026-12-03 06:16:35.500065
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keyplane.storage.types

revision = "0009_accounts"
down_revision = "0008_races"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=60), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column(
            "claimed_until", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("sent_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("id", name=op.f("uq_outbox_messages_id")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_messages_pending", ["sent_at", "failed_at", "next_attempt_at"], unique=False
        )

    op.create_table(
        "auth_challenges",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_challenges_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_auth_challenges")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_challenges_token_hash")),
    )
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_challenges_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "recovery_codes",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_recovery_codes_code_hash")),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sso_connections",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=300), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("default_role", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_sso_connections_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sso_connections")),
        sa.UniqueConstraint("domain", name=op.f("uq_sso_connections_domain")),
        sa.UniqueConstraint("id", name=op.f("uq_sso_connections_id")),
        sa.UniqueConstraint("organization_id", name=op.f("uq_sso_connections_organization_id")),
    )
    op.create_table(
        "sso_identities",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sso_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sso_identities")),
        sa.UniqueConstraint("issuer", "subject", name=op.f("uq_sso_identities_issuer")),
    )
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_identities_user_id"), ["user_id"], unique=False)

    op.create_table(
        "totp_factors",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_totp_factors_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_totp_factors")),
        sa.UniqueConstraint("user_id", name=op.f("uq_totp_factors_user_id")),
    )
    op.create_table(
        "user_tokens",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_user_tokens")),
        sa.UniqueConstraint("id", name=op.f("uq_user_tokens_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_tokens_token_hash")),
    )
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "ix_user_tokens_user_id_purpose", ["user_id", "purpose"], unique=False
        )

    op.create_table(
        "webauthn_credentials",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("credential_id", sa.String(length=1400), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webauthn_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_webauthn_credentials")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_webauthn_credentials_credential_id")),
        sa.UniqueConstraint("id", name=op.f("uq_webauthn_credentials_id")),
    )
    with op.batch_alter_table("webauthn_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webauthn_credentials_user_id"), ["user_id"], unique=False
        )

    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "authenticated_at", keyplane.storage.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("stage", sa.String(length=20), server_default="active", nullable=False)
        )
        batch_op.add_column(
            sa.Column("method", sa.String(length=20), server_default="password", nullable=False)
        )
    sessions = sa.table(
        "console_sessions",
        sa.column("created_at", keyplane.storage.types.UTCDateTime(timezone=True)),
        sa.column("authenticated_at", keyplane.storage.types.UTCDateTime(timezone=True)),
    )
    op.execute(sessions.update().values(authenticated_at=sessions.c.created_at))
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "authenticated_at",
            existing_type=keyplane.storage.types.UTCDateTime(timezone=True),
            nullable=False,
        )

    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_mfa", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("require_sso", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "email_verified_at",
                keyplane.storage.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("last_organization_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("last_organization_id")
        batch_op.drop_column("email_verified_at")

    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("require_sso")
        batch_op.drop_column("require_mfa")

    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_column("method")
        batch_op.drop_column("stage")
        batch_op.drop_column("authenticated_at")

    with op.batch_alter_table("webauthn_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webauthn_credentials_user_id"))

    op.drop_table("webauthn_credentials")
    with op.batch_alter_table("user_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_user_tokens_user_id_purpose")

    op.drop_table("user_tokens")
    op.drop_table("totp_factors")
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_identities_user_id"))

    op.drop_table("sso_identities")
    op.drop_table("sso_connections")
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_codes_user_id"))

    op.drop_table("recovery_codes")
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_challenges_expires_at"))

    op.drop_table("auth_challenges")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_pending")

    op.drop_table("outbox_messages")
