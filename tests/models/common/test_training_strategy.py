"""Strategies from config, and errors that say how to fix a wrong setup."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from models.common.strategy import (
    StrategyConfigError,
    build_strategy,
    configure_logical_cpus,
    is_chief,
    read_tf_config,
    worker_output_dir,
)


def test_none_is_the_default_single_device_strategy() -> None:
    strategy = build_strategy("none")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1 and is_chief(strategy)
    assert worker_output_dir("/out/model", strategy) == "/out/model"


@pytest.mark.parametrize("replicas", [1, 2])
def test_mirrored_uses_one_logical_cpu_per_replica(replicas: int) -> None:
    strategy = build_strategy("mirrored", replicas)
    assert strategy.num_replicas_in_sync == replicas
    devices = [d.split("/")[-1] for d in strategy.extended.worker_devices]
    assert devices == [f"device:CPU:{i}" for i in range(replicas)]


def test_mirrored_on_one_machine_is_its_own_chief(mirrored) -> None:
    assert is_chief(mirrored)
    assert worker_output_dir("/out/model", mirrored) == "/out/model"


def test_too_late_for_more_logical_cpus_names_the_fix() -> None:
    configure_logical_cpus(2)  # what the process already has: accepted
    with pytest.raises(StrategyConfigError, match=r"configure_logical_cpus\(3\) at the start"):
        build_strategy("mirrored", 3)


def test_unknown_kind_lists_the_allowed_ones() -> None:
    with pytest.raises(StrategyConfigError, match="allowed values: none, mirrored, multi_worker"):
        build_strategy("parameter_server")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "no 'cluster'"),
        (json.dumps({"cluster": {"worker": ["h:1"]}}), "no 'task'"),
        (
            json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}),
            "worker:1 is not in its cluster",
        ),
    ],
)
def test_bad_tf_config_is_explained(monkeypatch, tf_config: str | None, message: str) -> None:
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(StrategyConfigError, match=message):
        build_strategy("multi_worker")


def test_valid_tf_config_is_returned(monkeypatch) -> None:
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert read_tf_config() == config
