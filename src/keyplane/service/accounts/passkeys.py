"""Passkeys and security keys (WebAuthn, with the ``webauthn`` library).

**Relying party.** The RP id and the one origin a passkey is accepted from come
from the configured console URL (``Settings.console_url``: ``KEYPLANE_PUBLIC_URL``,
else ``http://host:port``), never from a request: ``rp_id`` is its host name and
the expected origin its scheme, host and port. A loopback address (127.0.0.1,
::1: the default without a public URL) is not a valid RP id, so it becomes
``localhost`` (browsers treat ``http://localhost`` as a secure context). The
console compares a request's own origin with the expected one only to say
"open the console at ..." early; the library checks the origin and RP id the
authenticator signed, which is what refuses another origin.

**Challenges.** Each ceremony stores an :class:`AuthChallenge` row: the browser
holds a random token, the row its SHA-256, the purpose, the user it is for (none
for passwordless sign-in) and the challenge, sealed; five minutes; claimed once
with a conditional ``UPDATE ... WHERE used_at IS NULL``.

**Checks.** User verification is required for passwordless sign-in (the passkey
is then both factors) and preferred as a second factor. A sign count that does
not go up (when either count is non-zero) is refused (a cloned authenticator);
the new count is written with ``WHERE sign_count = :old``. An assertion for a
credential of another user than the one signing in, from another origin, or
that does not verify, is refused and audited (``user.passkey_refused``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import webauthn
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyplane.core.errors import AuthenticationFailed, InvalidInput, ObjectNotFound
from keyplane.core.ids import new_id
from keyplane.service.accounts.factors import FactorService, RecoveryCodes
from keyplane.service.accounts.sessions import (
    NewSession,
    SessionService,
    SessionStage,
    landing_without_sso,
)
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_account_event
from keyplane.service.records import Actor, Caller, SessionRecord
from keyplane.service.sealing import SealBroken, Sealer
from keyplane.service.validation import check_name
from keyplane.storage.database import Database
from keyplane.storage.models import AuthChallenge, User, WebAuthnCredential

CHALLENGE_LIFETIME: Final = timedelta(minutes=5)
_TOKEN_BYTES: Final = 32
_MAX_TOKEN_LENGTH: Final = 128
_MAX_CREDENTIAL_JSON: Final = 64_000
RP_NAME: Final = "Keyplane"

REGISTER: Final = "webauthn_register"
SIGN_IN: Final = "webauthn_sign_in"
SECOND_FACTOR: Final = "webauthn_factor"


class PasskeyRefused(AuthenticationFailed):
    """A WebAuthn response that does not verify (the one answer for every cause)."""

    def __init__(self) -> None:
        super().__init__("PASSKEY_REFUSED", "that passkey could not be used")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class RelyingParty:
    rp_id: str
    origin: str

    @classmethod
    def from_url(cls, console_url: str) -> RelyingParty:
        parts = urlsplit(console_url)
        host = parts.hostname or "localhost"
        try:
            if ipaddress.ip_address(host).is_loopback:
                host = "localhost"
        except ValueError:
            pass
        scheme = parts.scheme or "http"
        default_port = {"http": 80, "https": 443}.get(scheme)
        port = f":{parts.port}" if parts.port and parts.port != default_port else ""
        return cls(rp_id=host, origin=f"{scheme}://{host}{port}")


@dataclass(frozen=True, slots=True)
class Ceremony:
    """Options for ``navigator.credentials.create/get`` and the token that finishes it."""

    token: str = field(repr=False)
    options_json: str


@dataclass(frozen=True, slots=True)
class Registered:
    passkey_id: str
    recovery_codes: RecoveryCodes | None


class PasskeyService:
    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        factors: FactorService,
        sessions: SessionService,
        *,
        relying_party: RelyingParty,
        clock: Callable[[], datetime],
        sudo: SudoRule,
    ) -> None:
        self._database = database
        self._sealer = sealer
        self._factors = factors
        self._sessions = sessions
        self.relying_party = relying_party
        self._clock = clock
        self.sudo = sudo

    def __repr__(self) -> str:
        return f"PasskeyService(rp_id={self.relying_party.rp_id!r})"

    # -- challenges ------------------------------------------------------------

    def _store_challenge(
        self, session: Session, purpose: str, user_id: str | None, challenge: bytes, **extra: Any
    ) -> str:
        now = self._clock()
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        # Old rows go when new ones come: no background job needed.
        session.execute(delete(AuthChallenge).where(AuthChallenge.expires_at <= now))
        session.add(
            AuthChallenge(
                token_hash=_hash(token),
                purpose=purpose,
                user_id=user_id,
                data=self._sealer.seal(json.dumps({"challenge": _b64(challenge), **extra})),
                created_at=now,
                expires_at=now + CHALLENGE_LIFETIME,
            )
        )
        return token

    def _claim(
        self, session: Session, token: str, purpose: str, user_id: str | None
    ) -> dict[str, Any]:
        """The challenge's data, marked used (once); ``PasskeyRefused`` otherwise."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise PasskeyRefused()
        now = self._clock()
        conditions = [
            AuthChallenge.token_hash == _hash(token),
            AuthChallenge.purpose == purpose,
            AuthChallenge.used_at.is_(None),
            AuthChallenge.expires_at > now,
        ]
        conditions.append(
            AuthChallenge.user_id.is_(None) if user_id is None else AuthChallenge.user_id == user_id
        )
        claimed = session.execute(
            update(AuthChallenge)
            .where(*conditions)
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(claimed, "rowcount", 0) or 0) != 1:
            raise PasskeyRefused()
        sealed = session.scalar(
            select(AuthChallenge.data).where(AuthChallenge.token_hash == _hash(token))
        )
        try:
            data: dict[str, Any] = json.loads(self._sealer.open(sealed or ""))
        except (SealBroken, ValueError):
            raise PasskeyRefused() from None
        return data

    # -- registration ----------------------------------------------------------

    def begin_registration(self, caller: Caller, user_id: str) -> Ceremony:
        self.sudo.require(caller, "add a passkey")
        with self._database.write() as session:
            email = session.scalar(select(User.email).where(User.id == user_id))
            if email is None:
                raise ObjectNotFound("user", user_id)
            existing = session.scalars(
                select(WebAuthnCredential.credential_id).where(
                    WebAuthnCredential.user_id == user_id
                )
            ).all()
            options = webauthn.generate_registration_options(
                rp_id=self.relying_party.rp_id,
                rp_name=RP_NAME,
                user_name=email,
                user_id=user_id.encode("ascii"),
                user_display_name=email,
                timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.REQUIRED,
                    user_verification=UserVerificationRequirement.PREFERRED,
                ),
                exclude_credentials=[
                    PublicKeyCredentialDescriptor(id=_unb64(credential)) for credential in existing
                ],
            )
            token = self._store_challenge(session, REGISTER, user_id, options.challenge)
        return Ceremony(token, webauthn.options_to_json(options))

    def finish_registration(
        self, caller: Caller, user_id: str, token: str, credential: str, name: str
    ) -> Registered:
        """Check the authenticator's answer and store the passkey (its public key)."""
        name = check_name(name or "Passkey")
        now = self._clock()
        with self._database.write() as session:
            data = self._claim(session, token, REGISTER, user_id)
            try:
                verified = webauthn.verify_registration_response(
                    credential=_credential_json(credential),
                    expected_challenge=_unb64(data["challenge"]),
                    expected_rp_id=self.relying_party.rp_id,
                    expected_origin=self.relying_party.origin,
                )
            except (WebAuthnException, ValueError, KeyError, TypeError):
                raise InvalidInput("the passkey could not be registered; try again") from None
            credential_id = _b64(verified.credential_id)
            if session.scalar(
                select(WebAuthnCredential.pk).where(
                    WebAuthnCredential.credential_id == credential_id
                )
            ):
                raise InvalidInput("this passkey is registered already")
            row = WebAuthnCredential(
                id=new_id("pky"),
                user_id=user_id,
                credential_id=credential_id,
                public_key=_b64(verified.credential_public_key),
                sign_count=verified.sign_count,
                transports=_transports(credential),
                name=name,
                created_at=now,
            )
            session.add(row)
            session.flush()
            record_account_event(
                session,
                user_id,
                actor=caller.actor,
                action="user.factor_added",
                at=now,
                details={"factor": "passkey", "passkey_id": row.id},
            )
            codes = self._factors.ensure_recovery_codes_in(session, user_id, caller.actor, now)
            return Registered(row.id, codes)

    def remove(self, caller: Caller, user_id: str, passkey_id: str) -> None:
        self.sudo.require(caller, "remove a passkey")
        now = self._clock()
        with self._database.write() as session:
            row = session.scalar(
                select(WebAuthnCredential).where(
                    WebAuthnCredential.id == passkey_id, WebAuthnCredential.user_id == user_id
                )
            )
            if row is None:
                raise ObjectNotFound("passkey", passkey_id)
            session.delete(row)
            session.flush()
            record_account_event(
                session,
                user_id,
                actor=caller.actor,
                action="user.factor_removed",
                at=now,
                details={"factor": "passkey", "passkey_id": passkey_id},
            )
            self._factors.forget_codes_without_factor(session, user_id)

    # -- authentication ----------------------------------------------------------

    def begin_sign_in(self) -> Ceremony:
        """Passwordless sign-in: any discoverable passkey of this site, user verified."""
        options = webauthn.generate_authentication_options(
            rp_id=self.relying_party.rp_id,
            timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        with self._database.write() as session:
            token = self._store_challenge(session, SIGN_IN, None, options.challenge)
        return Ceremony(token, webauthn.options_to_json(options))

    def begin_second_factor(self, pending: SessionRecord) -> Ceremony:
        with self._database.write() as session:
            credentials = session.scalars(
                select(WebAuthnCredential).where(WebAuthnCredential.user_id == pending.user_id)
            ).all()
            options = webauthn.generate_authentication_options(
                rp_id=self.relying_party.rp_id,
                timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
                allow_credentials=[
                    PublicKeyCredentialDescriptor(id=_unb64(row.credential_id))
                    for row in credentials
                ],
                user_verification=UserVerificationRequirement.PREFERRED,
            )
            token = self._store_challenge(
                session, SECOND_FACTOR, pending.user_id, options.challenge
            )
        return Ceremony(token, webauthn.options_to_json(options))

    def finish_sign_in(
        self,
        token: str,
        credential: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        replacing: str | None = None,
    ) -> NewSession:
        """Passwordless: the passkey (user verified) signs its owner in, in full.

        Not counted by the sign-in throttle: there is nothing to guess (a signature
        by a key the server never sees), and a shared budget would let anyone lock
        every passkey out."""
        parsed = _credential_json(credential)
        try:
            with self._database.write() as session:
                data = self._claim(session, token, SIGN_IN, None)
                row = self._verify(session, parsed, data, None, require_uv=True)
                organization_id = landing_without_sso(session, row.user_id)
                return self._sessions.start_in(
                    session,
                    row.user_id,
                    organization_id,
                    client_ip=client_ip,
                    user_agent=user_agent,
                    replacing=replacing,
                    method="passkey",
                    factor_verified=True,
                )
        except PasskeyRefused:
            self._audit_refusal(parsed, None, client_ip, user_agent)
            raise

    def finish_second_factor(
        self,
        pending: SessionRecord,
        pending_token: str,
        token: str,
        credential: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> NewSession:
        """A passkey of the pending session's user finishes its second factor."""
        parsed = _credential_json(credential)
        with self._sessions.throttle.attempt(pending.email, client_ip):
            try:
                with self._database.write() as session:
                    data = self._claim(session, token, SECOND_FACTOR, pending.user_id)
                    self._verify(session, parsed, data, pending.user_id, require_uv=False)
                    return self._sessions.replace_pending(
                        session,
                        pending,
                        pending_token,
                        SessionStage.SECOND_FACTOR,
                        method="passkey",
                        client_ip=client_ip,
                        user_agent=user_agent,
                    )
            except PasskeyRefused:
                self._sessions.throttle.failed(pending.email, client_ip)
        # Only a refusal gets here (success returned above).
        self._audit_refusal(parsed, pending.user_id, client_ip, user_agent)
        raise PasskeyRefused()

    def _verify(
        self,
        session: Session,
        parsed: dict[str, Any],
        data: dict[str, Any],
        user_id: str | None,
        *,
        require_uv: bool,
    ) -> WebAuthnCredential:
        """The credential the assertion proves, its sign count moved on; ``PasskeyRefused``
        for another user's credential, another origin, a bad signature, a count gone back."""
        credential_id = parsed.get("rawId") or parsed.get("id")
        if not isinstance(credential_id, str) or len(credential_id) > 1400:
            raise PasskeyRefused()
        row = session.scalar(
            select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id)
        )
        if row is None or (user_id is not None and row.user_id != user_id):
            raise PasskeyRefused()
        response = parsed.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        if user_id is None:
            # Passwordless: the authenticator names its user; it must be the owner.
            try:
                if not isinstance(handle, str) or _unb64(handle) != row.user_id.encode("ascii"):
                    raise PasskeyRefused()
            except ValueError:
                raise PasskeyRefused() from None
        try:
            verified = webauthn.verify_authentication_response(
                credential=parsed,
                expected_challenge=_unb64(data["challenge"]),
                expected_rp_id=self.relying_party.rp_id,
                expected_origin=self.relying_party.origin,
                credential_public_key=_unb64(row.public_key),
                credential_current_sign_count=row.sign_count,
                require_user_verification=require_uv,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError):
            raise PasskeyRefused() from None
        now = self._clock()
        moved = session.execute(
            update(WebAuthnCredential)
            .where(
                WebAuthnCredential.pk == row.pk,
                WebAuthnCredential.sign_count == row.sign_count,
            )
            .values(sign_count=verified.new_sign_count, last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(moved, "rowcount", 0) or 0) != 1:
            raise PasskeyRefused()
        return row

    def _audit_refusal(
        self,
        parsed: dict[str, Any],
        user_id: str | None,
        client_ip: str | None,
        user_agent: str | None,
    ) -> None:
        """``user.passkey_refused`` for the user signing in and the credential's owner."""
        credential_id = parsed.get("rawId") or parsed.get("id")
        with self._database.write() as session:
            owner = (
                session.scalar(
                    select(WebAuthnCredential.user_id).where(
                        WebAuthnCredential.credential_id == credential_id
                    )
                )
                if isinstance(credential_id, str) and len(credential_id) <= 1400
                else None
            )
            for affected in {user for user in (user_id, owner) if user is not None}:
                record_account_event(
                    session,
                    affected,
                    actor=Actor(
                        f"user:{user_id}" if user_id else "anonymous", client_ip, user_agent
                    ),
                    action="user.passkey_refused",
                    at=self._clock(),
                    details={"another_users_credential": owner is not None and owner != user_id}
                    if user_id
                    else {},
                )


def _credential_json(credential: str) -> dict[str, Any]:
    if not isinstance(credential, str) or len(credential) > _MAX_CREDENTIAL_JSON:
        raise PasskeyRefused()
    try:
        parsed = json.loads(credential)
    except ValueError:
        raise PasskeyRefused() from None
    if not isinstance(parsed, dict):
        raise PasskeyRefused()
    return parsed


def _transports(credential: str) -> list[str]:
    try:
        found = json.loads(credential).get("response", {}).get("transports", [])
    except (ValueError, AttributeError):
        return []
    if not isinstance(found, list):
        return []
    return [item for item in found if isinstance(item, str) and len(item) <= 20][:8]


__all__ = ["Ceremony", "PasskeyRefused", "PasskeyService", "Registered", "RelyingParty"]
