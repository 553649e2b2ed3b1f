"""The gRPC server as the model server builds it (grpc.aio with its options), with an echo service.

Each test checks what reached the servicer and how the server answered: metadata, deadlines, status
codes and messages, compression, messages beyond gRPC's default 4 MB, multiplexing, cancellation, a
graceful stop, and TF Serving's ``--grpc_channel_arguments``.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from serving_helpers import LoopThread

from serving.api.grpc_server import ChannelArgumentError, create_grpc_server, listen, parse_channel_arguments
from serving.server import pick_free_port

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
    def __init__(self, channel_arguments: str = "") -> None:
        async def start() -> int:  # grpc.aio servers belong to the loop they are made on
            self.server = create_grpc_server(channel_arguments)
            self.server.add_generic_rpc_handlers((HANDLERS,))
            port = listen(self.server, "127.0.0.1", pick_free_port())
            await self.server.start()
            return port

        self.loop = LoopThread()
        self.port = self.loop.run(start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[  # the client's own limits
            ("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)])

    def call(self, method: str, request: bytes = b"", **kwargs) -> bytes:
        return self.channel.unary_unary(f"/test.Echo/{method}")(request, **kwargs)

    def stop(self, grace: float = 1.0) -> None:
        self.channel.close()
        self.loop.run(self.server.stop(grace))
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    running = Running()
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


def test_stop_lets_calls_in_flight_finish() -> None:
    server = Running()
    future = server.channel.unary_unary("/test.Echo/Slow").future(b"0.3", timeout=5)
    time.sleep(0.1)
    stopped = server.loop.submit(server.server.stop(2))
    assert future.result() == b"done"
    stopped.result(5)
    with pytest.raises(grpc.RpcError) as error:  # nothing listens any more
        server.call("Mirror", b"x", timeout=2)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    server.channel.close()
    server.loop.close()


def test_channel_arguments_reach_the_server() -> None:
    """grpc.max_receive_message_length=1000 (as TF Serving's --grpc_channel_arguments) replaces our
    unlimited default: a bigger request is refused by gRPC itself."""
    running = Running("grpc.max_receive_message_length=1000, grpc.max_concurrent_streams=10")
    try:
        assert running.call("Mirror", b"x" * 900) == b"x" * 900
        with pytest.raises(grpc.RpcError) as error:
            running.call("Mirror", b"x" * 2000)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        running.stop()


def test_channel_argument_parsing(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_channel_arguments("") == {}
    assert parse_channel_arguments("grpc.keepalive_time_ms=60000,grpc.primary_user_agent=esteira") == {
        "grpc.keepalive_time_ms": 60000, "grpc.primary_user_agent": "esteira"}
    with caplog.at_level("WARNING", logger="serving"):
        assert parse_channel_arguments("grpc.no_such_thing=1,grpc.max_concurrent_streams=5") == {
            "grpc.max_concurrent_streams": 5}
    assert "grpc.no_such_thing is not a gRPC server argument; ignored" in caplog.text
    with pytest.raises(ChannelArgumentError, match=r"grpc\.max_concurrent_streams takes an integer, got 'many'"):
        parse_channel_arguments("grpc.max_concurrent_streams=many")
    with pytest.raises(ChannelArgumentError, match=r"'grpc\.keepalive_time_ms' is not key=value"):
        parse_channel_arguments("grpc.keepalive_time_ms")
