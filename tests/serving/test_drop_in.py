"""TF Serving behaviours a drop-in replacement needs, each against a running server: inputs whose shape
differs from the SignatureDef but that the graph accepts, gRPC on a Unix socket, --grpc_channel_arguments,
and several models in a models.config reloaded every --model_config_file_poll_wait_seconds."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import MODEL, start_server, write_config

from serving.client import GrpcClient, ServingClientError
from serving.flags import FlagError, parse_flags
from serving.server import RunningServer

HALF = "half_plus_two"


def export_half_plus_two(base: Path, version: int) -> None:
    """TF Serving's half_plus_two with a ``[None, 1]`` signature (elementwise, so the graph takes any
    shape), plus ``pairs`` (``[None, 2]``, a matmul that needs a matrix: the graph refuses a vector)."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def half(self, x):  # type: ignore[no-untyped-def]
            return {"y": x * 0.5 + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def pairs(self, x):  # type: ignore[no-untyped-def]
            return {"y": tf.matmul(x, tf.ones([2, 1]))}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(base / str(version)),
                        signatures={"serving_default": module.half, "pairs": module.pairs})


@pytest.fixture(scope="module")
def store(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drop_in")
    export_half_plus_two(root / HALF, 1)
    return root


@pytest.fixture(scope="module")
def server(store: Path, model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """half_plus_two alone in the config at first (the reload test adds demo); gRPC also on a Unix socket,
    with a 1 MB message limit from --grpc_channel_arguments."""
    tmp = tmp_path_factory.mktemp("drop_in_server")
    config = write_config(tmp / "models.config", {HALF: str(store / HALF)})
    running = start_server(
        tmp, f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=0", f"--grpc_socket_path={tmp / 'grpc.sock'}",
        "--grpc_channel_arguments=grpc.max_receive_message_length=1048576,grpc.not_an_argument=1")
    running.config_path = config  # type: ignore[attr-defined]
    running.socket_path = tmp / "grpc.sock"  # type: ignore[attr-defined]
    yield running
    running.stop()


def test_a_shape_the_graph_accepts_is_run_as_tf_serving_runs_it(server: RunningServer) -> None:
    """x = [2.0] (shape [1]) to a [None, 1] signature: TF Serving feeds the graph, which answers [3.0]."""
    with GrpcClient(server.grpc_target, retries=0) as client:
        answer = client.predict(HALF, {"x": np.array([2.0], np.float32)})
    assert answer["y"].tolist() == [3.0] and answer["y"].shape == (1,)
    url = f"{server.rest_url}/v1/models/{HALF}:predict"
    assert httpx.post(url, json={"instances": [2.0]}).json() == {"predictions": [3.0]}
    assert httpx.post(url, json={"inputs": [2.0]}).json() == {"outputs": [3.0]}
    assert httpx.post(url, json={"instances": [[2.0], [4.0]]}).json() == {"predictions": [[3.0], [4.0]]}  # as signed


def _graph_reason_in_process(store: Path) -> str:
    """TensorFlow's own reason when the exported ``pairs`` graph is called here with the same vector.

    The wording belongs to TensorFlow and changes with the CPU's kernels (``ndims must be >= 2`` on some
    machines, ``In[0] and In[1] has different ndims`` on others), so the test compares with what TF says
    for the same call in this process; only the call's function id (``[Op:...]``) differs between processes."""
    import tensorflow as tf

    pairs = tf.saved_model.load(str(store / HALF / "1")).signatures["pairs"]
    with pytest.raises(tf.errors.InvalidArgumentError) as refused:
        pairs(x=tf.constant([1.0, 2.0]))
    return refused.value.message.split("[Op:")[0].strip()


def test_a_shape_the_graph_refuses_is_invalid_argument_with_the_graphs_reason(server: RunningServer,
                                                                             store: Path) -> None:
    """The graph's own message reaches the client unchanged, with TF Serving's status on both APIs."""
    reason = _graph_reason_in_process(store)
    assert "MatMul" in reason  # the refusing node is named
    with GrpcClient(server.grpc_target, retries=0) as client, pytest.raises(ServingClientError) as refused:
        client.predict(HALF, {"x": np.array([1.0, 2.0], np.float32)}, signature="pairs")
    assert refused.value.code == "INVALID_ARGUMENT" and reason in refused.value.message
    response = httpx.post(f"{server.rest_url}/v1/models/{HALF}:predict",
                          json={"signature_name": "pairs", "inputs": [1.0, 2.0]})
    assert response.status_code == 400 and reason in response.json()["error"]


def test_grpc_on_a_unix_socket(server: RunningServer) -> None:
    with GrpcClient(f"unix:{server.socket_path}", retries=0) as client:  # type: ignore[attr-defined]
        assert client.predict(HALF, {"x": np.array([[6.0]], np.float32)})["y"].tolist() == [[5.0]]
        assert client.status(HALF).model_version_status[0].state == 30  # AVAILABLE


def test_grpc_channel_arguments_reach_the_server(server: RunningServer) -> None:
    """grpc.max_receive_message_length=1 MB from the flag: a 2 MB request is refused by gRPC itself."""
    with GrpcClient(server.grpc_target, retries=0) as client:
        with pytest.raises(ServingClientError) as refused:
            client.predict(HALF, {"x": np.ones((2**19, 1), np.float32)})
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        assert client.predict(HALF, {"x": np.ones((1000, 1), np.float32)})["y"].shape == (1000, 1)


def test_grpc_channel_argument_flag_errors_and_warnings(caplog: pytest.LogCaptureFixture) -> None:
    base = ["--model_base_path=/models/x"]
    with pytest.raises(FlagError, match=r"grpc\.keepalive_time_ms takes an integer, got '1m'"):
        parse_flags([*base, "--grpc_channel_arguments=grpc.keepalive_time_ms=1m"])
    assert parse_flags([*base, "--grpc_channel_arguments=grpc.keepalive_time_ms=60000"]).grpc_channel_arguments
    from serving.api.grpc_server import create_grpc_server

    async def create() -> None:  # grpc.aio servers belong to a running event loop, as in the server
        create_grpc_server("grpc.not_an_argument=1")

    with caplog.at_level(logging.WARNING, logger="serving"):
        asyncio.run(create())
    assert "grpc.not_an_argument is not a gRPC server argument; ignored" in caplog.text


def test_model_config_with_several_models_reloads_over_both_apis(
        server: RunningServer, store: Path, model_store: Path) -> None:
    """The poll picks up a second model written into the config; both answer over REST and gRPC."""
    write_config(server.config_path, {HALF: str(store / HALF), MODEL: str(model_store / MODEL)},  # type: ignore[attr-defined]
                 labels={MODEL: {"stable": 1}})
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.rest_url}/v1/models/{MODEL}/labels/stable/metadata").status_code != 200:
        assert time.monotonic() < deadline, "the reloaded config never served the second model"
        time.sleep(0.3)
    for name in (HALF, MODEL):
        status = httpx.get(f"{server.rest_url}/v1/models/{name}").json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE", status
    with GrpcClient(server.grpc_target, retries=0) as client:
        assert client.status(MODEL).model_version_status[0].state == 30
        assert client.predict(HALF, {"x": np.array([[0.0]], np.float32)})["y"].tolist() == [[2.0]]
        assert client.metadata(MODEL, label="stable")[0].version.value == 1
    missing = httpx.get(f"{server.rest_url}/v1/models/nope")
    assert missing.status_code == 404
