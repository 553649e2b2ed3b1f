"""The benchmark's own KServe environment: a virtualenv beside this file, never the project's.

KServe pins its own FastAPI/uvicorn/pydantic stack, so it gets a separate virtualenv with a pinned
kserve and the same TensorFlow release as the project (the same runtime executes the same graph).
Created on first use from PyPI and reused while its pins match; the install time is reported.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

KSERVE_VERSION = "0.21.0"
VENV = Path(__file__).resolve().parent / ".kserve-venv"


def pins() -> list[str]:
    """kserve at the pinned release, TensorFlow at the release this project runs."""
    return [f"kserve=={KSERVE_VERSION}", f"tensorflow=={metadata.version('tensorflow')}"]


def _installed(python: Path) -> list[str] | None:
    """The environment's kserve and tensorflow pins, or None if it has none (missing or broken)."""
    probe = "from importlib import metadata as m; print(m.version('kserve'), m.version('tensorflow'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    kserve, tensorflow = done.stdout.split()
    return [f"kserve=={kserve}", f"tensorflow=={tensorflow}"]


def ensure_kserve_env() -> tuple[Path, dict]:
    """The environment's python and how it was obtained ({"reused": bool, "install_s": float, "pins": [...]}).

    Uses uv from the project's environment when there (seconds with a warm cache), else venv + pip."""
    python = VENV / "bin" / "python"
    wanted = pins()
    if python.exists() and _installed(python) == wanted:
        return python, {"reused": True, "install_s": 0.0, "pins": wanted}
    shutil.rmtree(VENV, ignore_errors=True)
    started = time.monotonic()
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        commands = [[str(uv), "venv", "-q", "--python", sys.executable, str(VENV)],
                    [str(uv), "pip", "install", "-q", "--python", str(python), *wanted]]
    else:
        commands = [[sys.executable, "-m", "venv", str(VENV)],
                    [str(python), "-m", "pip", "install", "-q", *wanted]]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"could not install KServe's environment ({' '.join(command)}):\n{done.stderr[-2000:]}\n"
                     f"Check that PyPI is reachable, or delete {VENV} and run again.")
    if _installed(python) != wanted:
        sys.exit(f"{VENV} does not import {', '.join(wanted)} after install; delete it and run again.")
    return python, {"reused": False, "install_s": round(time.monotonic() - started, 1), "pins": wanted}
