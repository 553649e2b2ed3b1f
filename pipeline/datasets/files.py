"""Writing data files so that a rerun with the same content changes nothing on disk.

ExampleGen's input fingerprint includes each file's modification time, so a data command that rewrote
an identical file would make the whole pipeline rerun and publish a version that differs from the
last in nothing. Files are written beside their target and moved into place only when their bytes differ.
"""
from __future__ import annotations

import filecmp
import re
import shutil
from pathlib import Path

_SPAN_FOLDER = re.compile(r"span-(\d+)")


def publish(partial: Path, target: Path) -> bool:
    """Move the complete ``partial`` onto ``target`` (atomically) unless ``target`` already holds the same
    bytes; return whether ``target`` changed. A reader sees the old file or the new one, never half of one."""
    if target.is_file() and filecmp.cmp(partial, target, shallow=False):
        partial.unlink()
        return False
    partial.replace(target)
    return True


def write_text(target: Path, text: str) -> bool:
    """`publish` for text built in memory."""
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    return publish(partial, target)


def remove_spans_after(out_dir: Path, last_span: int) -> list[Path]:
    """Remove ``span-NNNN`` folders numbered above ``last_span`` (a rerun with fewer days must not leave an
    earlier run's later days behind); the spans a rerun rewrites stay, to be replaced only if they change."""
    removed = []
    for folder in sorted(out_dir.glob("span-*")) if out_dir.is_dir() else []:
        match = _SPAN_FOLDER.fullmatch(folder.name)
        if match and int(match.group(1)) > last_span:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
