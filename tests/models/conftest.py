"""Test setup for every model test: Keras 2, and two logical CPUs declared before TF initialises.

Logical devices can only be declared before TensorFlow initialises its devices, so this happens
at import time, before any test (in this directory or elsewhere in the same session) runs a TF
op. Tests that need a single device simply use the default strategy (/cpu:0); tests that need
two replicas use the `mirrored` fixture (MirroredStrategy over /cpu:0 and /cpu:1)."""

from __future__ import annotations

import os

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from models.common.strategy import StrategyConfigError, configure_logical_cpus

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
                    "pytest tests/models")
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
