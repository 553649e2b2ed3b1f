"""Test setup for models/common: tests that need separate processes (multi-worker, SIGKILL) start
them from `tests/models/common/scripts/`. Logical CPUs and the 2-replica strategy: tests/models/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def script_env() -> dict[str, str]:
    """Environment for the helper scripts: Keras 2, quiet TF, the repository importable."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture
def script_command() -> Callable[..., list[str]]:
    """The command line that runs scripts/<name> with this interpreter."""
    return lambda name, *args: [sys.executable, str(SCRIPTS / name), *map(str, args)]


@pytest.fixture
def run_script(script_env: dict[str, str], script_command) -> Callable[..., None]:
    """Run scripts/<name> to completion; fail with its stderr tail if it fails or hangs."""

    def run(name: str, *args: object, timeout: float = 120) -> None:
        try:
            done = subprocess.run(
                script_command(name, *args), env=script_env, capture_output=True, text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:  # run() has killed the child already
            raise AssertionError(f"{name} did not finish within {timeout} s") from error
        assert done.returncode == 0, f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}"

    return run
