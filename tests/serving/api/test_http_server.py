"""The REST server (uvicorn + the ASGI app) as clients meet it, over raw sockets.

The handler here echoes what it received, so each test checks what reached the handler and how the answer
was framed: keep-alive, pipelining, chunked and gzip bodies, 100-continue, the body and head limits, the
read and keep-alive timeouts, error bodies, headers and a graceful stop.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import random
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving_helpers import LoopThread, closed_by_peer, post, read_response

from serving.api.asgi import Limits, Request, Response
from serving.api.http_server import RestServer, _OneWriteTransport
from serving.protocol.json_codec import write_error

LIMITS = Limits(max_body_bytes=1000, request_timeout=0.5, keepalive_timeout=1.5)
BIG = 4 * 1024 * 1024


async def echo(request: Request) -> Response:
    if request.target == "/boom":
        raise RuntimeError("handler bug")
    if request.target == "/big":
        return Response(200, b"x" * BIG, content_type="application/octet-stream")
    if request.target.startswith("/slow"):
        await asyncio.sleep(float(request.target.rsplit("/", 1)[-1]) if request.target.startswith("/slow/0.") else 0.05)
    if request.target == "/close":
        return Response(200, b"{}", close=True)
    body = json.dumps({"method": request.method, "target": request.target, "body": request.body.decode("latin-1"),
                       "headers": request.headers, "peer": request.peer}).encode()
    return Response(200, body, headers=(("X-Echo", "yes"),))


class Running:
    def __init__(self) -> None:
        self.server = RestServer(echo, "127.0.0.1", 0, LIMITS, write_error)
        self.loop = LoopThread()
        self.port = self.loop.run(self.server.start())

    def stop(self) -> None:
        self.loop.run(self.server.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def connect(server: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def test_keep_alive_and_exact_headers(server: Running) -> None:
    with connect(server) as sock:
        buffer = bytearray()
        for n in range(3):
            sock.sendall(post(f"/echo/{n}", b"hello", "X-Custom:  padded  ", "x-custom: second"))
            status, headers, body, names = read_response(sock, buffer)
            assert status == 200
            assert names == ["date", "content-type", "x-echo", "content-length"]  # no Server header, no Connection
            echoed = json.loads(body)
            assert echoed["target"] == f"/echo/{n}" and echoed["body"] == "hello"
            assert echoed["headers"]["x-custom"] == "padded, second"  # names lower-cased, repeats joined
            assert echoed["peer"] == f"127.0.0.1:{sock.getsockname()[1]}"
            assert headers["date"].endswith(" GMT")


def test_pipelined_requests_answer_in_order(server: Running) -> None:
    with connect(server) as sock:
        sock.sendall(post("/slow/a", b"1") + post("/b", b"22") + post("/slow/c", b"333"))
        buffer = bytearray()
        seen = [json.loads(read_response(sock, buffer)[2]) for _ in range(3)]
        assert [(s["target"], s["body"]) for s in seen] == [("/slow/a", "1"), ("/b", "22"), ("/slow/c", "333")]


def test_chunked_and_gzip_bodies(server: Running) -> None:
    with connect(server) as sock:
        buffer = bytearray()
        chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
        sock.sendall(chunked[:30])
        time.sleep(0.05)
        sock.sendall(chunked[30:])
        assert json.loads(read_response(sock, buffer)[2])["body"] == "hello, world"
        sock.sendall(post("/g", gzip.compress(b"zipped body"), "Content-Encoding: gzip"))
        assert json.loads(read_response(sock, buffer)[2])["body"] == "zipped body"
        sock.sendall(post("/g", b"not gzip at all", "Content-Encoding: gzip"))
        status, headers, body, _ = read_response(sock, buffer)
        assert status == 400 and "not valid gzip" in json.loads(body)["error"]
        assert headers["connection"] == "close" and closed_by_peer(sock)


def test_expect_100_continue(server: Running) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(1024)
        assert bytes(buffer).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buffer[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        sock.sendall(b"body")
        status, _, body, _ = read_response(sock, buffer)
        assert status == 200 and json.loads(body)["body"] == "body"


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_malformed_requests_are_refused_by_the_parser(server: Running, raw: bytes) -> None:
    """httptools refuses what is not HTTP/1.1: 400 with a JSON error, and the connection closes."""
    with connect(server) as sock:
        sock.sendall(raw)
        got, headers, body, _ = read_response(sock, bytearray())
        assert got == 400 and json.loads(body)["error"].startswith("Malformed HTTP request: ")
        assert headers["connection"] == "close" and closed_by_peer(sock)


@pytest.mark.parametrize(("raw", "status", "message"), [
    (b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413,
     "Request body of 5000 bytes exceeds the limit of 1000 bytes; send fewer rows per request or raise "
     "--rest_api_max_body_bytes"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"a" * 0x800 + b"\r\n", 413,
     "Request body of 2048 bytes exceeds"),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000, 431, "Request headers exceed 65536 bytes"),
])
def test_limits_answer_with_a_json_error_and_close(server: Running, raw: bytes, status: int, message: str) -> None:
    with connect(server) as sock:
        sock.sendall(raw)
        got, headers, body, _ = read_response(sock, bytearray())
        assert got == status and json.loads(body)["error"].startswith(message)
        assert headers["connection"] == "close" and closed_by_peer(sock)


def test_slow_clients_get_408_and_idle_connections_close(server: Running) -> None:
    with connect(server) as slow_body, connect(server) as slow_head, connect(server) as idle:
        slow_body.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        slow_head.sendall(b"POST / HTTP/1.1\r\nContent-Le")
        started = time.monotonic()
        for sock in (slow_body, slow_head):
            status, _headers, body, _ = read_response(sock, bytearray())
            assert status == 408 and "within 0.5 s" in json.loads(body)["error"]
            assert 0.4 <= time.monotonic() - started < 3
            assert closed_by_peer(sock)
        assert closed_by_peer(idle)  # nothing sent: closed after the keep-alive timeout (1.5 s)
        assert time.monotonic() - started >= 1.0


def test_connection_close_and_http10(server: Running) -> None:
    with connect(server) as sock:
        sock.sendall(post("/x", b"", "Connection: close"))
        status, headers, _, _ = read_response(sock, bytearray())
        assert status == 200 and headers["connection"] == "close" and closed_by_peer(sock)
    with connect(server) as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        status, headers, _, _ = read_response(sock, bytearray())
        assert status == 200 and headers["connection"] == "close" and closed_by_peer(sock)
    with connect(server) as sock:  # uvicorn keeps only HTTP/1.1 connections alive
        sock.sendall(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _, _ = read_response(sock, bytearray())
        assert status == 200 and headers["connection"] == "close" and closed_by_peer(sock)
    with connect(server) as sock:  # the handler asks to close
        sock.sendall(post("/close", b""))
        status, headers, _, _ = read_response(sock, bytearray())
        assert status == 200 and headers["connection"] == "close" and closed_by_peer(sock)


def test_large_response_and_handler_failure(server: Running) -> None:
    with connect(server) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        status, headers, body, _ = read_response(sock, buffer)
        assert status == 200 and len(body) == BIG and headers["content-type"] == "application/octet-stream"
        sock.sendall(b"GET /boom HTTP/1.1\r\n\r\n")
        status, _, body, _ = read_response(sock, buffer)
        assert status == 500 and json.loads(body) == {"error": "Internal server error; see the server log"}
        sock.sendall(b"GET /after HTTP/1.1\r\n\r\n")  # the connection survives a handler bug
        assert json.loads(read_response(sock, buffer)[2])["target"] == "/after"


def test_many_concurrent_connections(server: Running) -> None:
    def client(n: int) -> list[str]:
        seen = []
        with connect(server) as sock:
            buffer = bytearray()
            for i in range(20):
                payload = f"{n}-{i}".encode()
                sock.sendall(post(f"/slow/{n}" if i % 5 == 0 else f"/{n}", payload))
                seen.append(json.loads(read_response(sock, buffer)[2])["body"])
        return seen

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(client, range(40)))
    assert results == [[f"{n}-{i}" for i in range(20)] for n in range(40)]


def test_stop_finishes_requests_in_flight_and_closes_connections() -> None:
    running = Running()
    idle, busy = connect(running), connect(running)
    idle.sendall(post("/x", b""))
    assert read_response(idle, bytearray())[0] == 200
    busy.sendall(post("/slow/0.5", b"in flight"))
    time.sleep(0.1)
    running.stop()  # returns once the request in flight has been answered
    status, headers, body, _ = read_response(busy, bytearray())
    assert status == 200 and json.loads(body)["body"] == "in flight" and headers["connection"] == "close"
    assert closed_by_peer(idle) and closed_by_peer(busy)
    idle.close()
    busy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=1).close()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(out) + 1)
        if kind == 0 and out:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 1:  # insert random bytes, sometimes CR/LF/colon/space heavy
            alphabet = b"\r\n: ;0123456789abcdefABCDEF-" if rng.random() < 0.5 else bytes(range(256))
            out[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        elif kind == 2:  # truncate
            del out[pos:]
        elif kind == 3:  # a second request after this one (pipelining), maybe glued without a boundary
            out += rng.choice(SEEDS)
        elif kind == 4:  # duplicate a slice
            end = min(len(out), pos + rng.randint(1, 64))
            out[pos:pos] = out[pos:end]
        else:  # a long run of one byte
            out[pos:pos] = bytes([rng.randrange(256)]) * rng.randint(100, 70000)
    return bytes(out)


SEEDS = [
    post("/v", b'{"instances": [1.0]}'),
    b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /g HTTP/1.0\r\nConnection: keep-alive\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
]


def test_mutated_requests_never_break_the_transport(server: Running) -> None:
    """400 mutated requests (flipped, inserted, truncated, glued, oversized bytes): each connection gets
    answers or is closed, never a crash or a hang, and the server then answers a clean request."""
    rng = random.Random(20261122)
    cases = [_mutate(rng.choice(SEEDS), rng) for _ in range(400)]

    def send(data: bytes) -> list[int]:
        statuses: list[int] = []
        with connect(server) as sock:
            sock.settimeout(3)
            try:
                sock.sendall(data)
                buffer = bytearray()
                while True:
                    statuses.append(read_response(sock, buffer)[0])
                    if bytes(buffer[:25]) == b"HTTP/1.1 100 Continue\r\n\r\n":
                        del buffer[:25]
            except (ConnectionError, OSError, ValueError, IndexError):
                pass  # closed, reset, or a 100 Continue / half response before the timeout
        return statuses

    with ThreadPoolExecutor(max_workers=32) as pool:
        answered = list(pool.map(send, cases))
    assert all(status in (100, 200, 400, 408, 413, 431, 500) for statuses in answered for status in statuses)
    assert sum(1 for statuses in answered if statuses) > 100  # most mutations still got an answer
    with connect(server) as sock:
        sock.sendall(post("/after", b"ok"))
        status, _, body, _ = read_response(sock, bytearray())
        assert status == 200 and json.loads(body)["target"] == "/after"


class _Recorder:
    """A transport that records each write, as the socket would see it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def test_a_response_head_leaves_with_its_body_in_one_write() -> None:
    raw = _Recorder()
    transport = _OneWriteTransport(raw)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it: never held
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.get_write_buffer_size() > 0 and len(raw.writes) == 1
    transport.write(b"{}")
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")  # a HEAD answer: no body follows
    transport.flush()  # at the response's end
    transport.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    transport.close()  # a held head goes out before the close
    assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
                          b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", b"HTTP/1.1 503 Service Unavailable\r\n\r\n"]
    assert raw.closed
