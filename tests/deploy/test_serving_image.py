"""The serving image runs as TF Serving's does and answers exactly as the in-process server.

One container (a pushed model mounted read-only at /models/demo, ports 8500/8501 published on
loopback) against one in-process server on the same model store.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from deploy.manifests import dump, play_manifest
from deploy.podman import Podman
from serving.client import GrpcClient
from serving.demo_model import FEATURES
from serving.flags import parse_flags
from serving.server import RunningServer, pick_free_port, start_in_thread

pytestmark = pytest.mark.containers

MODEL = "demo"  # the name of conftest's pushed_model folder
ROWS = [{name: float(i + j) / 10 for j, name in enumerate(FEATURES)} for i in range(3)]
EXAMPLES = [{"feature_0": 0.2, "feature_1": -1.5}, {"feature_0": 3.0}]


@dataclass(frozen=True)
class Endpoint:
    rest_url: str
    grpc_target: str


@dataclass(frozen=True)
class Container(Endpoint):
    container_id: str


@pytest.fixture(scope="module")
def container(podman: Podman, serving_image: str, pushed_model: Path,
              wait_available: Callable[[str, str, str], None]) -> Iterator[Container]:
    started = podman.run("run", "--detach", "--publish", "127.0.0.1::8500", "--publish", "127.0.0.1::8501",
                         "--volume", f"{pushed_model}:/models/{MODEL}:ro", "--env", f"MODEL_NAME={MODEL}",
                         serving_image)
    container_id = started.stdout.strip()
    try:
        rest_url = f"http://127.0.0.1:{podman.published_port(container_id, 8501)}"
        wait_available(rest_url, MODEL, container_id)
        yield Container(rest_url, f"127.0.0.1:{podman.published_port(container_id, 8500)}", container_id)
    finally:
        podman.remove_container(container_id)
    assert not podman.container_exists(container_id), "the test's container was not removed"


@pytest.fixture(scope="module")
def in_process(pushed_model: Path) -> Iterator[RunningServer]:
    grpc_port, rest_port = pick_free_port(), pick_free_port()
    while rest_port == grpc_port:
        rest_port = pick_free_port()
    server = start_in_thread(parse_flags([f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--host=127.0.0.1",
                                          f"--model_name={MODEL}", f"--model_base_path={pushed_model}"]))
    yield server
    server.stop()


def rest_answers(base_url: str) -> dict[str, object]:
    """Status, metadata, Predict on both signatures, Classify and Regress, as JSON."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        model = f"/v1/models/{MODEL}"
        return {
            "status": client.get(model).json(),
            "metadata": client.get(f"{model}/metadata").json(),
            "predict_raw": client.post(f"{model}:predict",
                                       json={"signature_name": "predict_raw", "instances": ROWS}).json(),
            "predict_v1": client.post(f"{model}/versions/1:predict",
                                      json={"signature_name": "predict_raw", "instances": ROWS}).json(),
            "classify": client.post(f"{model}:classify",
                                    json={"signature_name": "classify", "examples": EXAMPLES}).json(),
            "regress": client.post(f"{model}:regress", json={"signature_name": "regress", "examples": EXAMPLES}).json(),
            "bad_input": client.post(f"{model}:predict", json={"instances": [{"nope": 1.0}]}).json(),
        }


def grpc_answers(target: str) -> dict[str, object]:
    columns = {name: np.array([row[name] for row in ROWS], np.float32) for name in FEATURES}
    with GrpcClient(target, timeout=30) as client:
        status = client.status(MODEL)
        return {
            "predict": {k: v.tolist() for k, v in client.predict(MODEL, columns, signature="predict_raw").items()},
            "classify": client.classify(MODEL, EXAMPLES, signature="classify"),
            "regress": client.regress(MODEL, EXAMPLES, signature="regress"),
            "status": [(v.version, v.state) for v in status.model_version_status],
            "metadata": str(client.metadata(MODEL)[1]),
        }


def test_rest_answers_equal_the_in_process_server(container: Container, in_process: RunningServer) -> None:
    in_container, expected = rest_answers(container.rest_url), rest_answers(in_process.rest_url)
    assert in_container["status"]["model_version_status"][0]["version"] == "2"  # latest, TF Serving's default
    assert "error" in in_container["bad_input"]
    assert len(in_container["classify"]["results"]) == len(in_container["regress"]["results"]) == len(EXAMPLES)
    assert in_container == expected


def test_grpc_answers_equal_the_in_process_server(container: Container, in_process: RunningServer) -> None:
    in_container, expected = grpc_answers(container.grpc_target), grpc_answers(in_process.grpc_target)
    assert len(in_container["predict"]["probabilities"]) == len(ROWS)
    assert in_container == expected


def test_runs_as_non_root_on_a_read_only_model_with_a_passing_healthcheck(podman: Podman, container: Container,
                                                                         serving_image: str) -> None:
    assert podman.run("exec", container.container_id, "id", "-u").stdout.strip() == "10001"
    written = podman.run("exec", container.container_id, "touch", f"/models/{MODEL}/x", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    assert podman.run("healthcheck", "run", container.container_id, check=False).returncode == 0
    config = podman.run("image", "inspect", "--format", "{{json .Config.ExposedPorts}} {{.Config.User}}",
                        serving_image).stdout
    assert "8500/tcp" in config and "8501/tcp" in config and "10001" in config


def test_healthcheck_fails_when_the_model_is_not_available(podman: Podman, container: Container) -> None:
    """The probe reads the model's status, not just an open port: another model name is unhealthy."""
    probe = podman.run("exec", "--env", "MODEL_NAME=absent", container.container_id,
                       "python", "/usr/local/bin/esteira-healthcheck", check=False)
    assert probe.returncode != 0 and "unhealthy" in probe.stderr


def test_the_dev_overlays_serving_deployment_plays_with_this_image(podman: Podman, serving_image: str,
                                                                  pushed_model: Path, in_process: RunningServer,
                                                                  wait_available: Callable[[str, str, str], None],
                                                                  tmp_path: Path) -> None:
    """k8s/overlays/dev's TF Serving Deployment (its args, config ConfigMaps and model-store hostPath), with
    this image in place of TF Serving's, runs under `podman kube play` and answers Predict from the host."""
    store = tmp_path / "store"
    shutil.copytree(pushed_model, store / "breast_cancer")  # the dev overlay's model; the demo model's versions
    for folder in (store, *store.rglob("*")):
        folder.chmod(0o755 if folder.is_dir() else 0o644)  # the image's user (uid 10001) reads the store
    manifests = play_manifest("dev", "tf-serving", image=serving_image, model_store=store)
    container = manifests[-1]["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port for port in container["ports"]}
    assert {ports["grpc"]["containerPort"], ports["rest"]["containerPort"]} == {8500, 8501}
    for port in ports.values():  # the overlay binds 8500/8501 on loopback; a test takes free ones
        port["hostPort"] = pick_free_port()
    played = tmp_path / "dev-serving-play.yaml"
    played.write_text(dump(manifests))
    container_id = ""
    output = podman.run("kube", "play", str(played)).stdout
    try:
        container_id = output.split("Container:")[1].split()[0]
        rest_url = f"http://127.0.0.1:{ports['rest']['hostPort']}"
        wait_available(rest_url, "breast_cancer", container_id)
        body = {"signature_name": "predict_raw", "instances": ROWS}
        answer = httpx.post(f"{rest_url}/v1/models/breast_cancer:predict", json=body, timeout=30).json()
        expected = httpx.post(f"{in_process.rest_url}/v1/models/{MODEL}:predict", json=body, timeout=30).json()
        assert answer == expected and len(answer["predictions"]) == len(ROWS)
        states = []
        for target, name in ((f"127.0.0.1:{ports['grpc']['hostPort']}", "breast_cancer"),
                             (in_process.grpc_target, MODEL)):
            with GrpcClient(target, timeout=30) as client:
                states.append([(v.version, v.state) for v in client.status(name).model_version_status])
        assert states[0] == states[1] and states[0][0][0] == 2
    finally:
        podman.run("kube", "down", str(played), check=False)
    assert container_id and not podman.container_exists(container_id), "kube down left the played container"
