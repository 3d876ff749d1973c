"""The key format: generation, parsing, checksum, hints, hashing, redaction, SecretKey."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import pickle
import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keyplane.core.errors import InvalidInput, MalformedKey
from keyplane.core.keys import (
    BASE62_ALPHABET,
    BODY_LENGTH,
    CHECKSUM_LENGTH,
    DEFAULT_PREFIX,
    RANDOM_LENGTH,
    KeyFormat,
    SecretKey,
    checksum,
    encode_base62,
    hash_key,
    make_hint,
    validate_prefix,
)

DEFAULT = KeyFormat()
HINT_RE = re.compile(r"kp_\.\.\.[0-9A-Za-z]{4}")

prefixes = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_lowercase),
    st.text(alphabet=string.ascii_lowercase + string.digits, max_size=15),
)
random_parts = st.text(alphabet=BASE62_ALPHABET, min_size=RANDOM_LENGTH, max_size=RANDOM_LENGTH)
# Every code point, lone surrogates included.
any_character = st.characters(exclude_categories=())


def build_key(prefix: str, random_part: str) -> str:
    """A well-formed key assembled by hand from its parts."""
    return f"{prefix}_{random_part}{checksum(random_part)}"


@st.composite
def formats_and_keys(draw: st.DrawFn) -> tuple[KeyFormat, str]:
    prefix = draw(prefixes)
    return KeyFormat(prefix), build_key(prefix, draw(random_parts))


def a_key() -> str:
    return DEFAULT.generate().reveal()


def with_bad_checksum(key: str) -> str:
    """``key`` with its last checksum character changed to another base62 character."""
    last = key[-1]
    replacement = BASE62_ALPHABET[(BASE62_ALPHABET.index(last) + 1) % len(BASE62_ALPHABET)]
    return key[:-1] + replacement


# --- prefixes and base62 -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["kp", "k", "sk", "acme2", "a" * 16, "x0y1z2"])
def test_valid_prefix_is_accepted(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix
    assert KeyFormat(prefix).prefix == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("KP", id="uppercase"),
        pytest.param("2kp", id="starts-with-digit"),
        pytest.param("k_p", id="underscore"),
        pytest.param("k-p", id="dash"),
        pytest.param("a" * 17, id="too-long"),
        pytest.param("kp\n", id="trailing-newline"),
        pytest.param("ķp", id="non-ascii"),
    ],
)
def test_invalid_prefix_is_refused_with_invalid_input(prefix: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        KeyFormat(prefix)
    assert caught.value.field == "prefix"


def test_default_format_uses_kp_prefix_and_has_fixed_length() -> None:
    assert DEFAULT.prefix == DEFAULT_PREFIX == "kp"
    assert DEFAULT.length == len("kp_") + RANDOM_LENGTH + CHECKSUM_LENGTH
    assert KeyFormat("acme").length == len("acme_") + BODY_LENGTH


@pytest.mark.parametrize(
    ("number", "expected"),
    [(0, "000000"), (61, "00000z"), (62, "000010"), (2**32 - 1, "4gfFC3")],
)
def test_encode_base62_pads_to_width(number: int, expected: str) -> None:
    assert encode_base62(number, 6) == expected


def test_encode_base62_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_base62(-1, 6)


def test_encode_base62_refuses_numbers_too_wide() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_base62(62**6, 6)


@given(random_parts)
@settings(max_examples=50)
def test_checksum_is_six_base62_characters(random_part: str) -> None:
    value = checksum(random_part)
    assert len(value) == CHECKSUM_LENGTH
    assert set(value) <= set(BASE62_ALPHABET)


# --- generation and parsing ----------------------------------------------------------------


def test_generated_keys_parse_and_differ() -> None:
    keys = [DEFAULT.generate() for _ in range(200)]
    assert len({key.reveal() for key in keys}) == len(keys)
    for key in keys:
        value = key.reveal()
        assert len(value) == DEFAULT.length
        assert value.startswith("kp_")
        assert DEFAULT.parse(value) == key
        assert DEFAULT.is_key(value)


@given(prefixes)
@settings(max_examples=50)
def test_generated_key_with_any_prefix_parses(prefix: str) -> None:
    key_format = KeyFormat(prefix)
    key = key_format.generate()
    assert key.prefix == prefix
    assert key.reveal().startswith(f"{prefix}_")
    parsed = key_format.parse(key.reveal())
    assert parsed.reveal() == key.reveal()
    assert parsed.prefix == prefix


@given(formats_and_keys())
@settings(max_examples=100)
def test_every_well_formed_key_parses(format_and_key: tuple[KeyFormat, str]) -> None:
    key_format, value = format_and_key
    assert key_format.parse(value).reveal() == value
    assert key_format.is_key(value)


@given(data=st.data(), format_and_key=formats_and_keys())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_single_character_substitution_is_rejected(
    data: st.DataObject, format_and_key: tuple[KeyFormat, str]
) -> None:
    key_format, value = format_and_key
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1), label="position")
    replacement = data.draw(
        st.sampled_from(BASE62_ALPHABET + "_-") | any_character, label="replacement"
    )
    assume(replacement != value[position])
    changed = value[:position] + replacement + value[position + 1 :]
    with pytest.raises(MalformedKey):
        key_format.parse(changed)
    assert not key_format.is_key(changed)


def test_every_base62_substitution_at_every_position_is_rejected() -> None:
    # Exhaustive over one key: 36 body positions x 61 other base62 characters.
    value = build_key("kp", "0123456789abcdefghijABCDEFGHIJ")
    prefix_length = len("kp_")
    for position in range(prefix_length, len(value)):
        for replacement in BASE62_ALPHABET:
            if replacement == value[position]:
                continue
            changed = value[:position] + replacement + value[position + 1 :]
            with pytest.raises(MalformedKey) as caught:
                DEFAULT.parse(changed)
            assert caught.value.reason == "checksum mismatch"


@given(st.text())
@settings(max_examples=200)
def test_arbitrary_text_raises_only_malformed_key(text: str) -> None:
    with contextlib.suppress(MalformedKey):
        DEFAULT.parse(text)


@given(st.binary())
@settings(max_examples=100)
def test_arbitrary_bytes_decoded_raise_only_malformed_key(raw: bytes) -> None:
    for text in (
        raw.decode("latin-1"),
        raw.decode("utf-8", errors="replace"),
        raw.decode("utf-8", errors="surrogateescape"),
    ):
        with contextlib.suppress(MalformedKey):
            DEFAULT.parse(text)


@given(st.text(alphabet=any_character, min_size=DEFAULT.length, max_size=DEFAULT.length))
@settings(max_examples=200)
def test_arbitrary_text_of_key_length_raises_only_malformed_key(text: str) -> None:
    with contextlib.suppress(MalformedKey):
        DEFAULT.parse(text)


@given(st.text(alphabet=any_character, min_size=BODY_LENGTH, max_size=BODY_LENGTH))
@settings(max_examples=200)
def test_right_prefix_with_arbitrary_body_raises_only_malformed_key(body: str) -> None:
    with contextlib.suppress(MalformedKey):
        DEFAULT.parse(f"kp_{body}")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("k" * 10_000_000, id="ten-million-characters"),
        pytest.param("kp_" + "a" * 1_000_000, id="right-prefix-huge-body"),
        pytest.param("\U0001f511" * DEFAULT.length, id="emoji-of-key-length"),
        pytest.param("kp_" + "\udcff" * BODY_LENGTH, id="lone-surrogates"),
        pytest.param("kp_" + "\u0663" * BODY_LENGTH, id="arabic-indic-digits"),
        pytest.param("kp_" + "\uff21" * BODY_LENGTH, id="fullwidth-letters"),
        pytest.param("\x00" * DEFAULT.length, id="nul-bytes"),
    ],
)
def test_hostile_strings_raise_only_malformed_key(value: str) -> None:
    with pytest.raises(MalformedKey):
        DEFAULT.parse(value)


@pytest.mark.parametrize("value", [None, 42, b"kp_" + b"a" * BODY_LENGTH, ["kp_"]])
def test_non_string_is_malformed_not_a_string(value: object) -> None:
    with pytest.raises(MalformedKey) as caught:
        DEFAULT.parse(value)  # type: ignore[arg-type]
    assert caught.value.reason == "not a string"


def _good() -> str:
    return build_key("kp", "A" * RANDOM_LENGTH)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "wrong length", id="empty"),
        pytest.param(_good()[:-1], "wrong length", id="one-short"),
        pytest.param(_good() + "a", "wrong length", id="one-long"),
        pytest.param(" " + _good(), "wrong length", id="leading-space"),
        pytest.param(_good() + "\n", "wrong length", id="trailing-newline"),
        pytest.param("sk" + _good()[2:], "wrong prefix", id="other-prefix-same-length"),
        pytest.param("KP" + _good()[2:], "wrong prefix", id="uppercase-prefix"),
        pytest.param("kp-" + _good()[3:], "wrong prefix", id="dash-separator"),
        pytest.param("kpA" + _good()[3:], "wrong prefix", id="no-separator"),
        pytest.param("k_A" + _good()[3:], "wrong prefix", id="short-prefix"),
        pytest.param(_good()[:-1] + "_", "characters outside the base62 alphabet", id="underscore"),
        pytest.param(_good()[:-1] + "-", "characters outside the base62 alphabet", id="dash"),
        pytest.param(_good()[:-1] + "é", "characters outside the base62 alphabet", id="accent"),
        pytest.param(_good()[:5] + " " + _good()[6:], "characters outside the base62 alphabet"),
        pytest.param(with_bad_checksum(_good()), "checksum mismatch", id="bad-checksum"),
        pytest.param(
            "kp_" + "B" + "A" * (RANDOM_LENGTH - 1) + checksum("A" * RANDOM_LENGTH),
            "checksum mismatch",
            id="random-part-changed",
        ),
    ],
)
def test_malformed_key_names_the_broken_rule(value: str, reason: str) -> None:
    with pytest.raises(MalformedKey) as caught:
        DEFAULT.parse(value)
    assert caught.value.reason == reason
    assert reason in str(caught.value)


def test_malformed_key_message_never_contains_the_value() -> None:
    value = with_bad_checksum(a_key())
    with pytest.raises(MalformedKey) as caught:
        DEFAULT.parse(value)
    assert value not in str(caught.value)
    assert value not in repr(caught.value)
    assert value[3:] not in str(caught.value.args)


def test_key_of_one_prefix_is_not_a_key_of_another() -> None:
    value = KeyFormat("acme").generate().reveal()
    assert KeyFormat("acme").is_key(value)
    assert not DEFAULT.is_key(value)
    with pytest.raises(MalformedKey):
        DEFAULT.parse(value)


# --- SecretKey ---------------------------------------------------------------------------


@pytest.fixture
def secret() -> SecretKey:
    return DEFAULT.generate()


def test_secret_key_repr_str_and_format_never_show_the_value(secret: SecretKey) -> None:
    value = secret.reveal()
    random_part = value[3 : 3 + RANDOM_LENGTH]
    renderings = [
        repr(secret),
        str(secret),
        format(secret),
        format(secret, ">80"),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        f"{secret:^100}",
        "{}".format(secret),  # noqa: UP032 - str.format is under test
        "{!r}".format(secret),  # noqa: UP032
        "%s" % secret,  # noqa: UP031 - %-formatting is under test
        "%r" % (secret,),  # noqa: UP031
        str([secret]),
        repr({"key": secret}),
        str((secret,)),
    ]
    for rendered in renderings:
        assert value not in rendered
        assert random_part not in rendered
        assert secret.hint in rendered


def test_secret_key_repr_names_the_type_and_hint(secret: SecretKey) -> None:
    assert repr(secret) == f"SecretKey({secret.hint!r})"
    assert str(secret) == secret.hint


def test_secret_key_in_an_exception_message_shows_only_the_hint(secret: SecretKey) -> None:
    error = RuntimeError(f"could not store {secret}")
    assert secret.reveal() not in str(error)
    assert secret.hint in str(error)


def test_reveal_returns_the_value() -> None:
    value = build_key("kp", "Z" * RANDOM_LENGTH)
    secret = DEFAULT.parse(value)
    assert secret.reveal() == value
    assert secret.prefix == "kp"


def test_hint_is_prefix_ellipsis_and_last_four_characters(secret: SecretKey) -> None:
    value = secret.reveal()
    assert HINT_RE.fullmatch(secret.hint)
    assert secret.hint == f"kp_...{value[-4:]}"


def test_make_hint_format() -> None:
    assert make_hint("kp_somethingsomethingabcd", "kp") == "kp_...abcd"
    assert make_hint("acme_xyz0123", "acme") == "acme_...0123"


def test_hint_uses_the_format_prefix() -> None:
    secret = KeyFormat("acme").generate()
    assert secret.hint.startswith("acme_...")
    assert len(secret.hint) == len("acme_...") + 4


def test_hash_is_sha256_hex_of_the_value(secret: SecretKey) -> None:
    expected = hashlib.sha256(secret.reveal().encode()).hexdigest()
    assert secret.hash() == expected
    assert hash_key(secret.reveal()) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", secret.hash())


def test_hash_key_known_vector() -> None:
    assert hash_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_equal_values_are_equal_secret_keys(secret: SecretKey) -> None:
    twin = DEFAULT.parse(secret.reveal())
    assert twin == secret
    assert (twin != secret) is False
    assert hash(twin) == hash(secret)
    assert len({twin, secret}) == 1


def test_different_values_are_different_secret_keys(secret: SecretKey) -> None:
    other = DEFAULT.generate()
    assert other != secret
    assert len({other, secret}) == 2


def test_secret_key_never_equals_its_plain_string(secret: SecretKey) -> None:
    assert secret != secret.reveal()
    assert secret.reveal() != secret
    assert secret != secret.hint
    assert secret != None  # noqa: E711 - the comparison itself is under test


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_key_refuses_pickling(secret: SecretKey, protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret, protocol=protocol)


def test_secret_key_refuses_copying(secret: SecretKey) -> None:
    with pytest.raises(TypeError):
        copy.copy(secret)
    with pytest.raises(TypeError):
        copy.deepcopy(secret)


def test_secret_key_has_no_instance_dict(secret: SecretKey) -> None:
    assert not hasattr(secret, "__dict__")


# --- pattern and redaction ---------------------------------------------------------------


def test_pattern_finds_keys_embedded_in_text() -> None:
    first, second = a_key(), a_key()
    text = (
        f'curl -H "Authorization: Bearer {first}" https://api.example.com\n'
        f'{{"key":"{second}"}} and again ({first}).'
    )
    assert DEFAULT.pattern().findall(text) == [first, second, first]


@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "key={}",
        "key={}&x=1",
        "'{}'",
        "<{}>",
        "{}.",
        "line one\n{}\nline three",
        "token:{}",
        "\t{} ",
    ],
)
def test_pattern_finds_key_between_separators(template: str) -> None:
    value = a_key()
    assert DEFAULT.pattern().findall(template.format(value)) == [value]


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("x{}", id="glued-to-a-letter-before"),
        pytest.param("_{}", id="glued-to-an-underscore-before"),
        pytest.param("{}a", id="longer-body"),
        pytest.param("{}0", id="longer-body-digit"),
    ],
)
def test_pattern_does_not_match_inside_longer_tokens(template: str) -> None:
    assert DEFAULT.pattern().findall(template.format(a_key())) == []


def test_pattern_finds_candidates_even_with_bad_checksum() -> None:
    lookalike = with_bad_checksum(a_key())
    assert DEFAULT.pattern().findall(f"see {lookalike}") == [lookalike]


def test_pattern_uses_the_format_prefix() -> None:
    acme = KeyFormat("acme")
    value = acme.generate().reveal()
    assert acme.pattern().findall(f"k={value}") == [value]
    assert DEFAULT.pattern().findall(f"k={value}") == []


def test_redact_replaces_valid_keys_with_hints() -> None:
    first, second = DEFAULT.generate(), DEFAULT.generate()
    text = f"first={first.reveal()} second={second.reveal()}; first again {first.reveal()}"
    redacted = DEFAULT.redact(text)
    assert redacted == f"first={first.hint} second={second.hint}; first again {first.hint}"
    assert first.reveal() not in redacted
    assert second.reveal() not in redacted


def test_redact_leaves_lookalikes_with_bad_checksum_alone() -> None:
    lookalike = with_bad_checksum(a_key())
    text = f"not a key: {lookalike}"
    assert DEFAULT.redact(text) == text


def test_redact_mixed_real_and_lookalike() -> None:
    real = DEFAULT.generate()
    lookalike = with_bad_checksum(a_key())
    text = f"{lookalike} {real.reveal()}"
    assert DEFAULT.redact(text) == f"{lookalike} {real.hint}"


def test_redact_leaves_text_without_keys_unchanged() -> None:
    text = "nothing to see: kp_short, kp_, kp_" + "!" * BODY_LENGTH
    assert DEFAULT.redact(text) == text


def test_redact_leaves_keys_of_another_prefix_alone() -> None:
    other = KeyFormat("acme").generate().reveal()
    assert DEFAULT.redact(other) == other


@given(formats_and_keys(), st.text(), st.text())
@settings(max_examples=100)
def test_redacted_text_never_contains_a_valid_key(
    format_and_key: tuple[KeyFormat, str], before: str, after: str
) -> None:
    key_format, value = format_and_key
    text = f"{before} {value} {after}"
    redacted = key_format.redact(text)
    assert value not in redacted
    assert make_hint(value, key_format.prefix) in redacted


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("x{}", id="glued-to-a-letter-before"),
        pytest.param("_{}", id="glued-to-an-underscore-before"),
        pytest.param("Bearer{}", id="no-space-after-the-scheme"),
        pytest.param("{}a", id="letters-after"),
        pytest.param("{}0", id="digits-after"),
        pytest.param("x{}x", id="both-sides"),
    ],
)
def test_redact_masks_a_key_glued_to_other_characters(template: str) -> None:
    key = DEFAULT.generate()
    redacted = DEFAULT.redact(template.format(key.reveal()))
    assert key.reveal() not in redacted
    assert redacted == template.format(key.hint)
