"""Where a key hides in a file's bytes, and the few decodings worth trying.

A leaked key is not always plain ASCII between spaces: it is glued to other
words (``API_KEY_kp_...``), written by PowerShell 5 as UTF-16, base64-encoded
in a Kubernetes Secret (twice, or gzipped, in a Helm release), JSON-escaped
(``\\u005f``, ``\\/``) or URL-encoded (``%5F``). Decoding every file every way
would be slow, so the search runs the key pattern over the raw bytes once and
decodes only where a cheap signal says a decoding could hold a key:

- **NUL bytes**: the two *narrowed* views (every other byte, from offset 0 and
  1) turn UTF-16 text of either byte order and alignment into ASCII, one byte
  per code unit, without decoding;
- **a run of base64 characters** long enough to encode a key (52 for ``kp``):
  the run is decoded at each of its 4 character offsets, so a key starting at
  any byte offset of the encoded data (or a run glued to other characters) is
  found; wrapped lines (PEM, ``base64`` output) are joined first, and JSON's
  ``\\/`` and ``\\n`` inside a run are undone;
- **escapes** ``\\u00XX`` and ``%XX`` of key characters: one unescaped view,
  searched in place of the raw one (it holds every key the raw bytes do);
- **the gzip magic** at the start of a view: it is decompressed.

Every decoded view is searched the same way, up to :data:`MAX_LAYERS` deep
(base64 of base64; UTF-16 holding base64), and all the decoded bytes of one
file together stay within a budget, so no input makes the scan hang. Only
checksum-valid keys count (``keyplane.core.keys``), which keeps the garbage
that wrong decodings produce from raising false alarms.
"""

from __future__ import annotations

import binascii
import codecs
import re
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Final

from keyplane.core.errors import MalformedKey
from keyplane.core.keys import BODY_LENGTH, KeyFormat, SecretKey

#: How many decodings deep a key is looked for (base64 of base64 of gzip is 3).
MAX_LAYERS: Final = 4
#: Decoded bytes allowed per file, as a multiple of its size (plus a floor).
BUDGET_FACTOR: Final = 16
BUDGET_FLOOR: Final = 1024 * 1024

_BASE64: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
# Base64 characters become b"A", everything else b" ": a run is then found by
# bytes.find (C speed) instead of a regex trying every position.
# A backslash counts as part of a run: JSON writes base64's "/" as "\\/" (PHP's
# json_encode) and its line breaks as "\\n"; both are dropped before decoding.
_RUN_MARKS: Final = bytes(0x41 if byte in _BASE64 + b"\\" else 0x20 for byte in range(256))
_URLSAFE_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
# Wrapped base64 has full lines of a multiple of 4 characters (64 in PEM, 76 in MIME).
_WRAPPED_LINE: Final = 60
_LINE_BREAKS: Final = (b"\r\n", b"\n")
_GZIP_MAGIC: Final = b"\x1f\x8b\x08"
_SNIFF_BYTES: Final = 8192
# Only escapes of characters a key or base64 text is made of are decoded
# (``%20`` stays as it is): fewer views to build, and line breaks are kept,
# so line numbers stay true.
_KEY_CHARACTER_HEX: Final = rb"(?:2[BbDdFf]|3[0-9Dd]|4[1-9A-Fa-f]|5[0-9AaFf]|6[1-9A-Fa-f]|7[0-9Aa])"
# One pattern per escape: a literal first character lets each run at C speed,
# where one alternation would try every position.
_ESCAPES: Final = (
    re.compile(rb"\\u00(%s)" % _KEY_CHARACTER_HEX),
    re.compile(rb"%%(%s)" % _KEY_CHARACTER_HEX),
)

Origin = Callable[[int], int]
Local = Callable[[int, int], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Hit:
    """A key found in a file."""

    #: Where in the file's bytes the key, or the encoded text holding it, starts.
    offset: int
    #: The decodings from the file's bytes to the key, outermost first; () if plain.
    layers: tuple[str, ...]
    key: SecretKey


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    #: Some decoded views were not searched: the file's decoding budget ran out.
    cut_short: bool


def _same(offset: int) -> int:
    return offset


def _fixed(at: int) -> Origin:
    """Every offset of a decoded view maps to where its encoded text starts."""

    def origin(offset: int) -> int:
        return at

    return origin


def _no_layers(start: int, end: int) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class _View:
    """Bytes to search, and how their offsets and decodings map back to the file."""

    data: bytes
    layers: tuple[str, ...] = ()
    depth: int = 0
    #: An offset in ``data`` to an offset in the file.
    origin: Origin = _same
    #: The decodings a span of ``data`` went through that only its own bytes tell.
    local: Local = _no_layers
    narrowed: bool = False


@dataclass
class _State:
    budget: int
    hits: dict[tuple[int, tuple[str, ...], str], Hit] = field(default_factory=dict)
    cut_short: bool = False

    def spend(self, size: int) -> bool:
        if size > self.budget:
            self.cut_short = True
            return False
        self.budget -= size
        return True


class KeySearch:
    """Finds the checksum-valid keys of some prefixes in bytes, decoded or not."""

    def __init__(self, formats: Sequence[KeyFormat]) -> None:
        self._formats = {key_format.prefix: key_format for key_format in formats}
        prefixes = sorted(self._formats, key=len, reverse=True)
        alternatives = b"|".join(re.escape(prefix.encode("ascii")) for prefix in prefixes)
        # No word boundary on either side: `xkp_...`, `API_KEY_kp_...` and a key
        # followed by more letters are all still keys; the checksum rules out noise.
        self._pattern = re.compile(rb"(%s)_[0-9A-Za-z]{%d}" % (alternatives, BODY_LENGTH))
        self._literal = re.compile(b"|".join(re.escape(p.encode("ascii") + b"_") for p in prefixes))
        # "k\0p\0_" is in both byte orders of "kp_" (LE adds a NUL after, BE before).
        self._utf16_literals = [(prefix + "_").encode("utf-16-le")[:-1] for prefix in prefixes]
        shortest = min(len(prefix) for prefix in prefixes) + 1 + BODY_LENGTH
        #: The fewest base64 characters that can encode a key.
        self.shortest_run = -(-shortest * 4 // 3)
        self._run_needle = b"A" * self.shortest_run

    def search(self, data: bytes) -> SearchResult:
        state = _State(budget=BUDGET_FACTOR * len(data) + BUDGET_FLOOR)
        self._search(_View(data), state)
        hits = sorted(state.hits.values(), key=lambda hit: (hit.offset, hit.layers))
        return SearchResult(hits, state.cut_short)

    def _search(self, view: _View, state: _State) -> None:
        plain = self._unescaped(view, state)
        for match in self._pattern.finditer(plain.data):
            key = self._key(match)
            if key is not None:
                start, end = match.span()
                layers = plain.layers + plain.local(start, end)
                hit = Hit(plain.origin(start), layers, key)
                state.hits.setdefault((hit.offset, layers, key.hash()), hit)
        if view.depth >= MAX_LAYERS:
            return
        if not view.narrowed and self._utf16_signal(view.data):
            for parity in (0, 1):
                narrowed = _narrowed(view, parity, state)
                if narrowed is not None:
                    self._search(narrowed, state)
        for decoded in self._base64_views(plain, state):
            self._search(decoded, state)
        if view.data.startswith(_GZIP_MAGIC):
            gunzipped = _gunzipped(view, state)
            if gunzipped is not None:
                self._search(gunzipped, state)

    def _utf16_signal(self, data: bytes) -> bool:
        """Could ``data`` hold UTF-16 text with a key (or base64 of one)?"""
        if b"\x00" not in data:
            return False
        # `in` beats a regex: an alternation starting with NUL would try a
        # match at every NUL of a binary.
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or any(
            literal in data for literal in self._utf16_literals
        ):
            return True
        # UTF-16 text without a BOM: mostly ASCII, so every other byte is NUL.
        head = data[:_SNIFF_BYTES]
        even, odd = head[0::2], head[1::2]
        return bool(odd.count(0) * 2 >= len(odd) and not even.count(0)) or (
            even.count(0) * 2 >= len(even) and not odd.count(0)
        )

    def _promising(self, data: bytes) -> bool:
        """Is a decoded view worth a search: could it hold a key, or a further encoding?"""
        if self._literal.search(data) or data.startswith(_GZIP_MAGIC) or self._utf16_signal(data):
            return True
        return _has_escape(data) or data.translate(_RUN_MARKS).find(self._run_needle) >= 0

    def _key(self, match: re.Match[bytes]) -> SecretKey | None:
        key_format = self._formats[match.group(1).decode("ascii")]
        try:
            return key_format.parse(match.group().decode("ascii"))
        except MalformedKey:
            return None

    def _base64_views(self, view: _View, state: _State) -> Iterator[_View]:
        """The decoded runs of ``view`` worth a search.

        A lock file holds thousands of digests, and each run must be decoded
        at 4 character offsets: decoding them one by one in Python would
        dominate the scan. So all runs are joined (each padded to whole
        groups), the whole is decoded at each offset in one call, searched
        once for anything promising, and only the runs holding a hit are
        decoded again on their own and searched.
        """
        runs = list(_base64_runs(view.data, self.shortest_run))
        if not runs:
            return
        raw = [b"".join(view.data[a:b] for a, b in segments) for segments in runs]
        texts = [_unescaped_run(text) if b"\\" in text else text for text in raw]
        texts = [text + b"A" * (-len(text) % 4) for text in texts]  # "A": zero bits
        joined = b"".join(texts).translate(_URLSAFE_TO_STANDARD)
        ends = list(accumulate(len(text) for text in texts))
        for shift in range(4):
            decoded = _decode_base64(joined[shift:])
            candidates = sorted(
                {bisect_right(ends, offset // 3 * 4 + shift) for offset in self._hints(decoded)}
            )
            for index in candidates:
                if index >= len(runs):
                    continue
                text = texts[index][shift:].translate(_URLSAFE_TO_STANDARD)
                if len(text) < self.shortest_run:
                    continue
                one = _decode_base64(text)
                if not self._promising(one):
                    continue
                if not state.spend(len(one)):
                    return
                start, end = runs[index][0][0], runs[index][-1][1]
                escaped = ("json-escaped",) * (b"\\" in raw[index])
                layers = (*view.layers, *view.local(start, end), *escaped, "base64")
                yield _View(one, layers, view.depth + 1, origin=_fixed(view.origin(start)))

    def _hints(self, data: bytes) -> Iterator[int]:
        """Offsets in ``data`` where something worth decoding further may start."""
        for pattern in (self._literal, *_ESCAPES):
            for match in pattern.finditer(data):
                yield match.start()
        for needle in (
            *self._utf16_literals,
            _GZIP_MAGIC,
            codecs.BOM_UTF16_LE,
            codecs.BOM_UTF16_BE,
        ):
            position = data.find(needle)
            while position >= 0:
                yield position
                position = data.find(needle, position + 1)
        marks = data.translate(_RUN_MARKS)
        position = marks.find(self._run_needle)
        while position >= 0:
            yield position
            position = marks.find(self._run_needle, _run_end(marks, position))

    @staticmethod
    def _unescaped(view: _View, state: _State) -> _View:
        data = view.data
        if b"\\" not in data and b"%" not in data:
            return view
        matches = sorted(
            (match for pattern in _ESCAPES for match in pattern.finditer(data)),
            key=lambda match: match.start(),
        )
        if not matches or not state.spend(len(data)):
            return view
        pieces: list[bytes] = []
        decoded_at: list[int] = [0]
        original_at: list[int] = [0]
        position = produced = 0
        for match in matches:
            start, end = match.span()
            pieces.append(data[position:start])
            produced += start - position
            pieces.append(bytes((int(match.group(1), 16),)))
            decoded_at += [produced, produced + 1]
            original_at += [start, end]
            produced += 1
            position = end
        pieces.append(data[position:])

        def to_view(offset: int) -> int:
            index = bisect_right(decoded_at, offset) - 1
            return original_at[index] + (offset - decoded_at[index])

        def origin(offset: int) -> int:
            return view.origin(to_view(offset))

        def local(start: int, end: int) -> tuple[str, ...]:
            first, last = to_view(start), to_view(max(start, end - 1)) + 1
            raw = data[first:last]
            escapes = ("json-escaped",) * (b"\\" in raw) + ("url-encoded",) * (b"%" in raw)
            return view.local(first, last) + escapes

        return _View(b"".join(pieces), view.layers, view.depth, origin, local, view.narrowed)


def _has_escape(data: bytes) -> bool:
    return (b"\\" in data or b"%" in data) and any(pattern.search(data) for pattern in _ESCAPES)


def _narrowed(view: _View, parity: int, state: _State) -> _View | None:
    """Every other byte of ``view`` from ``parity``: UTF-16 text as one byte per code unit.

    From offset 0 that is little-endian text, from offset 1 big-endian (each
    read the other way too if the text starts at an odd offset). Offsets map
    back to the start of the code unit, 2 * offset, exact for aligned text.
    """
    if not state.spend(len(view.data) // 2):
        return None
    data = view.data

    def origin(offset: int) -> int:
        return view.origin(2 * offset)

    def local(start: int, end: int) -> tuple[str, ...]:
        first, last = 2 * start + parity, 2 * max(start, end - 1) + parity
        count = max(end - start, 1)
        after, before = data[first + 1 : last + 2 : 2], data[max(first - 1, 0) : last : 2]
        low_first = len(after) == count and after.count(0) == count
        high_first = first >= 1 and len(before) == count and before.count(0) == count
        # ASCII between NULs reads both ways; the alignment decides.
        if low_first and (parity == 0 or not high_first):
            label = "utf-16le"
        elif high_first:
            label = "utf-16be"
        else:
            label = "utf-16"
        return (*view.local(first, last + 1), label)

    return _View(data[parity::2], view.layers, view.depth + 1, origin, local, narrowed=True)


def _base64_runs(data: bytes, shortest: int) -> Iterator[list[tuple[int, int]]]:
    """Each run of at least ``shortest`` base64 characters, as its line segments."""
    marks = data.translate(_RUN_MARKS)
    needle = b"A" * shortest
    position = 0
    while (start := marks.find(needle, position)) >= 0:
        end = _run_end(marks, start + shortest)
        segments = [(start, end)]
        # Join wrapped lines: full lines of a multiple of 4 characters, then the last one.
        while end - segments[-1][0] >= _WRAPPED_LINE and (end - segments[-1][0]) % 4 == 0:
            following = _next_line(data, end)
            if following is None or marks[following] != 0x41:
                break
            end = _run_end(marks, following)
            segments.append((following, end))
        yield segments
        position = end


def _run_end(marks: bytes, position: int) -> int:
    end = marks.find(b" ", position)
    return end if end >= 0 else len(marks)


def _unescaped_run(text: bytes) -> bytes:
    """A run's text without JSON's escapes: ``\\n`` and ``\\r`` dropped, ``\\/`` made ``/``."""
    return text.replace(b"\\n", b"").replace(b"\\r", b"").replace(b"\\", b"")


def _next_line(data: bytes, position: int) -> int | None:
    """Where the next line's text starts, if a line break is at ``position``."""
    for line_break in _LINE_BREAKS:
        if data.startswith(line_break, position):
            position += len(line_break)
            while position < len(data) and data[position] in b" \t":
                position += 1
            return position if position < len(data) else None
    return None


def _decode_base64(text: bytes) -> bytes:
    if len(text) % 4 == 1:
        text = text[:-1]
    try:
        return binascii.a2b_base64(text + b"==")  # extra padding is ignored
    except binascii.Error:
        return b""


def _gunzipped(view: _View, state: _State) -> _View | None:
    """The decompressed members of a gzip stream, within the file's budget."""
    data, pieces, room = view.data, [], state.budget
    while data.startswith(_GZIP_MAGIC) and room > 0:
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            piece = stream.decompress(data, room)
        except zlib.error:
            break
        pieces.append(piece)
        room -= len(piece)
        if stream.unconsumed_tail:
            state.cut_short = True
            break
        data = stream.unused_data
    decoded = b"".join(pieces)
    if not decoded or not state.spend(len(decoded)):
        return None
    return _View(decoded, (*view.layers, "gzip"), view.depth + 1, origin=_fixed(view.origin(0)))
