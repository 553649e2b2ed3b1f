"""A pipeline run SIGKILLed inside Transform, a rerun SIGKILLed inside the Evaluator, then one SIGKILLed inside
the Pusher (the breast-cancer config of the e2e tests with fewer training steps), then run to the end: the last
run takes what finished before from the cache, pushes exactly the bytes the Trainer wrote, and no kill left a
partial version under the serving base path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.serving_pusher.executor import directory_digest
from evidence import lineage
from pipeline.report import load_report
from tests.e2e.test_breast_cancer_pipeline import Workspace, esteira, make_workspace, versions

LEAN = {"training": {"train_steps": 30, "eval_steps": 5}}


def run_killed_inside(workspace: Workspace, component: str, after_seconds: float) -> list[str]:
    """``esteira run`` until ``component`` has been running ``after_seconds``, then SIGKILL its process group;
    the progress lines it printed."""
    process = subprocess.Popen([sys.executable, "-m", "cli", "run", "--config", str(workspace.config_path)],
                               cwd=workspace.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    seen: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("esteira: ["):
            seen.append(line.strip())
            if f"] {component} started" in line:
                time.sleep(after_seconds)
                os.killpg(process.pid, signal.SIGKILL)
                break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended before {component} started:\n" + "\n".join(seen)
    return seen


@pytest.mark.timeout(1200)
def test_killed_inside_transform_the_evaluator_and_the_pusher_the_rerun_pushes_the_trained_bytes(
        tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, LEAN)
    base = Path(workspace.config.serving.base_path)
    run_killed_inside(workspace, "Transform", 5.0)
    run_killed_inside(workspace, "Evaluator", 3.0)
    run_killed_inside(workspace, "Pusher", 0.0)
    assert versions(base) == []  # a Pusher killed while it wrote published nothing
    esteira(workspace.root, "run", "--config", str(workspace.config_path))
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    assert report.pushed and not report.failed, report.push_reason
    # finished before a kill: not redone (the Evaluator reruns: its baseline resolver is never cached)
    assert {"CsvExampleGen", "Transform", "Trainer"} <= set(report.cached)
    [version] = versions(base)
    assert [p.name for p in base.iterdir()] == [version.name]  # no staging copy left by the killed Pusher
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    pusher = next(e for e in report.executions if e.node == "Pusher")
    pushed = lineage.output_artifacts(store, pusher.execution_id, "pushed_model")[0]
    model = lineage.trace_pushed_model(store, pushed).model
    assert directory_digest(version) == directory_digest(Path(model.uri) / "Format-Serving")
