"""Attacks on the gRPC API of a running server: through grpcio where a client library can send them, as raw
HTTP/2 frames (h2) where none would. Each case asserts the exact status and that both APIs then answer a
normal Predict within a second."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hostile_helpers import GRPC_MAX_CALL, GRPC_MAX_MESSAGE, GRPC_MAX_STREAMS, assert_serving, predict_request
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.api.grpc_server import call_too_long_error

PREDICT = "/tensorflow.serving.PredictionService/Predict"
DEADLINE_EXCEEDED, INTERNAL, OK = "4", "13", "0"


def framed(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\0" + len(message).to_bytes(4, "big") + message


class RawH2:
    """An HTTP/2 connection driven frame by frame, so a test can send what grpcio never would."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_inbound_headers=False))
        self.conn.initiate_connection()
        self.flush()
        self.ends: dict[int, dict[str, str] | str] = {}  # stream id -> trailers, or "reset:<error code>"
        self.settled = False

    def open(self, stream_id: int, *, timeout: str | None = None) -> None:
        headers = [(":method", "POST"), (":scheme", "http"), (":path", PREDICT), (":authority", "x"),
                   ("content-type", "application/grpc"), ("te", "trailers")]
        self.conn.send_headers(stream_id, headers + ([("grpc-timeout", timeout)] if timeout else []))

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def wait_for(self, stream_ids: set[int], within: float) -> float:
        """Read until every stream in ``stream_ids`` has ended; returns the seconds it took."""
        return self._read_until(lambda: stream_ids <= self.ends.keys(), within,
                                lambda: f"streams {sorted(stream_ids - self.ends.keys())} still open")

    def settle(self) -> None:
        """Read until the server's SETTINGS have arrived (and h2 has acknowledged them)."""
        self._read_until(lambda: self.settled, 3, lambda: "no SETTINGS from the server")

    def _read_until(self, done: Callable[[], bool], within: float, what: Callable[[], str]) -> float:
        started = time.monotonic()
        self.sock.settimeout(0.1)
        while not done():
            assert time.monotonic() - started < within, what()
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, "the server closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and \
                        "grpc-status" in dict(event.headers):
                    self.ends[event.stream_id] = dict(event.headers)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id not in self.ends:
                    self.ends[event.stream_id] = f"reset:{h2.errors.ErrorCodes(event.error_code).name}"
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.RemoteSettingsChanged):
                    self.settled = True
            self.flush()
        return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(hostile_server):  # type: ignore[no-untyped-def]
    client = RawH2(hostile_server.grpc_target)
    yield client
    client.close()


def test_oversized_message_is_refused(hostile_server) -> None:  # type: ignore[no-untyped-def]
    request = predict_request()
    request.inputs["padding"].string_val.append(b"p" * GRPC_MAX_MESSAGE)
    with (grpc.insecure_channel(hostile_server.grpc_target, options=[("grpc.max_send_message_length", -1)]) as channel,
          pytest.raises(grpc.RpcError) as error):
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server's configured limit is the one applied (gRPC's wording around the number is its own).
    assert str(GRPC_MAX_MESSAGE) in error.value.details()
    assert_serving(hostile_server)


@pytest.mark.parametrize("sent", ["headers only", "half a message", "half a message, deadline of years"])
def test_a_call_that_never_finishes_ends_at_the_call_limit(hostile_server, raw: RawH2, sent: str) -> None:  # type: ignore[no-untyped-def]
    raw.open(1, timeout="99999999H" if "years" in sent else None)
    if "half" in sent:
        message = framed(predict_request().SerializeToString())
        raw.conn.send_data(1, message[: len(message) // 2])
    raw.flush()
    took = raw.wait_for({1}, within=GRPC_MAX_CALL + 3)
    assert raw.ends[1]["grpc-status"] == DEADLINE_EXCEEDED
    assert raw.ends[1]["grpc-message"] == call_too_long_error(GRPC_MAX_CALL)
    assert took > GRPC_MAX_CALL - 0.2
    assert_serving(hostile_server)


def test_streams_beyond_the_limit_on_one_connection_are_refused(hostile_server, raw: RawH2) -> None:  # type: ignore[no-untyped-def]
    """The server announces its stream limit; a client that ignores it and opens three times as many
    streams, none finishing, has those beyond the limit refused, and those within end at the call limit."""
    raw.settle()
    assert raw.conn.remote_settings.max_concurrent_streams == GRPC_MAX_STREAMS
    raw.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 3 * GRPC_MAX_STREAMS
    raw.conn.remote_settings.acknowledge()  # h2 now lets this client break the server's limit
    streams = {1 + 2 * n for n in range(3 * GRPC_MAX_STREAMS)}
    for stream_id in sorted(streams):
        raw.open(stream_id)
    raw.flush()
    raw.wait_for(streams, within=GRPC_MAX_CALL + 5)
    refused = {s for s, end in raw.ends.items() if end == "reset:REFUSED_STREAM"}
    served = streams - refused
    assert len(served) == GRPC_MAX_STREAMS and len(refused) == 2 * GRPC_MAX_STREAMS, raw.ends
    assert all(raw.ends[s]["grpc-status"] == DEADLINE_EXCEEDED for s in served)  # type: ignore[index]
    assert_serving(hostile_server)


@pytest.mark.parametrize("timeout", ["abc", "-1S", "1X", "S"])
def test_bad_grpc_timeout_is_refused(hostile_server, raw: RawH2, timeout: str) -> None:  # type: ignore[no-untyped-def]
    """Not a valid grpc-timeout (digits, then a unit letter): refused by gRPC before any servicer runs."""
    raw.open(1, timeout=timeout)
    raw.conn.send_data(1, framed(predict_request().SerializeToString()), end_stream=True)
    raw.flush()
    raw.wait_for({1}, within=3)
    assert raw.ends[1]["grpc-status"] == INTERNAL
    assert raw.ends[1]["grpc-message"] == "Error parsing 'grpc-timeout' metadata"
    assert_serving(hostile_server)


def test_a_deadline_of_years_is_served(hostile_server, raw: RawH2) -> None:  # type: ignore[no-untyped-def]
    raw.open(1, timeout="99999999H")
    raw.conn.send_data(1, framed(predict_request().SerializeToString()), end_stream=True)
    raw.flush()
    raw.wait_for({1}, within=3)
    assert raw.ends[1]["grpc-status"] == OK
    assert_serving(hostile_server)
