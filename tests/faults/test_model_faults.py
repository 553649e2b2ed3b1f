"""Broken models and configs under a running server: the served version's folder corrupted or deleted while it
serves, a corrupt new version pushed, and models.config reloads with a syntax error or an unknown model. The
version that serves keeps answering until a good one is available; a refused config is logged and counted and
the previous one keeps serving."""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator

import httpx
import pytest
from faults_helpers import MODEL, PREDICT_BODY
from serving_helpers import metric_value, start_server, write_config

from serving.demo_model import export_demo_model
from serving.server import RunningServer

METRICS = "/monitoring/prometheus/metrics"
POLLS = 2.5  # seconds: two file-system polls and two config polls at 1 s


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("model_faults")
    base = root / "models" / MODEL
    export_demo_model(base, 1)
    export_demo_model(root / "good", 3, bias=3.0)
    config = write_config(root / "models.config", {MODEL: str(base)}, policy="latest { num_versions: 1 }")
    server = start_server(root, f"--model_config_file={config}", "--file_system_poll_wait_seconds=1",
                          "--model_config_file_poll_wait_seconds=1")
    try:
        yield {"root": root, "base": base, "config": config, "server": server}
    finally:
        server.stop()


def _answer(server: RunningServer) -> list:
    response = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=PREDICT_BODY, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def _status(server: RunningServer) -> dict[int, dict]:
    body = httpx.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=10).json()
    return {int(v["version"]): v for v in body["model_version_status"]}


def _metric(server: RunningServer, name: str, **labels: str) -> float:
    return metric_value(httpx.get(server.rest_url + METRICS).text, name, **labels) or 0.0


def test_the_serving_version_answers_through_corruption_deletion_and_a_corrupt_push(world: dict) -> None:
    server, base = world["server"], world["base"]
    first = _answer(server)
    for data in (base / "1" / "variables").glob("variables.*"):
        data.write_bytes(b"\0garbage\0" * 64)  # corrupted on disk while it serves (it is in memory)
    time.sleep(POLLS)
    assert _answer(server) == first and _status(server)[1]["state"] == "AVAILABLE"

    corrupt = base / "2"  # a new version that cannot load: its graph is garbage
    shutil.copytree(world["root"] / "good" / "3", corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"not a SavedModel")
    deadline = time.monotonic() + 30
    while _status(server).get(2, {}).get("state") != "END":
        assert time.monotonic() < deadline, _status(server)
        time.sleep(0.2)
    assert _status(server)[2]["status"]["error_code"] != "OK"
    assert _answer(server) == first and _status(server)[1]["state"] == "AVAILABLE"

    shutil.rmtree(base / "1")  # the serving version's folder deleted
    time.sleep(POLLS)
    assert _answer(server) == first

    shutil.copytree(world["root"] / "good" / "3", base / "3")  # a good version: it takes over
    deadline = time.monotonic() + 30
    while _status(server).get(3, {}).get("state") != "AVAILABLE":
        assert time.monotonic() < deadline, _status(server)
        time.sleep(0.2)
    assert _answer(server) != first
    deadline = time.monotonic() + 10
    while _status(server)[1]["state"] != "END":  # only now is the old one unloaded
        assert time.monotonic() < deadline, _status(server)
        time.sleep(0.2)


def test_a_reload_with_a_syntax_error_or_an_unknown_model_keeps_the_previous_config(
        world: dict, caplog: pytest.LogCaptureFixture) -> None:
    server, config = world["server"], world["config"]
    good = config.read_text()
    serving = _answer(server)
    with caplog.at_level(logging.ERROR, logger="serving"):
        config.write_text(good.replace("model_config_list {", "model_config_list { config {", 1))  # unbalanced
        time.sleep(POLLS)
        assert _answer(server) == serving
        assert _metric(server, "esteira_model_config_reloads_total", result="error") == 1  # once, not per poll
        missing = world["root"] / "no_such_model"
        write_config(config, {"scoring": str(missing)})  # the only model now one that does not exist
        time.sleep(POLLS)
        assert _answer(server) == serving
        assert _metric(server, "esteira_model_config_reloads_total", result="error") == 2
    failures = [r.getMessage() for r in caplog.records if "model config reload failed" in r.getMessage()]
    assert len(failures) == 2 and f"model scoring: no version could be loaded from base_path {missing}" in failures[1]
    assert httpx.post(f"{server.rest_url}/v1/models/scoring:predict", json=PREDICT_BODY).status_code == 404

    applied = _metric(server, "esteira_model_config_reloads_total", result="ok")
    write_config(config, {MODEL: str(world["base"])}, labels={MODEL: {"stable": 3}},
                 policy="latest { num_versions: 1 }")
    deadline = time.monotonic() + 10
    while _metric(server, "esteira_model_config_reloads_total", result="ok") <= applied:
        assert time.monotonic() < deadline, "a good config was not applied after two refused ones"
        time.sleep(0.2)
    labelled = httpx.post(f"{server.rest_url}/v1/models/{MODEL}/labels/stable:predict", json=PREDICT_BODY)
    assert labelled.status_code == 200 and labelled.json()["predictions"] == serving
