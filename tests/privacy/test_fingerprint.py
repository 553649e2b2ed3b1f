"""Content fingerprints: bytes, not mtimes or names."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from privacy.fingerprint import combined_sha256, sha256_file


def test_file_digest_is_sha256_of_content(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    data = b"x,y\n" + b"1,2\n" * 500_000  # larger than one read chunk
    path.write_bytes(data)
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_touching_a_file_does_not_change_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x\n1\n")
    before = sha256_file(str(path))
    os.utime(path, (1, 1))
    assert sha256_file(str(path)) == before


def test_combined_digest_ignores_order_but_not_content() -> None:
    a, b, c = (hashlib.sha256(s).hexdigest() for s in (b"a", b"b", b"c"))
    assert combined_sha256([a, b]) == combined_sha256([b, a])
    assert combined_sha256([a, b]) != combined_sha256([a, c])
    assert combined_sha256([a]) != combined_sha256([a, a])
