"""The tables. Every object has an integer ``pk`` (storage order, pagination
cursors) and a public string ``id`` (``key_...``) that the API shows and
foreign keys point at."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from keyplane.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 40
NAME_LENGTH = 200
USER_AGENT_LENGTH = 512


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Organization(Base):
    __tablename__ = "organizations"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    #: Not unique: sign-up would otherwise tell anyone which names exist (0007).
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    created_at: Mapped[datetime]
    #: Members must use a second factor (TOTP or a passkey) to sign in.
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: Members must sign in with the organization's SSO connection.
    require_sso: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # Key policies (service/events/policies.py); None means no such policy.
    #: The longest a key may live, in seconds, from its creation.
    key_max_lifetime: Mapped[int | None] = mapped_column(Integer)
    #: The expiry, in seconds from creation, given to a key created without one.
    key_default_expiry: Mapped[int | None] = mapped_column(Integer)
    #: A key unused for this many days is stale: warned 7 days before, then
    #: disabled (``stale_key_disable``) or only reported.
    stale_key_days: Mapped[int | None] = mapped_column(Integer)
    stale_key_disable: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sa_false()
    )
    #: A key disabled as stale is revoked after this many more days.
    stale_key_revoke_days: Mapped[int | None] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: argon2id hash; None until the user sets a password.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    #: When the user proved they read mail at ``email`` (a link, an invitation, SSO).
    email_verified_at: Mapped[datetime | None]
    #: The organization the console opens in (the last one used). No foreign key:
    #: a membership that ended simply falls back to another.
    last_organization_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(80))


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_project_id_pk", "project_id", "pk"),
        # The scheduler's scans (service/events/scheduler.py): expiring keys, stale keys.
        Index("ix_api_keys_expires_at", "expires_at"),
        Index("ix_api_keys_organization_id_last_used_at", "organization_id", "last_used_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    #: SHA-256 of the key, hex. The key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(40))
    scopes: Mapped[list[str]]
    ip_allowlist: Mapped[list[str]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(80))
    #: The key this one was rolled from. Unique: a key has at most one successor.
    rolled_from_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True, unique=True)
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    last_used_user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH))
    #: Requests allowed per ``rate_limit_window`` seconds; None means no rate limit.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_limit_window: Mapped[int | None] = mapped_column(Integer)
    #: Uses allowed per quota period (or in total without refill); None means no quota.
    quota_limit: Mapped[int | None] = mapped_column(Integer)
    #: ``day``, ``month`` or None (the quota never refills).
    quota_refill: Mapped[str | None] = mapped_column(String(10))
    #: Uses counted in ``quota_period`` (written behind, with the last-used times).
    quota_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The period ``quota_used`` counts in: ``2026-11-26``, ``2026-11`` or ``""`` (no refill).
    quota_period: Mapped[str] = mapped_column(String(10), default="", server_default="")
    #: A canary: refused exactly like an unknown key; any use raises ``key.canary_used``.
    canary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: When and why the key was last disabled (``stale``: by the stale-key policy).
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(20))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_organization_id_pk", "organization_id", "pk"),
        Index("ix_audit_events_target_id", "target_id"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    #: ``user:usr_...``, ``key:key_...`` or ``operator`` (the admin CLI).
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str] = mapped_column(String(30))
    target_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    details: Mapped[dict[str, Any]]


class ConsoleSession(Base):
    """A signed-in browser. Only the SHA-256 of the session token is stored."""

    __tablename__ = "console_sessions"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    client_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH))
    #: When the person last proved who they are (sign-in, or re-authentication for
    #: sudo mode): sensitive changes need it to be recent.
    authenticated_at: Mapped[datetime]
    #: ``active``, or ``second_factor``: the password was right and a second factor
    #: is owed; such a session reaches the second-factor page only.
    stage: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    #: How the session was started: ``password``, ``passkey``, ``sso``, ``invitation``...
    method: Mapped[str] = mapped_column(String(20), default="password", server_default="password")


class Invitation(Base):
    """An invitation link to join an organization. Only the token's SHA-256 is stored."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_organization_id_pk", "organization_id", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Job(Base):
    """A job of the IonQ-compatible API: a circuit, its state and, once run, its results."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_project_id_pk", "project_id", "pk"),
        Index("ix_jobs_status_pk", "status", "pk"),
        # The open-job limits and the fair claim (service/jobs.py, migration 0006_jobs).
        Index("ix_jobs_project_id_status", "project_id", "status"),
        Index("ix_jobs_key_id_status", "key_id", "status"),
        Index("ix_jobs_project_id_started_at", "project_id", "started_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    #: The key that created the job. Not a foreign key: keys are never deleted,
    #: but a job's record must not depend on that.
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    type: Mapped[str] = mapped_column(String(40))
    backend: Mapped[str] = mapped_column(String(40))
    #: submitted, ready, started, completed, failed, canceled.
    status: Mapped[str] = mapped_column(String(20))
    shots: Mapped[int] = mapped_column(Integer)
    qubits: Mapped[int] = mapped_column(Integer)
    #: 1 for ``ionq.circuit.v1``; the number of circuits of a multi-circuit job.
    circuits: Mapped[int] = mapped_column(Integer)
    #: The ``input`` object as the client sent it.
    input: Mapped[dict[str, Any]]
    #: The client's ``metadata``, echoed back verbatim.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    noise: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gate_counts: Mapped[dict[str, Any]]
    submitted_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    execution_duration_ms: Mapped[int | None] = mapped_column(Integer)
    #: The probabilities, as the JSON text the results endpoint answers.
    probabilities: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_error: Mapped[str | None] = mapped_column(Text)
    #: How many times a worker claimed the job (a job that keeps killing its
    #: worker is failed after a few tries instead of being re-run forever).
    attempts: Mapped[int] = mapped_column(Integer)
    #: While ``started``: the claim ends then unless its worker renews it.
    lease_expires_at: Mapped[datetime | None]


class KeyChange(Base):
    """One row per change to a key that verification caches must forget.

    Every process polls this table (``pk > last seen``) as the safety net under
    LISTEN/NOTIFY and Redis pub/sub, and as the only channel on SQLite. The
    hash is not a secret (``api_keys`` holds the same value). Old rows are pruned.
    """

    __tablename__ = "key_changes"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(index=True)


class KeyUsage(Base):
    """Verifications of one key in one hour or day with one outcome: a counter, not a log."""

    __tablename__ = "key_usage"
    __table_args__ = (UniqueConstraint("key_id", "interval", "bucket", "outcome"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: No foreign key: counters are written behind, and a key's organization may be
    #: deleted between a verification and the flush that counts it.
    key_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    #: ``hour`` or ``day``.
    interval: Mapped[str] = mapped_column(String(4))
    #: The bucket's start, UTC.
    bucket: Mapped[datetime]
    #: A grant code (``VALID``, ``REVOKED``, ``RATE_LIMITED``, ...).
    outcome: Mapped[str] = mapped_column(String(30))
    count: Mapped[int] = mapped_column(Integer)


class KeyLeak(Base):
    """A report that a key was found in public (GitHub secret scanning), and what was done.

    Holds the key's id, never the key: the report's token is checked and dropped.
    """

    __tablename__ = "key_leaks"
    __table_args__ = (Index("ix_key_leaks_organization_id_pk", "organization_id", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    #: Who reported it: ``github`` (the secret scanning partner program).
    reporter: Mapped[str] = mapped_column(String(40))
    #: Where it leaked (a public URL), as the reporter gave it.
    url: Mapped[str] = mapped_column(Text)
    #: The kind of place (GitHub's ``source``: content, commit, gist, ...).
    source: Mapped[str | None] = mapped_column(String(60))
    reported_at: Mapped[datetime]
    #: True if this report revoked the key (False: it was already revoked).
    revoked: Mapped[bool] = mapped_column(Boolean)


class UserToken(Base):
    """A one-time link mailed to a user (verify the address, reset the password).
    Only the token's SHA-256 is stored; ``used_at`` makes it single-use."""

    __tablename__ = "user_tokens"
    __table_args__ = (Index("ix_user_tokens_user_id_purpose", "user_id", "purpose"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: ``verify_email`` or ``reset_password``.
    purpose: Mapped[str] = mapped_column(String(20))
    #: The address the link was sent to (a verification proves this address).
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """A message to send (an e-mail), written in the transaction of the event that
    causes it and sent by one worker. The body holds links with secrets: it is
    stored sealed (service/sealing.py) and dropped once sent."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_pending", "sent_at", "failed_at", "next_attempt_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    #: ``email``.
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))
    #: The template's name (``verify_email``, ``reset_password``, ``invitation``...).
    template: Mapped[str] = mapped_column(String(60))
    #: The subject, text and HTML, sealed; ``None`` once sent.
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    #: Who holds the message while sending it, and until when.
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    #: Set when the retries ran out.
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class TotpFactor(Base):
    """A user's authenticator app. The shared secret is stored sealed; ``last_step``
    refuses a code used once already (RFC 6238 §5.2)."""

    __tablename__ = "totp_factors"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: None until the user entered a first code: an unconfirmed factor is not a factor.
    confirmed_at: Mapped[datetime | None]
    last_step: Mapped[int | None] = mapped_column(Integer)


class RecoveryCode(Base):
    """A one-time recovery code (high-entropy, so its SHA-256 is enough)."""

    __tablename__ = "recovery_codes"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class WebAuthnCredential(Base):
    """A passkey or security key (WebAuthn). The public key is not a secret."""

    __tablename__ = "webauthn_credentials"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The credential id, base64url.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    #: The COSE public key, base64url.
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(Integer)
    transports: Mapped[list[str]]
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class SsoConnection(Base):
    """An organization's OpenID Connect provider. The client secret is stored sealed."""

    __tablename__ = "sso_connections"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), unique=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(300))
    client_secret: Mapped[str] = mapped_column(Text)
    #: Sign-in by e-mail domain: an address at this domain signs in here.
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    #: The role of a user added on first sign-in.
    default_role: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SsoIdentity(Base):
    """A user's identity at an SSO provider: the (issuer, subject) pair, never the
    e-mail alone, decides who signs in."""

    __tablename__ = "sso_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class AuthChallenge(Base):
    """A sign-in step in flight (an OIDC redirect, a WebAuthn challenge): the browser
    holds a random token, the row its SHA-256 and the step's data, sealed. Used once."""

    __tablename__ = "auth_challenges"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``oidc``, ``webauthn_register``, ``webauthn_sign_in``...
    purpose: Mapped[str] = mapped_column(String(30))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class Event(Base):
    """Something that happened that people and webhooks may be told about
    (``core/events.py`` names them). Written in the transaction of the change;
    one dispatcher fans it out to webhook deliveries and mail, exactly once."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_organization_id_pk", "organization_id", "pk"),
        Index("ix_events_dispatched_at", "dispatched_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: ``msg_...``: the Standard Webhooks ``webhook-id`` of every delivery of it.
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(60))
    occurred_at: Mapped[datetime]
    #: The payload's ``data`` object.
    data: Mapped[dict[str, Any]]
    #: Set, in one conditional UPDATE, by the dispatcher that fanned it out.
    dispatched_at: Mapped[datetime | None]


class WebhookEndpoint(Base):
    """A URL that receives an organization's events, signed the Standard Webhooks way."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_organization_id_pk", "organization_id", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(NAME_LENGTH), default="", server_default="")
    #: Event types sent; empty means every type.
    event_types: Mapped[list[str]]
    enabled: Mapped[bool] = mapped_column(Boolean)
    #: ``failing`` when the deliveries kept failing, ``user`` when someone turned it off.
    disabled_reason: Mapped[str | None] = mapped_column(String(20))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime]
    #: Failed attempts in a row, and when the first of them was; a success resets both.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None]


class WebhookSecret(Base):
    """An endpoint's signing secret, sealed. After a rotation the old secret also
    signs until ``expires_at``, so a receiver can switch without losing events."""

    __tablename__ = "webhook_secrets"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event to one endpoint: pending until an attempt succeeds or the retries run
    out. ``replay`` counts manual replays, so fan-out can make each (endpoint, event)
    only once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", "replay"),
        Index("ix_webhook_deliveries_pending", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_pk", "endpoint_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    replay: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: ``pending``, ``delivered``, ``failed`` (retries ran out) or ``cancelled``.
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_pk", "delivery_id", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime]
    #: None when no answer came (refused address, connection error, timeout).
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    #: The first bytes of the answer's body, as text.
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class KeyNotice(Base):
    """That a one-time event about a key was raised (``expiring_7d``, ``quota_80``
    for ``2026-12``...): the primary key makes it once, whichever instance tries."""

    __tablename__ = "key_notices"

    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    #: What the notice is for: a period, an expiry time, a debounce window.
    bucket: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime]


class KeyCaller(Base):
    """A client IP or user agent that used a key, with a count and when last seen.
    Bounded per key (service/events/callers.py); older than 30 days is dropped."""

    __tablename__ = "key_callers"

    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    #: ``ip`` or ``user_agent``.
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    value: Mapped[str] = mapped_column(String(USER_AGENT_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class NotificationMute(Base):
    """A person does not want mail about this event type in this organization
    (mail is on by default for the types ``core/events.py`` marks as mailed)."""

    __tablename__ = "notification_mutes"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    event_type: Mapped[str] = mapped_column(String(60), primary_key=True)
