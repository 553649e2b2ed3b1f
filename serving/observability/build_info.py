"""What is running, for ``esteira_build_info{version, git_commit, tensorflow_version} 1``.

Read once at start, without importing TensorFlow or running git: the installed package versions
(importlib.metadata), and the commit from ``ESTEIRA_GIT_COMMIT`` (set it when building an image, which
holds no ``.git``), else from the source tree's ``.git``, else ``unknown``.
"""
from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
_SHA = re.compile(r"^[0-9a-f]{40}$")


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def git_commit(start: Path | None = None) -> str:
    """``ESTEIRA_GIT_COMMIT``, else the commit ``HEAD`` names in the nearest ``.git`` above ``start``
    (default: this package's folder)."""
    start = start or Path(__file__).resolve().parent
    given = os.environ.get("ESTEIRA_GIT_COMMIT", "").strip()
    if given:
        return given[:40]
    for folder in (start, *start.parents):
        git = folder / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        if git.is_dir():
            return _resolve(git)
    return UNKNOWN


def _resolve(git: Path) -> str:
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return UNKNOWN
    if _SHA.match(head):
        return head  # detached
    ref = head.removeprefix("ref: ").strip()
    common = Path((git / "commondir").read_text().strip()) if (git / "commondir").is_file() else None
    for root in (git, (git / common) if common else None):
        if root is None:
            continue
        loose = root / ref
        if loose.is_file():
            sha = loose.read_text().strip()
            return sha if _SHA.match(sha) else UNKNOWN
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and _SHA.match(sha):
                    return sha
    return UNKNOWN


def build_labels() -> tuple[str, str, str]:
    """(version, git_commit, tensorflow_version), the label values of ``esteira_build_info``."""
    return package_version("esteira"), git_commit(), package_version("tensorflow")
