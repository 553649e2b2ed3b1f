"""Search stored outputs for raw personal values: evidence that PII never left ingestion.

Reads every file under a folder (gzip members decompressed too, as TFX writes tf.Examples) and,
for a sqlite database such as MLMD, its full SQL dump, and reports which values occur where.
"""
from __future__ import annotations

import gzip
import re
import sqlite3
from pathlib import Path


def find_values(root: Path, needles: set[str]) -> dict[str, set[str]]:
    """Relative path -> the needles found in that file under ``root`` (empty dict: none found)."""
    needles = {needle for needle in needles if needle}
    if not needles:
        return {}
    pattern = re.compile(b"|".join(re.escape(n.encode("utf-8")) for n in sorted(needles, key=len, reverse=True)))
    found: dict[str, set[str]] = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        contents = [data]
        if data[:2] == b"\x1f\x8b":
            try:
                contents.append(gzip.decompress(data))
            except (OSError, EOFError):
                pass  # not a complete gzip stream; the raw bytes are still searched
        hits = {m.group().decode("utf-8", "replace") for content in contents for m in pattern.finditer(content)}
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def sqlite_text(database: Path) -> str:
    """The database as SQL text, so values stored in any table or blob-free column are searchable."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return "\n".join(connection.iterdump())


def values_in_sqlite(database: Path, needles: set[str]) -> set[str]:
    text = sqlite_text(database)
    return {needle for needle in needles if needle and needle in text}
