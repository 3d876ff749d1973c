"""A fast, non-recursive look at a JSON body's bytes before anything parses it.

Python's ``json`` parser recurses once per nested array or object, and
pydantic-core refuses to serialize a value nested deeper than 255: a body
nested a few hundred deep is parsed and stored, then cannot be rendered (a
500 after the commit), and one nested ~1000 deep is a ``RecursionError``.
:func:`scan` measures the nesting of a body with regular expressions only
(C speed, no recursion, no per-byte Python loop), honouring strings and
their escapes, so the edge can refuse such a body before any route reads it.

It also finds lone UTF-16 surrogate escapes (``"\\ud800"``): JSON's grammar
allows them, but they are not text. Decoded, they make a Python string that
cannot be encoded as UTF-8, so storing it, logging it or quoting it back in
an error fails.
"""

from __future__ import annotations

import enum
import re
from itertools import accumulate
from typing import Final

#: A JSON string, escapes included (the unrolled form: no backtracking blow-up).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(rb"[^\[\]{}]+")
_SLICE: Final = 65_536
#: +1 for an opening bracket, -1 for a closing one, indexed by byte.
_STEP: Final = tuple(1 if byte in b"[{" else -1 if byte in b"]}" else 0 for byte in range(256))
#: A run of backslashes before ``u`` + a surrogate code unit: an escape when the run is odd.
_SURROGATE_ESCAPE: Final = re.compile(rb"(\\+)u[dD]([89abAB]|[c-fC-F])[0-9a-fA-F]{2}")


class Verdict(enum.Enum):
    OK = "ok"
    TOO_DEEP = "too-deep"
    LONE_SURROGATE = "lone-surrogate"


def scan(body: bytes, max_depth: int) -> Verdict:
    """How ``body`` fares: nested at most ``max_depth`` arrays/objects deep, no lone surrogates.

    The top-level value counts: ``{}`` is depth 1, ``{"a": []}`` depth 2.
    """
    depth = _depth_verdict(body, max_depth)
    if depth is not Verdict.OK:
        return depth
    if b"\\u" in body and _has_lone_surrogate(body):
        return Verdict.LONE_SURROGATE
    return Verdict.OK


def _depth_verdict(body: bytes, max_depth: int) -> Verdict:
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return Verdict.OK  # cannot nest deeper than it has openers (the common case)
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if brackets.count(b"[") + brackets.count(b"{") <= max_depth:
        return Verdict.OK
    # The deepest prefix, in C-implemented iterators (no list, no Python loop
    # per byte), a slice at a time so that a deep body stops at its first
    # slice. Mismatched brackets ("[}") count as a pair here: the parser
    # refuses them without recursing further than this depth.
    level = 0
    for start in range(0, len(brackets), _SLICE):
        part = brackets[start : start + _SLICE]
        if max(accumulate(map(_STEP.__getitem__, part), initial=level)) > max_depth:
            return Verdict.TOO_DEEP
        level += part.count(b"[") + part.count(b"{") - part.count(b"]") - part.count(b"}")
    return Verdict.OK


def _has_lone_surrogate(body: bytes) -> bool:
    pending_high_end = -1  # where the last unpaired high surrogate escape ended
    for match in _SURROGATE_ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue  # an escaped backslash, then the letters "ud8..": plain text
        is_high = match.group(2) in b"89abAB"
        if pending_high_end >= 0:
            if not is_high and match.start() == pending_high_end and len(match.group(1)) == 1:
                pending_high_end = -1  # a proper pair
                continue
            return True  # the high surrogate before this one stayed alone
        if not is_high:
            return True  # a low surrogate with no high one just before it
        pending_high_end = match.end()
    return pending_high_end >= 0
