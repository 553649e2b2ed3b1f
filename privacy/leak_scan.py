"""Search stored outputs for raw personal values: evidence that PII never left ingestion.

Reads every file under a folder (gzip members decompressed too, as TFX writes tf.Examples) and,
for a sqlite database such as MLMD, its full SQL dump, and reports which values occur where.
"""
from __future__ import annotations

import contextlib
import gzip
import re
import sqlite3
from pathlib import Path


def find_values(root: Path, needles: set[str]) -> dict[str, set[str]]:
    """Relative path -> the needles found in that file under ``root`` (empty dict: none found)."""
    needles = {needle for needle in needles if needle}
    if not needles:
        return {}
    pattern = trie_pattern({needle.encode("utf-8") for needle in needles})
    found: dict[str, set[str]] = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        contents = [data]
        if data[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError):  # not a complete gzip stream: the raw bytes are still searched
                contents.append(gzip.decompress(data))
        hits = {m.group().decode("utf-8", "replace") for content in contents for m in pattern.finditer(content)}
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def trie_pattern(needles: set[bytes]) -> re.Pattern[bytes]:
    """One regex shaped as a prefix trie of the needles: tens of thousands of values cost a few
    steps per byte, where a flat alternation would try every value at every position."""
    trie: dict = {}
    for needle in needles:
        node = trie
        for byte in needle:
            node = node.setdefault(byte, {})
        node[None] = True  # a needle ends here

    def build(node: dict) -> bytes:
        ends = None in node
        branches = [re.escape(bytes([byte])) + build(child) for byte, child in sorted(
            (k, v) for k, v in node.items() if k is not None)]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        # Longest match first; an ending here may still be followed by a longer needle.
        return b"(?:" + body + b")?" if ends else body

    return re.compile(build(trie))


def sqlite_text(database: Path) -> str:
    """The database as SQL text, so values stored in any table or blob-free column are searchable."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return "\n".join(connection.iterdump())


def values_in_sqlite(database: Path, needles: set[str]) -> set[str]:
    text = sqlite_text(database)
    return {needle for needle in needles if needle and needle in text}
