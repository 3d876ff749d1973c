"""The leak scanner finds keys however a file holds them, and only real keys.

Issue 11: an outside test planted 14 keys and ``keyplane scan`` found 4. Each
way of holding a key below is one of theirs (or a close relative): glued to
other words, UTF-16 of both byte orders with and without a BOM, base64 at each
byte offset and nested, JSON and URL escapes, binaries, gzip. Each must be
found, with its encoding, line (or byte offset in a binary) and masked hint,
and the same file holding a lookalike (right shape, wrong checksum) must give
nothing. Keys are generated at run time, so this file holds none.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from keyplane.client.scan import Scanner
from keyplane.core.keys import KeyFormat

Plant = Callable[[str], bytes]
NL = "\n"


def lookalike(value: str) -> str:
    """The same key with its last checksum character changed: right shape, wrong checksum."""
    return value[:-1] + ("B" if value[-1] != "B" else "C")


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def k8s_secret(value: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\ndata:\n  token: {value}\n"


def json_unicode_escaped(key: str) -> str:
    return "".join(f"\\u{ord(character):04x}" for character in key)


def wrapped(text: str, width: int, newline: str = "\n") -> str:
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


def helm_release(key: str) -> str:
    """Helm 3 keeps a release as base64(gzip(json)), and Kubernetes base64s that again."""
    release = json.dumps({"name": "api", "config": {"apiKey": key}}).encode()
    return b64(b64(gzip.compress(release)))


# (id, how the file is made from the key, encoding reported, line or None for binary)
PLANTS: list[tuple[str, Plant, str, int | None]] = [
    ("plain", lambda key: f"API_KEY = '{key}'\n".encode(), "plain", 1),
    ("word-before", lambda key: f"# a\ntoken=x{key}\n".encode(), "plain", 2),
    ("underscore-before", lambda key: f"MY_TOKEN_{key}\n".encode(), "plain", 1),
    ("word-after", lambda key: f"{key}deadbeef and more\n".encode(), "plain", 1),
    (
        "utf-16le-bom",  # PowerShell 5: `echo ... > file`
        lambda key: f"\ufeffline one\r\nKEY={key}\r\n".encode("utf-16-le"),
        "utf-16le",
        2,
    ),
    ("utf-16le", lambda key: f"line one\nKEY={key}\n".encode("utf-16-le"), "utf-16le", 2),
    (
        "utf-16be-bom",
        lambda key: f"\ufeffone\ntwo\nKEY={key}\n".encode("utf-16-be"),
        "utf-16be",
        3,
    ),
    ("utf-16be", lambda key: f"KEY={key}\n".encode("utf-16-be"), "utf-16be", 1),
    ("base64-k8s-secret", lambda key: k8s_secret(b64(key)).encode(), "base64", 6),
    ("base64-offset-1", lambda key: k8s_secret(b64("x" + key)).encode(), "base64", 6),
    ("base64-offset-2", lambda key: k8s_secret(b64(f"K={key}\n")).encode(), "base64", 6),
    ("base64-of-base64", lambda key: k8s_secret(b64(b64(key))).encode(), "base64/base64", 6),
    (
        "base64-glued",  # a run that does not start where the encoding does
        lambda key: f"sha512-{b64('ab' + key)}\n".encode(),
        "base64",
        1,
    ),
    (
        "base64url",
        lambda key: b"t=" + base64.urlsafe_b64encode(b"\xfb\xff" + key.encode()) + b"\n",
        "base64",
        1,
    ),
    (
        "base64-wrapped-76",  # GNU base64's default output; the key straddles a line break
        lambda key: (wrapped(b64("x" * 50 + key + "y" * 60), 76) + "\n").encode(),
        "base64",
        1,
    ),
    (
        "base64-wrapped-crlf-indented",
        lambda key: ("data: |\r\n  " + wrapped(b64("x" * 40 + key), 64, "\r\n  ")).encode(),
        "base64",
        2,
    ),
    (
        "json-unicode-escapes",
        lambda key: (
            json.dumps({"a": 1}).encode() + f'\n{{"key": "{json_unicode_escaped(key)}"}}\n'.encode()
        ),
        "json-escaped",
        2,
    ),
    (
        "json-escaped-slash-in-base64",  # PHP's json_encode writes / as \/
        lambda key: (
            '{"b": "' + b64(b"\xff\xff\xff" + key.encode()).replace("/", "\\/") + '"}'
        ).encode(),
        "json-escaped/base64",
        1,
    ),
    (
        "json-escaped-wrapped-base64",  # a PEM-style blob in a JSON string: lines joined by \n
        lambda key: json.dumps({"pem": wrapped(b64("x" * 50 + key + "y" * 30), 64)}).encode(),
        "json-escaped/base64",
        1,
    ),
    (
        "url-encoded",
        lambda key: f"GET /hook?key={key.replace('_', '%5F')}&x=%20 HTTP/1.1\n".encode(),
        "url-encoded",
        1,
    ),
    (
        "url-encoded-base64",
        lambda key: (
            "callback=" + b64(b"\xfb\xef" + key.encode()).replace("+", "%2B").replace("/", "%2f")
        ).encode(),
        "url-encoded/base64",
        1,
    ),
    ("binary", lambda key: b"\x7fELF\x00\x01" * 50 + key.encode() + b"\x00" * 8, "plain", None),
    (
        "binary-utf-16le",  # a Windows executable's string resources
        lambda key: b"MZ\x90\x00" + bytes(range(256)) + key.encode("utf-16-le") + b"\x00\x00",
        "utf-16le",
        None,
    ),
    ("gzip", lambda key: gzip.compress(f"export KEY={key}\n".encode()), "gzip", None),
    ("helm-release", lambda key: k8s_secret(helm_release(key)).encode(), "base64/base64/gzip", 6),
    (
        "utf-16le-k8s-secret",  # `kubectl get secret -o yaml > s.yaml` in PowerShell 5
        lambda key: ("\ufeff" + k8s_secret(b64(key))).encode("utf-16-le"),
        "utf-16le/base64",
        6,
    ),
    (
        "base64-of-utf-16le",  # powershell -EncodedCommand
        lambda key: (
            f"powershell -EncodedCommand {b64(f'$k = {key!r}'.encode('utf-16-le'))}\n".encode()
        ),
        "base64/utf-16le",
        1,
    ),
]


@pytest.mark.parametrize(
    ("plant", "encoding", "line"),
    [pytest.param(plant, encoding, line, id=name) for name, plant, encoding, line in PLANTS],
)
def test_every_planted_key_is_found_with_where_and_how(
    plant: Plant, encoding: str, line: int | None
) -> None:
    key = KeyFormat().generate().reveal()
    data = plant(key)
    assert key.encode() not in data or encoding == "plain"
    findings, cut_short = Scanner().scan_bytes(data, "planted")
    assert [(f.encoding, f.line, f.hint) for f in findings] == [
        (encoding, line, f"kp_...{key[-4:]}")
    ]
    assert not cut_short
    assert findings[0].key.reveal() == key
    assert key not in repr(findings) + str(findings[0])
    if line is None:
        assert str(findings[0]).startswith(f"planted@{findings[0].offset}: kp_...")


@pytest.mark.parametrize("plant", [pytest.param(plant, id=name) for name, plant, _, _ in PLANTS])
def test_a_lookalike_held_the_same_way_is_not_a_key(plant: Plant) -> None:
    fake = lookalike(KeyFormat().generate().reveal())
    assert Scanner().scan_bytes(plant(fake), "planted")[0] == []


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_a_key_at_each_byte_offset_of_base64_is_found(offset: int) -> None:
    key = KeyFormat().generate().reveal()
    blob = b"\x00\x01"[:offset] + key.encode() + b"\x02"
    findings, _ = Scanner().scan_bytes(f"value: {b64(blob)}\n".encode(), "s.yaml")
    assert [(f.encoding, f.line, f.column) for f in findings] == [("base64", 1, 8)]


def test_the_fourteen_style_plant_set_in_a_tree_is_found_whole(tmp_path: Path) -> None:
    keys = {name: KeyFormat().generate().reveal() for name, *_ in PLANTS}
    for name, plant, _, _ in PLANTS:
        (tmp_path / f"{name}.dat").write_bytes(plant(keys[name]))
    report = Scanner(use_git=False).scan([tmp_path])
    found = {Path(f.path).stem: (f.encoding, f.hint) for f in report.findings}
    assert found == {
        name: (encoding, f"kp_...{keys[name][-4:]}") for name, _, encoding, _ in PLANTS
    }
    assert report.files_scanned == len(PLANTS)
    assert report.skipped == []


def test_line_and_column_stay_true_after_escapes_and_many_findings() -> None:
    keys = [KeyFormat().generate().reveal() for _ in range(3)]
    text = (
        f"caf\\u00e9 %20 \\/ {keys[0]}\n"
        f"  é {keys[1].replace('_', '%5F')}\n"
        f"\n\t{json_unicode_escaped(keys[2])} {keys[0]}\n"
    )
    findings, _ = Scanner().scan_bytes(text.encode(), "f")
    assert [(f.line, f.column, f.encoding, f.hint[-4:]) for f in findings] == [
        (1, 18, "plain", keys[0][-4:]),
        (2, 5, "url-encoded", keys[1][-4:]),
        (4, 2, "json-escaped", keys[2][-4:]),
        (4, 2 + 6 * 39 + 1, "plain", keys[0][-4:]),
    ]


def test_nesting_and_compression_cannot_make_the_scan_hang() -> None:
    """Decoding stops at a budget (reported as cut short), whatever the input."""
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024))
    findings, cut_short = Scanner().scan_bytes(bomb, "bomb.gz")
    assert findings == []
    assert cut_short
    deep = KeyFormat().generate().reveal().encode()
    for _ in range(8):
        deep = base64.b64encode(deep)
    findings, _ = Scanner().scan_bytes(deep, "deep")
    assert findings == []  # 8 layers: beyond MAX_LAYERS, and said so in the docs


# Issue 11, second round: containers and encodings the first round missed (an
# outside test found none of these, and listed none of them as skipped).


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def dotenv(key: str) -> bytes:
    return f"# settings\nKEYPLANE_API_KEY={key}\nDEBUG=0\n".encode()


def wheel(key: str) -> bytes:
    return zipped(
        {
            "pkg/__init__.py": b"__version__ = '1.0'\n",
            "pkg/settings.py": f"import os\n\nAPI_KEY = '{key}'\n".encode(),
            "pkg-1.0.dist-info/METADATA": b"Name: pkg\nVersion: 1.0\n",
        }
    )


def tarball(key: str) -> bytes:
    """A tar holds its files as they are: compressed whole, it is one stream."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        content = dotenv(key)
        info = tarfile.TarInfo("app/.env")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def html_decimal(text: str) -> str:
    return "".join(f"&#{ord(character)};" for character in text)


def html_hex(text: str) -> str:
    return "".join(f"&#x{ord(character):x};" for character in text)


def quoted_printable(key: str) -> bytes:
    """A mail body: "=" written as "=3D", the line broken by a soft break in the key."""
    return (
        "Subject: x\nContent-Transfer-Encoding: quoted-printable\n\n"
        f"KEYPLANE_API_KEY=3D{key[:20]}=\n{key[20:]}\n"
    ).encode()


# (id, how the file is made, encoding, line, the archive member holding the key or "")
MORE_PLANTS: list[tuple[str, Plant, str, int | None, str]] = [
    ("zip-deflate", lambda key: zipped({"conf/.env": dotenv(key)}), "zip", 2, "conf/.env"),
    (
        "zip-stored",  # found once, as the member (not again as raw bytes of the archive)
        lambda key: zipped({"a.txt": b"a\n", ".env": dotenv(key)}, zipfile.ZIP_STORED),
        "zip",
        2,
        ".env",
    ),
    ("whl-like", wheel, "zip", 3, "pkg/settings.py"),
    (
        "zip-in-zip",  # a .jar inside a .zip
        lambda key: zipped({"lib/inner.jar": zipped({"app.properties": dotenv(key)})}),
        "zip/zip",
        2,
        "lib/inner.jar!app.properties",
    ),
    (
        "zip-in-base64",
        lambda key: k8s_secret(b64(zipped({"conf/.env": dotenv(key)}))).encode(),
        "base64/zip",
        2,
        "conf/.env",
    ),
    (
        "zip-bzip2-member",
        lambda key: zipped({".env": dotenv(key)}, zipfile.ZIP_BZIP2),
        "zip",
        2,
        ".env",
    ),
    ("zlib", lambda key: zlib.compress(dotenv(key) * 3), "zlib", None, ""),
    ("tar-xz", lambda key: lzma.compress(tarball(key)), "xz", None, ""),
    ("tar-bz2", lambda key: bz2.compress(tarball(key)), "bz2", None, ""),
    ("bz2", lambda key: bz2.compress(dotenv(key) * 3), "bz2", None, ""),
    ("xz", lambda key: lzma.compress(dotenv(key) * 3), "xz", None, ""),
    (
        "zlib-in-base64",
        lambda key: b64(zlib.compress(dotenv(key))).encode(),
        "base64/zlib",
        1,
        "",
    ),
    (
        "utf-32le-bom",
        lambda key: f"\ufeffone\nKEY={key}\n".encode("utf-32-le"),
        "utf-32le",
        2,
        "",
    ),
    ("utf-32le", lambda key: f"one\nKEY={key}\n".encode("utf-32-le"), "utf-32le", 2, ""),
    (
        "utf-32be-bom",
        lambda key: f"\ufeffone\ntwo\nKEY={key}\n".encode("utf-32-be"),
        "utf-32be",
        3,
        "",
    ),
    ("utf-32be", lambda key: f"KEY={key}\n".encode("utf-32-be"), "utf-32be", 1, ""),
    (
        "html-decimal",
        lambda key: f"<p>\n<code>{html_decimal(key)}</code>\n".encode(),
        "html-entities",
        2,
        "",
    ),
    ("html-hex", lambda key: f"<p>{html_hex(key)}</p>\n".encode(), "html-entities", 1, ""),
    (
        "html-named-lowbar",
        lambda key: f"<p>\n\n{key.replace('_', '&lowbar;')}</p>\n".encode(),
        "html-entities",
        3,
        "",
    ),
    (
        "base64-wrapped-20",
        lambda key: ("-----BEGIN-----\n" + wrapped(b64("x" * 7 + key + "\n"), 20) + "\n").encode(),
        "base64",
        2,
        "",
    ),
    (
        "base64-wrapped-8-crlf",
        lambda key: ("data:\r\n" + wrapped(b64(f"KEY={key}"), 8, "\r\n") + "\r\n").encode(),
        "base64",
        2,
        "",
    ),
    ("quoted-printable", quoted_printable, "quoted-printable", 4, ""),
]


@pytest.mark.parametrize(
    ("plant", "encoding", "line", "member"),
    [pytest.param(*rest, id=name) for name, *rest in MORE_PLANTS],
)
def test_every_key_in_a_container_or_encoding_is_found_where_it_is(
    plant: Plant, encoding: str, line: int | None, member: str
) -> None:
    key = KeyFormat().generate().reveal()
    data = plant(key)
    assert key.encode() not in data or encoding == "zip"
    findings, skipped = Scanner().inspect(data, "planted")
    path = f"planted!{member}" if member else "planted"
    assert [(f.path, f.encoding, f.line, f.hint) for f in findings] == [
        (path, encoding, line, f"kp_...{key[-4:]}")
    ]
    assert skipped == []
    assert findings[0].key.reveal() == key
    assert key not in repr(findings) + str(findings[0])
    expected_where = f"{path}:{line}" if line is not None else f"{path}@{findings[0].offset}"
    assert str(findings[0]).startswith(f"{expected_where}: kp_...")


@pytest.mark.parametrize("plant", [pytest.param(plant, id=name) for name, plant, *_ in MORE_PLANTS])
def test_a_lookalike_in_a_container_or_encoding_is_not_a_key(plant: Plant) -> None:
    fake = lookalike(KeyFormat().generate().reveal())
    assert Scanner().inspect(plant(fake), "planted") == ([], [])


def test_containers_in_a_tree_are_found_and_nothing_is_skipped(tmp_path: Path) -> None:
    keys = {name: KeyFormat().generate().reveal() for name, *_ in MORE_PLANTS}
    for name, plant, *_ in MORE_PLANTS:
        (tmp_path / f"{name}.dat").write_bytes(plant(keys[name]))
    report = Scanner(use_git=False).scan([tmp_path])
    found = {f.path: (f.encoding, f.hint) for f in report.findings}
    assert found == {
        str(tmp_path / f"{name}.dat") + (f"!{member}" if member else ""): (
            encoding,
            f"kp_...{keys[name][-4:]}",
        )
        for name, _, encoding, _, member in MORE_PLANTS
    }
    assert report.skipped == []


def test_a_zip_bomb_stops_at_the_budget_and_is_listed_as_partly_decoded(tmp_path: Path) -> None:
    key = KeyFormat().generate().reveal()
    bomb = zipped(
        {"a.env": dotenv(key), "zeros.bin": b"\0" * (64 * 1024 * 1024), "z.env": dotenv(key)}
    )
    assert len(bomb) < 200_000
    (tmp_path / "bomb.zip").write_bytes(bomb)
    report = Scanner(use_git=False).scan([tmp_path])
    assert [(Path(f.path).name, f.line) for f in report.findings] == [("bomb.zip!a.env", 2)]
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("bomb.zip", "partly decoded")
    ]
    nested = bomb
    for depth in range(6):  # archives nested past MAX_LAYERS: bounded, and said so
        nested = zipped({f"level{depth}.zip": nested})
    findings, skipped = Scanner().inspect(nested, "deep.zip")
    assert findings == []
    assert [s.reason for s in skipped] == ["partly decoded"]


def flagged_encrypted(archive: bytes, name: bytes) -> bytes:
    """``archive`` with member ``name`` marked encrypted (zipfile cannot write one)."""
    data = bytearray(archive)
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.find(signature)
        while position >= 0:
            name_at = position + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[position + flags_at] |= 0x1
            position = data.find(signature, position + 1)
    return bytes(data)


def with_method(archive: bytes, name: bytes, method: int) -> bytes:
    """``archive`` with member ``name`` claiming compression ``method``."""
    data = bytearray(archive)
    for signature, method_at, name_offset in ((b"PK\x03\x04", 8, 30), (b"PK\x01\x02", 10, 46)):
        position = data.find(signature)
        while position >= 0:
            if data[position + name_offset : position + name_offset + len(name)] == name:
                data[position + method_at : position + method_at + 2] = method.to_bytes(2, "little")
            position = data.find(signature, position + 1)
    return bytes(data)


def test_what_cannot_be_looked_into_is_listed_as_skipped_with_the_reason(tmp_path: Path) -> None:
    key = KeyFormat().generate().reveal()
    archive = zipped(
        {
            "secret.env": b"\x93\x1f" * 40,
            "deflate64.bin": b"\x00" * 100,
            "visible.env": dotenv(key),
        },
        zipfile.ZIP_STORED,
    )
    archive = with_method(flagged_encrypted(archive, b"secret.env"), b"deflate64.bin", 9)
    (tmp_path / "bundle.zip").write_bytes(archive)
    (tmp_path / "backup.7z").write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(200))
    (tmp_path / "damaged.zip").write_bytes(b"PK\x03\x04" + bytes(60))
    report = Scanner(use_git=False).scan([tmp_path])
    assert [Path(f.path).name + f":{f.line}" for f in report.findings] == [
        "bundle.zip!visible.env:2"
    ]
    assert sorted((Path(s.path).name, s.reason) for s in report.skipped) == [
        ("backup.7z", "unsupported format"),
        ("bundle.zip!deflate64.bin", "unsupported format"),
        ("bundle.zip!secret.env", "encrypted"),
        ("damaged.zip", "partly decoded"),
    ]
