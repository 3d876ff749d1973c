"""Compressed streams and archives inside a file: gzip, zlib, bzip2 and xz are
decompressed, ZIP archives opened member by member, within the file's decoding
budget; formats the standard library cannot open are reported as skipped."""

from __future__ import annotations

import bz2
import io
import lzma
import re
import struct
import zipfile
import zlib
from typing import Final

from keyplane.client._scan_views import MAX_MEMBERS, _fixed, _State, _View

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
