"""MLflow against a real `mlflow server`: runs and registered versions agree with MLMD, a cached rerun
adds nothing, a failed gate is logged but not registered, and promote/rollback drive a running
model server's stable/canary labels through the registry's champion/challenger aliases."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tensorflow as tf
import yaml

from components.model_validator.checks import free_port
from evidence import lineage
from pipeline.config import load_config
from pipeline.report import RunReport, load_report
from privacy.audit import read_records
from tests.e2e.test_breast_cancer_pipeline import FEW_STEPS, Workspace, esteira, make_workspace, versions

pytestmark = pytest.mark.e2e

MODEL = "breast_cancer"
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
              "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def wait_for(url: str, process: subprocess.Popen, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{process.stderr.read()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not answer {url} within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """Stop the process group the test started (the server's workers are its children)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{state / 'mlflow.db'}", "--artifacts-destination", str(state / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, **SERVER_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{uri}/health", process, "mlflow server")
        yield uri
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client(mlflow_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


@pytest.fixture(scope="module")
def workspace(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = make_workspace(tmp_path_factory.mktemp("tracked"), FEW_STEPS)
    data = yaml.safe_load(workspace.config_path.read_text())
    data["tracking"] = {"uri": mlflow_uri}
    workspace.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Workspace(workspace.root, workspace.config_path, load_config(workspace.config_path, base=workspace.root))


def run_pipeline(workspace: Workspace, *overrides: str) -> RunReport:
    env_free = [arg for item in overrides for arg in ("--set", item)]
    esteira(workspace.root, "run", "--config", str(workspace.config_path), *env_free)
    return load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)


@pytest.fixture(scope="module")
def first(workspace: Workspace) -> RunReport:
    return run_pipeline(workspace)


@pytest.fixture(scope="module")
def second(workspace: Workspace, first: RunReport) -> RunReport:
    return run_pipeline(workspace)


@pytest.fixture(scope="module")
def unblessed(workspace: Workspace, second: RunReport) -> RunReport:
    """One training step cannot clear a 0.999 AUC floor, nor stay within 0.01 of the baseline."""
    return run_pipeline(workspace, "training.train_steps=1", "evaluation.auc_lower_bound=0.999")


@pytest.fixture(scope="module")
def second_model(workspace: Workspace, unblessed: RunReport) -> RunReport:
    return run_pipeline(workspace, "training.train_steps=40", "evaluation.auc_lower_bound=0.5",
                        "evaluation.auc_change_threshold=-1.0")


def mlflow_run(client, report: RunReport):
    experiment = client.get_experiment_by_name("breast-cancer")
    [run] = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.pipeline_run_id = '{report.run_id}'")
    return run


def pushed_model_of(workspace: Workspace, report: RunReport):
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    pusher = next(e for e in report.executions if e.node == "Pusher")
    return store, lineage.output_artifacts(store, pusher.execution_id, "pushed_model")[0]


def test_run_holds_what_mlmd_and_the_evaluator_hold(workspace: Workspace, first: RunReport, client) -> None:
    assert first.pushed and first.blessed
    run = mlflow_run(client, first)
    store, pushed = pushed_model_of(workspace, first)
    trace = lineage.trace_pushed_model(store, pushed)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["config.training.seed"] == str(workspace.config.training.seed)
    assert params["config.serving.model_name"] == MODEL and len(params["config_sha256"]) == 64
    assert params["data.input_fingerprint"] == trace.examples.custom_properties["input_fingerprint"].string_value
    assert params["package.mlflow"] == "3.17.2"
    assert metrics["training.steps"] == trace.model.custom_properties["training_steps"].int_value
    for name in ("auc", "example_count", "precision", "recall"):
        assert metrics[f"eval.{name}"] == pytest.approx(first.metrics[name], rel=1e-9)
    assert metrics["gate.auc.lower_bound"] == workspace.config.evaluation.auc_lower_bound
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train.loss")] == [0]
    assert tags["mlmd.model_id"] == str(trace.model.id) and tags["mlmd.examples_id"] == str(trace.examples.id)
    assert tags["mlmd.pushed_model_id"] == str(pushed.id) and tags["mlmd.blessing_id"] == str(trace.blessing.id)
    assert tags["blessed"] == "yes" and tags["serving_version"] == first.version
    assert pushed.custom_properties["mlflow_run_id"].string_value == run.info.run_id
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"schema", "data", "evaluation", "training_curves.png", "tensorboard.json"} <= artifacts


def test_cached_rerun_adds_no_run_and_no_version(workspace: Workspace, first: RunReport, second: RunReport,
                                                 client) -> None:
    assert {"Trainer", "Transform"} <= set(second.cached) and second.pushed is False
    experiment = client.get_experiment_by_name("breast-cancer")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    _store, pushed = pushed_model_of(workspace, second)
    assert pushed.custom_properties["mlflow_run_id"].string_value == mlflow_run(client, first).info.run_id


def test_registered_version_source_is_a_loadable_saved_model(first: RunReport, client) -> None:
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert version.tags["serving_version"] == first.version
    local = client.download_artifacts(version.run_id, version.source.split("/artifacts/", 1)[1])
    model = tf.saved_model.load(local)
    assert "serving_default" in model.signatures


def test_failed_gate_is_logged_and_not_registered(unblessed: RunReport, client) -> None:
    assert unblessed.blessed is False and unblessed.pushed is False
    run = mlflow_run(client, unblessed)
    assert run.data.tags["blessed"] == "no" and "auc" in run.data.tags["blessed_reason"]
    assert run.data.metrics["gate.auc.lower_bound"] == 0.999
    assert run.data.metrics["eval.auc"] == pytest.approx(unblessed.metrics["auc"], rel=1e-9)
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1


@pytest.fixture(scope="module")
def model_server(workspace: Workspace, second_model: RunReport) -> Iterator[dict]:
    config_file = workspace.root / "models.config"
    config_file.write_text(f'model_config_list {{ config {{ name: "{MODEL}" '
                           f'base_path: "{workspace.config.serving.base_path}" model_platform: "tensorflow" '
                           "model_version_policy { all {} } } }\n")
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         "--host=127.0.0.1", f"--model_config_file={config_file}"],
        cwd=workspace.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    rest = f"http://127.0.0.1:{rest_port}"
    try:
        wait_for(f"{rest}/v1/models/{MODEL}", process, "esteira serve")
        yield {"config_file": config_file, "grpc": f"127.0.0.1:{grpc_port}", "rest": rest}
    finally:
        stop(process)


def answering_version(rest: str, label: str) -> str:
    response = httpx.get(f"{rest}/v1/models/{MODEL}/labels/{label}/metadata", timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["model_spec"]["version"])


def test_promote_and_rollback_move_aliases_and_server_labels(workspace: Workspace, first: RunReport,
                                                             second_model: RunReport, model_server: dict,
                                                             mlflow_uri: str, client) -> None:
    assert second_model.pushed and len(versions(workspace.config.serving.base_path)) == 2
    assert client.get_model_version_by_alias(MODEL, "challenger").tags["serving_version"] == second_model.version
    audit = workspace.root / "audit.jsonl"

    def move(command: str, *extra: str) -> None:
        subprocess.run([sys.executable, "-m", "cli", command, "--model", MODEL, *extra,
                        "--tracking_uri", mlflow_uri, "--model_config_file", str(model_server["config_file"]),
                        "--server", model_server["grpc"], "--audit_log", str(audit)],
                       cwd=workspace.root, env={**os.environ, "ESTEIRA_ACTOR": "risk.committee"}, check=True,
                       capture_output=True, timeout=120)

    move("promote", "--version", "1")
    assert client.get_model_version_by_alias(MODEL, "champion").version in ("1", 1)
    assert answering_version(model_server["rest"], "stable") == first.version
    assert answering_version(model_server["rest"], "canary") == second_model.version

    move("promote", "--version", "2")
    assert answering_version(model_server["rest"], "stable") == second_model.version

    move("rollback")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert answering_version(model_server["rest"], "stable") == first.version
    assert answering_version(model_server["rest"], "canary") == second_model.version

    records = list(read_records(audit))
    assert [(r["event"], r["actor"], r["champion_after"]) for r in records] == [
        ("registry.promote", "risk.committee", "1"), ("registry.promote", "risk.committee", "2"),
        ("registry.rollback", "risk.committee", "1")]
