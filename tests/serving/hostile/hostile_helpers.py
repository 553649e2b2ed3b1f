"""The hostile-request suite's bounds and the checks every case ends with: the attack got its exact answer,
and the server still answers a normal Predict on both APIs within 1 s."""
from __future__ import annotations

import json
import socket

import grpc
import numpy as np
from serving_helpers import MODEL, closed_by_peer, post, read_response
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.demo_model import raw_row
from serving.protocol.tensors import to_proto
from serving.server import RunningServer

READ_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.5
MAX_BODY = 4096
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
MAX_CONNECTIONS = 24
MAX_PIPELINED = 8
GRPC_MAX_MESSAGE = 64 * 1024
GRPC_MAX_STREAMS = 8
GRPC_MAX_CALL = 1.0
ALIVE_WITHIN = 1.0  # a normal Predict answers within this after every attack
SERVER_FLAGS = (
    "--file_system_poll_wait_seconds=0", f"--request_read_timeout_seconds={READ_TIMEOUT}",
    f"--rest_api_idle_timeout_seconds={IDLE_TIMEOUT}",
    f"--rest_api_max_body_bytes={MAX_BODY}", f"--rest_api_max_header_bytes={MAX_HEADER_BYTES}",
    f"--rest_api_max_headers={MAX_HEADERS}", f"--rest_api_max_connections={MAX_CONNECTIONS}",
    f"--rest_api_max_pipelined_requests={MAX_PIPELINED}", f"--grpc_max_receive_message_bytes={GRPC_MAX_MESSAGE}",
    f"--grpc_max_concurrent_streams={GRPC_MAX_STREAMS}", f"--grpc_max_call_seconds={GRPC_MAX_CALL}")
PREDICT_PATH = f"/v1/models/{MODEL}:predict"
PREDICT_BODY = json.dumps({"signature_name": "predict_raw", "instances": [raw_row(0)]}).encode()


def connect(server: RunningServer, timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.server.rest_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def assert_refused(sock: socket.socket, status: int, error: str) -> None:
    """The exact answer of a refused request: ``status``, TF Serving's JSON error, and a closed connection."""
    got, headers, body, _ = read_response(sock, bytearray())
    assert (got, json.loads(body)) == (status, {"error": error})
    assert headers["connection"] == "close" and closed_by_peer(sock)


def rest_predict(server: RunningServer, within: float = ALIVE_WITHIN) -> list:
    with connect(server, timeout=within) as sock:
        sock.sendall(post(PREDICT_PATH, PREDICT_BODY, "Connection: close"))
        status, _, body, _ = read_response(sock, bytearray())
    assert status == 200, body
    return json.loads(body)["predictions"]


def predict_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_raw"
    for name, value in raw_row(0).items():
        request.inputs[name].CopyFrom(to_proto(np.array([value], np.float32)))
    return request


def grpc_predict(server: RunningServer, within: float = ALIVE_WITHIN) -> predict_pb2.PredictResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request(), timeout=within)


def assert_serving(server: RunningServer, within: float = ALIVE_WITHIN) -> None:
    """Both APIs answer a normal Predict within ``within`` seconds (a hang or a dead loop fails here)."""
    assert server.thread.is_alive(), "the server's event-loop thread died"
    assert len(rest_predict(server, within)) == 1
    assert "probabilities" in grpc_predict(server, within).outputs
