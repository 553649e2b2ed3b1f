"""grpc.health.v1.Health against a running server: "" and one service per model, following loads,
config reloads and the stop (api/health.py)."""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving_helpers import MODEL, start_server, write_config
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving.api.http_server import GRACE_SECONDS
from serving.config import read_model_config

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SPARE = "spare"  # a model whose base path starts empty


@pytest.fixture(scope="module")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("health")
    (tmp / SPARE).mkdir()
    config = write_config(tmp / "models.config", {MODEL: str(model_store / MODEL), SPARE: str(tmp / SPARE)})
    running = start_server(tmp, f"--model_config_file={config}", "--file_system_poll_wait_seconds=1",
                           "--enable_grpc_healthcheck_service")
    channel = grpc.insecure_channel(running.grpc_target)
    state = {"server": running, "tmp": tmp, "store": model_store, "stub": health_pb2_grpc.HealthStub(channel),
             "models": model_service_pb2_grpc.ModelServiceStub(channel), "stopped": False}
    yield state
    channel.close()
    if not state["stopped"]:
        running.stop()


def check(state: dict[str, Any], service: str) -> int:
    return state["stub"].Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def watch(state: dict[str, Any], service: str):  # type: ignore[no-untyped-def]
    return state["stub"].Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)


def next_status(stream, want: int, seconds: float = 30) -> int:  # type: ignore[no-untyped-def]
    """Read the Watch stream until it reports ``want`` (intermediate states may pass), within ``seconds``."""
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        status = next(stream).status
        if status == want:
            return status
    raise AssertionError(f"Watch reported {status}, never {want}, within {seconds} s")


def test_check_reports_the_server_each_model_and_tf_servings_names(server) -> None:  # type: ignore[no-untyped-def]
    assert check(server, MODEL) == SERVING
    assert check(server, SPARE) == NOT_SERVING  # no version on disk yet
    assert check(server, "") == NOT_SERVING  # as /readyz: a model has no AVAILABLE version
    assert httpx.get(f"{server['server'].rest_url}/readyz").status_code == 503
    assert check(server, "PredictionService") == check(server, "ModelService") == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        check(server, "no-such-model")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_follows_a_version_loading_and_the_model_leaving_the_config(server) -> None:  # type: ignore[no-untyped-def]
    overall, spare, leaving = watch(server, ""), watch(server, SPARE), watch(server, SPARE)
    try:
        assert next(overall).status == NOT_SERVING
        assert next(spare).status == next(leaving).status == NOT_SERVING
        leaving.cancel()  # another watcher of the same service leaving must not silence this one
        time.sleep(0.2)
        staging = server["tmp"] / "staging"
        shutil.copytree(server["store"] / MODEL / "1", staging)
        staging.rename(server["tmp"] / SPARE / "1")  # appears whole to the poller
        assert next_status(spare, SERVING) == SERVING
        assert next_status(overall, SERVING) == SERVING
        assert check(server, SPARE) == check(server, "") == SERVING

        config = read_model_config(server["tmp"] / "models.config")
        kept = [m for m in config.model_config_list.config if m.name != SPARE]
        del config.model_config_list.config[:]
        config.model_config_list.config.extend(kept)
        server["models"].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
        assert next_status(spare, NOT_SERVING) == NOT_SERVING
        assert check(server, SPARE) == NOT_SERVING
        assert check(server, "") == SERVING  # every model still configured has an AVAILABLE version
    finally:
        for stream in (overall, spare, leaving):
            stream.cancel()


def test_a_gateway_reports_the_models_of_the_server_behind_it(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "gateway.config", {MODEL: "/models/demo", "ghost": "/models/ghost"})
    gateway = start_server(tmp_path, f"--remote_backend={server['server'].grpc_target}",
                           f"--model_config_file={config}", "--enable_grpc_healthcheck_service")
    try:
        with grpc.insecure_channel(gateway.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            status = {name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
                      for name in (MODEL, "ghost", "")}
        assert status == {MODEL: SERVING, "ghost": NOT_SERVING, "": NOT_SERVING}  # ghost: unknown behind
    finally:
        gateway.stop()


def test_stop_turns_everything_not_serving_and_ends_the_watches(server) -> None:  # type: ignore[no-untyped-def]
    stream = watch(server, "")
    assert next(stream).status == SERVING
    unknown = watch(server, "no-such-model")
    assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    started = time.monotonic()
    server["stopped"] = True
    server["server"].stop()
    assert time.monotonic() - started < GRACE_SECONDS  # open Watch streams did not hold the stop
    assert [response.status for response in stream] == [NOT_SERVING]  # then the stream ended cleanly
    assert list(unknown) == []
