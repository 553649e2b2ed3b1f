"""The fraud workspace both fraud e2e modules start from: simulated data and a first pushed version."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import UseCaseConfig, load_config
from pipeline.report import RunReport, load_report

REPO = Path(__file__).resolve().parents[2]
FRAUD_KEY = "e2e-fraud-key-" + "k" * 50
FRAUD_ACTOR = "e2e-auditor"


@dataclass
class FraudWorkspace:
    root: Path
    env: dict[str, str]
    config_path: Path
    config: UseCaseConfig
    first_report: RunReport
    first_stdout: str


def esteira_fraud(workspace_root: Path, env: dict[str, str], *args: str,
                  timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=workspace_root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def make_fraud_workspace(root: Path) -> FraudWorkspace:
    """Simulated data (3 days, 24,000 transactions) and a first run that pushes a blessed version."""
    env = dict(os.environ, ESTEIRA_PSEUDONYM_KEY=FRAUD_KEY, ESTEIRA_ACTOR=FRAUD_ACTOR)
    data = esteira_fraud(root, env, "data", "fraud", "--transactions", "24000", "--days", "3", "--seed", "11",
                         "--out", "data/fraud", "--no-progress")
    assert data.returncode == 0, data.stderr[-2000:]
    doc = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    doc["training"].update(train_steps=150, eval_steps=5, epochs=1)
    # A few hundred steps on 3 small days; the floor still gates. A later retrain must push, not compete.
    doc["evaluation"].update(auc_lower_bound=0.9, auc_change_threshold=-0.5)
    doc["governance"]["access_audit_logs"] = ["audit/serving-audit.log"]
    config_path = root / "fraud.yaml"
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = esteira_fraud(root, env, "run", "--config", str(config_path))
    assert run.returncode == 0, run.stderr[-4000:]
    config = load_config(config_path, base=root)
    return FraudWorkspace(root, env, config_path, config,
                          load_report(config.pipeline.metadata_path, config.pipeline.name), run.stdout)
