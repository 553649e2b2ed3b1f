"""Production training inside the TFX Trainer: mirrored replicas, DP-SGD through Evaluator and Pusher,
the non-finite guard, and resuming after the Trainer process is SIGKILLed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evidence import lineage
from models.common.checkpointing import read_backup_state
from pipeline.config import load_config
from pipeline.report import load_report

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


class Workspace:
    """A breast-cancer use case under a temporary folder; each run can override config values."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
        self.base["training"].update(train_steps=60, eval_steps=5)
        self.base["evaluation"]["auc_lower_bound"] = 0.8
        self.base["optimization"] = None  # TFLite variants: tests/e2e/test_breast_cancer_pipeline.py
        # The runs here change how the model trains (replicas, DP noise), not what it should learn: a DP
        # model scored 0.946 against the mirrored run's 0.973, the expected cost of its noise, which the
        # default 0.01 change tolerance refuses. The floor above stays the gate these tests rely on.
        self.base["evaluation"]["auc_change_threshold"] = -0.05
        subprocess.run([sys.executable, "-m", "cli", "data", "breast-cancer", "--out",
                        "data/breast_cancer"], cwd=root, check=True, capture_output=True)

    def config_path(self, training: dict) -> Path:
        data = yaml.safe_load(yaml.safe_dump(self.base))
        data["training"].update(training)
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def command(self, training: dict) -> list[str]:
        return [sys.executable, "-m", "cli", "run", "--config", str(self.config_path(training))]

    def run(self, training: dict, expect_ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(training), cwd=self.root, capture_output=True, text=True, timeout=900)
        if expect_ok:
            assert result.returncode == 0, result.stderr[-4000:]
        return result

    def report(self):
        config = load_config(self.root / "config.yaml", base=self.root)
        return load_report(config.pipeline.metadata_path, config.pipeline.name)

    def model_properties(self) -> dict:
        report = self.report()
        trainer = next(e for e in report.executions if e.node == "Trainer")
        store = lineage.open_store(load_config(self.root / "config.yaml", base=self.root).pipeline.metadata_path)
        model = lineage.output_artifacts(store, trainer.execution_id, "model")[0]
        return {name: getattr(value, value.WhichOneof("value")) for name, value in model.custom_properties.items()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("training"))


def test_mirrored_with_two_logical_devices_inside_the_trainer(workspace: Workspace) -> None:
    workspace.run({"distribution": {"strategy": "mirrored", "num_replicas": 2}})
    properties = workspace.model_properties()
    assert properties["training_strategy"] == "mirrored"
    assert properties["training_num_replicas"] == 2
    assert workspace.report().pushed is True


def test_dp_model_passes_evaluator_and_pusher_with_epsilon_recorded(workspace: Workspace) -> None:
    result = workspace.run({"dp": {"enabled": True, "noise_multiplier": 0.8, "max_epsilon": 50.0}})
    properties = workspace.model_properties()
    report = workspace.report()
    assert properties["training_dp"] == 1
    assert 0.0 < properties["training_dp_epsilon"] < 50.0
    assert properties["training_dp_delta"] == pytest.approx(1e-5)
    assert [e.node for e in report.executions][-3:] == ["Pusher", "GovernanceReport", "MlflowLogger"]
    assert not report.failed
    governance = next(e for e in report.executions if e.node == "GovernanceReport")
    store = lineage.open_store(load_config(workspace.root / "config.yaml", base=workspace.root).pipeline.metadata_path)
    folder = Path(lineage.output_artifacts(store, governance.execution_id, "report")[0].uri)
    lgpd = json.loads((folder / "lgpd" / "lgpd_report.json").read_text())
    assert lgpd["training"]["dp_epsilon"] == properties["training_dp_epsilon"]  # the report's DP facts are MLMD's
    assert lgpd["training"]["dp_noise_multiplier"] == 0.8
    assert report.metrics["auc"] > 0.8  # TFMA loaded and scored the DP model
    assert "DP-SGD epsilon" in result.stdout


def test_privacy_budget_overrun_fails_with_both_numbers(workspace: Workspace) -> None:
    result = workspace.run({"dp": {"enabled": True, "noise_multiplier": 0.3, "max_epsilon": 1.0}}, expect_ok=False)
    assert result.returncode != 0
    assert "PrivacyBudgetExceeded" in result.stderr
    assert "max_epsilon" in result.stderr or "1.0" in result.stderr


def test_non_finite_guard_fails_the_trainer_naming_epoch_and_batch(workspace: Workspace) -> None:
    path = workspace.config_path({})
    data = yaml.safe_load(path.read_text())
    data["model"]["learning_rate"] = 1e38  # weights overflow to inf within a few steps
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "cli", "run", "--config", str(path)],
                            cwd=workspace.root, capture_output=True, text=True, timeout=900)
    assert result.returncode != 0
    assert "NonFiniteTrainingError" in result.stderr
    assert "epoch" in result.stderr and "batch" in result.stderr
    assert "FAILED: Trainer" in result.stdout


def test_trainer_killed_after_epoch_k_resumes_at_k(workspace: Workspace) -> None:
    epochs, steps_per_epoch = 8, 300
    training = {"epochs": epochs, "train_steps": epochs * steps_per_epoch}
    backup_root = workspace.root / "outputs/breast_cancer/pipeline/_trainer_backups"
    process = subprocess.Popen(workspace.command(training), cwd=workspace.root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            states = [read_backup_state(str(d)) for d in backup_root.glob("*")] if backup_root.is_dir() else []
            if any(state and state.epochs_completed >= 2 for state in states):
                break
            time.sleep(0.1)
        assert process.poll() is None, "training finished before it could be killed; make epochs longer"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    killed_at = max(read_backup_state(str(d)).epochs_completed for d in backup_root.glob("*")
                    if read_backup_state(str(d)))
    assert 2 <= killed_at < epochs

    workspace.run(training)
    properties = workspace.model_properties()
    assert properties["training_resumed_from_epoch"] == killed_at
    assert properties["training_steps"] == epochs * steps_per_epoch
    assert not any(backup_root.glob("*")), "the backup must be removed after a successful export"
