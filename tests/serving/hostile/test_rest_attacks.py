"""Protocol attacks on the REST API of a running server (raw sockets, loopback). Each case asserts the exact
answer (status and JSON error, then a closed connection) and that both APIs then answer a normal Predict
within a second."""
from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from hostile_helpers import (
    IDLE_TIMEOUT,
    MAX_BODY,
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_PIPELINED,
    PREDICT_BODY,
    PREDICT_PATH,
    READ_TIMEOUT,
    assert_refused,
    assert_serving,
    connect,
    grpc_predict,
)
from serving_helpers import MODEL, closed_by_peer, post, read_response

from serving.api.asgi import read_timeout_error, too_large_error
from serving.api.http_server import (
    MALFORMED,
    headers_too_large_error,
    too_many_connections_error,
    too_many_headers_error,
)
from serving.protocol.json_codec import TOO_DEEP

CHUNKED = f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n".encode()
LENGTH = f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: x\r\n".encode()

MALFORMED_REQUESTS = {
    "negative chunk size": CHUNKED + b"\r\n-7\r\nabcdefg\r\n0\r\n\r\n",
    "non-hex chunk size": CHUNKED + b"\r\nzz\r\nab\r\n0\r\n\r\n",
    "chunk size beyond 64 bits": CHUNKED + b"\r\n1ffffffffffffffff\r\nab\r\n0\r\n\r\n",
    "chunk data without its CRLF": CHUNKED + b"\r\n2\r\n{}XX0\r\n\r\n",
    "Content-Length beyond 64 bits": LENGTH + b"Content-Length: 92233720368547758085\r\n\r\n{}",
    "negative Content-Length": LENGTH + b"Content-Length: -5\r\n\r\n{}",
    "non-numeric Content-Length": LENGTH + b"Content-Length: 2x\r\n\r\n{}",
    "two Content-Lengths that differ": LENGTH + b"Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}GET /",
    "Transfer-Encoding with Content-Length": LENGTH +
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding not ending in chunked": LENGTH + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "whitespace before a header colon": LENGTH + b"Content-Length : 2\r\n\r\n{}",
}


@pytest.mark.parametrize("raw", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS.keys())
def test_malformed_framing_is_refused_and_closed(hostile_server, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    """Every ambiguous body framing is refused, never guessed: a proxy in front can not smuggle a second
    request through a length it reads differently."""
    with connect(hostile_server) as sock:
        sock.sendall(raw)
        assert_refused(sock, 400, MALFORMED)
    assert_serving(hostile_server)


def test_trailers_do_not_become_headers(hostile_server) -> None:  # type: ignore[no-untyped-def]
    """httptools reports a chunked body's trailers as headers; the server drops them, so a trailer can not
    set Content-Encoding, a request id or a bearer token after the head was checked."""
    trailers = b"Content-Encoding: gzip\r\nX-Request-Id: set-by-a-trailer\r\nAuthorization: Bearer x\r\n"
    with connect(hostile_server) as sock:
        sock.sendall(CHUNKED + b"\r\n%x\r\n%s\r\n0\r\n%s\r\n" % (len(PREDICT_BODY), PREDICT_BODY, trailers))
        status, headers, body, _ = read_response(sock, bytearray())
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
    assert headers["x-request-id"] != "set-by-a-trailer"
    assert_serving(hostile_server)


def _send_slowly(sock, data: bytes, step: int = 1) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(data), step):
        try:
            sock.sendall(data[start:start + step])
        except (BrokenPipeError, ConnectionResetError):
            return  # refused before the client finished: the answer is waiting in the socket


@pytest.mark.parametrize("slowly", [False, True], ids=["one write", "byte by byte"])
def test_more_headers_than_the_limit(hostile_server, slowly: bool) -> None:  # type: ignore[no-untyped-def]
    raw = LENGTH + b"".join(b"X-%d: %d\r\n" % (n, n) for n in range(MAX_HEADERS + 5)) + b"Content-Length: 2\r\n\r\n{}"
    with connect(hostile_server) as sock:
        _send_slowly(sock, raw, 1 if slowly else len(raw))
        assert_refused(sock, 431, too_many_headers_error(MAX_HEADERS))
    assert_serving(hostile_server)


@pytest.mark.parametrize("slowly", [False, True], ids=["one write", "byte by byte"])
def test_header_block_over_the_limit(hostile_server, slowly: bool) -> None:  # type: ignore[no-untyped-def]
    raw = LENGTH + b"X-Padding: " + b"p" * MAX_HEADER_BYTES + b"\r\nContent-Length: 2\r\n\r\n{}"
    with connect(hostile_server) as sock:
        _send_slowly(sock, raw, 1 if slowly else len(raw))
        assert_refused(sock, 431, headers_too_large_error(MAX_HEADER_BYTES))
    assert_serving(hostile_server)


def test_body_over_the_limit_in_one_write(hostile_server) -> None:  # type: ignore[no-untyped-def]
    with connect(hostile_server) as sock:
        sock.sendall(post(PREDICT_PATH, b"[" * (MAX_BODY + 1)))
        assert_refused(sock, 413, too_large_error(MAX_BODY + 1, MAX_BODY))
    assert_serving(hostile_server)


def test_body_over_the_limit_sent_slowly(hostile_server) -> None:  # type: ignore[no-untyped-def]
    """Chunked, 512 bytes every 20 ms: refused as soon as it outgrows the limit, long before the read timeout."""
    with connect(hostile_server) as sock:
        sock.sendall(CHUNKED + b"\r\n")
        started = time.monotonic()
        for _ in range(MAX_BODY // 512 + 1):
            sock.sendall(b"200\r\n" + b" " * 512 + b"\r\n")
            time.sleep(0.02)
        assert_refused(sock, 413, too_large_error(MAX_BODY + 512, MAX_BODY))
        assert time.monotonic() - started < READ_TIMEOUT
    assert_serving(hostile_server)


@pytest.mark.parametrize("partial", [LENGTH + b"X-Slow: ", post(PREDICT_PATH, PREDICT_BODY)[:-10]],
                         ids=["head never ends", "body never ends"])
def test_a_request_that_never_completes_gets_408(hostile_server, partial: bytes) -> None:  # type: ignore[no-untyped-def]
    with connect(hostile_server) as sock:
        sock.sendall(partial)
        started = time.monotonic()
        assert_refused(sock, 408, read_timeout_error(READ_TIMEOUT))
        assert READ_TIMEOUT - 0.5 < time.monotonic() - started < READ_TIMEOUT + 2
    assert_serving(hostile_server)


@pytest.mark.parametrize("sent", [b"", b"\r\n"], ids=["nothing", "CRLFs forever"])
def test_a_connection_without_a_request_closes_after_the_idle_timeout(hostile_server, sent: bytes) -> None:  # type: ignore[no-untyped-def]
    """Bytes that begin no request (httptools skips CRLFs between requests) do not keep a connection open."""
    with connect(hostile_server) as sock:
        started = time.monotonic()
        while time.monotonic() - started < IDLE_TIMEOUT + 2:
            try:
                sock.sendall(sent)
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        closed_after = time.monotonic() - started
    assert IDLE_TIMEOUT - 0.3 < closed_after < IDLE_TIMEOUT + 1
    assert_serving(hostile_server)


def test_slow_loris_holding_every_connection(hostile_server) -> None:  # type: ignore[no-untyped-def]
    """MAX_CONNECTIONS clients trickle a head a byte at a time: one more connection is answered 503 and
    closed at once, gRPC keeps answering, every trickling head is cut off with 408 within the read
    timeout, and REST then answers again."""
    loris = [connect(hostile_server) for _ in range(MAX_CONNECTIONS)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for sock in loris:
                with contextlib.suppress(OSError):  # refused with 408: the answer waits in the socket
                    sock.send(b"a")
            stop.wait(0.1)

    sender = threading.Thread(target=trickle, daemon=True)
    for sock in loris:
        sock.sendall(LENGTH + b"X-Trickle: ")
    sender.start()
    try:
        time.sleep(0.2)  # every connection accepted
        with connect(hostile_server) as extra:
            assert_refused(extra, 503, too_many_connections_error(MAX_CONNECTIONS))
        assert "probabilities" in grpc_predict(hostile_server).outputs  # the other API is not held
        for sock in loris:
            assert_refused(sock, 408, read_timeout_error(READ_TIMEOUT))
    finally:
        stop.set()
        sender.join()
        for sock in loris:
            sock.close()
    assert_serving(hostile_server)


def test_pipelined_requests_are_answered_in_order(hostile_server) -> None:  # type: ignore[no-untyped-def]
    with connect(hostile_server) as sock:
        sock.sendall(post(PREDICT_PATH, PREDICT_BODY) + post(PREDICT_PATH, b"{]") + post(PREDICT_PATH, PREDICT_BODY))
        buffer = bytearray()
        statuses = [read_response(sock, buffer)[0] for _ in range(3)]
    assert statuses == [200, 400, 200]
    assert_serving(hostile_server)


def test_pipelining_beyond_the_limit_closes_after_the_queued_requests(hostile_server) -> None:  # type: ignore[no-untyped-def]
    """One request being answered and MAX_PIPELINED queued are answered in order, the last with
    Connection: close; the requests beyond were never read, and a client sends them again."""
    status_request = f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with connect(hostile_server) as sock:
        sock.sendall(status_request * (MAX_PIPELINED + 20))
        buffer = bytearray()
        answers = [read_response(sock, buffer) for _ in range(MAX_PIPELINED + 1)]
        assert [status for status, _, _, _ in answers] == [200] * (MAX_PIPELINED + 1)
        assert answers[-1][1]["connection"] == "close" and "connection" not in answers[0][1]
        assert not buffer and closed_by_peer(sock)
    assert_serving(hostile_server)


def test_invalid_utf8_body(hostile_server) -> None:  # type: ignore[no-untyped-def]
    with connect(hostile_server) as sock:
        sock.sendall(post(PREDICT_PATH, b'{"instances": ["\xff\xfe"]}'))
        status, _, body, _ = read_response(sock, bytearray())
    assert (status, json.loads(body)) == (400, {"error": "JSON Parse error: Invalid encoding in string. at offset: 16"})
    assert_serving(hostile_server)


@pytest.mark.parametrize("depth", [990, 1020, 1500, MAX_BODY // 2 - 20])
def test_deeply_nested_json(hostile_server, depth: int) -> None:  # type: ignore[no-untyped-def]
    """Deeper than the recursive walks over a document can go, below and beyond orjson's 1024 levels."""
    document = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    with connect(hostile_server) as sock:
        sock.sendall(post(PREDICT_PATH, document))
        status, _, body, _ = read_response(sock, bytearray())
    assert (status, json.loads(body)) == (400, {"error": TOO_DEEP})
    assert_serving(hostile_server)
