"""Leaked keys: GitHub's secret scanning partner program.

GitHub finds strings that look like Keyplane keys in public code and POSTs
them, signed, to ``/api/v1/leaks/github``. This module checks the signature
(ECDSA P-256 with SHA-256 over the raw body, against GitHub's published
public keys that the operator saved to ``KEYPLANE_GITHUB_KEYS_FILE``), then
for each reported token: checks its checksum offline, looks its hash up, and
revokes the key it belongs to at once, recording where it leaked. The token
itself is never stored or logged.

GitHub may send a report again (a retry after a timeout) or two reports that
name the same keys at once. A report locks every key it names first, in one
statement and in one order (so two reports cannot deadlock), and a leak
already recorded for the same key and URL is not recorded again: the same
leak, however often and however concurrently reported, is one revocation and
one record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from keyplane.config import ConfigError
from keyplane.core.errors import AuthenticationFailed, InvalidInput, MalformedKey, NotPermitted
from keyplane.core.ids import new_id
from keyplane.core.keys import KeyFormat, hash_key
from keyplane.service.audit import record_key_event
from keyplane.service.keys.lifecycle import KeyService
from keyplane.service.keys.queries import locked
from keyplane.service.records import Actor
from keyplane.storage.database import Database
from keyplane.storage.models import ApiKey, KeyLeak

GITHUB: Final = "github"
#: The actor of every change a GitHub report makes (audit log, ``revoked_by``).
GITHUB_ACTOR: Final = "github-secret-scanning"
MAX_TOKENS_PER_REPORT: Final = 1000
MAX_URL_LENGTH: Final = 2000


class BadSignature(NotPermitted):
    """The report's signature does not verify against any configured GitHub key."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_SIGNATURE", message)


def missing_signature() -> AuthenticationFailed:
    return AuthenticationFailed(
        "MISSING_SIGNATURE",
        "A GitHub secret scanning report must carry the GITHUB-PUBLIC-KEY-IDENTIFIER and "
        "GITHUB-PUBLIC-KEY-SIGNATURE headers.",
    )


@dataclass(frozen=True)
class GitHubKeyring:
    """GitHub's secret scanning public keys, by identifier."""

    keys: Mapping[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: str) -> GitHubKeyring:
        """Parse the JSON GitHub publishes (``{"public_keys": [{"key_identifier", "key"}]}``)."""
        try:
            data = json.loads(document)
            entries = data["public_keys"]
            keys: dict[str, ec.EllipticCurvePublicKey] = {}
            for entry in entries:
                public_key = load_pem_public_key(entry["key"].encode("ascii"))
                if not isinstance(public_key, ec.EllipticCurvePublicKey):
                    raise ValueError("not an elliptic-curve key")
                keys[str(entry["key_identifier"])] = public_key
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a GitHub public key document ({error})") from None
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> GitHubKeyring:
        """Load ``KEYPLANE_GITHUB_KEYS_FILE``; a bad file is a :class:`ConfigError`."""
        try:
            return cls.from_document(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"KEYPLANE_GITHUB_KEYS_FILE ({path}) cannot be used: {error}. Save the JSON of "
                "https://api.github.com/meta/public_keys/secret_scanning to that file."
            ) from None

    def verify(self, identifier: str | None, signature: str | None, body: bytes) -> None:
        """Raise unless ``signature`` (base64 DER) signs ``body`` with the key ``identifier``."""
        if not identifier or not signature:
            raise missing_signature()
        public_key = self.keys.get(identifier.strip())
        if public_key is None:
            raise BadSignature("The report is signed with a key this server does not know.")
        try:
            der = base64.b64decode(signature.strip(), validate=True)
            public_key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise BadSignature("The report's signature does not verify.") from None


@dataclass(frozen=True, slots=True)
class ReportedToken:
    """One match GitHub reports. ``token`` is a secret: kept out of the repr."""

    token: str = field(repr=False)
    type: str
    url: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """GitHub's answer format: the token's SHA-256, its type, and whether it was real."""

    token_hash: str
    token_type: str
    label: str  # "true_positive" or "false_positive"


@dataclass(frozen=True, slots=True)
class LeakRecord:
    id: str
    key_id: str
    organization_id: str
    reporter: str
    url: str
    source: str | None
    reported_at: datetime
    revoked: bool


class LeakService:
    def __init__(
        self,
        database: Database,
        keys: KeyService,
        *,
        key_format: KeyFormat,
        keyring: GitHubKeyring,
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._keys = keys
        self._format = key_format
        self.keyring = keyring
        self._clock = clock

    def report(self, tokens: Sequence[ReportedToken]) -> list[TokenVerdict]:
        """Revoke every reported key that exists, record where it leaked; one verdict each.

        A token that fails the checksum is a false positive without a look-up. A
        real key is a true positive even if it was revoked already (the leak is
        still recorded). All of a report's changes commit together.
        """
        if len(tokens) > MAX_TOKENS_PER_REPORT:
            raise InvalidInput(f"at most {MAX_TOKENS_PER_REPORT} tokens per report")
        now = self._clock()
        verdicts: list[TokenVerdict] = []
        actor = Actor(GITHUB_ACTOR)
        with self._database.write() as session:
            rows = self._lock(session, tokens)
            for reported in tokens:
                token_hash = hashlib.sha256(reported.token.encode("utf-8")).hexdigest()
                row = rows.get(reported.token)
                verdicts.append(
                    TokenVerdict(
                        token_hash,
                        reported.type,
                        "true_positive" if row is not None else "false_positive",
                    )
                )
                if row is None:
                    continue
                url = reported.url[:MAX_URL_LENGTH]
                if self._recorded(session, row.id, url):
                    continue  # the same leak, reported again: already revoked and recorded
                revoked_now = self._keys.revoke_row(
                    session, row, actor, now, details={"reason": "leaked", "url": url}
                )
                session.add(
                    KeyLeak(
                        id=new_id("leak"),
                        organization_id=row.organization_id,
                        key_id=row.id,
                        reporter=GITHUB,
                        url=url,
                        source=(reported.source or None) and reported.source[:60],
                        reported_at=now,
                        revoked=revoked_now,
                    )
                )
                record_key_event(
                    session,
                    row,
                    actor,
                    "key.leaked",
                    at=now,
                    details={
                        "url": url,
                        "source": reported.source,
                        "reporter": GITHUB,
                        "hint": row.hint,
                        "revoked": revoked_now,
                    },
                )
        return verdicts

    def leaks(self, organization_id: str, key_ids: Iterable[str] | None = None) -> list[LeakRecord]:
        """The organization's leak reports, newest first (only for ``key_ids`` when given)."""
        query = select(KeyLeak).where(KeyLeak.organization_id == organization_id)
        if key_ids is not None:
            wanted = list(key_ids)
            if not wanted:
                return []
            query = query.where(KeyLeak.key_id.in_(wanted))
        with self._database.read() as session:
            rows = session.scalars(query.order_by(KeyLeak.pk.desc()).limit(500)).all()
            return [
                LeakRecord(
                    row.id,
                    row.key_id,
                    row.organization_id,
                    row.reporter,
                    row.url,
                    row.source,
                    row.reported_at,
                    row.revoked,
                )
                for row in rows
            ]

    def _lock(self, session: Session, tokens: Sequence[ReportedToken]) -> dict[str, ApiKey]:
        """The keys of the well-formed reported tokens, by token, locked (in id order)."""
        hashes: dict[str, str] = {}
        for reported in tokens:
            try:
                self._format.parse(reported.token)
            except MalformedKey:
                continue
            hashes[hash_key(reported.token)] = reported.token
        if not hashes:
            return {}
        found = session.scalars(locked(select(ApiKey).where(ApiKey.key_hash.in_(hashes)))).all()
        return {hashes[row.key_hash]: row for row in found}

    @staticmethod
    def _recorded(session: Session, key_id: str, url: str) -> bool:
        return (
            session.scalar(
                select(KeyLeak.pk)
                .where(KeyLeak.key_id == key_id, KeyLeak.reporter == GITHUB, KeyLeak.url == url)
                .limit(1)
            )
            is not None
        )
