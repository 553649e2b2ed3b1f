"""One gRPC protocol suite, run against both gRPC transports (grpcio's server and the native one).

The service here echoes what it received, so each test checks what the transport delivered and how it
answered: metadata, deadlines, status codes and messages, compression, big messages, multiplexing,
cancellation and a graceful stop. The model services themselves run on the default transport in every
other serving test.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc
import numpy as np
import pytest

from serving.native_grpc import NativeGrpcServer, native_available, parse_timeout, percent_encode

BIG = 8 * 1024 * 1024


def _deserialize(raw: bytes) -> bytes:
    if raw == b"bad":
        raise ValueError("not a message")
    return raw


async def echo(request: bytes, context) -> bytes:
    metadata = [[k, v.decode("latin-1") if isinstance(v, bytes) else v, isinstance(v, bytes)]
                for k, v in context.invocation_metadata()]
    return json.dumps({"size": len(request), "metadata": metadata, "remaining": context.time_remaining()}).encode()


async def mirror(request: bytes, context) -> bytes:
    return request


async def slow(request: bytes, context) -> bytes:
    await asyncio.sleep(float(request or b"0.3"))
    return b"done"


async def fail(request: bytes, context) -> bytes:
    if request == b"abort":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "Serving signature key \"x\" not found. % ünï")
    raise RuntimeError("servicer bug")


HANDLERS = grpc.method_handlers_generic_handler("test.Echo", {
    name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=_deserialize, response_serializer=bytes)
    for name, fn in {"Echo": echo, "Mirror": mirror, "Slow": slow, "Fail": fail}.items()
})


class Running:
    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def start() -> None:
            if transport == "native":
                self.server = NativeGrpcServer("127.0.0.1", 0)
                self.server.add_generic_rpc_handlers((HANDLERS,))
                self.port = await self.server.start()
            else:
                self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**31 - 1),
                                                       ("grpc.max_send_message_length", 2**31 - 1)])
                self.server.add_generic_rpc_handlers((HANDLERS,))
                self.port = self.server.add_insecure_port("127.0.0.1:0")
                await self.server.start()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[
            ("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)])

    def call(self, method: str, request: bytes = b"", **kwargs) -> bytes:
        return self.channel.unary_unary(f"/test.Echo/{method}")(request, **kwargs)

    def stop(self, grace: float = 1.0) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(params=["grpcio", "native"])
def server(request: pytest.FixtureRequest) -> Iterator[Running]:
    if request.param == "native":
        assert native_available(), ("serving/_native_grpc is not built: apt-get install gcc python3.11-dev "
                                    "libnghttp2-dev, then make install")
    running = Running(request.param)
    yield running
    running.stop()


def test_metadata_and_deadline_reach_the_servicer(server: Running) -> None:
    answer = json.loads(server.call("Echo", b"12345", timeout=5, metadata=(
        ("authorization", "Bearer t0k3n"), ("x-client-id", "card-42"), ("trace-bin", b"\x00\xff\x10"))))
    assert answer["size"] == 5
    metadata = {k: (v, binary) for k, v, binary in answer["metadata"]}
    assert metadata["authorization"] == ("Bearer t0k3n", False)
    assert metadata["x-client-id"] == ("card-42", False)
    assert metadata["trace-bin"] == ("\x00\xff\x10", True)  # -bin values arrive decoded, as bytes
    assert not any(k in metadata for k in ("content-type", "te", "grpc-timeout", ":path"))
    assert 3 < answer["remaining"] <= 5.1  # grpcio rounds the deadline it receives up a little
    assert json.loads(server.call("Echo", b""))["remaining"] is None  # no deadline sent


def test_unknown_method_is_unimplemented(server: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        server.channel.unary_unary("/test.Echo/Nope")(b"")
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as error:
        server.channel.unary_unary("/no.Such/Service")(b"")
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_abort_keeps_code_and_message(server: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        server.call("Fail", b"abort")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details() == "Serving signature key \"x\" not found. % ünï"


def test_servicer_bug_is_unknown_and_the_server_stays_up(server: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        server.call("Fail", b"bug")
    assert error.value.code() == grpc.StatusCode.UNKNOWN
    assert "servicer bug" in error.value.details()
    assert server.call("Mirror", b"still here") == b"still here"


def test_undecodable_request_is_unknown_as_in_grpc_aio(server: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        server.call("Mirror", b"bad")
    assert error.value.code() == grpc.StatusCode.UNKNOWN
    assert error.value.details() == "Unexpected <class 'ValueError'>: not a message"


def test_big_messages_both_ways(server: Running) -> None:
    payload = bytes(range(256)) * (BIG // 256)
    assert server.call("Mirror", payload, timeout=30) == payload


def test_compressed_requests(server: Running) -> None:
    payload = b"feature_0 " * 10000
    for compression in (grpc.Compression.Gzip, grpc.Compression.Deflate):
        assert server.call("Mirror", payload, compression=compression) == payload


def test_many_calls_multiplexed_on_one_connection(server: Running) -> None:
    payloads = [f"call {i} ".encode() * (1 + i % 50) for i in range(300)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda p: server.call("Mirror", p, timeout=30), payloads))
    assert answers == payloads


def test_deadline_and_cancel_leave_the_server_serving(server: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        server.call("Slow", b"0.5", timeout=0.1)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    future = server.channel.unary_unary("/test.Echo/Slow").future(b"0.3")
    time.sleep(0.05)
    future.cancel()
    assert future.cancelled()
    time.sleep(0.4)  # the servicer finished; its answer has nowhere to go
    assert server.call("Mirror", b"after") == b"after"


def test_stop_lets_calls_in_flight_finish(server: Running) -> None:
    future = server.channel.unary_unary("/test.Echo/Slow").future(b"0.3", timeout=5)
    time.sleep(0.1)
    stopped = asyncio.run_coroutine_threadsafe(server.server.stop(2), server.loop)
    assert future.result() == b"done"
    stopped.result(5)
    with pytest.raises(grpc.RpcError) as error:  # nothing listens any more
        server.call("Mirror", b"x", timeout=2)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def _h2_request(port: int, content_type: bytes, method: bytes = b"POST") -> bytes:
    """One HTTP/2 request by hand (HPACK literals, no Huffman); the raw frames of the answer."""
    def literal(name: bytes, value: bytes) -> bytes:
        return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value

    block = (literal(b":method", method) + literal(b":scheme", b"http") + literal(b":path", b"/test.Echo/Mirror")
             + literal(b":authority", b"localhost") + literal(b"content-type", content_type))
    frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00" + struct.pack(">I", 0)
    frames += struct.pack(">I", len(block))[1:] + b"\x01\x05" + struct.pack(">I", 1) + block  # END_STREAM|END_HEADERS
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(frames)
        received = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            pos = 0
            while pos + 9 <= len(received):
                length = int.from_bytes(received[pos:pos + 3], "big")
                kind, flags, stream = received[pos + 3], received[pos + 4], int.from_bytes(received[pos + 5:pos + 9], "big")
                if kind == 1 and stream == 1:
                    return received[pos + 9:pos + 9 + length]
                pos += 9 + length
    raise AssertionError("no HEADERS frame answered the request")


def test_native_refuses_non_grpc_requests_with_http_status() -> None:
    """As gRPC servers answer plain HTTP/2 clients: 415 for another content type, 405 for another method.
    The status is HPACK-encoded as literal ':status' (static index 8) with the three digits."""
    assert native_available()
    running = Running("native")
    try:
        assert b"\x03415" in _h2_request(running.port, b"application/json")
        assert b"\x03405" in _h2_request(running.port, b"application/grpc", method=b"PUT")
        assert running.call("Mirror", b"ok") == b"ok"
    finally:
        running.stop()


def test_timeout_and_message_encodings() -> None:
    assert parse_timeout("100m") == pytest.approx(0.1)
    assert parse_timeout("5S") == 5 and parse_timeout("2H") == 7200 and parse_timeout("30u") == pytest.approx(3e-5)
    assert parse_timeout("123456789S") is None and parse_timeout("S") is None and parse_timeout("1x") is None
    assert percent_encode("plain text") == b"plain text"
    assert percent_encode("100% ü\n") == b"100%25 %C3%BC%0A"


def test_the_model_services_answer_alike_on_both_transports(model_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real servicers behind each transport: same prediction, status and error for the same calls."""
    from serving.client import GrpcClient, ServingClientError
    from serving.demo_model import raw_row
    from serving_helpers import start_server

    inputs = {alias: np.array([value], np.float32) for alias, value in raw_row(3).items()}
    seen = {}
    for transport in ("grpcio", "native"):
        (tmp_path / transport).mkdir()
        server = start_server(tmp_path / transport, "--model_name=demo", f"--model_base_path={model_store / 'demo'}",
                              f"--grpc_transport={transport}")
        try:
            front = type(server.server.grpc_server).__name__
            assert (front == "NativeGrpcServer") == (transport == "native"), front
            with GrpcClient(server.grpc_target, retries=0) as client:
                predicted = client.predict("demo", inputs, signature="predict_raw")
                status = client.status("demo")
                with pytest.raises(ServingClientError) as missing:
                    client.predict("no_such_model", inputs)
            seen[transport] = ({k: v.tolist() for k, v in predicted.items()}, str(status),
                               missing.value.code, missing.value.message)
        finally:
            server.stop()
    assert seen["grpcio"] == seen["native"]
    assert 0.0 <= seen["native"][0]["probabilities"][0][0] <= 1.0
    assert seen["native"][2:] == ("NOT_FOUND", "Servable not found for request: Latest(no_such_model)")
