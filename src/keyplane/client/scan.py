"""The leak scanner: find Keyplane keys in files and git work trees.

A candidate must match the key pattern of a prefix **and** carry a valid
CRC32 checksum (``keyplane.core.keys``), so lookalikes, placeholders and
made-up keys are ignored and a match is almost surely a real key. Findings
hold the key's hint for display; the value stays inside the :class:`SecretKey`.

Every file is read as bytes, binaries included, and searched plain and in the
encodings and containers a key is found in in practice (UTF-16, UTF-32,
base64, JSON, URL, HTML and quoted-printable escapes, gzip, zlib, bzip2, xz,
ZIP archives; ``_scan_views``). A finding says where (line and column in text,
the byte offset in a binary; ``archive.zip!member`` in an archive) and in
which encoding.

In a git work tree only the files git tracks, or would track (not ignored),
are read: a ``.env`` listed in ``.gitignore`` is where a key belongs. Nothing
is left out silently: ignored files, symlinks (not followed), files over
``max_bytes`` and unreadable ones are listed in :attr:`ScanReport.skipped`,
and so is what the scanner cannot look into (an encrypted ZIP member, a 7z
file) or stopped decoding at its budget.
"""

from __future__ import annotations

import codecs
import os
import shutil
import stat
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from keyplane.client._scan_archives import ENCRYPTED as ENCRYPTED
from keyplane.client._scan_archives import PARTLY_DECODED as PARTLY_DECODED
from keyplane.client._scan_archives import UNSUPPORTED as UNSUPPORTED
from keyplane.client._scan_search import KeySearch
from keyplane.client._scan_views import Hit
from keyplane.core.keys import DEFAULT_PREFIX, KeyFormat, SecretKey

DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024
_SNIFF_BYTES: Final = 8192
_VERSION_CONTROL: Final = frozenset({".git", ".hg", ".svn"})

# Why a file was not read (the ``reason`` of a :class:`Skipped`).
TOO_LARGE: Final = "too large"
UNREADABLE: Final = "unreadable"
SYMLINK: Final = "symlink"
IGNORED: Final = "ignored by git"
NOT_A_FILE: Final = "not a regular file"
MISSING: Final = "not found"
VERSION_CONTROL: Final = "version control data"


@dataclass(frozen=True, slots=True)
class Finding:
    """A key in a file: where, and in which encoding (the key itself stays masked)."""

    path: str
    #: 1-based line and column in a text file; None in a binary one.
    line: int | None
    column: int | None
    #: The byte offset of the key, or of the encoded text holding it.
    offset: int
    #: ``plain``, or the decodings to the key, outermost first (``utf-16le/base64``).
    encoding: str
    key: SecretKey

    @property
    def hint(self) -> str:
        return self.key.hint

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else f"{self.path}@{self.offset}"

    def __str__(self) -> str:
        note = "" if self.encoding == "plain" else f" ({self.encoding})"
        return f"{self.where}: {self.hint}{note}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file, or directory, not read (or not fully), and why."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def unique_keys(self) -> list[SecretKey]:
        """Each key found once, in the order first seen."""
        seen: dict[str, SecretKey] = {}
        for finding in self.findings:
            seen.setdefault(finding.key.hash(), finding.key)
        return list(seen.values())

    def skipped_counts(self) -> dict[str, int]:
        """How many entries were skipped for each reason, most first."""
        return dict(Counter(item.reason for item in self.skipped).most_common())


def default_prefixes() -> tuple[str, ...]:
    return (os.environ.get("KEYPLANE_KEY_PREFIX", "").strip() or DEFAULT_PREFIX,)


class Scanner:
    def __init__(
        self,
        prefixes: Sequence[str] = (),
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        use_git: bool = True,
    ) -> None:
        self.formats = tuple(KeyFormat(prefix) for prefix in (prefixes or default_prefixes()))
        self.max_bytes = max_bytes
        self.use_git = use_git
        self._search = KeySearch(self.formats)

    def mask(self, text: str) -> str:
        """``text`` with every key of the scanned formats masked: what the scanner prints
        about a place (a file or archive member named after a key) must not leak it."""
        for key_format in self.formats:
            text = key_format.redact(text)
        return text

    def scan_text(self, text: str, path: str) -> Iterator[Finding]:
        """Every checksum-valid key in ``text``, with its 1-based line and column."""
        yield from self.scan_bytes(text.encode("utf-8", "surrogatepass"), path)[0]

    def scan_bytes(self, data: bytes, path: str) -> tuple[list[Finding], bool]:
        """Every checksum-valid key in ``data``, and whether decoding was cut short."""
        findings, skipped = self.inspect(data, path)
        return findings, any(item.reason == PARTLY_DECODED for item in skipped)

    def inspect(self, data: bytes, path: str) -> tuple[list[Finding], list[Skipped]]:
        """Every checksum-valid key in ``data``, and what was not (fully) looked into.

        A key in an archive member is reported at ``path!member`` (nested
        archives: ``path!inner.zip!member``), with its line in the member.
        """
        result = self._search.search(data)
        findings = _locate(data, path, [hit for hit in result.hits if not hit.member])
        for member, content in result.members.items():
            hits = [hit for hit in result.hits if hit.member == member]
            findings.extend(_locate(content, f"{path}!{member}", hits))
        skipped = [
            Skipped(f"{path}!{member}" if member else path, reason, detail)
            for member, reason, detail in result.skipped
        ]
        if result.cut_short:
            detail = "nested encodings beyond the decoding budget"
            skipped.append(Skipped(path, PARTLY_DECODED, detail))
        return findings, skipped

    def scan(self, paths: Iterable[str | Path]) -> ScanReport:
        report = ScanReport()
        for path, shown in self._files(paths, report):
            data = self._read(path, shown, report)
            if data is None:
                continue
            findings, skipped = self.inspect(data, shown)
            report.files_scanned += 1
            report.bytes_scanned += len(data)
            report.findings.extend(findings)
            report.skipped.extend(skipped)
        return report

    def _read(self, path: Path, shown: str, report: ScanReport) -> bytes | None:
        try:
            status = path.lstat()
            if stat.S_ISLNK(status.st_mode):
                report.skipped.append(Skipped(shown, SYMLINK, "not followed"))
                return None
            if stat.S_ISDIR(status.st_mode):
                report.skipped.append(Skipped(shown, NOT_A_FILE, "a directory (git submodule?)"))
                return None
            if not stat.S_ISREG(status.st_mode):
                report.skipped.append(Skipped(shown, NOT_A_FILE))
                return None
            if status.st_size > self.max_bytes:
                report.skipped.append(Skipped(shown, TOO_LARGE, self._size_note(status.st_size)))
                return None
            with path.open("rb") as file:
                data = file.read(self.max_bytes + 1)
        except FileNotFoundError:
            report.skipped.append(Skipped(shown, MISSING))
            return None
        except OSError as error:
            report.skipped.append(
                Skipped(shown, UNREADABLE, error.strerror or type(error).__name__)
            )
            return None
        if len(data) > self.max_bytes:  # it grew since stat
            report.skipped.append(Skipped(shown, TOO_LARGE, self._size_note(len(data))))
            return None
        return data

    def _size_note(self, size: int) -> str:
        return f"{size} bytes, over --max-bytes {self.max_bytes}"

    def _files(self, paths: Iterable[str | Path], report: ScanReport) -> Iterator[tuple[Path, str]]:
        seen: set[Path] = set()
        for given in paths:
            root = Path(given)
            if not root.exists() and not root.is_symlink():
                report.skipped.append(Skipped(str(given), MISSING))
                continue
            if not root.is_dir() or root.is_symlink():
                candidates: Iterable[tuple[Path, str]] = [(root, str(given))]
            else:
                listed = self._git_files(root) if self.use_git else None
                if listed is None:
                    candidates = self._walk(root, report)
                else:
                    candidates, ignored = listed
                    report.skipped.extend(Skipped(name, IGNORED) for name in ignored)
            for path, shown in candidates:
                resolved = path.parent.resolve() / path.name
                if resolved not in seen:
                    seen.add(resolved)
                    yield path, shown

    @staticmethod
    def _walk(root: Path, report: ScanReport) -> Iterator[tuple[Path, str]]:
        def unreadable(error: OSError) -> None:
            shown = str(error.filename or root)
            report.skipped.append(Skipped(shown, UNREADABLE, error.strerror or ""))

        for directory, subdirectories, files in os.walk(root, onerror=unreadable):
            kept = []
            for name in sorted(subdirectories):
                path = Path(directory) / name
                if name in _VERSION_CONTROL:
                    report.skipped.append(Skipped(str(path), VERSION_CONTROL))
                elif path.is_symlink():
                    report.skipped.append(Skipped(str(path), SYMLINK, "not followed"))
                else:
                    kept.append(name)
            subdirectories[:] = kept
            for name in sorted(files):
                path = Path(directory) / name
                yield path, str(path)

    @staticmethod
    def _git_files(root: Path) -> tuple[list[tuple[Path, str]], list[str]] | None:
        """Files git tracks or would track under ``root``, and the ignored ones.

        None if ``root`` is not in a git work tree (or git is missing). Ignored
        directories are listed once, with a trailing ``/``.
        """
        git = shutil.which("git")
        if git is None:
            return None
        try:
            inside = _git(git, root, "rev-parse", "--is-inside-work-tree", check=False)
            if inside.returncode != 0 or inside.stdout.strip() != b"true":
                return None
            listed = _git(git, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
            ignored = _git(
                git, root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                "--directory",
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        names = sorted(set(_names(listed.stdout)))
        files = [(root / name, str(root / name)) for name in names]
        return files, [
            str(root / name) + ("/" * name.endswith("/")) for name in _names(ignored.stdout)
        ]


def _git(
    git: str, root: Path, *arguments: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - git, with fixed arguments
        [git, "-C", str(root), *arguments], capture_output=True, timeout=120, check=check
    )


def _names(output: bytes) -> list[str]:
    return [name for name in output.decode("utf-8", "replace").split("\0") if name]


def _text_codec(data: bytes) -> tuple[str, int] | None:
    """How to read ``data`` as text for line numbers (codec, start), or None if binary."""
    if data.startswith(codecs.BOM_UTF32_LE):
        return "utf-32-le", 4
    if data.startswith(codecs.BOM_UTF32_BE):
        return "utf-32-be", 4
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    head = data[:_SNIFF_BYTES]
    if b"\x00" not in head:
        return ("utf-8", 3) if data.startswith(codecs.BOM_UTF8) else ("utf-8", 0)
    # UTF-32 without a BOM: mostly ASCII, so three bytes in four are NUL.
    columns = [head[column::4] for column in range(4)]
    if not columns[0].count(0) and all(c.count(0) * 2 >= len(c) for c in columns[1:]):
        return "utf-32-le", 0
    if not columns[3].count(0) and all(c.count(0) * 2 >= len(c) for c in columns[:3]):
        return "utf-32-be", 0
    # UTF-16 without a BOM: mostly ASCII, so every other byte is NUL.
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= len(odd) // 2 and even.count(0) == 0:
        return "utf-16-le", 0
    if even.count(0) >= len(even) // 2 and odd.count(0) == 0:
        return "utf-16-be", 0
    return None


def _locate(data: bytes, path: str, hits: list[Hit]) -> list[Finding]:
    """Findings for ``hits`` (sorted by offset), with line and column in a text file.

    The text is decoded once, segment by segment between the hits, so a file
    with many findings costs no more than one with a single one.
    """
    codec = _text_codec(data) if hits else None
    findings = []
    position, line, column = (codec[1] if codec else 0), 1, 1
    width = {"utf-16": 2, "utf-32": 4}.get(codec[0][:6], 1) if codec else 1
    for hit in hits:
        where: tuple[int | None, int | None] = (None, None)
        if codec is not None and hit.offset >= position and (hit.offset - position) % width == 0:
            segment = data[position : hit.offset].decode(codec[0], "replace")
            breaks = segment.count("\n")
            line += breaks
            column = (len(segment) - segment.rfind("\n")) if breaks else column + len(segment)
            position = hit.offset
            where = (line, column)
        encoding = "/".join(hit.layers) or "plain"
        findings.append(Finding(path, *where, hit.offset, encoding, hit.key))
    return findings
