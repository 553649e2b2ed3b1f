"""What the Airflow tests share: a workspace whose configs, data and outputs live in a temporary folder,
``airflow`` commands from .venv-airflow against that folder's own metadata database, and ``dvc``."""
from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration.airflow_local import AIRFLOW_VENV, AirflowSettings, environment
from orchestration.pipeline_dag import CONFIGS_ENV, HOME_ENV, RETRIES_ENV

REPO = Path(__file__).resolve().parents[2]
DVC = AIRFLOW_VENV / "bin" / "dvc"
# The latency budget is raised: these tests check orchestration on a shared machine, not serving speed.
FEW_STEPS = {"training": {"train_steps": 100, "eval_steps": 5},
             "model_validation": {"sample_size": 5, "latency_budget_ms": 5000}}
PSEUDONYM_KEY = "airflow-test-key-" + "k" * 32


@dataclass
class Workspace:
    root: Path
    config_path: Path
    settings: AirflowSettings
    extra_configs: list[Path] = field(default_factory=list)

    def airflow(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        binary = AIRFLOW_VENV / "bin" / "airflow"
        assert binary.exists(), "no .venv-airflow: run `make airflow-install` (.ci/run does)"
        result = subprocess.run([str(binary), *args], env=environment(self.settings), cwd=self.root,
                                capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, \
                f"airflow {' '.join(args)} exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}"
        return result

    def task_states(self, dag_id: str) -> dict[str, str]:
        """Each task's state in the DAG's only run, from Airflow's metadata database (``airflow dags test``
        runs a DAG without registering it, so the CLI's run listings do not show it)."""
        database = self.settings.state_dir / "airflow.db"
        with contextlib.closing(sqlite3.connect(database)) as connection:
            runs = connection.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchall()
            assert len(runs) == 1, runs
            rows = connection.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                      (dag_id, runs[0][0])).fetchall()
        return dict(rows)


def dvc(cwd: Path, *args: str) -> None:
    assert DVC.exists(), "no .venv-airflow: run `make airflow-install` (.ci/run does)"
    # DVC starts slowly (seconds of imports); on a loaded 2-core machine a niced `dvc add` took over 120 s
    result = subprocess.run([str(DVC), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"dvc {' '.join(args)}: {result.stdout}{result.stderr}"


def _write_config(root: Path, name: str, data: dict, overrides: dict) -> Path:
    data["optimization"] = None
    for section, values in overrides.items():
        data[section] = values if data.get(section) is None else {**data[section], **values}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_fraud_config(root: Path, days: int) -> Path:
    """The fraud config on a small simulated month's first ``days`` days (span 1 = 2024-01-01), a four-day
    time split, few steps; k-anonymity off (a few hundred customers make small groups, not under test)."""
    subprocess.run([sys.executable, "-m", "cli", "data", "fraud", "--transactions", "1500", "--days",
                    str(days), "--seed", "7", "--out", "data/fraud"], cwd=root, check=True, capture_output=True)
    data = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    data["privacy"]["k_anonymity"] = None
    split = {"kind": "time", "train_days": 2, "delay_days": 1, "eval_days": 1, "end_span": None}
    return _write_config(root, "fraud", data, {**FEW_STEPS, "data": {"split": split}})


def make_workspace(root: Path, overrides: dict | None = None, extra_configs: list[Path] | None = None) -> Workspace:
    """The breast-cancer config without the TFLite optimizer and with few steps, its data written under root;
    ``extra_configs`` become DAGs of the same Airflow home."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    config_path = _write_config(root, "breast_cancer", data, {**FEW_STEPS, **(overrides or {})})
    subprocess.run([sys.executable, "-m", "cli", "data", "breast-cancer", "--out", "data/breast_cancer"],
                   cwd=root, check=True, capture_output=True)
    configs = [config_path, *(extra_configs or [])]
    settings = AirflowSettings(root / "airflow", dag_environment={
        HOME_ENV: str(root), CONFIGS_ENV: ":".join(map(str, configs)), RETRIES_ENV: "0",
        "ESTEIRA_PSEUDONYM_KEY": PSEUDONYM_KEY})
    settings.state_dir.mkdir()
    return Workspace(root, config_path, settings, list(extra_configs or []))
