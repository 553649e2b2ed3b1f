"""One embedded MLflow store (sqlite + artifact folder) shared by the tracking tests."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tracking.run_record import PipelineRunRecord, Registration
from tracking.store import TrackingTarget, connect, experiment_id, local_target

_names = itertools.count()


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> TrackingTarget:
    return local_target(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="session")
def client(target: TrackingTarget):
    return connect(target)


@pytest.fixture
def experiment(client, target: TrackingTarget) -> str:
    return experiment_id(client, target, f"use-case-{next(_names)}")


@pytest.fixture
def model_name() -> str:
    """A fresh registered-model name per test, so tests do not see each other's versions."""
    return f"model_{next(_names)}"


def pushed_version(root: Path, serving_version: str) -> Path:
    """A stand-in for a pushed version folder (the registry copies files; it does not load them)."""
    folder = root / serving_version
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph " + serving_version.encode())
    return folder


def make_record(key: str, registration: Registration | None = None) -> PipelineRunRecord:
    return PipelineRunRecord(
        run_key=key, run_name=f"run {key}", params={"config.training.seed": "42", "config_sha256": "ab" * 32},
        metrics={"eval.auc": 0.97, "gate.auc.lower_bound": 0.9},
        metric_history={"train.loss": [(0, 0.7), (1, 0.4)], "validation.loss": [(0, 0.6), (1, 0.5)]},
        tags={"blessed": "yes", "pipeline_run_id": key}, json_artifacts={"evaluation/metrics.json": {"auc": 0.97}},
        registration=registration)
