"""Content fingerprints of input data: SHA-256 of the bytes, so a re-touched file keeps its digest."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import IO

Opener = Callable[[str], IO[bytes]]
_CHUNK = 1 << 20


def sha256_file(path: str, opener: Opener | None = None) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB chunks (any size, bounded memory)."""
    digest = hashlib.sha256()
    with (opener or _open_binary)(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def combined_sha256(file_digests: Iterable[str]) -> str:
    """One digest for a set of files: SHA-256 of their sorted hex digests, one per line.

    Sorting makes it depend on the contents only, not on file names, paths or listing order.
    """
    lines = "".join(f"{d}\n" for d in sorted(file_digests))
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


def _open_binary(path: str) -> IO[bytes]:
    return open(path, "rb")
