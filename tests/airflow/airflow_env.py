"""What the Airflow tests share: a workspace whose breast-cancer config, data and outputs live in a temporary
folder, and ``airflow`` commands from .venv-airflow against that folder's own metadata database."""
from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestration.airflow_local import AIRFLOW_VENV, AirflowSettings, environment
from orchestration.pipeline_dag import CONFIGS_ENV, HOME_ENV, RETRIES_ENV

REPO = Path(__file__).resolve().parents[2]
FEW_STEPS = {"training": {"train_steps": 100, "eval_steps": 5}, "model_validation": {"sample_size": 5}}


@dataclass
class Workspace:
    root: Path
    config_path: Path
    settings: AirflowSettings

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


def make_workspace(root: Path, overrides: dict | None = None) -> Workspace:
    """The breast-cancer config without the TFLite optimizer and with few steps, its data written under root."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    data["optimization"] = None
    for section, values in {**FEW_STEPS, **(overrides or {})}.items():
        data[section].update(values)
    config_path = root / "breast_cancer.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    subprocess.run([sys.executable, "-m", "cli", "data", "breast-cancer", "--out", "data/breast_cancer"],
                   cwd=root, check=True, capture_output=True)
    settings = AirflowSettings(root / "airflow", dag_environment={
        HOME_ENV: str(root), CONFIGS_ENV: str(config_path), RETRIES_ENV: "0"})
    settings.state_dir.mkdir()
    return Workspace(root, config_path, settings)
