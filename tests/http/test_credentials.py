"""Where a request's key comes from: headers yes, the URL never."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from keyplane.core.keys import KeyFormat, checksum
from keyplane.http.credentials import (
    MAX_CREDENTIAL_LENGTH,
    QUERY_KEY_NAMES,
    key_from_headers,
    key_in_query,
)

KEY_FORMAT = KeyFormat()
KEY = f"kp_{'A' * 30}{checksum('A' * 30)}"
OTHER = f"kp_{'B' * 30}{checksum('B' * 30)}"
LOOKALIKE = KEY[:-1] + ("x" if KEY[-1] != "x" else "y")


def headers(**values: str) -> Headers:
    """Real request headers (case-insensitive), names given with underscores for dashes."""
    return Headers(headers={name.replace("_", "-"): value for name, value in values.items()})


# --- key_from_headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {KEY}",
        f"bearer {KEY}",
        f"BEARER {KEY}",
        f"apiKey {KEY}",
        f"apikey {KEY}",
        f"APIKEY {KEY}",
        f"ApiKey {KEY}",
        f"  Bearer {KEY}  ",
        f"Bearer    {KEY}",
    ],
)
def test_authorization_schemes_are_case_insensitive(authorization: str) -> None:
    assert key_from_headers(headers(Authorization=authorization)) == KEY


def test_x_api_key_header() -> None:
    assert key_from_headers(headers(X_API_Key=KEY)) == KEY


def test_x_api_key_is_stripped() -> None:
    assert key_from_headers(headers(X_API_Key=f"  {KEY}\t")) == KEY


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION", "Authorization"])
def test_header_names_are_case_insensitive(name: str) -> None:
    assert key_from_headers(Headers(headers={name: f"Bearer {KEY}"})) == KEY


@pytest.mark.parametrize("name", ["x-api-key", "X-API-KEY", "X-Api-Key"])
def test_x_api_key_name_is_case_insensitive(name: str) -> None:
    assert key_from_headers(Headers(headers={name: KEY})) == KEY


def test_bearer_wins_over_x_api_key() -> None:
    assert key_from_headers(headers(Authorization=f"Bearer {KEY}", X_API_Key=OTHER)) == KEY


def test_apikey_scheme_wins_over_x_api_key() -> None:
    assert key_from_headers(headers(Authorization=f"apiKey {KEY}", X_API_Key=OTHER)) == KEY


def test_basic_auth_is_ignored() -> None:
    assert key_from_headers(headers(Authorization="Basic dXNlcjpwYXNz")) is None


def test_basic_auth_falls_through_to_x_api_key() -> None:
    assert key_from_headers(headers(Authorization="Basic dXNlcjpwYXNz", X_API_Key=KEY)) == KEY


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(f"Token {KEY}", id="token-scheme"),
        pytest.param(f"Digest {KEY}", id="digest-scheme"),
        pytest.param(KEY, id="no-scheme"),
        pytest.param(f"Bearer{KEY}", id="no-space"),
        pytest.param(f"Bearer-{KEY}", id="dash"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Bearer   ", id="scheme-and-spaces"),
        pytest.param("apiKey ", id="apikey-no-value"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
    ],
)
def test_unusable_authorization_gives_no_key(authorization: str) -> None:
    assert key_from_headers(headers(Authorization=authorization)) is None


def test_unusable_authorization_falls_through_to_x_api_key() -> None:
    assert key_from_headers(headers(Authorization="Bearer  ", X_API_Key=KEY)) == KEY


@pytest.mark.parametrize("value", ["", " ", "\t \t"])
def test_empty_x_api_key_gives_no_key(value: str) -> None:
    assert key_from_headers(headers(X_API_Key=value)) is None


def test_no_headers_gives_no_key() -> None:
    assert key_from_headers(Headers()) is None
    assert key_from_headers({}) is None


def test_other_headers_are_not_credentials() -> None:
    assert key_from_headers(headers(Cookie=f"key={KEY}", X_Auth_Token=KEY, Api_Key=KEY)) is None


def test_any_credential_is_returned_even_if_not_a_key() -> None:
    # The verifier, not the parser, decides whether it is a key.
    assert key_from_headers(headers(Authorization="Bearer not-a-key")) == "not-a-key"
    assert key_from_headers(headers(X_API_Key=LOOKALIKE)) == LOOKALIKE


def test_long_credentials_are_truncated() -> None:
    long = "x" * 10_000
    assert key_from_headers(headers(Authorization=f"Bearer {long}")) == "x" * MAX_CREDENTIAL_LENGTH
    assert key_from_headers(headers(X_API_Key=long)) == "x" * MAX_CREDENTIAL_LENGTH


def test_first_of_repeated_authorization_headers_is_used() -> None:
    raw = [(b"authorization", f"Bearer {KEY}".encode()), (b"authorization", b"Bearer other")]
    assert key_from_headers(Headers(raw=raw)) == KEY


header_text = st.text(max_size=300)


@given(authorization=st.none() | header_text, x_api_key=st.none() | header_text)
@settings(max_examples=200)
def test_arbitrary_header_values_never_raise(
    authorization: str | None, x_api_key: str | None
) -> None:
    values = {}
    if authorization is not None:
        values["authorization"] = authorization
    if x_api_key is not None:
        values["x-api-key"] = x_api_key
    result = key_from_headers(values)
    assert result is None or (0 < len(result) <= MAX_CREDENTIAL_LENGTH)


@given(st.binary(max_size=300), st.binary(max_size=300))
@settings(max_examples=100)
def test_arbitrary_raw_header_bytes_never_raise(authorization: bytes, x_api_key: bytes) -> None:
    raw = [(b"authorization", authorization), (b"x-api-key", x_api_key)]
    result = key_from_headers(Headers(raw=raw))
    assert result is None or (0 < len(result) <= MAX_CREDENTIAL_LENGTH)


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=100))
@settings(max_examples=100)
def test_bearer_credential_is_the_stripped_rest(credential: str) -> None:
    result = key_from_headers({"authorization": f"Bearer {credential}"})
    stripped = credential.strip()
    assert result == (stripped[:MAX_CREDENTIAL_LENGTH] if stripped else None)


# --- key_in_query ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(QUERY_KEY_NAMES))
def test_named_query_parameter_is_refused(name: str) -> None:
    assert key_in_query(f"{name}=anything", KEY_FORMAT)
    assert key_in_query(f"page=2&{name}=x", KEY_FORMAT)


@pytest.mark.parametrize("name", ["API_KEY", "Api-Key", "TOKEN", "Access_Token"])
def test_named_query_parameter_is_case_insensitive(name: str) -> None:
    assert key_in_query(f"{name}=x", KEY_FORMAT)


@pytest.mark.parametrize("name", ["key", "token", "api_key"])
def test_named_query_parameter_without_value_is_refused(name: str) -> None:
    assert key_in_query(f"{name}=", KEY_FORMAT)
    assert key_in_query(name, KEY_FORMAT)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(f"q={KEY}", id="any-name"),
        pytest.param(f"page=2&search={KEY}&limit=10", id="among-others"),
        pytest.param(f"q=%20{KEY}%20", id="padded"),
        pytest.param(f"q=+{KEY}+", id="plus-padded"),
        pytest.param(urlencode({"q": KEY}), id="urlencoded"),
        pytest.param("q=" + quote(KEY, safe=""), id="percent-encoded"),
        pytest.param("q=" + "".join(f"%{ord(c):02X}" for c in KEY), id="fully-percent-encoded"),
        pytest.param(KEY, id="bare-key"),
        pytest.param(f"page=2&{KEY}", id="bare-key-among-others"),
        pytest.param(f"{KEY}=1", id="key-as-name"),
    ],
)
def test_valid_key_anywhere_in_query_is_refused(query: str) -> None:
    assert key_in_query(query, KEY_FORMAT)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="empty"),
        pytest.param("page=2&limit=10", id="ordinary"),
        pytest.param("cursor=djE6MTIz&project=prj_0000000000000000", id="ids"),
        pytest.param(f"q={LOOKALIKE}", id="lookalike-bad-checksum"),
        pytest.param(f"q={KEY[:-1]}", id="truncated-key"),
        pytest.param(f"q={KeyFormat('acme').generate().reveal()}", id="other-prefix"),
        pytest.param("monkey=1&tokens=2&keys=3", id="names-that-only-contain-key"),
    ],
)
def test_query_without_key_is_accepted(query: str) -> None:
    assert not key_in_query(query, KEY_FORMAT)


def test_key_in_query_uses_the_deployment_prefix() -> None:
    acme = KeyFormat("acme")
    value = acme.generate().reveal()
    assert key_in_query(f"q={value}", acme)
    assert not key_in_query(f"q={value}", KEY_FORMAT)


@given(st.text(max_size=300))
@settings(max_examples=200)
def test_arbitrary_query_string_never_raises(query: str) -> None:
    assert isinstance(key_in_query(query, KEY_FORMAT), bool)


@given(st.text(max_size=50), st.text(max_size=50))
@settings(max_examples=100)
def test_key_next_to_arbitrary_parameters_is_refused(before: str, after: str) -> None:
    query = f"{urlencode({'a': before})}&x={KEY}&{urlencode({'b': after})}"
    assert key_in_query(query, KEY_FORMAT)
