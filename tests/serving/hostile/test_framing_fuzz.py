"""Fuzzed HTTP/1.1 framing against the running server: every mutated request is answered or its connection
closed within the read timeout (a hang fails), no answer is a 5xx, and after every case both APIs answer a
normal Predict within a second (a crash or a blocked event loop fails)."""
from __future__ import annotations

import contextlib
import time

from hostile_helpers import PREDICT_BODY, PREDICT_PATH, READ_TIMEOUT, assert_serving, connect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import post

SEEDS = [
    post(PREDICT_PATH, PREDICT_BODY),
    f"POST {PREDICT_PATH} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{len(PREDICT_BODY):x}\r\n".encode()
    + PREDICT_BODY + b"\r\n0\r\n\r\n",
    b"GET /v1/models/demo HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    post(PREDICT_PATH, PREDICT_BODY, "Expect: 100-continue"),
]
FRAMING_BYTES = b"\r\n: ;0123456789abcdefABCDEF-\t"
QUIET = 0.3  # once something was answered, this long without a byte means the connection is idle


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "framing", "truncate", "pipeline", "repeat", "run"]))
        if kind == "flip" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "framing":  # the bytes framing is made of: CR, LF, colons, hex digits, signs
            data[pos:pos] = bytes(draw(st.lists(st.sampled_from(FRAMING_BYTES), min_size=1, max_size=12)))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "pipeline":
            data += draw(st.sampled_from(SEEDS))
        elif kind == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = bytes([draw(st.integers(0, 255))]) * draw(st.integers(100, 9000))
    return bytes(data)


def answers_or_closes(server, data: bytes) -> list[int]:  # type: ignore[no-untyped-def]
    """The statuses the server sent for ``data``; fails if it neither answered nor closed in time."""
    statuses: list[int] = []
    received = bytearray()
    deadline = time.monotonic() + READ_TIMEOUT + 1.5
    with connect(server) as sock:
        # refused mid-send: the answer is still to be read
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no answer and no close within {READ_TIMEOUT + 1.5} s for {data[:200]!r}"
            sock.settimeout(min(left, QUIET) if statuses else left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if statuses:
                    return statuses  # answered, then idle on a keep-alive connection
                continue
            except ConnectionResetError:
                return statuses
            if not chunk:
                return statuses
            received += chunk
            statuses += [int(line.split(b" ")[1]) for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.")]
            del received[: received.rfind(b"\r\n") + 2 if b"\r\n" in received else 0]


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=mutated_requests())
def test_mutated_framing_is_answered_or_closed(hostile_server, data: bytes) -> None:  # type: ignore[no-untyped-def]
    statuses = answers_or_closes(hostile_server, data)
    assert all(status < 500 or status == 503 for status in statuses), (statuses, data[:200])
    assert_serving(hostile_server)
