"""Second factors: an authenticator app (TOTP, RFC 6238) and one-time recovery codes.

The TOTP secret is stored sealed (``service/sealing.py``) and only opened to
check a code or to show the enrolment again before it is confirmed. A factor
counts once the user entered a first code (``confirmed_at``). A code is checked
against the steps t-1, t and t+1 (30 s each) in constant time, and passes only
if its step is later than ``last_step``: the conditional ``UPDATE ... WHERE
last_step < :step`` is the replay rule, so of two sign-ins with the same code
(in two processes, on PostgreSQL too) exactly one passes; the other's UPDATE
waits for the first one's row lock, then matches no row.

Recovery codes are 80 random bits (16 base32 characters), stored as their
SHA-256 (high entropy: no salt or slow hash needed), ten at a time, made when
the first factor is confirmed and shown once. Each is spent by a conditional
``UPDATE ... WHERE used_at IS NULL``.

Every change (a factor added or removed, codes regenerated or used) is written
to the audit log of each organization the user belongs to, in the change's
transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import pyotp
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from keyplane.core.errors import InvalidInput, StateConflict
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import record_account_event
from keyplane.service.records import Actor, Caller
from keyplane.service.sealing import Sealer
from keyplane.storage.database import Database
from keyplane.storage.models import (
    RecoveryCode,
    TotpFactor,
    User,
    WebAuthnCredential,
)

ISSUER: Final = "Keyplane"
TOTP_DIGITS: Final = 6
TOTP_PERIOD: Final = 30
#: Steps accepted either side of now (clock drift, a code typed as it changes).
TOTP_WINDOW: Final = 1
RECOVERY_CODE_COUNT: Final = 10
_RECOVERY_CODE_BYTES: Final = 10  # 80 bits
_MAX_CODE_INPUT: Final = 64


def recovery_code_hash(code: str) -> str:
    return hashlib.sha256(normalize_recovery_code(code).encode("ascii")).hexdigest()


def normalize_recovery_code(code: str) -> str:
    """What a person typed, without spaces, dashes or case."""
    return "".join(char for char in code.lower() if char.isascii() and char.isalnum())


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(_RECOVERY_CODE_BYTES)).decode("ascii").lower()
    return "-".join(raw[index : index + 4] for index in range(0, len(raw), 4))


def _clean_totp_code(code: str) -> str | None:
    if not isinstance(code, str) or len(code) > _MAX_CODE_INPUT:
        return None
    digits = "".join(code.split())
    if len(digits) != TOTP_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """An authenticator app being set up: what the QR code and the text show."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class FactorStatus:
    """What the account page shows about a user's second factors."""

    totp_confirmed: bool
    totp_pending: bool
    recovery_codes_left: int
    passkeys: tuple[PasskeyRecord, ...]

    @property
    def has_factor(self) -> bool:
        return self.totp_confirmed or bool(self.passkeys)


@dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """Codes just made: shown once, on the answer that made them."""

    codes: tuple[str, ...] = field(repr=False)


def has_factor(session: Session, user_id: str) -> bool:
    """True if the user has a confirmed authenticator app or a passkey."""
    totp = session.scalar(
        select(TotpFactor.pk).where(
            TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)
        )
    )
    if totp is not None:
        return True
    return (
        session.scalar(
            select(WebAuthnCredential.pk).where(WebAuthnCredential.user_id == user_id).limit(1)
        )
        is not None
    )


class FactorService:
    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        *,
        clock: Callable[[], datetime],
        sudo: SudoRule | None = None,
        issuer: str = ISSUER,
    ) -> None:
        self._database = database
        self._sealer = sealer
        self._clock = clock
        self.sudo = sudo or SudoRule(clock)
        self._issuer = issuer

    def __repr__(self) -> str:
        return "FactorService(...)"

    # -- reading -------------------------------------------------------------

    def status(self, user_id: str) -> FactorStatus:
        with self._database.read() as session:
            totp = session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id))
            left = session.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            )
            passkeys = tuple(
                PasskeyRecord(row.id, row.name, row.created_at, row.last_used_at)
                for row in session.scalars(
                    select(WebAuthnCredential)
                    .where(WebAuthnCredential.user_id == user_id)
                    .order_by(WebAuthnCredential.pk)
                )
            )
            return FactorStatus(
                totp_confirmed=totp is not None and totp.confirmed_at is not None,
                totp_pending=totp is not None and totp.confirmed_at is None,
                recovery_codes_left=int(left or 0),
                passkeys=passkeys,
            )

    def has_factor(self, user_id: str) -> bool:
        with self._database.read() as session:
            return has_factor(session, user_id)

    # -- TOTP enrolment ------------------------------------------------------

    def begin_totp(self, caller: Caller, user_id: str) -> TotpEnrolment:
        """A new secret for an authenticator app, unconfirmed until :meth:`confirm_totp`.

        Replaces an unconfirmed one; refused while a confirmed one exists (remove it first).
        """
        self.sudo.require(caller, "set up an authenticator app")
        secret = pyotp.random_base32(length=32)
        now = self._clock()
        with self._database.write() as session:
            row = session.scalar(
                select(TotpFactor).where(TotpFactor.user_id == user_id).with_for_update()
            )
            if row is not None and row.confirmed_at is not None:
                raise StateConflict("an authenticator app is set up already; remove it first")
            if row is None:
                row = TotpFactor(user_id=user_id, secret="", created_at=now)
                session.add(row)
            row.secret = self._sealer.seal(secret)
            row.created_at = now
            row.last_step = None
            email = session.scalar(select(User.email).where(User.id == user_id)) or ""
        return self._enrolment(secret, email)

    def pending_totp(self, user_id: str) -> TotpEnrolment | None:
        """The unconfirmed enrolment, to show again (after a wrong first code)."""
        with self._database.read() as session:
            row = session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id))
            if row is None or row.confirmed_at is not None:
                return None
            email = session.scalar(select(User.email).where(User.id == user_id)) or ""
            secret = self._sealer.open(row.secret)
        return self._enrolment(secret, email)

    def _enrolment(self, secret: str, email: str) -> TotpEnrolment:
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=email, issuer_name=self._issuer
        )
        return TotpEnrolment(secret, uri)

    def confirm_totp(self, caller: Caller, user_id: str, code: str) -> RecoveryCodes | None:
        """Check a first code against the pending secret; the factor counts from now.

        Returns the recovery codes when this is the user's first factor (shown once).
        Raises ``InvalidInput`` for a wrong code (nothing is written).
        """
        now = self._clock()
        with self._database.write() as session:
            row = session.scalar(
                select(TotpFactor).where(TotpFactor.user_id == user_id).with_for_update()
            )
            if row is None or row.confirmed_at is not None:
                raise StateConflict("there is no authenticator app being set up; start again")
            step = self._matching_step(self._sealer.open(row.secret), code, now)
            if step is None:
                raise InvalidInput(
                    "that code is not right; check the app and try again", field="code"
                )
            row.confirmed_at = now
            row.last_step = step
            record_account_event(
                session,
                user_id,
                actor=caller.actor,
                action="user.factor_added",
                at=now,
                details={"factor": "totp"},
            )
            return self.ensure_recovery_codes_in(session, user_id, caller.actor, now)

    def remove_totp(self, caller: Caller, user_id: str) -> None:
        self.sudo.require(caller, "remove a second factor")
        now = self._clock()
        with self._database.write() as session:
            row = session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id))
            if row is None:
                return
            confirmed = row.confirmed_at is not None
            session.delete(row)
            session.flush()
            if confirmed:
                record_account_event(
                    session,
                    user_id,
                    actor=caller.actor,
                    action="user.factor_removed",
                    at=now,
                    details={"factor": "totp"},
                )
            self.forget_codes_without_factor(session, user_id)

    def forget_codes_without_factor(self, session: Session, user_id: str) -> None:
        """Recovery codes stand in for a factor: with none left they go too."""
        if not has_factor(session, user_id):
            session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))

    # -- checking codes (in the caller's transaction) --------------------------

    def _matching_step(self, secret: str, code: str, now: datetime) -> int | None:
        """The latest step within the window whose code equals ``code`` (constant time)."""
        digits = _clean_totp_code(code)
        if digits is None:
            return None
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
        current = int(now.timestamp()) // TOTP_PERIOD
        found = None
        for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
            expected = totp.generate_otp(step)
            if hmac.compare_digest(expected.encode(), digits.encode()):
                found = step
        return found

    def check_totp_in(self, session: Session, user_id: str, code: str, now: datetime) -> bool:
        """Spend a TOTP code: True once per step, never for a step at or before ``last_step``."""
        row = session.scalar(
            select(TotpFactor).where(
                TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)
            )
        )
        if row is None:
            return False
        step = self._matching_step(self._sealer.open(row.secret), code, now)
        if step is None:
            return False
        spent = session.execute(
            update(TotpFactor)
            .where(
                TotpFactor.pk == row.pk,
                TotpFactor.confirmed_at.is_not(None),
                (TotpFactor.last_step.is_(None)) | (TotpFactor.last_step < step),
            )
            .values(last_step=step)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(spent, "rowcount", 0) or 0) == 1

    def use_recovery_code_in(
        self, session: Session, user_id: str, code: str, now: datetime, actor: Actor
    ) -> bool:
        """Spend a recovery code once (audited); False if unknown or used."""
        if not isinstance(code, str) or len(code) > _MAX_CODE_INPUT:
            return False
        normalized = normalize_recovery_code(code)
        if len(normalized) < 16:
            return False
        spent = session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == recovery_code_hash(normalized),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(spent, "rowcount", 0) or 0) != 1:
            return False
        left = session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        record_account_event(
            session,
            user_id,
            actor=actor,
            action="user.recovery_code_used",
            at=now,
            details={"left": int(left or 0)},
        )
        return True

    # -- recovery codes ----------------------------------------------------------

    def regenerate_recovery_codes(self, caller: Caller, user_id: str) -> RecoveryCodes:
        """Ten new codes; every earlier one stops working."""
        self.sudo.require(caller, "make new recovery codes")
        now = self._clock()
        with self._database.write() as session:
            if not has_factor(session, user_id):
                raise StateConflict("set up a second factor first")
            return self._replace_recovery_codes(session, user_id, caller.actor, now)

    def _replace_recovery_codes(
        self, session: Session, user_id: str, actor: Actor, now: datetime
    ) -> RecoveryCodes:
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = tuple(_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT))
        for code in codes:
            session.add(
                RecoveryCode(user_id=user_id, code_hash=recovery_code_hash(code), created_at=now)
            )
        record_account_event(
            session,
            user_id,
            actor=actor,
            action="user.recovery_codes_generated",
            at=now,
            details={"count": len(codes)},
        )
        return RecoveryCodes(codes)

    def ensure_recovery_codes_in(
        self, session: Session, user_id: str, actor: Actor, now: datetime
    ) -> RecoveryCodes | None:
        """Codes for a user who just got their first factor (a passkey); None if they have some."""
        existing = session.scalar(
            select(RecoveryCode.pk).where(RecoveryCode.user_id == user_id).limit(1)
        )
        if existing is not None:
            return None
        return self._replace_recovery_codes(session, user_id, actor, now)


__all__ = [
    "FactorService",
    "FactorStatus",
    "PasskeyRecord",
    "RecoveryCodes",
    "TotpEnrolment",
    "has_factor",
]
