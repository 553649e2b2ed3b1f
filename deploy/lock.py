"""requirements.lock as hashed blocks, and the wheels whose only build needs a newer glibc.

Both the virtualenv install (scripts/install_lock.py) and the image wheelhouses read the lock here,
so a package is installed from the same pinned, hash-checked file wherever it lands. Stdlib only:
the install script runs it before anything else is installed.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

# ml-metadata and tensorflow-data-validation 1.21 publish Linux wheels only for glibc >= 2.39.
NEEDS_GLIBC_2_39 = ("ml-metadata", "tensorflow-data-validation")
NEWER_GLIBC_TAG = "manylinux_2_39_x86_64"


def canonical(name: str) -> str:
    """PEP 503 name: `Tf_Keras` and `tf-keras` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_blocks(text: str) -> dict[str, str]:
    """Split a hashed lock into {canonical package name: its requirement block}."""
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
        if match:
            name = canonical(match.group(1))
            blocks[name] = line + "\n"
        elif name and line.startswith(" "):
            blocks[name] += line + "\n"
        else:
            name = None
    return blocks


def pinned_version(block: str) -> str:
    pinned = re.match(r"^[^=]+==([^ \\\n]+)", block)
    if pinned is None:
        raise ValueError(f"not a pinned requirement: {block.splitlines()[0]!r}; run `make lock`")
    return pinned.group(1)


def download_newer_glibc_wheel(name: str, block: str, wheelhouse: Path) -> Path:
    """Fetch the manylinux_2_39 wheel, check it against the lock's hashes, and return a copy tagged
    ``linux_x86_64`` (same bytes, so the same hash) that pip on an older glibc accepts."""
    version = pinned_version(block)
    allowed = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    wheelhouse.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--no-cache-dir", "--platform", NEWER_GLIBC_TAG, "--python-version", "3.11",
                    "--implementation", "cp", "-d", str(wheelhouse), f"{name}=={version}"], check=True)
    wheel = next(wheelhouse.glob(f"{name.replace('-', '_')}-{version}-*{NEWER_GLIBC_TAG}.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest not in allowed:
        sys.exit(f"{wheel.name} has sha256 {digest}, which requirements.lock does not list; "
                 "refusing to install it (re-lock with `make lock` if the upgrade is intended)")
    local = wheelhouse / "local" / wheel.name.replace(NEWER_GLIBC_TAG, "linux_x86_64")
    local.parent.mkdir(exist_ok=True)
    local.write_bytes(wheel.read_bytes())
    return local
