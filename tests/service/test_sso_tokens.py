"""The ID token checks of ``SsoService``, with tokens this test signs itself: every
claim the real provider always gets right (signature, algorithm, iss, aud, exp,
nonce) is broken once here, and each is refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from keyplane.service.accounts.sso import SsoFailed, SsoService, _Metadata
from keyplane.service.services import Services

ISSUER = "https://idp.example.com"
CLIENT_ID = "keyplane"
NONCE = "the-nonce-of-this-sign-in"

KEY = RSAKey.generate_key(2048, parameters={"kid": "good"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "good"})


@pytest.fixture
def sso(services: Services) -> Iterator[SsoService]:
    jwks = KeySet([KEY]).as_dict(private=False)

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == f"{ISSUER}/jwks"
        return httpx.Response(200, json=jwks)

    service = SsoService(
        services.database,
        services.sessions,
        services.sealer,
        console_url="https://keys.example.com",
        clock=services.clock,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    try:
        yield service
    finally:
        service.close()


METADATA = _Metadata(
    issuer=ISSUER,
    authorization_endpoint=f"{ISSUER}/authorize",
    token_endpoint=f"{ISSUER}/token",
    jwks_uri=f"{ISSUER}/jwks",
    algorithms=("RS256",),
)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "subject-1",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "email": "ada@example.com",
        "email_verified": True,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(payload: dict[str, Any], key: Any = KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "good"}, payload, key, algorithms=[alg])


def failed(reason: str, message: str, status: int = 400) -> SsoFailed:
    return SsoFailed(reason, message, status=status)


def check(sso: SsoService, token: str) -> dict[str, Any]:
    validate: Callable[..., dict[str, Any]] = sso._validate_id_token
    return validate(METADATA, CLIENT_ID, {"id_token": token}, {"nonce": NONCE}, failed)


def test_a_good_token_passes(sso: SsoService) -> None:
    assert check(sso, sign(claims()))["sub"] == "subject-1"
    two = claims(aud=[CLIENT_ID, "another"], azp=CLIENT_ID)
    assert check(sso, sign(two))["sub"] == "subject-1"
    with pytest.raises(SsoFailed):  # several audiences and none authorized: refused
        check(sso, sign(claims(aud=[CLIENT_ID, "another"])))
    with pytest.raises(SsoFailed):
        check(sso, sign(claims(aud=[CLIENT_ID, "another"], azp="another")))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(claims(iss="https://evil.example.com"), "invalid_token", id="iss"),
        pytest.param(claims(iss=None), "invalid_token", id="no-iss"),
        pytest.param(claims(aud="another-client"), "invalid_token", id="aud"),
        pytest.param(claims(aud=None), "invalid_token", id="no-aud"),
        pytest.param(claims(exp=int(time.time()) - 3600), "invalid_token", id="expired"),
        pytest.param(claims(exp=None), "invalid_token", id="no-exp"),
        pytest.param(claims(nonce="another-nonce"), "nonce_mismatch", id="nonce"),
        pytest.param(claims(nonce=None), "nonce_mismatch", id="no-nonce"),
    ],
)
def test_a_wrong_claim_is_refused(sso: SsoService, payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(SsoFailed) as refused:
        check(sso, sign(payload))
    assert refused.value.reason == reason


def test_a_token_signed_by_another_key_is_refused(sso: SsoService) -> None:
    with pytest.raises(SsoFailed) as refused:
        check(sso, sign(claims(), OTHER_KEY))
    assert refused.value.reason == "invalid_token"


def test_an_hmac_token_is_refused(sso: SsoService) -> None:
    secret = OctKey.generate_key(256)
    with pytest.raises(SsoFailed) as refused:
        check(sso, sign(claims(), secret, "HS256"))
    assert refused.value.reason == "invalid_token"


def test_an_unsigned_token_is_refused(sso: SsoService) -> None:
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none'})}.{part(claims())}."
    with pytest.raises(SsoFailed) as refused:
        check(sso, unsigned)
    assert refused.value.reason == "invalid_token"


def test_no_id_token_is_refused(sso: SsoService) -> None:
    validate: Callable[..., dict[str, Any]] = sso._validate_id_token
    with pytest.raises(SsoFailed) as refused:
        validate(METADATA, CLIENT_ID, {"access_token": "x"}, {"nonce": NONCE}, failed)
    assert refused.value.reason == "invalid_token"
