"""The event catalogue: names, filters, and the page that documents them."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyplane.core.errors import InvalidInput
from keyplane.core.events import EVENT_TYPES, check_event_types, matches

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_event_type_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in EVENT_TYPES if f"| `{name}` |" not in text]
    assert missing == [], f"add these to the table of docs/events.md: {missing}"


def test_filters_are_checked_sorted_and_deduplicated() -> None:
    assert check_event_types(["key.revoked", "key.*", "key.revoked"]) == ("key.*", "key.revoked")
    assert check_event_types([]) == ()
    for bad in (["key.nope"], ["nope.*"], "key.revoked", [3], None):
        with pytest.raises(InvalidInput) as raised:
            check_event_types(bad)  # type: ignore[arg-type]
        assert raised.value.field == "event_types"


@pytest.mark.parametrize(
    ("event_filter", "event_type", "expected"),
    [
        ((), "key.revoked", True),
        ((), "webhook.test", False),
        (("key.*",), "key.canary_used", True),
        (("key.*",), "member.added", False),
        (("member.added",), "member.added", True),
        (("webhook.test",), "webhook.test", True),
    ],
)
def test_matches(event_filter: tuple[str, ...], event_type: str, expected: bool) -> None:
    assert matches(event_filter, event_type) is expected
