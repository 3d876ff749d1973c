"""The leak scanner: find Keyplane keys in files and git work trees.

A candidate must match the key pattern of a prefix **and** carry a valid
CRC32 checksum (``keyplane.core.keys``), so lookalikes, placeholders and
made-up keys are ignored and a match is almost surely a real key. Findings
hold the key's hint for display; the value stays inside the :class:`SecretKey`.

In a git work tree only the files git tracks, or would track (not ignored),
are read: a ``.env`` listed in ``.gitignore`` is where a key belongs. Binary
files (a NUL byte in the first 8 KiB) and files over ``max_bytes`` are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from keyplane.core.keys import DEFAULT_PREFIX, KeyFormat, SecretKey

DEFAULT_MAX_BYTES: Final = 2 * 1024 * 1024
_SNIFF_BYTES: Final = 8192
_SKIP_DIRECTORIES: Final = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    column: int
    key: SecretKey

    @property
    def hint(self) -> str:
        return self.key.hint

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.hint}"


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    files_scanned: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def unique_keys(self) -> list[SecretKey]:
        """Each key found once, in the order first seen."""
        seen: dict[str, SecretKey] = {}
        for finding in self.findings:
            seen.setdefault(finding.key.hash(), finding.key)
        return list(seen.values())


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

    def scan_text(self, text: str, path: str) -> Iterator[Finding]:
        """Every checksum-valid key in ``text``, with its 1-based line and column."""
        for key_format in self.formats:
            for match in key_format.pattern().finditer(text):
                value = match.group()
                if not key_format.is_key(value):
                    continue
                start = match.start()
                line = text.count("\n", 0, start) + 1
                column = start - (text.rfind("\n", 0, start) + 1) + 1
                yield Finding(path, line, column, key_format.parse(value))

    def scan(self, paths: Iterable[str | Path]) -> ScanReport:
        report = ScanReport()
        for path, shown in self._files(paths, report):
            findings = self._scan_file(path, shown, report)
            if findings is not None:
                report.files_scanned += 1
                report.findings.extend(sorted(findings, key=lambda item: (item.line, item.column)))
        return report

    def _scan_file(self, path: Path, shown: str, report: ScanReport) -> list[Finding] | None:
        try:
            if path.is_symlink() or not path.is_file():
                return None
            size = path.stat().st_size
            if size > self.max_bytes:
                report.skipped.append((shown, f"larger than {self.max_bytes} bytes"))
                return None
            data = path.read_bytes()
        except OSError as error:
            report.skipped.append((shown, error.strerror or type(error).__name__))
            return None
        if b"\x00" in data[:_SNIFF_BYTES]:
            return None  # binary
        return list(self.scan_text(data.decode("utf-8", errors="replace"), shown))

    def _files(self, paths: Iterable[str | Path], report: ScanReport) -> Iterator[tuple[Path, str]]:
        seen: set[Path] = set()
        for given in paths:
            root = Path(given)
            if not root.exists():
                report.skipped.append((str(given), "no such file or directory"))
                continue
            if root.is_file():
                candidates: Iterable[tuple[Path, str]] = [(root, str(given))]
            else:
                tracked = self._git_files(root) if self.use_git else None
                candidates = tracked if tracked is not None else self._walk(root)
            for path, shown in candidates:
                resolved = path.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    yield path, shown

    @staticmethod
    def _walk(root: Path) -> Iterator[tuple[Path, str]]:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = sorted(d for d in subdirectories if d not in _SKIP_DIRECTORIES)
            for name in sorted(files):
                path = Path(directory) / name
                yield path, str(path)

    @staticmethod
    def _git_files(root: Path) -> list[tuple[Path, str]] | None:
        """Files git tracks or would track under ``root``; None if it is not a git work tree."""
        git = shutil.which("git")
        if git is None:
            return None
        try:
            inside = subprocess.run(  # noqa: S603 - git, with fixed arguments
                [git, "-C", str(root), "rev-parse", "--is-inside-work-tree"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if inside.returncode != 0 or inside.stdout.strip() != b"true":
                return None
            listed = subprocess.run(  # noqa: S603 - git, with fixed arguments
                [
                    git,
                    "-C",
                    str(root),
                    "ls-files",
                    "-z",
                    "--cached",
                    "--others",
                    "--exclude-standard",
                ],
                capture_output=True,
                timeout=120,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        names = sorted(
            {name for name in listed.stdout.decode("utf-8", "replace").split("\0") if name}
        )
        return [(root / name, str(root / name)) for name in names]
