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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from keyplane.core.keys import SecretKey

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
