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
- **HTML character references** (``&#107;``, ``&#x6b;``, ``&lowbar;``) and
  **quoted-printable** escapes (``=3D``, soft line breaks; only in bytes that
  say ``quoted-printable``) of key characters: decoded in the same view;
- **NUL bytes every fourth byte**: the four UTF-32 views (every fourth byte);
- **short-wrapped base64** (lines of 4 to 59 characters of the same length):
  the lines are joined before decoding;
- **a magic number** at the start of a view: gzip, zlib (its 2-byte header
  check), bzip2 and xz streams are decompressed; a ZIP archive (``.zip``,
  ``.whl``, ``.jar``, ``.docx``, ``.apk``...) is opened with :mod:`zipfile`
  and each member searched as a file of its own (``archive.zip!member``);
  what cannot be looked into (an encrypted member, an unsupported method, a
  7z, RAR or zstd file) is reported as skipped with the reason.

Every decoded view is searched the same way, up to :data:`MAX_LAYERS` deep
(base64 of base64; UTF-16 holding base64), and all the decoded bytes of one
file together stay within a budget, so no input makes the scan hang. Only
checksum-valid keys count (``keyplane.core.keys``), which keeps the garbage
that wrong decodings produce from raising false alarms.
"""

from __future__ import annotations

import binascii
import bz2
import codecs
import io
import lzma
import re
import struct
import zipfile
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Final

from keyplane.core.errors import MalformedKey
from keyplane.core.keys import BODY_LENGTH, KeyFormat, SecretKey

#: How many decodings deep a key is looked for (base64 of base64 of gzip is 3).
MAX_LAYERS: Final = 4
#: Archive members looked into per file (zip bombs of many tiny members stop there).
MAX_MEMBERS: Final = 10_000
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
# Shorter lines (20 in some tools, 8 in tests) are joined when a block of them,
# all of one length (a multiple of 4) but the last, is long enough for a key.
_SHORT_LINE: Final = 4
# Where a block may start: a line break with 4 base64 characters before it
# and a whole line of them after it. The literal first byte (the line break)
# lets the regex skip along text; the look-behind is checked at line ends only.
_B64: Final = rb"[A-Za-z0-9+/_\\-]"
_WRAP: Final = re.compile(
    rb"\n(?:(?<=%s{4}\n)|(?<=%s{4}\r\n))%s{%d,59}(?:\r?\n|[=\"']|$)"
    % (_B64, _B64, _B64, _SHORT_LINE)
)
_LINE_BREAKS: Final = (b"\r\n", b"\n")
_GZIP_MAGIC: Final = b"\x1f\x8b\x08"
_BZIP2_MAGIC: Final = re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)")
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
_ZIP_MAGIC: Final = b"PK\x03\x04"
# Formats the standard library cannot open: listed as skipped, not guessed at.
_UNSUPPORTED: Final = (
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x28\xb5\x2f\xfd", "zstd stream"),
    (b"\x04\x22\x4d\x18", "lz4 stream"),
)
# Where a compressed blob may start inside decoded bytes (for base64 hints).
_MAGIC_NEEDLES: Final = (_GZIP_MAGIC, b"BZh", _XZ_MAGIC, _ZIP_MAGIC, b"x\x9c", b"x\xda", b"x\x01")
# zlib's first byte is 0x08, 0x18, ... 0x78 (deflate, a window up to 32 KiB).
_MAGIC_FIRST_BYTES: Final = frozenset(
    {b"\x1f", b"\xfd", b"B", b"P", *(bytes((window << 4 | 8,)) for window in range(8))}
)
_ZIP_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# Why a part of a file was not looked into (reasons of a skipped entry).
PARTLY_DECODED: Final = "partly decoded"
ENCRYPTED: Final = "encrypted"
UNSUPPORTED: Final = "unsupported format"
_SNIFF_BYTES: Final = 8192
# Only escapes of characters a key or base64 text is made of are decoded
# (``%20`` stays as it is): fewer views to build, and line breaks are kept,
# so line numbers stay true.
_KEY_CHARACTER_HEX: Final = rb"(?:2[BbDdFf]|3[0-9Dd]|4[1-9A-Fa-f]|5[0-9AaFf]|6[1-9A-Fa-f]|7[0-9Aa])"
_KEY_CHARACTER_DECIMAL: Final = (
    rb"(?:4[35789]|5[0-7]|61|6[5-9]|[78][0-9]|9[05789]|1[01][0-9]|12[0-2])"
)
_QUOTED_PRINTABLE_HEX: Final = rb"(?:2[BDF]|3[0-9D]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9A])"
_QUOTED_PRINTABLE: Final = (b"uoted-printable",)  # Quoted-Printable, quoted-printable
_NAMED_ENTITIES: Final = {
    b"lowbar": b"_",
    b"UnderBar": b"_",
    b"plus": b"+",
    b"sol": b"/",
    b"equals": b"=",
}


def _hex(match: re.Match[bytes]) -> bytes:
    return bytes((int(match.group(1), 16),))


def _html(match: re.Match[bytes]) -> bytes:
    decimal, hexadecimal, name = match.groups()
    if decimal:
        return bytes((int(decimal),))
    if hexadecimal:
        return bytes((int(hexadecimal, 16),))
    return _NAMED_ENTITIES[name]


def _nothing(match: re.Match[bytes]) -> bytes:
    return b""


@dataclass(frozen=True, slots=True)
class _Escape:
    pattern: re.Pattern[bytes]
    decode: Callable[[re.Match[bytes]], bytes]
    #: Substrings one of which must be in the bytes before the pattern is run.
    signals: tuple[bytes, ...]


# One pattern per escape: a literal first character lets each run at C speed,
# where one alternation would try every position.
_ESCAPES: Final = (
    _Escape(re.compile(rb"\\u00(%s)" % _KEY_CHARACTER_HEX), _hex, (b"\\",)),
    _Escape(re.compile(rb"%%(%s)" % _KEY_CHARACTER_HEX), _hex, (b"%",)),
    # HTML character references: decimal, hex and the few named ones of key
    # and base64 characters, in one pattern (one pass over a file full of "&").
    _Escape(
        re.compile(
            rb"&(?:#0*(%s)(?:;|(?![0-9]))|#[xX]0*(%s)(?:;|(?![0-9A-Fa-f]))|(%s);)"
            % (_KEY_CHARACTER_DECIMAL, _KEY_CHARACTER_HEX, b"|".join(_NAMED_ENTITIES))
        ),
        _html,
        (b"&",),
    ),
    # Quoted-printable (mail, where only a soft line break can split a key):
    # only in a file that says so, since "=" and "=\\n" are in every source file.
    _Escape(re.compile(rb"=(%s)" % _QUOTED_PRINTABLE_HEX), _hex, _QUOTED_PRINTABLE),
    _Escape(re.compile(rb"=\r?\n"), _nothing, _QUOTED_PRINTABLE),
)
_SIGNALS: Final = frozenset(signal for escape in _ESCAPES for signal in escape.signals)
# The escape characters, and the label each gives the bytes it decodes.
_ESCAPE_LABELS: Final = (
    (b"\\", "json-escaped"),
    (b"%", "url-encoded"),
    (b"&", "html-entities"),
    (b"=", "quoted-printable"),
)

Origin = Callable[[int], int]
Local = Callable[[int, int], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Hit:
    """A key found in a file."""

    #: Where in the file's bytes the key, or the encoded text holding it, starts
    #: (in the archive member's bytes if ``member``).
    offset: int
    #: The decodings from the file's bytes to the key, outermost first; () if plain.
    layers: tuple[str, ...]
    key: SecretKey
    #: The archive member holding the key (``inner.zip!conf/.env``), or "".
    member: str = ""


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    #: Some decoded views were not searched: the file's decoding budget ran out.
    cut_short: bool
    #: The bytes of each archive member with a hit (for its line numbers).
    members: dict[str, bytes] = field(default_factory=dict)
    #: What could not be looked into: (member or "", reason, detail).
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


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
    #: The archive member these bytes belong to ("" for the file itself).
    member: str = ""


@dataclass
class _State:
    budget: int
    hits: dict[tuple[str, int, tuple[str, ...], str], Hit] = field(default_factory=dict)
    cut_short: bool = False
    members: dict[str, bytes] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    member_count: int = 0

    def skip(self, member: str, reason: str, detail: str) -> None:
        if (member, reason, detail) not in self.skipped:
            self.skipped.append((member, reason, detail))

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
        # Likewise "k\0\0\0p\0\0\0_" in both byte orders of UTF-32.
        self._utf32_literals = [(prefix + "_").encode("utf-32-le")[:-3] for prefix in prefixes]
        # One pass over decoded bytes for every marker of a further decoding.
        needles = (
            *self._utf16_literals,
            *self._utf32_literals,
            *_MAGIC_NEEDLES,
            codecs.BOM_UTF16_LE,
            codecs.BOM_UTF16_BE,
        )
        self._needles = re.compile(b"|".join(re.escape(needle) for needle in needles))
        shortest = min(len(prefix) for prefix in prefixes) + 1 + BODY_LENGTH
        #: The fewest base64 characters that can encode a key.
        self.shortest_run = -(-shortest * 4 // 3)
        self._run_needle = b"A" * self.shortest_run

    def search(self, data: bytes) -> SearchResult:
        state = _State(budget=BUDGET_FACTOR * len(data) + BUDGET_FLOOR)
        self._search(_View(data), state)
        hits = sorted(state.hits.values(), key=lambda hit: (hit.member, hit.offset, hit.layers))
        members = {hit.member: state.members[hit.member] for hit in hits if hit.member}
        return SearchResult(hits, state.cut_short, members, state.skipped)

    def _search(self, view: _View, state: _State) -> None:
        members: list[_View] = []
        if view.data.startswith(_ZIP_MAGIC):
            if view.depth >= MAX_LAYERS:
                state.skip(view.member, PARTLY_DECODED, f"archive nested over {MAX_LAYERS} deep")
            else:
                members, blanked = _zip_members(view, state)
                # Stored members are searched as members, not again as raw bytes.
                view = replace(view, data=blanked)
        plain = self._unescaped(view, state)
        for match in self._pattern.finditer(plain.data):
            key = self._key(match)
            if key is not None:
                start, end = match.span()
                layers = plain.layers + plain.local(start, end)
                hit = Hit(plain.origin(start), layers, key, view.member)
                state.hits.setdefault((hit.member, hit.offset, layers, key.hash()), hit)
        for member in members:
            self._search(member, state)
        if view.depth >= MAX_LAYERS:
            if _compressed(view.data) not in (None, "zip"):  # a ZIP is noted above
                state.skip(view.member, PARTLY_DECODED, f"compressed over {MAX_LAYERS} deep")
            return
        if not view.narrowed:
            for width, signal in ((2, self._utf16_signal), (4, self._utf32_signal)):
                if signal(view.data):
                    for parity in range(width):
                        narrowed = _narrowed(view, parity, state, width)
                        if narrowed is not None:
                            self._search(narrowed, state)
        for decoded in self._base64_views(plain, state):
            self._search(decoded, state)
        decompressed = _decompressed(view, state)
        if decompressed is not None:
            self._search(decompressed, state)
        for magic, what in _UNSUPPORTED:
            if view.data.startswith(magic):
                state.skip(view.member, UNSUPPORTED, f"a {what}, not looked into")

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

    def _utf32_signal(self, data: bytes) -> bool:
        """Could ``data`` hold UTF-32 text with a key (or base64 of one)?"""
        if b"\x00" not in data or b"\x00\x00\x00" not in data:
            return False
        if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) or any(
            literal in data for literal in self._utf32_literals
        ):
            return True
        # UTF-32 text without a BOM: mostly ASCII, so three bytes in four are NUL.
        head = data[:_SNIFF_BYTES]
        columns = [head[column::4] for column in range(4)]
        nul = [len(column) and column.count(0) * 2 >= len(column) for column in columns]
        return sum(map(bool, nul)) == 3 and any(not c.count(0) for c in columns)

    def _promising(self, data: bytes) -> bool:
        """Is a decoded view worth a search: could it hold a key, or a further encoding?"""
        if self._literal.search(data) or _compressed(data) or self._utf16_signal(data):
            return True
        if self._utf32_signal(data):
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
        marks = view.data.translate(_RUN_MARKS)
        runs = [
            *_base64_runs(view.data, marks, self.shortest_run),
            *_short_wrapped_blocks(view.data, marks, self.shortest_run),
        ]
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
                origin = _fixed(view.origin(start))
                yield _View(one, layers, view.depth + 1, origin=origin, member=view.member)

    def _hints(self, data: bytes) -> Iterator[int]:
        """Offsets in ``data`` where something worth decoding further may start."""
        # The JSON, URL and HTML escapes (quoted-printable needs a mail's header).
        for pattern in (self._literal, *(escape.pattern for escape in _ESCAPES[:3])):
            for match in pattern.finditer(data):
                yield match.start()
        for match in self._needles.finditer(data):
            yield match.start()
        marks = data.translate(_RUN_MARKS)
        position = marks.find(self._run_needle)
        while position >= 0:
            yield position
            position = marks.find(self._run_needle, _run_end(marks, position))

    @staticmethod
    def _unescaped(view: _View, state: _State) -> _View:
        data = view.data
        escapes = _escapes_in(data)
        if not escapes:
            return view
        matches = sorted(
            (
                (match, escape.decode)
                for escape in escapes
                for match in escape.pattern.finditer(data)
            ),
            key=lambda pair: pair[0].start(),
        )
        if not matches or not state.spend(len(data)):
            return view
        pieces: list[bytes] = []
        decoded_at: list[int] = [0]
        original_at: list[int] = [0]
        position = produced = 0
        for match, decode in matches:
            start, end = match.span()
            if start < position:  # overlapping escapes (`=3D` read two ways)
                continue
            pieces.append(data[position:start])
            produced += start - position
            piece = decode(match)
            pieces.append(piece)
            decoded_at += [produced, produced + len(piece)]
            original_at += [start, end]
            produced += len(piece)
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
            labels = tuple(label for character, label in _ESCAPE_LABELS if character in raw)
            return view.local(first, last) + labels

        unescaped = b"".join(pieces)
        return _View(unescaped, view.layers, view.depth, origin, local, view.narrowed, view.member)


def _escapes_in(data: bytes) -> list[_Escape]:
    """The escapes whose signal ``data`` shows (cheap ``in`` tests, no regex)."""
    shown = {signal: signal in data for signal in _SIGNALS}
    return [escape for escape in _ESCAPES if any(shown[signal] for signal in escape.signals)]


def _has_escape(data: bytes) -> bool:
    return any(escape.pattern.search(data) for escape in _escapes_in(data))


def _narrowed(view: _View, parity: int, state: _State, width: int = 2) -> _View | None:
    """Every ``width``-th byte of ``view`` from ``parity``: UTF-16 (2) or UTF-32 (4)
    text as one byte per code unit.

    From offset 0 that is little-endian text, from offset ``width - 1``
    big-endian (the other offsets read text that starts misaligned). Offsets
    map back to the start of the code unit, ``width * offset``, exact for
    aligned text.
    """
    if not state.spend(len(view.data) // width):
        return None
    data = view.data
    name = "utf-16" if width == 2 else "utf-32"

    def origin(offset: int) -> int:
        return view.origin(width * offset)

    def nul_column(start: int, count: int) -> bool:
        column = data[start : start + width * count : width] if start >= 0 else b""
        return len(column) == count and column.count(0) == count

    def local(start: int, end: int) -> tuple[str, ...]:
        first, last = width * start + parity, width * max(start, end - 1) + parity
        count = max(end - start, 1)
        low_first = all(nul_column(first + k, count) for k in range(1, width))
        high_first = all(nul_column(first - k, count) for k in range(1, width))
        # ASCII between NULs reads both ways; the alignment decides.
        if low_first and (parity == 0 or not high_first):
            label = name + "le"
        elif high_first:
            label = name + "be"
        else:
            label = name
        return (*view.local(first, last + 1), label)

    narrowed = data[parity::width]
    return _View(narrowed, view.layers, view.depth + 1, origin, local, True, view.member)


def _base64_runs(data: bytes, marks: bytes, shortest: int) -> Iterator[list[tuple[int, int]]]:
    """Each run of at least ``shortest`` base64 characters, as its line segments."""
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


def _short_wrapped_blocks(
    data: bytes, marks: bytes, shortest: int
) -> Iterator[list[tuple[int, int]]]:
    """Each block of short wrapped base64 lines long enough for a key, as its lines.

    A block is lines of one length (a multiple of 4, under ``_WRAPPED_LINE``)
    and a last line no longer, each ended by one line break. Only where a
    line of base64 follows one ending in it (``_WRAP``) are the lines read.
    """
    done = -1
    for match in _WRAP.finditer(data):
        at = match.start()
        if at < done:
            continue
        start = marks.rfind(b" ", 0, at - (data[at - 1] == 0x0D)) + 1
        lines, done = _lines(data, marks, start)
        yield from _blocks(lines, shortest)


def _lines(data: bytes, marks: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """The base64 lines from ``start``, each ended by one line break, and where they end."""
    lines: list[tuple[int, int]] = []
    position = start
    while position < len(data) and marks[position] == 0x41:
        end = _run_end(marks, position)
        lines.append((position, end))
        if data.startswith(b"\r\n", end):
            position = end + 2
        elif data.startswith(b"\n", end):
            position = end + 1
        else:
            position = end
            break
    return lines, position


def _blocks(lines: list[tuple[int, int]], shortest: int) -> Iterator[list[tuple[int, int]]]:
    """The runs of ``lines`` that are wrapped base64: one width but the last."""
    index = 0
    while index < len(lines):
        first = lines[index]
        width = first[1] - first[0]
        if width % 4 or not _SHORT_LINE <= width < _WRAPPED_LINE:
            index += 1
            continue
        last = index + 1
        while last < len(lines) and lines[last][1] - lines[last][0] == width:
            last += 1
        if last < len(lines) and lines[last][1] - lines[last][0] < width:
            last += 1
        block = lines[index:last]
        if len(block) >= 2 and sum(b - a for a, b in block) >= shortest:
            yield block
            index = last
        else:
            index += 1


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


def _compressed(data: bytes) -> str | None:
    """The compression ``data`` starts with (by its magic number), or None."""
    if data[:1] not in _MAGIC_FIRST_BYTES:
        return None
    if data.startswith(_GZIP_MAGIC):
        return "gzip"
    if data.startswith(_XZ_MAGIC):
        return "xz"
    if data.startswith(b"BZh") and _BZIP2_MAGIC.match(data):
        return "bz2"
    if data.startswith(_ZIP_MAGIC):
        return "zip"
    # zlib: a 2-byte header, method 8 (deflate), window up to 32 KiB, no preset
    # dictionary, and the pair a multiple of 31; text rarely passes, and a
    # stream that then fails to inflate is dropped at once.
    if len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and not data[1] & 0x20:
        return "zlib" if (data[0] << 8 | data[1]) % 31 == 0 else None
    return None


def _decompressed(view: _View, state: _State) -> _View | None:
    """The decompressed gzip, zlib, bzip2 or xz stream at the start of ``view``.

    Within the file's budget: a compression bomb stops there (cut short).
    Concatenated gzip, bzip2 and xz streams are all read.
    """
    kind = _compressed(view.data)
    if kind is None or kind == "zip":
        return None
    data, pieces, room = view.data, [], state.budget
    while data and room > 0:
        try:
            piece, data, done = _inflate(kind, data, room)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
            break  # not a stream after all, or damaged: keep what was read
        pieces.append(piece)
        room -= len(piece)
        if not done:
            state.cut_short = True
            break
        if _compressed(data) != kind or kind == "zlib":
            break
    decoded = b"".join(pieces)
    if not decoded or not state.spend(len(decoded)):
        return None
    origin = _fixed(view.origin(0))
    return _View(decoded, (*view.layers, kind), view.depth + 1, origin=origin, member=view.member)


def _inflate(kind: str, data: bytes, room: int) -> tuple[bytes, bytes, bool]:
    """At most ``room`` bytes of the stream ``data`` starts with, what follows it,
    and whether the stream was read to its end (or cut off by ``data``'s end)."""
    if kind in ("gzip", "zlib"):
        stream = zlib.decompressobj(wbits=(16 if kind == "gzip" else 0) + zlib.MAX_WBITS)
        piece = stream.decompress(data, room)
        return piece, stream.unused_data, not stream.unconsumed_tail
    other: bz2.BZ2Decompressor | lzma.LZMADecompressor = (
        bz2.BZ2Decompressor() if kind == "bz2" else lzma.LZMADecompressor(lzma.FORMAT_XZ)
    )
    piece = other.decompress(data, room)
    if other.eof:
        return piece, other.unused_data, True
    return piece, b"", other.needs_input


def _zip_members(view: _View, state: _State) -> tuple[list[_View], bytes]:
    """The members of the ZIP archive ``view`` holds, each a view of its own, and
    ``view``'s bytes with the stored (uncompressed) members blanked out.

    Members are decompressed within the file's budget; encrypted members,
    unsupported methods and a damaged archive are reported as skipped.
    """
    where = view.member
    try:
        archive = zipfile.ZipFile(io.BytesIO(view.data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        state.skip(where, PARTLY_DECODED, f"damaged ZIP archive ({error})")
        return [], view.data
    members: list[_View] = []
    blanked = bytearray(view.data)
    for info in infos:
        if info.is_dir():
            continue
        name = f"{where}!{info.filename}" if where else info.filename
        if info.flag_bits & 0x1:
            state.skip(name, ENCRYPTED, "an encrypted ZIP member, not looked into")
            continue
        if info.compress_type not in _ZIP_METHODS:
            state.skip(name, UNSUPPORTED, f"ZIP compression method {info.compress_type}")
            continue
        state.member_count += 1
        if state.member_count > MAX_MEMBERS:
            state.skip(where, PARTLY_DECODED, f"over {MAX_MEMBERS} archive members")
            break
        content = _member_bytes(archive, info, name, state)
        if content is None:
            continue
        if info.compress_type == zipfile.ZIP_STORED:
            _blank(blanked, view.data, info)
        state.members[name] = content
        layers = (*view.layers, *view.local(0, len(view.data)), "zip")
        members.append(_View(content, layers, view.depth + 1, member=name))
    return members, bytes(blanked)


def _member_bytes(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, state: _State
) -> bytes | None:
    """A member's bytes, at most the file's remaining budget (cut short beyond)."""
    try:
        with archive.open(info) as member:
            content = member.read(state.budget + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, lzma.LZMAError) as e:
        state.skip(name, PARTLY_DECODED, f"damaged ZIP member ({e})")
        return None
    except (NotImplementedError, RuntimeError) as error:
        state.skip(name, UNSUPPORTED, str(error))
        return None
    if not state.spend(len(content)):
        state.budget = 0  # searched up to the budget, and reported as cut short
        return content[: len(content) - 1] or None
    return content


def _blank(blanked: bytearray, data: bytes, info: zipfile.ZipInfo) -> None:
    """Zero a stored member's bytes in the archive: they are searched as the member."""
    header = info.header_offset
    if data[header : header + 4] != _ZIP_MAGIC or len(data) < header + 30:
        return
    name_length, extra_length = struct.unpack_from("<HH", data, header + 26)
    start = header + 30 + name_length + extra_length
    end = min(start + info.compress_size, len(data))
    blanked[start:end] = bytes(end - start)
