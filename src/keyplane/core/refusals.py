"""Why a request's API key is refused: one table of code, HTTP status, problem type and message.

Every surface that takes API keys answers a refused key from this table: the
API and the IonQ surface (``http/authentication.py``) and the middleware for
other applications (``integrations/guard.py``). ``code`` is what the answer's
``code`` member says; ``problem_type`` is the end of its RFC 9457 ``type``
(``urn:keyplane:problem:<problem_type>``). A malformed key is refused as an
unknown one (NOT_FOUND): saying which rule it broke would help a guesser.

Messages hold no secret; the two with a blank take ``header`` (where the key
should have been sent) and ``scopes`` (:func:`scopes_phrase`). The functions at
the end build the exception each surface raises or renders for a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from keyplane.core.errors import (
    AuthenticationFailed,
    KeyInURL,
    LimitExceeded,
    NotPermitted,
)
from keyplane.core.grant import GrantCode


class Refusal(StrEnum):
    """A refused key: ``Refusal.REVOKED.status == 401``; the value is the answer's code."""

    status: int
    problem_type: str
    message: str

    def __new__(cls, code: str, status: int, problem_type: str, message: str) -> Refusal:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.problem_type = problem_type
        member.message = message
        return member

    KEY_IN_URL = (
        "KEY_IN_URL",
        400,
        "key-in-url",
        "API keys are never accepted in the URL. Send the key in the '{header}' header, "
        "and consider rolling it: URLs end up in logs.",
    )
    MISSING_KEY = (
        "MISSING_KEY",
        401,
        "missing-api-key",
        "No API key was sent. Send it as 'Authorization: Bearer <key>', "
        "'Authorization: apiKey <key>' or 'X-API-Key: <key>'.",
    )
    NOT_FOUND = (GrantCode.NOT_FOUND.value, 401, "invalid-api-key", "The API key is not valid.")
    REVOKED = (GrantCode.REVOKED.value, 401, "invalid-api-key", "The API key has been revoked.")
    EXPIRED = (GrantCode.EXPIRED.value, 401, "invalid-api-key", "The API key has expired.")
    DISABLED = (GrantCode.DISABLED.value, 401, "invalid-api-key", "The API key is disabled.")
    FORBIDDEN = (
        GrantCode.FORBIDDEN.value,
        403,
        "forbidden-ip",
        "The API key may not be used from this IP address.",
    )
    INSUFFICIENT_SCOPE = (
        GrantCode.INSUFFICIENT_SCOPE.value,
        403,
        "insufficient-scope",
        "The API key lacks {scopes} this call needs.",
    )
    RATE_LIMITED = (
        GrantCode.RATE_LIMITED.value,
        429,
        "rate-limited",
        "The API key is over its rate limit; retry after the reset.",
    )
    USAGE_EXCEEDED = (
        GrantCode.USAGE_EXCEEDED.value,
        429,
        "usage-exceeded",
        "The API key has used up its usage quota.",
    )
    VERIFICATION_UNAVAILABLE = (
        "VERIFICATION_UNAVAILABLE",
        503,
        "verification-unavailable",
        "API keys cannot be verified right now. Try again shortly.",
    )

    def detail(self, *, header: str = "Authorization: Bearer <key>", scopes: str = "") -> str:
        """The message, its blanks filled in."""
        return self.message.format(header=header, scopes=scopes or "a scope")

    @classmethod
    def of(cls, code: str) -> Refusal:
        """The refusal for a grant code (or a refusal code); an unknown code is NOT_FOUND."""
        return _BY_CODE.get(code, cls.NOT_FOUND)


_BY_CODE: dict[str, Refusal] = {refusal.value: refusal for refusal in Refusal}


def scopes_phrase(scopes: Iterable[str | None]) -> str:
    """``the scope 'a'``, ``the scopes 'a', 'b'``, or ``a scope`` when none is named."""
    named = [f"'{scope}'" for scope in scopes if scope]
    if not named:
        return "a scope"
    return f"the scope{'s' if len(named) > 1 else ''} {', '.join(named)}"


#: Refusals that mean "this credential does not authenticate" (HTTP 401).
UNAUTHENTICATED = frozenset(refusal for refusal in Refusal if refusal.status == 401)


def key_sent_in_url(header: str = "Authorization: Bearer <key>") -> KeyInURL:
    return KeyInURL(Refusal.KEY_IN_URL.detail(header=header))


def missing_key() -> AuthenticationFailed:
    return AuthenticationFailed(Refusal.MISSING_KEY, Refusal.MISSING_KEY.detail())


def unusable_key(code: str) -> AuthenticationFailed:
    """The 401 for a key that is unknown (or malformed), revoked, expired or disabled."""
    refusal = Refusal.of(code)
    if refusal not in UNAUTHENTICATED or refusal is Refusal.MISSING_KEY:
        refusal = Refusal.NOT_FOUND
    return AuthenticationFailed(refusal, refusal.detail())


def forbidden_ip() -> NotPermitted:
    return NotPermitted(Refusal.FORBIDDEN, Refusal.FORBIDDEN.detail())


def lacking_scopes(scopes: Iterable[str | None]) -> NotPermitted:
    """The 403 for a key that authenticates but lacks a scope the call needs."""
    refusal = Refusal.INSUFFICIENT_SCOPE
    return NotPermitted(refusal, refusal.detail(scopes=scopes_phrase(scopes)))


def over_limit(
    code: str, *, limit: int, reset_at: float | None, window: int | None
) -> LimitExceeded:
    """The 429 for a key over its rate limit (RATE_LIMITED) or quota (USAGE_EXCEEDED)."""
    refusal = Refusal.of(code)
    if refusal not in (Refusal.RATE_LIMITED, Refusal.USAGE_EXCEEDED):
        raise ValueError(f"{code} is not a limit's refusal")
    return LimitExceeded(refusal, refusal.detail(), limit=limit, reset_at=reset_at, window=window)
