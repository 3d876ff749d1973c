"""Leak scanner throughput: MB/s of ``Scanner.scan`` over a generated tree.

Generates (once, reproducibly from a seed) a tree of source-like text with
what real repositories hold that makes the scanner decode: URLs with
``%XX``, JSON with ``\\u`` escapes and ``\\/``, lock files with base64 and hex
hashes, a few UTF-16 files, gzip files and binaries (random bytes with NULs).
A handful of keys are planted, plain and encoded, and the report says how many
were found. Then it times ``Scanner(use_git=False).scan([tree])`` and prints
MB/s (total bytes of the tree over the best wall time of the rounds, and
over the best CPU time, the steadier figure on a shared machine).

    .venv/bin/python bench/scan.py [--megabytes 200] [--rounds 3] [--tree DIR] [--json]

The tree defaults to ``$TMPDIR/keyplane-scan-bench-<megabytes>``; it is
reused if it is there (delete it to regenerate). Only the API the scanner has
had since it was written is used, so the same script measures older versions.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from keyplane.client.scan import Scanner
from keyplane.core.keys import KeyFormat

FILE_BYTES = (4_000, 120_000)
WORDS = [
    "def",
    "return",
    "import",
    "from",
    "class",
    "self",
    "value",
    "key",
    "token",
    "client",
    "request",
    "response",
    "data",
    "config",
    "settings",
    "error",
    "result",
    "items",
    "index",
    "count",
    "user",
    "project",
    "scope",
    "name",
    "path",
    "file",
    "async",
    "await",
    "raise",
    "None",
    "True",
    "False",
    "for",
    "while",
    "if",
    "else",
    "elif",
    "try",
    "except",
    "with",
    "yield",
]


@dataclass
class Report:
    megabytes: float
    files: int
    planted: int
    found: int
    best_seconds: float
    megabytes_per_second: float
    #: On CPU time, which other processes on a busy machine do not inflate.
    best_cpu_seconds: float
    megabytes_per_cpu_second: float


def source_line(rng: random.Random) -> str:
    kind = rng.random()
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10)))
    if kind < 0.05:
        return f'    url = "https://example.com/search?q={words.replace(" ", "%20")}&page=2"'
    if kind < 0.08:
        return f'    {{"message": "caf\\u00e9 {words}", "link": "https:\\/\\/example.com\\/a"}},'
    if kind < 0.11:
        digest = base64.b64encode(rng.randbytes(64)).decode()
        return f'      "integrity": "sha512-{digest}",'
    if kind < 0.13:
        return f'    sha256 = "{rng.randbytes(32).hex()}"'
    if kind < 0.20:
        return f"    # {words.capitalize()}."
    indent = " " * (4 * rng.randint(0, 3))
    return f"{indent}{rng.choice(WORDS)}_{rng.choice(WORDS)} = {words.replace(' ', '(', 1)})"


def text_file(rng: random.Random, size: int) -> bytes:
    lines, total = [], 0
    while total < size:
        line = source_line(rng)
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def planted(key: str, how: int) -> bytes:
    if how == 0:
        return f"API_KEY = '{key}'\n".encode()
    if how == 1:
        return f"  token: {base64.b64encode(key.encode()).decode()}\n".encode()
    if how == 2:
        return f"KEY={key}\r\n".encode("utf-16-le")
    return f'{{"key": "\\u006b{key[1:]}"}}\n'.encode()


def generate(tree: Path, megabytes: float, seed: int = 11) -> tuple[int, int]:
    """Write the tree; return (files, keys planted)."""
    rng = random.Random(seed)
    budget, files, keys = int(megabytes * 1_000_000), 0, 0
    while budget > 0:
        size = min(budget, rng.randint(*FILE_BYTES))
        directory = tree / f"pkg{files % 97:02d}" / f"mod{files % 13:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if roll < 0.08:
            name, data = f"blob{files}.bin", rng.randbytes(size)
        elif roll < 0.10:
            name, data = f"notes{files}.txt", text_file(rng, size // 2).decode().encode("utf-16")
        elif roll < 0.12:
            name, data = f"archive{files}.gz", gzip.compress(text_file(rng, size * 3), 6)
        else:
            name, data = f"module{files}.py", text_file(rng, size)
        if files % 500 < 4:  # one of each way of planting, every 500 files
            data += planted(KeyFormat().generate().reveal(), keys % 4)
            keys += 1
        (directory / name).write_bytes(data)
        budget -= len(data)
        files += 1
    return files, keys


def tree_size(tree: Path) -> tuple[int, int]:
    sizes = [path.stat().st_size for path in tree.rglob("*") if path.is_file()]
    return len(sizes), sum(sizes)


def run(tree: Path, megabytes: float, rounds: int) -> Report:
    marker = tree / ".planted"
    if not marker.exists():
        tree.mkdir(parents=True, exist_ok=True)
        _, keys = generate(tree, megabytes)
        marker.write_text(str(keys))
    keys = int(marker.read_text())
    files, total = tree_size(tree)
    scanner = Scanner(max_bytes=1 << 30, use_git=False)
    best, best_cpu, found = float("inf"), float("inf"), 0
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        report = scanner.scan([tree])
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
        found = len(report.findings)
    return Report(
        megabytes=round(total / 1e6, 1),
        files=files,
        planted=keys,
        found=found,
        best_seconds=round(best, 2),
        megabytes_per_second=round(total / 1e6 / best, 1),
        best_cpu_seconds=round(best_cpu, 2),
        megabytes_per_cpu_second=round(total / 1e6 / best_cpu, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    default_tree = Path(tempfile.gettempdir()) / f"keyplane-scan-bench-{options.megabytes:g}"
    tree = options.tree or default_tree
    report = run(tree, options.megabytes, options.rounds)
    if options.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.megabytes} MB in {report.files} files: best of {options.rounds} rounds "
            f"{report.best_seconds} s, {report.megabytes_per_second} MB/s "
            f"({report.megabytes_per_cpu_second} MB per CPU second); "
            f"found {report.found} of {report.planted} planted keys"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
