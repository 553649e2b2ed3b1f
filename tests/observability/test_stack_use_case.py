"""`make stack` is the user's loop: it serves the use case's newest published version and opens the MLflow
store the pipeline logged to, or says to run the demo first when nothing was published."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cli.stack import stack_main as main
from observability.stack import free_port, stop_processes

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer"


def _use_case_config(root: Path) -> Path:
    """configs/breast_cancer.yaml with its outputs (pipeline, published versions, MLflow store) under ``root``."""
    config = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    config["pipeline"]["root"] = str(root / "pipeline")
    config["pipeline"]["metadata_path"] = str(root / "metadata.db")
    config["serving"]["base_path"] = str(root / "serving")
    config["data"]["source"] = str(REPO / "data" / "breast_cancer")
    path = root / "breast_cancer.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _ports() -> list[str]:
    return [f"--rest-port={free_port()}", f"--grpc-port={free_port()}", f"--prometheus-port={free_port()}",
            f"--alertmanager-port={free_port()}", f"--mlflow-port={free_port()}"]


def _log_a_run(root: Path) -> str:
    """A run in the embedded store, where the pipeline's MlflowLogger leaves one (<pipeline.root>/mlflow)."""
    from tracking.store import connect, experiment_id, local_target

    target = local_target(root / "pipeline" / "mlflow")
    client = connect(target)
    run = client.create_run(experiment_id(client, target, "breast-cancer"), run_name="pipeline run")
    client.log_metric(run.info.run_id, "auc", 0.97)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id)
    return run.info.run_id


@pytest.fixture(scope="module")
def printed_stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} not found: apt-get install prometheus prometheus-alertmanager (.ci/run does)")
    from serving.demo_model import export_demo_model

    root = tmp_path_factory.mktemp("use_case")
    for version in (3, 7):  # two published versions: the newest is served
        export_demo_model(str(root / "serving"), version, hidden_units=4, seed=version)
    run_id = _log_a_run(root)
    state = root / "stack"
    capture = pytest.MonkeyPatch()
    lines: list[str] = []
    capture.setattr("builtins.print", lambda *args, **kwargs: lines.append(" ".join(map(str, args))))
    try:
        code = main(["up", "--config", str(_use_case_config(root)), "--state-dir", str(state), *_ports()])
        capture.undo()
        assert code == 0, lines
        yield {"lines": lines, "run_id": run_id, "state": state, "root": root}
    finally:
        capture.undo()
        stop_processes(state)


def _url(lines: list[str], name: str) -> str:
    line = next(line for line in lines if line.strip().startswith(name))
    match = re.search(r"http://127\.0\.0\.1:\d+\S*", line)
    assert match, line
    return match.group(0)


def test_the_newest_published_version_is_served_behind_both_labels(printed_stack: dict) -> None:
    model_url = _url(printed_stack["lines"], f"model {MODEL}")
    status = httpx.get(model_url, timeout=10).json()["model_version_status"]
    assert [(entry["version"], entry["state"]) for entry in status] == [("7", "AVAILABLE")]
    for label in ("stable", "canary"):
        metadata = httpx.get(f"{model_url}/labels/{label}/metadata", timeout=10)
        assert metadata.status_code == 200 and metadata.json()["model_spec"]["version"] == "7", metadata.text


def test_mlflow_opens_the_pipelines_own_runs_on_the_runs_view(printed_stack: dict) -> None:
    runs_url = _url(printed_stack["lines"], "MLflow runs")
    server, _, fragment = runs_url.partition("/#/")
    experiment = re.fullmatch(r"experiments/(\d+)/runs", fragment)
    assert experiment, runs_url
    found = httpx.post(f"{server}/api/2.0/mlflow/runs/search", timeout=10,
                       json={"experiment_ids": [experiment.group(1)]}).json()
    assert [run["info"]["run_id"] for run in found["runs"]] == [printed_stack["run_id"]]


def test_the_printed_prometheus_pages_answer(printed_stack: dict) -> None:
    for name in ("Prometheus targets", "Prometheus alerts"):
        response = httpx.get(_url(printed_stack["lines"], name), timeout=10)
        assert response.status_code == 200, (name, response.status_code)


def test_nothing_published_says_run_the_demo_and_starts_nothing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["up", "--config", str(_use_case_config(tmp_path)), "--state-dir", str(tmp_path / "stack"),
                 *_ports()])
    stderr = capsys.readouterr().err
    assert code == 1 and "no published version of 'breast_cancer'" in stderr and "make demo" in stderr, stderr
    assert not list((tmp_path / "stack").glob("pids/*.pid"))


def test_the_console_starts_against_the_stack_with_tokens_it_creates(printed_stack: dict, tmp_path: Path) -> None:
    root = printed_stack["root"]
    written_at_push = root / "pipeline" / "GovernanceReport" / "report" / "5" / "lgpd"
    written_at_push.mkdir(parents=True)
    (written_at_push / "lgpd_report.json").write_text(json.dumps({"model": MODEL, "version": "7"}))
    (written_at_push / "lgpd_report.html").write_text("<h1>LGPD report of version 7</h1>")
    port, secrets = free_port(), tmp_path / "secrets"
    console = subprocess.Popen(
        [str(Path(sys.executable).with_name("esteira")), "console", "--config", str(root / "breast_cancer.yaml"),
         "--stack", str(printed_stack["state"]), "--tokens_dir", str(secrets), "--port", str(port),
         "--audit_log", str(tmp_path / "console.jsonl")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = [console.stdout.readline() for _ in range(4)] if console.stdout else []
        tokens = dict(re.findall(r"^\s+(approver|reviewer)\s+(\S+)\s", "".join(printed), re.M))
        assert set(tokens) == {"approver", "reviewer"}, printed
        assert {path.name for path in secrets.iterdir()} == {"console-approvers.tokens", "console-reviewers.tokens"}
        assert all(path.stat().st_mode & 0o077 == 0 for path in secrets.iterdir())
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        signed_in = {"Authorization": f"Bearer {tokens['reviewer']}"}
        index = httpx.get(f"{url}/", headers=signed_in, timeout=30)
        assert index.status_code == 200, index.text[-2000:]
        report = httpx.get(f"{url}/reports/run-5/lgpd_report.html", headers=signed_in, timeout=30)
        assert report.status_code == 200 and "version 7" in report.text
        assert httpx.get(f"{url}/", headers={"Authorization": "Bearer not-a-token"}, timeout=30).status_code != 200
        audit = [json.loads(line) for line in (tmp_path / "console.jsonl").read_text().splitlines()]
        views = [(entry["record"]["event"], entry["record"].get("report")) for entry in audit]
        assert ("console.report.view", "run-5/lgpd_report.html") in views, audit
    finally:
        console.terminate()
        console.wait(timeout=20)
