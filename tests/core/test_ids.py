from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.core.ids import is_id, new_id


@pytest.mark.parametrize("kind", ["key", "prj", "org", "usr", "evt"])
def test_every_new_id_is_an_id_of_its_kind(kind: str) -> None:
    identifier = new_id(kind)
    assert is_id(identifier)
    assert is_id(identifier, kind)
    assert not is_id(identifier, "other")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("key_", id="no-random-part"),
        pytest.param("key_\x00" + "a" * 15, id="nul-byte"),
        pytest.param("key_" + "a" * 17, id="too-long"),
        pytest.param("KEY_" + "a" * 16, id="uppercase-kind"),
        pytest.param("key-" + "a" * 16, id="wrong-separator"),
    ],
)
def test_strings_that_cannot_be_ids_are_refused(text: str) -> None:
    assert not is_id(text)


@settings(max_examples=200)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    is_id(text)
