"""TF Serving's request_count and request_latency with the version that answered (additive: the TF
Serving labels still select and sum as before), and esteira_build_info, on a running server."""
from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import MODEL, metric_samples

from serving.client import GrpcClient
from serving.demo_model import FEATURES, raw_row
from serving.observability.build_info import git_commit, package_version

METRICS = "/monitoring/prometheus/metrics"
REPO = Path(__file__).resolve().parents[3]


def _total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (as a PromQL sum would)."""
    return sum(value for found, value in metric_samples(text, name) if labels.items() <= found.items())


def test_request_count_and_latency_carry_the_version_that_answered(shared_server) -> None:  # type: ignore[no-untyped-def]
    url = shared_server.rest_url
    before = httpx.get(url + METRICS).text
    body = {"signature_name": "predict_raw", "instances": [raw_row(1)]}
    for version, times in ((1, 3), (2, 2)):
        for _ in range(times):
            assert httpx.post(f"{url}/v1/models/{MODEL}/versions/{version}:predict", json=body).status_code == 200
    assert httpx.post(f"{url}/v1/models/{MODEL}/labels/canary:predict", json=body).status_code == 200  # canary = 2
    assert httpx.post(f"{url}/v1/models/nope:predict", json=body).status_code == 404  # no version resolved
    with GrpcClient(shared_server.grpc_target) as client:
        client.predict(MODEL, {name: np.array([0.5], dtype=np.float32) for name in FEATURES},
                       signature="predict_raw", version=1)
    after = httpx.get(url + METRICS).text

    def delta(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    count = ":tensorflow:serving:request_count"
    assert delta(count, model_name=MODEL, status="OK", version="1") == 4
    assert delta(count, model_name=MODEL, status="OK", version="2") == 3
    assert delta(count, model_name=MODEL, status="OK") == 7  # TF Serving's labels alone: the same total as before
    assert delta(count, model_name="nope", status="NOT_FOUND", version="") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert delta(latency, model_name=MODEL, API="predict", entrypoint="REST", version="1") == 3
    assert delta(latency, model_name=MODEL, API="predict", entrypoint="REST", version="2") == 3
    assert delta(latency, model_name=MODEL, API="Predict", entrypoint="GRPC", version="1") == 1
    buckets = [found for found, _ in metric_samples(after, ":tensorflow:serving:request_latency_bucket")
               if found.get("version") == "1"]
    assert buckets and {"le", "model_name", "API", "entrypoint", "version"} == set(buckets[0])


def test_build_info_names_the_release_the_commit_and_tensorflow(shared_server) -> None:  # type: ignore[no-untyped-def]
    text = httpx.get(shared_server.rest_url + METRICS).text
    (labels, value), = metric_samples(text, "esteira_build_info")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert value == 1.0
    assert labels == {"version": package_version("esteira"), "git_commit": head, "tensorflow_version": tf.__version__}


def test_the_commit_comes_from_the_environment_or_packed_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTEIRA_GIT_COMMIT", "0123abc")
    assert git_commit(tmp_path) == "0123abc"  # what an image built without .git is given
    monkeypatch.delenv("ESTEIRA_GIT_COMMIT")
    sha = "f" * 40
    git = tmp_path / "checkout" / ".git"
    git.mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    assert git_commit(tmp_path / "checkout" / "serving") == sha
    (git / "HEAD").write_text("ref: refs/heads/gone\n")
    assert git_commit(tmp_path / "checkout") == "unknown"
