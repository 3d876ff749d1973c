"""Scopes: validation and normalisation, wildcard grants, missing scopes."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.errors import InvalidInput
from keyplane.core.scopes import (
    ALL,
    JOB_SCOPES,
    MANAGEMENT_SCOPES,
    MAX_SCOPE_LENGTH,
    MAX_SCOPES,
    grants,
    missing,
    normalize_scopes,
)

segment_chars = string.ascii_lowercase + string.digits + "_.-"
segments = st.text(alphabet=segment_chars, min_size=1, max_size=8)
resources = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_lowercase),
    st.text(alphabet=segment_chars, max_size=8),
)
# resource:action or deeper, e.g. jobs:results:read
concrete_scopes = st.builds(
    lambda resource, actions: ":".join([resource, *actions]),
    resources,
    st.lists(segments, min_size=1, max_size=3),
)


# --- normalize_scopes --------------------------------------------------------------------


def test_normalize_sorts_and_removes_duplicates() -> None:
    assert normalize_scopes(["keys:write", "audit:read", "keys:write", "keys:read"]) == (
        "audit:read",
        "keys:read",
        "keys:write",
    )


def test_normalize_empty_is_empty() -> None:
    assert normalize_scopes([]) == ()


def test_normalize_accepts_a_generator() -> None:
    assert normalize_scopes(s for s in ["b:x", "a:y"]) == ("a:y", "b:x")


@pytest.mark.parametrize(
    "scope",
    [
        "*",
        "keys:read",
        "keys:*",
        "jobs:results:read",
        "jobs:results:*",
        "my-service.v2:do_it",
        "a1:b2",
        "x" * MAX_SCOPE_LENGTH,
        *MANAGEMENT_SCOPES,
        *JOB_SCOPES,
    ],
)
def test_normalize_accepts_valid_scope(scope: str) -> None:
    assert normalize_scopes([scope]) == (scope,)


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("", id="empty"),
        pytest.param("Keys:read", id="uppercase-resource"),
        pytest.param("keys:READ", id="uppercase-action"),
        pytest.param("keys:", id="empty-action"),
        pytest.param(":read", id="empty-resource"),
        pytest.param("keys::read", id="empty-middle"),
        pytest.param("1keys:read", id="starts-with-digit"),
        pytest.param("keys read", id="space"),
        pytest.param(" keys:read", id="leading-space"),
        pytest.param("keys:read\n", id="trailing-newline"),
        pytest.param("keys:**", id="double-star"),
        pytest.param("**", id="double-star-alone"),
        pytest.param("*:read", id="star-resource"),
        pytest.param("keys:*:read", id="star-in-the-middle"),
        pytest.param("keys:re*", id="partial-star"),
        pytest.param("clés:lire", id="non-ascii"),
        pytest.param("keys/read", id="slash"),
        pytest.param("x" * (MAX_SCOPE_LENGTH + 1), id="too-long"),
    ],
)
def test_normalize_refuses_invalid_scope(scope: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_scopes(["keys:read", scope])
    assert caught.value.field == "scopes"


@pytest.mark.parametrize("scope", [None, 1, b"keys:read", ("keys:read",)])
def test_normalize_refuses_non_strings(scope: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_scopes([scope])  # type: ignore[list-item]
    assert caught.value.field == "scopes"


def test_normalize_accepts_the_maximum_number_of_scopes() -> None:
    scopes = [f"s:{n}" for n in range(MAX_SCOPES)]
    assert len(normalize_scopes(scopes)) == MAX_SCOPES


def test_normalize_refuses_more_than_the_maximum_number_of_scopes() -> None:
    with pytest.raises(InvalidInput, match=str(MAX_SCOPES)) as caught:
        normalize_scopes(f"s:{n}" for n in range(MAX_SCOPES + 1))
    assert caught.value.field == "scopes"


def test_normalize_counts_duplicates_once() -> None:
    assert normalize_scopes(["keys:read"] * (MAX_SCOPES * 3)) == ("keys:read",)


def test_invalid_scope_message_names_the_scope() -> None:
    with pytest.raises(InvalidInput, match="'Keys:Read'"):
        normalize_scopes(["Keys:Read"])


@given(st.lists(concrete_scopes, max_size=10))
@settings(max_examples=50)
def test_normalize_is_sorted_unique_and_idempotent(scopes: list[str]) -> None:
    normalized = normalize_scopes(scopes)
    assert list(normalized) == sorted(set(scopes))
    assert normalize_scopes(normalized) == normalized


@given(st.lists(st.text(max_size=20), max_size=5))
@settings(max_examples=100)
def test_normalize_arbitrary_text_raises_only_invalid_input(scopes: list[str]) -> None:
    with contextlib.suppress(InvalidInput):
        normalize_scopes(scopes)


# --- grants ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "required", "expected"),
    [
        pytest.param(["keys:read"], "keys:read", True, id="exact"),
        pytest.param(["keys:read"], "keys:write", False, id="other-action"),
        pytest.param([], "keys:read", False, id="nothing-held"),
        pytest.param(["*"], "keys:read", True, id="star-grants-anything"),
        pytest.param(["*"], "jobs:results:read", True, id="star-grants-deep"),
        pytest.param(["*"], "*", True, id="star-grants-star"),
        pytest.param(["keys:*"], "keys:read", True, id="resource-wildcard"),
        pytest.param(["keys:*"], "keys:read:own", True, id="resource-wildcard-deep"),
        pytest.param(["keys:*"], "keys:*", True, id="resource-wildcard-itself"),
        pytest.param(["keys:*"], "projects:read", False, id="resource-wildcard-other"),
        pytest.param(["keys:*"], "keysmith:read", False, id="resource-wildcard-longer-name"),
        pytest.param(["keys:*"], "*", False, id="resource-wildcard-not-star"),
        pytest.param(["keys:read"], "keys:*", False, id="action-does-not-grant-wildcard"),
        pytest.param(["keys:read"], "*", False, id="action-does-not-grant-star"),
        pytest.param(["jobs:results:*"], "jobs:results:read", True, id="nested-wildcard"),
        pytest.param(["jobs:results:*"], "jobs:logs:read", False, id="nested-wildcard-other"),
        pytest.param(["jobs:results:*"], "jobs:read", False, id="nested-wildcard-parent"),
        pytest.param(["keys:read", "projects:*"], "projects:write", True, id="any-held-scope"),
    ],
)
def test_grants(held: list[str], required: str, expected: bool) -> None:
    assert grants(held, required) is expected


def test_grants_accepts_a_generator() -> None:
    assert grants((s for s in ["a:b", ALL]), "z:z")


@given(concrete_scopes)
@settings(max_examples=50)
def test_any_scope_is_granted_by_itself_star_and_its_resource_wildcard(scope: str) -> None:
    resource = scope.split(":")[0]
    assert grants([scope], scope)
    assert grants([ALL], scope)
    assert grants([f"{resource}:*"], scope)


@given(concrete_scopes, concrete_scopes)
@settings(max_examples=50)
def test_a_concrete_scope_grants_only_itself(held: str, required: str) -> None:
    assert grants([held], required) is (held == required)


# --- missing -----------------------------------------------------------------------------


def test_missing_lists_ungranted_scopes_in_the_order_asked() -> None:
    held = ["keys:*", "audit:read"]
    required = ["projects:write", "keys:read", "audit:read", "audit:write", "keys:write"]
    assert missing(held, required) == ("projects:write", "audit:write")


def test_missing_is_empty_when_everything_is_granted() -> None:
    assert missing(["*"], ["keys:read", "projects:write"]) == ()
    assert missing([], []) == ()


def test_missing_everything_when_nothing_is_held() -> None:
    assert missing([], ["b:x", "a:y"]) == ("b:x", "a:y")


def test_missing_reads_a_held_generator_for_every_required_scope() -> None:
    held = (s for s in ["keys:read", "keys:write"])
    assert missing(held, ["keys:read", "keys:write", "audit:read"]) == ("audit:read",)


def test_if_scopes_is_one_string_then_invalid_not_split_into_letters() -> None:
    with pytest.raises(InvalidInput):
        normalize_scopes("admin")
