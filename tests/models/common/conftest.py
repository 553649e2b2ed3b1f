"""Test setup for models/common: Keras 2, and two logical CPUs declared before TF initialises.

Logical devices can only be declared before TensorFlow initialises its devices, so this happens
at import time, before any test (in this directory or elsewhere in the same session) runs a TF
op. Tests that need a single device simply use the default strategy (/cpu:0); tests that need
two replicas use `MirroredStrategy` over /cpu:0 and /cpu:1. Tests that need separate processes
(multi-worker, SIGKILL) start them from `tests/models/common/scripts/`.
"""

from __future__ import annotations

import os

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from models.common.strategy import configure_logical_cpus  # noqa: E402

REPLICAS = 2

# Fails with an explanation (StrategyConfigError) if something initialised TF earlier.
configure_logical_cpus(REPLICAS)
assert tf.keras.__name__.startswith("tf_keras"), "Keras 2 (tf-keras) is required: set TF_USE_LEGACY_KERAS=1"


@pytest.fixture(scope="session")
def mirrored() -> tf.distribute.MirroredStrategy:
    """One 2-replica strategy per session: collective keys restart with every new instance."""
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
