"""Single sign-on with OpenID Connect, one provider per organization.

An owner sets the provider (issuer, client id and secret), the e-mail domain
whose addresses sign in through it, and the role a person gets when SSO adds
them. Saving discovers the provider (``/.well-known/openid-configuration``) and
refuses an issuer that does not answer or names itself differently. The client
secret is stored sealed (:mod:`keyplane.service.sealing`) and never shown back.

Signing in is the authorization code flow, server side, with PKCE (S256), a
``state`` and a ``nonce``: :meth:`SsoService.begin` keeps the three and the page
to return to in an ``auth_challenges`` row (sealed; the browser holds a random
token in a cookie, the row its SHA-256; ten minutes; used once, by a
conditional UPDATE), and :meth:`SsoService.complete` checks the callback
against it, exchanges the code, and validates the ID token (signature against
the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``; authlib and joserfc).
The person is then the user of the (issuer, subject) pair; a first sign-in
links or creates the user of the verified e-mail address, only at the
connection's domain (docs/security.md, "Single sign-on (OIDC)").

The HTTP calls to the provider live here: they are I/O, not HTTP handling.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput, KeyplaneError, NotPermitted, ObjectNotFound
from keyplane.core.ids import new_id
from keyplane.service.accounts.access import INSUFFICIENT_ROLE
from keyplane.service.accounts.members import find_membership, parse_role
from keyplane.service.accounts.organizations import check_email
from keyplane.service.accounts.sessions import NewSession, SessionService, hash_token
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_by, record_event
from keyplane.service.records import Actor, Caller, Role
from keyplane.service.sealing import SealBroken, Sealer
from keyplane.storage.database import Database, WriteConflict
from keyplane.storage.models import (
    AuthChallenge,
    Membership,
    Organization,
    SsoConnection,
    SsoIdentity,
    User,
)

#: How long a sign-in may take between leaving for the provider and coming back.
CHALLENGE_LIFETIME: Final = timedelta(minutes=10)
CHALLENGE_PURPOSE: Final = "oidc"
CALLBACK_PATH: Final = "/console/sso/callback"
SCOPES: Final = "openid email"
#: The provider's answers are small; a slow or huge one is a broken provider.
HTTP_TIMEOUT: Final = 10.0
MAX_DOCUMENT_BYTES: Final = 256 * 1024
#: Discovery documents are kept this long per process (a sign-in reads one).
METADATA_TTL: Final = 300.0
#: Clock skew allowed on ``exp``/``iat``/``nbf``.
LEEWAY: Final = 60
#: Signature algorithms accepted on an ID token: asymmetric only ("none" and
#: HMAC with the client secret are refused).
ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
_DOMAIN_RE: Final = re.compile(
    r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}[a-z0-9]"
)
_ERROR_CODE_RE: Final = re.compile(r"[a-z_]{1,40}")
_SSO_ACTOR: Final = "sso"


class SsoFailed(KeyplaneError):
    """A sign-in through the provider that cannot go on. ``reason`` is a code for
    the audit log; the message is for the person (never a secret)."""

    status = 400
    problem_type = "sso-failed"

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int = 400,
        organization_id: str | None = None,
        connection_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.upper()
        self.status = status
        self.organization_id = organization_id
        self.connection_id = connection_id


class ProviderUnreachable(InvalidInput):
    """The issuer does not answer discovery, or answers something unusable."""


@dataclass(frozen=True, slots=True)
class SsoConnectionRecord:
    """A connection as the settings page shows it: the secret only as "set"."""

    id: str
    organization_id: str
    issuer: str
    client_id: str
    domain: str
    default_role: Role
    enabled: bool
    created_at: datetime
    updated_at: datetime
    secret_set: bool = True
    require_sso: bool = False


@dataclass(frozen=True, slots=True)
class SsoStart:
    """Where to send the browser, and the challenge token for its cookie."""

    token: str = field(repr=False)
    authorization_url: str = field(repr=False)
    expires_in: int = int(CHALLENGE_LIFETIME.total_seconds())


@dataclass(frozen=True, slots=True)
class SsoSignedIn:
    started: NewSession
    next_path: str
    created_user: bool


@dataclass(frozen=True, slots=True)
class _Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


class SsoService:
    def __init__(
        self,
        database: Database,
        sessions: SessionService,
        sealer: Sealer,
        *,
        console_url: str,
        clock: Callable[[], datetime],
        http: httpx.Client | None = None,
        sudo: SudoRule | None = None,
    ) -> None:
        self._database = database
        self._sessions = sessions
        self._sealer = sealer
        #: Every settings change needs a recent sign-in (sudo mode).
        self.sudo = sudo or SudoRule(clock)
        self.redirect_uri = console_url.rstrip("/") + CALLBACK_PATH
        self._clock = clock
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._metadata: dict[str, tuple[float, _Metadata]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "SsoService(...)"

    def close(self) -> None:
        self._http.close()

    # -- settings (owners) ---------------------------------------------------

    def connection(self, caller: Caller) -> SsoConnectionRecord | None:
        _require_owner(caller, "see the single sign-on settings")
        with self._database.read() as session:
            row = _connection_of(session, caller.organization_id)
            require_sso = bool(
                session.scalar(
                    select(Organization.require_sso).where(
                        Organization.id == caller.organization_id
                    )
                )
            )
            return _record(row, require_sso) if row is not None else None

    def configure(
        self,
        caller: Caller,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        domain: str,
        default_role: Role | str,
        enabled: bool = True,
    ) -> SsoConnectionRecord:
        """Create or change the organization's connection (a blank secret keeps the
        stored one). The provider is discovered first; nothing is saved if it fails."""
        _require_owner(caller, "change single sign-on")
        self.sudo.require(caller, "change single sign-on")
        issuer = _check_issuer(issuer)
        client_id = _check_text(client_id, "client_id", "a client id", 300)
        domain = check_domain(domain)
        role = parse_role(default_role)
        if role is Role.OWNER:
            raise InvalidInput(
                "single sign-on adds people as members or admins, never as owners",
                field="default_role",
            )
        secret = client_secret.strip() if isinstance(client_secret, str) else ""
        if len(secret) > 1000:
            raise InvalidInput("a client secret has at most 1000 characters", field="client_secret")
        with self._database.read() as session:
            existing = _connection_of(session, caller.organization_id)
        if existing is None and not secret:
            raise InvalidInput("enter the client secret", field="client_secret")
        metadata = self._discover(issuer, fresh=True)
        now = self._clock()
        try:
            with self._database.write() as session:
                _lock_organization(session, caller.organization_id)
                taken = session.scalar(
                    select(SsoConnection.organization_id).where(SsoConnection.domain == domain)
                )
                if taken is not None and taken != caller.organization_id:
                    raise InvalidInput(
                        "another organization on this server signs in that domain",
                        field="domain",
                    )
                row = _connection_of(session, caller.organization_id)
                if row is None:
                    row = SsoConnection(
                        id=new_id("sso"),
                        organization_id=caller.organization_id,
                        issuer=metadata.issuer,
                        client_id=client_id,
                        client_secret=self._sealer.seal(secret),
                        domain=domain,
                        default_role=role.value,
                        enabled=enabled,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
                    record_by(
                        session,
                        caller,
                        "sso.configured",
                        ("sso_connection", row.id),
                        at=now,
                        details={
                            "issuer": row.issuer,
                            "client_id": client_id,
                            "domain": domain,
                            "default_role": role.value,
                            "enabled": enabled,
                        },
                    )
                else:
                    changes: dict[str, Any] = {}
                    for name, value in (
                        ("issuer", metadata.issuer),
                        ("client_id", client_id),
                        ("domain", domain),
                        ("default_role", role.value),
                        ("enabled", enabled),
                    ):
                        if getattr(row, name) != value:
                            changes[name] = {"from": getattr(row, name), "to": value}
                            setattr(row, name, value)
                    if secret and not _same_secret(self._sealer, row.client_secret, secret):
                        row.client_secret = self._sealer.seal(secret)
                        changes["client_secret"] = "replaced"  # noqa: S105 - a word, never the value
                    if changes:
                        row.updated_at = now
                        record_by(
                            session,
                            caller,
                            "sso.changed",
                            ("sso_connection", row.id),
                            at=now,
                            details=changes,
                        )
                require_sso = bool(
                    session.scalar(
                        select(Organization.require_sso).where(
                            Organization.id == caller.organization_id
                        )
                    )
                )
                return _record(row, require_sso)
        except WriteConflict:  # the same domain saved by another organization just now
            raise InvalidInput(
                "another organization on this server signs in that domain", field="domain"
            ) from None

    def remove(self, caller: Caller) -> None:
        """Delete the connection (identities stay, so a new connection to the same
        provider finds its people again) and turn the SSO policy off."""
        _require_owner(caller, "change single sign-on")
        self.sudo.require(caller, "change single sign-on")
        now = self._clock()
        with self._database.write() as session:
            organization = _lock_organization(session, caller.organization_id)
            row = _connection_of(session, caller.organization_id)
            if row is None:
                raise ObjectNotFound("sso_connection", caller.organization_id)
            record_by(
                session,
                caller,
                "sso.removed",
                ("sso_connection", row.id),
                at=now,
                details={"issuer": row.issuer, "domain": row.domain},
            )
            if organization.require_sso:
                organization.require_sso = False
                record_by(
                    session,
                    caller,
                    "organization.sso_policy_changed",
                    ("organization", caller.organization_id),
                    at=now,
                    details={"require_sso": False},
                )
            session.delete(row)

    def set_policy(self, caller: Caller, require_sso: bool) -> None:
        """Turn "members must sign in with SSO" on or off (needs an enabled connection
        to turn on). Owners keep password sign-in (sso_policy.py)."""
        _require_owner(caller, "change the sign-in policy")
        self.sudo.require(caller, "change the sign-in policy")
        now = self._clock()
        with self._database.write() as session:
            organization = _lock_organization(session, caller.organization_id)
            row = _connection_of(session, caller.organization_id)
            if require_sso and (row is None or not row.enabled):
                raise InvalidInput(
                    "set up and enable single sign-on before requiring it", field="require_sso"
                )
            if organization.require_sso == require_sso:
                return
            organization.require_sso = require_sso
            record_by(
                session,
                caller,
                "organization.sso_policy_changed",
                ("organization", caller.organization_id),
                at=now,
                details={"require_sso": require_sso},
            )

    # -- sign-in ---------------------------------------------------------------

    def begin(self, email: str, next_path: str) -> SsoStart | None:
        """Start a sign-in for ``email``: ``None`` when its domain has no enabled
        connection (the caller answers the same for every such domain)."""
        address = check_email(email)
        domain = address.rsplit("@", 1)[1]
        with self._database.read() as session:
            row = session.scalar(
                select(SsoConnection).where(
                    SsoConnection.domain == domain, SsoConnection.enabled.is_(True)
                )
            )
            if row is None:
                return None
            connection_id, issuer, client_id = row.id, row.issuer, row.client_id
            organization_id = row.organization_id
        try:
            metadata = self._discover(issuer)
        except ProviderUnreachable:
            raise SsoFailed(
                "provider_unreachable",
                "Your organization's identity provider does not answer right now. "
                "Try again in a moment, or sign in with your password.",
                status=502,
                organization_id=organization_id,
                connection_id=connection_id,
            ) from None
        token = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        now = self._clock()
        data = {
            "connection_id": connection_id,
            "issuer": metadata.issuer,
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": next_path,
            "redirect_uri": self.redirect_uri,
            "email": address,
        }
        with self._database.write() as session:
            # Challenges past their time only say "expired"; without the row a late
            # callback is refused all the same ("not started in this browser").
            session.execute(
                delete(AuthChallenge).where(
                    AuthChallenge.purpose == CHALLENGE_PURPOSE,
                    AuthChallenge.expires_at < now - CHALLENGE_LIFETIME,
                )
            )
            session.add(
                AuthChallenge(
                    token_hash=hash_token(token),
                    purpose=CHALLENGE_PURPOSE,
                    user_id=None,
                    data=self._sealer.seal(json.dumps(data)),
                    created_at=now,
                    expires_at=now + CHALLENGE_LIFETIME,
                    used_at=None,
                )
            )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": self.redirect_uri,
                "scope": SCOPES,
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
                "login_hint": address,
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return SsoStart(token, f"{metadata.authorization_endpoint}{separator}{query}")

    def complete(
        self,
        token: str | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> SsoSignedIn:
        """Finish a sign-in from the provider's callback. Raises :class:`SsoFailed`
        (audited as ``user.sso_failed`` when the organization is known)."""
        try:
            return self._complete(
                token,
                state=state,
                code=code,
                error=error,
                client_ip=client_ip,
                user_agent=user_agent,
                replacing=replacing,
            )
        except SsoFailed as failure:
            if failure.organization_id is not None:
                self._record_failure(failure, client_ip, user_agent)
            raise

    def _complete(
        self,
        token: str | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        client_ip: str | None,
        user_agent: str | None,
        replacing: str | None,
    ) -> SsoSignedIn:
        data = self._claim(token)
        connection_id = str(data.get("connection_id", ""))
        with self._database.read() as session:
            row = session.scalar(select(SsoConnection).where(SsoConnection.id == connection_id))
            connection = (
                None
                if row is None
                else (
                    row.organization_id,
                    row.issuer,
                    row.client_id,
                    row.client_secret,
                    row.domain,
                    Role(row.default_role),
                    row.enabled,
                )
            )
        if connection is None:
            raise SsoFailed(
                "no_connection",
                "Single sign-on is no longer set up for this organization.",
                status=400,
            )
        organization_id, issuer, client_id, sealed_secret, domain, role, enabled = connection

        def failed(reason: str, message: str, status: int = 400) -> SsoFailed:
            return SsoFailed(
                reason,
                message,
                status=status,
                organization_id=organization_id,
                connection_id=connection_id,
            )

        expected_state = str(data.get("state", ""))
        if error and state is None:
            # Some providers leave ``state`` off an error answer (RFC 6749 wants it);
            # the challenge cookie still ties it to this browser, and it only fails.
            shown = error if _ERROR_CODE_RE.fullmatch(error) else "error"
            raise failed("provider_error", f"The identity provider refused the sign-in ({shown}).")
        if not isinstance(state, str) or not hmac.compare_digest(
            state.encode("utf-8", "replace"), expected_state.encode()
        ):
            raise failed(
                "bad_state",
                "This answer from the identity provider does not belong to the sign-in "
                "this browser started. Start again from the sign-in page.",
            )
        if error:
            shown = error if _ERROR_CODE_RE.fullmatch(error) else "error"
            raise failed("provider_error", f"The identity provider refused the sign-in ({shown}).")
        if not enabled or issuer != data.get("issuer"):
            raise failed("disabled", "Single sign-on is not enabled for this organization.")
        if not isinstance(code, str) or not code or len(code) > 2000:
            raise failed("no_code", "The identity provider sent no sign-in code.")
        try:
            metadata = self._discover(issuer)
            secret = self._sealer.open(sealed_secret)
        except (ProviderUnreachable, SealBroken):
            raise failed(
                "provider_unreachable",
                "The identity provider does not answer right now. Try again in a moment.",
                502,
            ) from None
        tokens = self._exchange(metadata, client_id, secret, code, data, failed)
        claims = self._validate_id_token(metadata, client_id, tokens, data, failed)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise failed("invalid_token", "The identity provider's ID token has no usable subject.")
        if claims.get("email_verified") is not True:
            raise failed(
                "email_unverified",
                "The identity provider does not confirm that you own this e-mail address "
                "(email_verified is not true), so Keyplane cannot sign you in with it.",
                403,
            )
        try:
            email = check_email(str(claims.get("email", "")))
        except InvalidInput:
            raise failed(
                "no_email", "The identity provider sent no usable e-mail address.", 403
            ) from None
        next_path = str(data.get("next", ""))
        try:
            with self._database.write() as session:
                user_id, created = self._user_for(
                    session, issuer, subject, email, domain, organization_id, failed
                )
                if find_membership(session, organization_id, user_id) is None:
                    now = self._clock()
                    session.add(
                        Membership(
                            organization_id=organization_id,
                            user_id=user_id,
                            role=role.value,
                            created_at=now,
                        )
                    )
                    session.flush()
                    record_event(
                        session,
                        organization_id=organization_id,
                        actor=Actor(_SSO_ACTOR, client_ip, user_agent),
                        action="member.added",
                        target_type="user",
                        target_id=user_id,
                        at=now,
                        details={"email": email, "role": role.value, "via": "sso"},
                    )
                started = self._sessions.start_in(
                    session,
                    user_id,
                    organization_id,
                    client_ip=client_ip,
                    user_agent=user_agent,
                    replacing=replacing,
                    method="sso",
                )
        except WriteConflict:  # the same first sign-in finished in another tab just now
            raise failed(
                "conflict", "This sign-in finished at the same time elsewhere; try again.", 409
            ) from None
        return SsoSignedIn(started, next_path, created)

    def _claim(self, token: str | None) -> dict[str, Any]:
        """The challenge's data, marked used (single use: a conditional UPDATE in its
        own transaction, so a replay is refused even if this sign-in fails later)."""
        unknown = SsoFailed(
            "bad_state",
            "This sign-in was not started in this browser, or its cookie is gone. "
            "Start again from the sign-in page.",
        )
        if not token or len(token) > 128:
            raise unknown
        now = self._clock()
        token_hash = hash_token(token)
        with self._database.write() as session:
            row = session.scalar(
                select(AuthChallenge).where(
                    AuthChallenge.token_hash == token_hash,
                    AuthChallenge.purpose == CHALLENGE_PURPOSE,
                )
            )
            if row is None:
                raise unknown
            try:
                data: dict[str, Any] = json.loads(self._sealer.open(row.data))
            except (SealBroken, ValueError):
                raise unknown from None
            organization_id = session.scalar(
                select(SsoConnection.organization_id).where(
                    SsoConnection.id == str(data.get("connection_id", ""))
                )
            )
            if row.used_at is not None:
                replayed = SsoFailed(
                    "replayed",
                    "This sign-in was already used. Start again from the sign-in page.",
                    organization_id=organization_id,
                    connection_id=data.get("connection_id"),
                )
                raise replayed
            if row.expires_at <= now:
                raise SsoFailed(
                    "expired",
                    "This sign-in took longer than 10 minutes. Start again from the sign-in page.",
                    organization_id=organization_id,
                    connection_id=data.get("connection_id"),
                )
            claimed = session.execute(
                update(AuthChallenge)
                .where(
                    AuthChallenge.pk == row.pk,
                    AuthChallenge.used_at.is_(None),
                    AuthChallenge.expires_at > now,
                )
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if int(getattr(claimed, "rowcount", 0) or 0) != 1:
                raise SsoFailed(
                    "replayed",
                    "This sign-in was already used. Start again from the sign-in page.",
                    organization_id=organization_id,
                    connection_id=data.get("connection_id"),
                )
        return data

    def _user_for(
        self,
        session: Session,
        issuer: str,
        subject: str,
        email: str,
        domain: str,
        organization_id: str,
        failed: Callable[[str, str, int], SsoFailed],
    ) -> tuple[str, bool]:
        """The user of (issuer, subject); on a first sign-in, the user of the
        verified address at the connection's domain, linked or created."""
        now = self._clock()
        user_id = session.scalar(
            select(SsoIdentity.user_id).where(
                SsoIdentity.issuer == issuer, SsoIdentity.subject == subject
            )
        )
        if user_id is not None:
            return user_id, False
        if email.rsplit("@", 1)[1] != domain:
            raise failed(
                "outside_domain",
                f"Single sign-on for this organization is for addresses at {domain}; "
                "the identity provider signed you in with another address.",
                403,
            )
        user = session.scalar(select(User).where(User.email == email).with_for_update())
        created = user is None
        if user is None:
            user = User(
                id=new_id("usr"),
                email=email,
                password_hash=None,
                created_at=now,
                email_verified_at=now,
            )
            session.add(user)
            session.flush()
        else:
            # An account that exists is linked only if it is a member of this
            # connection's organization already: an organization's owner chooses its
            # identity provider and claims its e-mail domain, and neither may hand
            # them a Keyplane account that belongs to other organizations (its
            # sessions could switch into those).
            if find_membership(session, organization_id, user.id) is None:
                raise failed(
                    "existing_account",
                    f"{email} already has a Keyplane account that is not in this "
                    "organization: sign in with its password, and ask an owner of this "
                    "organization to invite it.",
                    403,
                )
            linked = session.scalar(
                select(SsoIdentity.subject).where(
                    SsoIdentity.user_id == user.id, SsoIdentity.issuer == issuer
                )
            )
            if linked is not None:
                # The provider gave this address to another account of theirs: the
                # address alone never moves a Keyplane account to a new person.
                raise failed(
                    "identity_conflict",
                    f"{email} is linked to another account at this identity provider. "
                    "Ask an owner of your organization for help.",
                    403,
                )
            if user.email_verified_at is None:
                user.email_verified_at = now
        session.add(SsoIdentity(user_id=user.id, issuer=issuer, subject=subject, created_at=now))
        session.flush()
        record_event(
            session,
            organization_id=organization_id,
            actor=Actor(f"user:{user.id}"),
            action="user.sso_linked",
            target_type="user",
            target_id=user.id,
            at=now,
            details={"issuer": issuer, "email": email, "created": created},
        )
        return user.id, created

    def _record_failure(
        self, failure: SsoFailed, client_ip: str | None, user_agent: str | None
    ) -> None:
        if failure.organization_id is None:
            return
        with self._database.write() as session:
            record_event(
                session,
                organization_id=failure.organization_id,
                actor=Actor(_SSO_ACTOR, client_ip, user_agent),
                action="user.sso_failed",
                target_type="sso_connection",
                target_id=failure.connection_id or failure.organization_id,
                at=self._clock(),
                details={"reason": failure.reason},
            )

    # -- the provider ------------------------------------------------------------

    def _discover(self, issuer: str, *, fresh: bool = False) -> _Metadata:
        """The provider's discovery document, checked (cached for a few minutes)."""
        with self._lock:
            cached = self._metadata.get(issuer)
        if cached is not None and not fresh and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[1]
        url = issuer + "/.well-known/openid-configuration"
        document = self._get_json(url, "issuer")
        found = document.get("issuer")
        if not isinstance(found, str) or found.rstrip("/") != issuer.rstrip("/"):
            raise ProviderUnreachable(
                f"the provider at that URL names itself {str(found)[:200]!r}, not {issuer!r}; "
                "enter its issuer exactly",
                field="issuer",
            )
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not _usable_url(value):
                raise ProviderUnreachable(
                    f"the provider's discovery document has no usable {name}", field="issuer"
                )
            endpoints[name] = value
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(
            alg for alg in offered if isinstance(alg, str) and alg in ALGORITHMS
        ) or ("RS256",)
        metadata = _Metadata(
            issuer=found,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            algorithms=algorithms,
        )
        with self._lock:
            self._metadata[issuer] = (time.monotonic(), metadata)
        return metadata

    def _get_json(self, url: str, field_name: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise ProviderUnreachable(
                "the identity provider at that URL does not answer", field=field_name
            ) from None
        return _json_of(response, field_name)

    def _exchange(
        self,
        metadata: _Metadata,
        client_id: str,
        secret: str,
        code: str,
        data: Mapping[str, Any],
        failed: Callable[..., SsoFailed],
    ) -> dict[str, Any]:
        try:
            response = self._http.post(
                metadata.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": str(data.get("redirect_uri", self.redirect_uri)),
                    "code_verifier": str(data.get("verifier", "")),
                },
                auth=(client_id, secret),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError:
            raise failed(
                "provider_unreachable",
                "The identity provider does not answer right now. Try again in a moment.",
                502,
            ) from None
        if response.status_code != 200:
            raise failed(
                "token_exchange",
                "The identity provider did not accept the sign-in code "
                f"(its token endpoint answered {response.status_code}). Start again.",
            )
        try:
            return _json_of(response, "code")
        except ProviderUnreachable:
            raise failed(
                "token_exchange", "The identity provider's token answer is not usable."
            ) from None

    def _validate_id_token(
        self,
        metadata: _Metadata,
        client_id: str,
        tokens: Mapping[str, Any],
        data: Mapping[str, Any],
        failed: Callable[..., SsoFailed],
    ) -> dict[str, Any]:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or len(id_token) > 20_000:
            raise failed("invalid_token", "The identity provider sent no ID token.")
        try:
            jwks = self._get_json(metadata.jwks_uri, "issuer")
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            decoded = jwt.decode(
                id_token,
                keys,
                algorithms=list(metadata.algorithms),
            )
        except (ProviderUnreachable, JoseError, ValueError, TypeError, KeyError):
            raise failed(
                "invalid_token",
                "The identity provider's ID token could not be verified (signature or keys).",
            ) from None
        nonce = str(data.get("nonce", ""))
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": client_id},
                "exp": {"essential": True},
                "nonce": {"essential": True},
            },
            {
                "nonce": nonce,
                "client_id": client_id,
                **(
                    {"access_token": tokens["access_token"]}
                    if isinstance(tokens.get("access_token"), str)
                    else {}
                ),
            },
        )
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode("utf-8", "replace"), nonce.encode()
        ):
            raise failed(
                "nonce_mismatch",
                "The identity provider's ID token was not issued for this sign-in "
                "(wrong nonce). Start again from the sign-in page.",
            )
        try:
            claims.validate(now=int(self._clock().timestamp()), leeway=LEEWAY)
        except (JoseError, ValueError, TypeError) as error:
            reason = getattr(error, "claim", None) or type(error).__name__
            raise failed(
                "invalid_token",
                f"The identity provider's ID token is not valid for this server ({reason}).",
            ) from None
        return dict(claims)


def check_domain(domain: str) -> str:
    text = domain.strip().lower().lstrip("@") if isinstance(domain, str) else ""
    if not _DOMAIN_RE.fullmatch(text):
        raise InvalidInput(f"{text[:80]!r} is not an e-mail domain (example.com)", field="domain")
    return text


def _check_issuer(issuer: str) -> str:
    text = issuer.strip() if isinstance(issuer, str) else ""
    if len(text) > 500 or not _usable_url(text):
        raise InvalidInput(
            "the issuer is the provider's https:// URL (http:// only on this machine)",
            field="issuer",
        )
    parts = urlsplit(text)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("the issuer URL has no query, fragment or user name", field="issuer")
    return text.rstrip("/")


def _usable_url(url: str) -> bool:
    """https, or http to a loopback address (a provider on this machine, tests)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if not host or any(ord(char) < 0x21 or ord(char) > 0x7E for char in url):
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_text(value: str, field_name: str, what: str, limit: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > limit or any(ord(char) < 0x20 for char in text):
        raise InvalidInput(f"enter {what} (at most {limit} characters)", field=field_name)
    return text


def _json_of(response: httpx.Response, field_name: str) -> dict[str, Any]:
    if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
        raise ProviderUnreachable(
            f"the identity provider answered {response.status_code} instead of its document",
            field=field_name,
        )
    try:
        document = response.json()
    except ValueError:
        raise ProviderUnreachable(
            "the identity provider did not answer with JSON", field=field_name
        ) from None
    if not isinstance(document, dict):
        raise ProviderUnreachable("the identity provider's answer is not usable", field=field_name)
    return document


def _same_secret(sealer: Sealer, sealed: str, secret: str) -> bool:
    try:
        stored = sealer.open(sealed)
    except SealBroken:
        return False
    return hmac.compare_digest(
        hashlib.sha256(stored.encode()).digest(), hashlib.sha256(secret.encode()).digest()
    )


def _require_owner(caller: Caller, what: str) -> None:
    if caller.role is not Role.OWNER:
        raise NotPermitted(INSUFFICIENT_ROLE, f"only an owner can {what}")


def _connection_of(session: Session, organization_id: str) -> SsoConnection | None:
    return session.scalar(
        select(SsoConnection).where(SsoConnection.organization_id == organization_id)
    )


def _lock_organization(session: Session, organization_id: str) -> Organization:
    organization = session.scalar(
        select(Organization)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    )
    if organization is None:
        raise ObjectNotFound("organization", organization_id)
    return organization


def _record(row: SsoConnection, require_sso: bool) -> SsoConnectionRecord:
    return SsoConnectionRecord(
        id=row.id,
        organization_id=row.organization_id,
        issuer=row.issuer,
        client_id=row.client_id,
        domain=row.domain,
        default_role=Role(row.default_role),
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret_set=bool(row.client_secret),
        require_sso=require_sso,
    )
