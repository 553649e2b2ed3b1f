"""`esteira run --runner kubeflow`: kfp.Client's requests in order against replayed KFP v2beta1 responses
(tests/pipeline/kfp_exchange/, served on 127.0.0.1), the uploaded package read back by kfp's own loader,
the run's parameters and auth headers as sent, task states followed, a failed task named in the exit."""
from __future__ import annotations

import email.parser
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kfp import components

from cli.main import main
from pipeline.config import load_config
from pipeline.kubeflow_run import KubeflowAuth, KubeflowRunError, client_for, follow, spec_task_names, submit

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "breast_cancer.yaml"
EXCHANGES = Path(__file__).parent / "kfp_exchange"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def uploaded_file(self) -> bytes:
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode() + self.body)
        return next(part.get_payload(decode=True) for part in message.get_payload()
                    if part.get_param("name", header="content-disposition") == "uploadfile")


@dataclass
class Replay:
    """Answers each request with the next recorded step, if it is the request that step expects."""

    steps: list[dict[str, Any]]
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        self.requests.append(request)
        position = len(self.requests) - 1
        step = self.steps[position] if position < len(self.steps) else None
        if step is None or (step["method"], step["path"]) != (request.method, request.path):
            self.unexpected.append(f"{request.method} {request.path} (expected {step and step['path']})")
            return 404, {"error": "not in the recorded exchange", "code": 5}
        return 200, step["body"]


@contextmanager
def replay_server() -> Iterator[tuple[str, Any]]:
    """A KFP API endpoint on 127.0.0.1; load(name) makes it replay that exchange from the next request."""
    replays: list[Replay] = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            request = Request(self.command, url.path, parse_qs(url.query),
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            status, body = replays[-1].answer(request)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def load(name: str) -> Replay:
        replays.append(Replay(json.loads((EXCHANGES / name).read_text())))
        return replays[-1]

    try:
        yield f"http://127.0.0.1:{server.server_port}", load
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kfp_server() -> Iterator[tuple[str, Any]]:
    with replay_server() as server:
        yield server


@pytest.fixture(scope="module")
def no_wait_submission(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The command itself once (it compiles the spec, ~30 s): its output, the requests, the uploaded package."""
    with replay_server() as (host, load):
        replay = load("no_wait.json")
        out = io.StringIO()
        with redirect_stdout(out):
            code = main(["run", "--config", str(CONFIG), "--runner", "kubeflow", "--host", host, "--no-wait",
                         "--existing-token", "tok-123", "--image", "registry.example/esteira-pipeline:1.4",
                         "--set", "pipeline.remote_root=minio://mlpipeline/esteira"])
    package = tmp_path_factory.mktemp("kfp") / "uploaded.yaml"
    uploads = [r for r in replay.requests if r.path == "/apis/v2beta1/pipelines/upload_version"]
    if uploads:
        package.write_bytes(uploads[0].uploaded_file())
    return {"code": code, "out": out.getvalue(), "replay": replay, "package": package, "host": host}


def test_no_wait_uploads_a_version_starts_the_run_and_prints_its_url(no_wait_submission) -> None:
    replay = no_wait_submission["replay"]
    assert no_wait_submission["code"] == 0, no_wait_submission["out"]
    assert replay.unexpected == []
    assert [r.path for r in replay.requests] == [step["path"] for step in replay.steps]  # no polling
    url = f"{no_wait_submission['host']}/#/runs/details/5c7e9a13-4b6d-4f28-9e3a-8d1c2b3a4f99"
    assert url in no_wait_submission["out"]
    upload = replay.requests[2]
    assert upload.query["pipelineid"] == ["6f1c2d2e-8a53-4c1e-9d43-0b6b1f3a2c10"]
    assert upload.query["name"][0].startswith("breast-cancer-")
    run = replay.requests[-1].json()
    assert run["pipeline_version_reference"] == {"pipeline_id": "6f1c2d2e-8a53-4c1e-9d43-0b6b1f3a2c10",
                                                 "pipeline_version_id": "d92a6e4b-7f3c-4b0d-a2e1-5f8a9b0c1d03"}
    assert run["experiment_id"] == "0d3c9a71-5b8e-4c62-a0f4-7e1d2c3b4a55"
    assert run["runtime_config"]["pipeline_root"] == "minio://mlpipeline/esteira"  # compiled from remote_root
    assert all(r.headers.get("authorization") == "Bearer tok-123" for r in replay.requests)


def test_the_uploaded_package_loads_with_kfps_own_loader(no_wait_submission) -> None:
    package = no_wait_submission["package"]
    spec = components.load_component_from_file(str(package)).pipeline_spec
    assert spec.pipeline_info.name == "breast-cancer"
    assert {"CsvExampleGen", "Trainer", "Evaluator", "Pusher"} <= set(spec.root.dag.tasks)
    images = {executor["container"]["image"] for executor in
              json.loads(json.dumps(_deployment(spec)))["executors"].values() if "container" in executor}
    assert images == {"registry.example/esteira-pipeline:1.4"}


def _deployment(spec: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(spec.deployment_spec)


def test_a_first_submission_creates_pipeline_and_experiment_and_follows_tasks(kfp_server, no_wait_submission,
                                                                               tmp_path: Path) -> None:
    host, load = kfp_server
    replay = load("new_pipeline_succeeds.json")
    config = load_config(CONFIG, base=tmp_path)
    client = client_for(host, KubeflowAuth(cookies="authservice_session=abc"))
    submission = submit(client, config, no_wait_submission["package"], {"gcsOutputDirectory": "gs://bank/esteira"},
                        host=host)
    out = io.StringIO()
    state = follow(client, submission.run_id, out, poll_seconds=0,
                   task_names=spec_task_names(no_wait_submission["package"]))
    assert state == "SUCCEEDED" and replay.unexpected == []
    assert [r.path for r in replay.requests] == [step["path"] for step in replay.steps]
    uploaded = replay.requests[2]
    assert uploaded.path == "/apis/v2beta1/pipelines/upload" and uploaded.query["name"] == ["breast-cancer"]
    assert uploaded.uploaded_file() == no_wait_submission["package"].read_bytes()
    assert replay.requests[5].json()["display_name"] == "breast-cancer"
    assert replay.requests[6].json()["runtime_config"]["pipeline_root"] == "gs://bank/esteira"
    assert all(r.headers.get("cookie") == "authservice_session=abc" for r in replay.requests)
    lines = out.getvalue().splitlines()
    assert lines.index("kubeflow: task CsvExampleGen: RUNNING") < lines.index("kubeflow: task CsvExampleGen: SUCCEEDED")
    assert lines.count("kubeflow: task CsvExampleGen: RUNNING") == 1  # a state is printed when it changes
    assert lines[-1] == f"kubeflow: run {submission.run_id}: SUCCEEDED"


def test_a_failed_task_is_named_with_its_error(kfp_server, no_wait_submission, tmp_path: Path) -> None:
    host, load = kfp_server
    replay = load("trainer_fails.json")
    client = client_for(host, KubeflowAuth())
    submission = submit(client, load_config(CONFIG, base=tmp_path), no_wait_submission["package"],
                        {"gcsOutputDirectory": "minio://mlpipeline/esteira"}, host=host,
                        pipeline_root="gs://bank-ml/esteira")  # --pipeline-root over the compiled root
    with pytest.raises(KubeflowRunError) as error:
        follow(client, submission.run_id, io.StringIO(), poll_seconds=0,
               task_names=spec_task_names(no_wait_submission["package"]))
    message = str(error.value)
    assert "ended FAILED; failed task: Trainer (container exited with code 1 (OOMKilled))" in message
    assert "breast-cancer" not in message.split("failed task")[1]  # the root DAG is not named as a task
    assert replay.unexpected == [] and "authorization" not in replay.requests[0].headers
    started = [r.json() for r in replay.requests if r.path == "/apis/v2beta1/runs" and r.method == "POST"]
    assert [run["runtime_config"]["pipeline_root"] for run in started] == ["gs://bank-ml/esteira"]


def test_kubeflow_without_a_host_is_a_usage_error(capsys, monkeypatch) -> None:
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["run", "--config", str(CONFIG), "--runner", "kubeflow"]) == 2
    assert "--runner kubeflow needs --host" in capsys.readouterr().err


def test_a_partial_run_is_refused_for_kubeflow(capsys) -> None:
    assert main(["run", "--config", str(CONFIG), "--runner", "kubeflow", "--host", "http://127.0.0.1:9",
                 "--to", "Trainer"]) == 2
    assert "Kubeflow runs the whole pipeline" in capsys.readouterr().err


def test_kubeflow_options_without_the_kubeflow_runner_are_refused(capsys) -> None:
    assert main(["run", "--config", str(CONFIG), "--runner", "local", "--host", "http://127.0.0.1:9",
                 "--no-wait"]) == 2
    assert "--host, --no-wait only apply to --runner kubeflow" in capsys.readouterr().err
