"""The edge's JSON scan agrees with a real parser on nesting depth and surrogates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.http.json_scan import Verdict, scan

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=60,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(member) for member in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(member) for member in value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=_values, limit=st.integers(min_value=1, max_value=8), ascii_only=st.booleans())
def test_if_a_document_nests_deeper_than_the_limit_then_the_scan_says_so(
    value: Any, limit: int, ascii_only: bool
) -> None:
    # Brackets, quotes and backslashes inside strings must not count.
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    verdict = scan(body, limit)
    if _depth(value) > limit:
        assert verdict is Verdict.TOO_DEEP
    else:
        assert verdict is not Verdict.TOO_DEEP


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        pytest.param(b'"\\ud83d\\ude00"', Verdict.OK, id="pair"),
        pytest.param(b'"\\ud800"', Verdict.LONE_SURROGATE, id="lone-high"),
        pytest.param(b'"\\udc00"', Verdict.LONE_SURROGATE, id="lone-low"),
        pytest.param(b'"\\ud800\\u0041"', Verdict.LONE_SURROGATE, id="high-then-other"),
        pytest.param(b'"\\ud800\\\\\\udc00"', Verdict.LONE_SURROGATE, id="split-by-backslash"),
        pytest.param(b'"\\\\ud800"', Verdict.OK, id="escaped-backslash"),
        pytest.param(b'{"\\uDBFF\\uDFFF": 1}', Verdict.OK, id="upper-case-pair"),
        pytest.param(b'"[[[[[[[[[[[[["', Verdict.OK, id="brackets-in-a-string"),
        pytest.param(b'"\\"[[[[[[[[[[["', Verdict.OK, id="brackets-after-an-escaped-quote"),
        pytest.param(b"[" * 10_000, Verdict.TOO_DEEP, id="unclosed"),
        pytest.param(b"[" * 9 + b"}" * 9, Verdict.TOO_DEEP, id="mismatched"),
    ],
)
def test_the_scan_on_edge_cases(body: bytes, verdict: Verdict) -> None:
    assert scan(body, 8) is verdict
