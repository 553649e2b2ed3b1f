"""Test setup for models/common: Keras 2, and two logical CPUs declared before TF initialises.

Logical devices can only be declared before TensorFlow initialises its devices, so this happens
at import time, before any test (in this directory or elsewhere in the same session) runs a TF
op. Tests that need a single device simply use the default strategy (/cpu:0); tests that need
two replicas use `MirroredStrategy` over /cpu:0 and /cpu:1. Tests that need separate processes
(multi-worker, SIGKILL) start them from `tests/models/common/scripts/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from models.common.strategy import StrategyConfigError, configure_logical_cpus  # noqa: E402

REPLICAS = 2

try:
    configure_logical_cpus(REPLICAS)
    _DEVICE_ERROR: Exception | None = None
except StrategyConfigError as error:  # something in this session ran TF before this file
    _DEVICE_ERROR = error
assert tf.keras.__name__.startswith("tf_keras"), "Keras 2 (tf-keras) is required: set TF_USE_LEGACY_KERAS=1"


@pytest.fixture(scope="session")
def mirrored() -> tf.distribute.MirroredStrategy:
    """One 2-replica strategy per session: collective keys restart with every new instance."""
    if _DEVICE_ERROR is not None:
        pytest.fail(f"2-replica tests need 2 logical CPUs: {_DEVICE_ERROR} Run them on their own: "
                    "pytest tests/models/common")
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])


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
