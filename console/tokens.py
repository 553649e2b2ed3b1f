"""Sign-in tokens for a local console: one reviewer and one approver, generated once, kept out of git.

The files have the model server's token format (``caller:token`` per line, `console/access.py`), so
a team replaces them with its own callers without touching the console.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from console.access import APPROVER, REVIEWER


@dataclass(frozen=True)
class TokenFiles:
    reviewer: Path
    approver: Path
    created: bool  # False: both files existed and were kept as they are


def ensure_token_files(folder: Path) -> TokenFiles:
    """``<folder>/console-reviewers.tokens`` and ``console-approvers.tokens``, created (mode 600) if missing."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {role: folder / f"console-{role}s.tokens" for role in (REVIEWER, APPROVER)}
    created = False
    for role, path in files.items():
        if path.exists():
            continue
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as sink:
            sink.write(f"{role}:{secrets.token_urlsafe(24)}\n")
        created = True
    return TokenFiles(files[REVIEWER], files[APPROVER], created)


def first_token(path: Path) -> tuple[str, str]:
    """(caller, token) of the file's first entry, to print how to sign in."""
    for line in path.read_text().splitlines():
        caller, _, token = line.strip().partition(":")
        if caller and token and not caller.startswith("#"):
            return caller, token
    raise ValueError(f"{path} holds no caller:token line; delete it and run `make console` again")
