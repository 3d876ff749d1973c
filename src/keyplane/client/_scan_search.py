"""The search itself: :class:`KeySearch` runs the key pattern over a file's bytes
and over each decoded view worth building (``_scan_views``, ``_scan_archives``),
within the file's decoding budget. The module docstring of ``_scan_views`` says
which decodings are tried and when."""

from __future__ import annotations

import codecs
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import accumulate

from keyplane.client._scan_archives import (
    _MAGIC_NEEDLES,
    _SNIFF_BYTES,
    _UNSUPPORTED,
    _ZIP_MAGIC,
    PARTLY_DECODED,
    UNSUPPORTED,
    _compressed,
    _decompressed,
    _zip_members,
)
from keyplane.client._scan_views import (
    _ESCAPE_LABELS,
    _ESCAPES,
    _RUN_MARKS,
    _URLSAFE_TO_STANDARD,
    BUDGET_FACTOR,
    BUDGET_FLOOR,
    MAX_LAYERS,
    Hit,
    SearchResult,
    _base64_runs,
    _decode_base64,
    _escapes_in,
    _fixed,
    _has_escape,
    _narrowed,
    _run_end,
    _short_wrapped_blocks,
    _State,
    _unescaped_run,
    _View,
)
from keyplane.core.errors import MalformedKey
from keyplane.core.keys import BODY_LENGTH, KeyFormat, SecretKey


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
